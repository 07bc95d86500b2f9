//! The web UI in a real browser: headless Chromium (Debian's) driven by playwright-core
//! (`tests/ui/drive.mjs`, installed by `scripts/browser-env.sh`) against the `switchyard`
//! binary and a Prefect server this test owns. The browser signs in with the token, opens
//! the overview, sees an event it sends appear in the event list without a reload, opens its
//! timeline with the run and its state, replays a dead letter with the button, and watches
//! the triggers page and the live tap; it saves a screenshot of each page (the path is
//! printed). This test then checks in Prefect that the replay started the run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::Router;
use serde_json::{Value, json};
use switchyard_testkit::{ChildGuard, OwnedPrefect, TempDir, free_port, unique, wait_until};

const TOKEN: &str = "ui-token-0123456789abcdef";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn get(url: &str) -> Value {
    common::rt().block_on(async {
        let r = reqwest::Client::new()
            .get(url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{url}: {}", r.status());
        r.json().await.unwrap()
    })
}

#[test]
fn the_web_ui_shows_events_live_explains_them_and_replays_a_dead_letter() {
    let browser_env = root().join(".browser-env/node_modules/playwright-core");
    assert!(
        browser_env.exists(),
        "playwright-core is not installed: run scripts/browser-env.sh (scripts/test.sh does)"
    );
    let prefect = OwnedPrefect::start();
    let api = prefect.api_url.clone();
    let flow = unique("Browsed");
    common::deploy(&api, &flow, "ok", json!({}));
    let (port, admin_port) = (free_port(), free_port());
    let config = format!(
        r#"
http: {{listen: "127.0.0.1:{port}"}}
admin: {{listen: "127.0.0.1:{admin_port}", token: "{TOKEN}"}}
prefect: {{max_retries: 1}}
sources: [{{type: webhook, name: orders}}]
routes:
  - name: big-orders
    when: event.payload.kind == "ok"
    action: {{type: run_deployment, deployment: "{flow}/ok", flow_run_name: "order-{{{{ event.payload.n }}}}"}}
  - name: needs-later
    when: event.payload.kind == "later"
    action: {{type: run_deployment, deployment: "{flow}/later"}}
  - name: repeated
    trigger: {{type: event, expect: [orders.received], threshold: 50, within: 1h}}
    action: {{type: run_deployment, deployment: "{flow}/ok"}}
"#
    );
    let dir = TempDir::new("ui");
    let router = Router::start(dir.path(), &api, "ui.yaml", &config, &[]);
    router.wait_for_http(port);
    router.wait_for_http(admin_port);
    let base = format!("http://127.0.0.1:{admin_port}");
    let hook = format!("http://127.0.0.1:{port}/hooks/orders");

    // A dead letter for the browser to replay: its deployment does not exist yet.
    let (status, body) = common::post(
        &hook,
        r#"{"kind": "later"}"#,
        &[("idempotency-key", "late-1")],
    );
    assert_eq!(status, 202, "{body}");
    wait_until("the dead letter", common::DEADLINE, || {
        let v = get(&format!("{base}/api/v1/dead-letters"));
        (v["dead_letters"].as_array()?.len() == 1).then_some(())
    });
    let later = common::deploy(&api, &flow, "later", json!({}));

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/drive.mjs");
    let log = dir.path().join("drive.log");
    let file = std::fs::File::create(&log).unwrap();
    // The guard stops the driver (and so its browser) if this test fails first.
    let mut driver = ChildGuard::spawn(
        Command::new("node")
            .arg(&script)
            .env("ADMIN_URL", &base)
            .env("HOOK_URL", &hook)
            .env("ADMIN_TOKEN", TOKEN)
            .env("PLAYWRIGHT_CORE", &browser_env)
            .env("SCREENSHOTS", &shots)
            .env("CHROMIUM", "/usr/bin/chromium")
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file)),
    )
    .expect("node (scripts/browser-env.sh installs it)");
    let code = driver.wait_exit(common::DEADLINE * 3);
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    eprintln!("{said}");
    assert_eq!(code, Some(0), "the browser test failed:\n{said}");
    eprintln!("screenshots in {}", shots.display());
    for page in [
        "overview",
        "events",
        "event",
        "dead-letters",
        "triggers",
        "tap",
    ] {
        let png = shots.join(format!("{page}.png"));
        let len = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
        assert!(len > 10_000, "{} is missing or blank", png.display());
    }

    // The Replay button replayed the dead letter: Prefect has the run.
    assert_eq!(common::wait_for_runs(&api, later, 1).len(), 1);
    let all = get(&format!("{base}/api/v1/dead-letters?all=true"));
    let resolution = all["dead_letters"][0]["resolution"]
        .as_str()
        .unwrap_or_default();
    assert!(resolution.starts_with("replayed"), "{all}");
    assert_eq!(router.stop(libc::SIGINT), Some(0));
    drop(prefect);
}
