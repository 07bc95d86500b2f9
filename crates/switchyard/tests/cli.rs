//! The command line without a Prefect server: `--help`, `check` on good and broken configs.

mod common;

use switchyard_testkit::TempDir;

fn switchyard(args: &[&str]) -> (i32, String, String) {
    common::switchyard(args, &[("PREFECT_API_URL", "http://127.0.0.1:9/api")])
}

fn examples() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

#[test]
fn help_lists_the_commands() {
    let (code, out, _) = switchyard(&["--help"]);
    assert_eq!(code, 0);
    for want in ["run", "check", "PREFECT_API_URL", "--log-level"] {
        assert!(out.contains(want), "{want} missing from:\n{out}");
    }
    let (code, out, _) = switchyard(&["run", "--help"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("--config") && out.contains("--exit-when-sources-end"),
        "{out}"
    );
}

#[test]
fn check_accepts_every_example() {
    for name in [
        "webhook.yaml",
        "stdin.yaml",
        "demo.yaml",
        "brokers.yaml",
        "prefect-event-router.json",
    ] {
        let path = examples().join(name);
        let (code, out, err) = switchyard(&["check", "--config", path.to_str().unwrap()]);
        assert_eq!(code, 0, "{name}: {err}");
        assert!(out.contains(": OK"), "{out}");
    }
    let (_, out, _) = switchyard(&[
        "check",
        examples()
            .join("prefect-event-router.json")
            .to_str()
            .unwrap(),
    ]);
    assert!(
        out.contains("prefect-event-router form") && out.contains("(from the event)"),
        "{out}"
    );
}

#[test]
fn check_names_the_file_and_key_of_a_broken_config() {
    let dir = TempDir::new("switchyard-cli");
    let path = dir.path().join("broken.yaml");
    std::fs::write(
        &path,
        "sources:\n  - {type: webhook, name: orders}\nroutes:\n  - name: r\n    from: [ordrs]\n    action: {type: run_deployment, deployment: a/b}\n",
    )
    .unwrap();
    let (code, _, err) = switchyard(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert_eq!(
        err.trim(),
        format!(
            "error: config error in {} at `routes[0].from[0]`: unknown source \"ordrs\"; expected one of: orders",
            path.display()
        )
    );
    let (code, _, err) = switchyard(&["check", dir.path().join("missing.yaml").to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("missing.yaml: cannot read the file"), "{err}");
    let (code, _, err) = switchyard(&["check"]);
    assert_eq!(code, 2);
    assert!(err.contains("no config file"), "{err}");
}
