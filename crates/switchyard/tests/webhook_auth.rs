//! Webhooks you can put on the internet: requests signed the way GitHub, Stripe and Standard
//! Webhooks senders sign them, and bearer tokens, against the `switchyard` binary and a real
//! Prefect. Valid → 202 and one run; wrong secret, tampered body, stale timestamp, missing
//! header → 401 and no event; two secrets at once (rotation) both pass; a replayed delivery
//! finds the first event. No secret appears in the log.

mod common;

use base64::Engine as _;
use common::{Router, post};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use switchyard_testkit::{PrefectServer, TempDir, free_port, unique};

fn api() -> &'static str {
    &PrefectServer::shared().api_url
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// `X-Hub-Signature-256` as GitHub computes it: HMAC-SHA256 of the raw body, hex.
fn github_sig(secret: &str, body: &str) -> String {
    format!(
        "sha256={}",
        hex(&hmac_sha256(secret.as_bytes(), body.as_bytes()))
    )
}

/// `Stripe-Signature` as Stripe computes it: `t=<ts>,v1=<hex HMAC-SHA256 of "{t}.{body}">`.
fn stripe_sig(secret: &str, t: i64, body: &str) -> String {
    let signed = format!("{t}.{body}");
    format!(
        "t={t},v1={}",
        hex(&hmac_sha256(secret.as_bytes(), signed.as_bytes()))
    )
}

/// `webhook-signature` per Standard Webhooks: `v1,<base64 HMAC-SHA256 of "{id}.{ts}.{body}">`
/// keyed by the base64 after `whsec_`.
fn standard_sig(secret: &str, id: &str, ts: i64, body: &str) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    format!(
        "v1,{}",
        b64(&hmac_sha256(&key, format!("{id}.{ts}.{body}").as_bytes()))
    )
}

/// URL, body, headers.
type Request = (String, String, Vec<(&'static str, String)>);

fn events_in(journal: &std::path::Path) -> i64 {
    rusqlite::Connection::open(journal)
        .and_then(|c| c.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0)))
        .unwrap_or(-1)
}

#[test]
fn signed_and_authenticated_hooks_accept_their_senders_and_refuse_everyone_else() {
    let flow = unique("Signed");
    let dep = common::deploy(api(), &flow, "signed", json!({}));
    let port = free_port();
    let dir = TempDir::new("webhook-auth");
    let (gh_old, gh_new) = ("gh-old-secret-0123456789", "gh-new-secret-9876543210");
    let stripe_secret = "whsec_stripe_test_secret_abcdef";
    let sw_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let token = "bearer-token-0123456789abcdef";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let config = format!(
        r#"
http: {{listen: "127.0.0.1:{port}"}}
sources:
  - type: webhook
    name: gh
    verify: {{github: {{secret: [{{env: GH_OLD}}, {{env: GH_NEW}}]}}}}
  - type: webhook
    name: stripe
    verify: {{stripe: {{secret: {{env: STRIPE_SECRET}}, tolerance: 5m}}}}
  - type: webhook
    name: std
    event: std.message
    verify: {{standard_webhooks: {{secret: {{env: SW_SECRET}}}}}}
  - type: webhook
    name: tok
    verify: {{bearer: {{token: {{file: "{}"}}}}}}
routes:
  - name: all
    from: [gh, stripe, std, tok]
    action:
      type: run_deployment
      deployment: "{flow}/signed"
      flow_run_name: "{{{{ event.source }}}}-{{{{ event.name }}}}"
"#,
        token_file.display()
    );
    let router = Router::start_env(
        dir.path(),
        api(),
        "auth.yaml",
        &config,
        &[],
        &[
            ("GH_OLD", gh_old),
            ("GH_NEW", gh_new),
            ("STRIPE_SECRET", stripe_secret),
            ("SW_SECRET", sw_secret),
        ],
    );
    router.wait_for_http(port);
    let url = |hook: &str| format!("http://127.0.0.1:{port}/hooks/{hook}");
    let journal = dir.path().join("journal.db");

    // Refused: each answer 401 with a generic reason, nothing journaled.
    let push = r#"{"ref": "refs/heads/main"}"#;
    let stale = now() - 3600;
    let charge = r#"{"id": "evt_1", "type": "charge.succeeded", "data": {}}"#;
    let refused: Vec<Request> = vec![
        (url("gh"), push.into(), vec![]),
        (
            url("gh"),
            push.into(),
            vec![("x-hub-signature-256", github_sig("wrong-secret", push))],
        ),
        (
            url("gh"),
            r#"{"ref": "refs/heads/evil"}"#.into(),
            vec![("x-hub-signature-256", github_sig(gh_old, push))],
        ),
        (
            url("stripe"),
            charge.into(),
            vec![("stripe-signature", stripe_sig(stripe_secret, stale, charge))],
        ),
        (
            url("stripe"),
            charge.into(),
            vec![("stripe-signature", stripe_sig("whsec_other", now(), charge))],
        ),
        (
            url("std"),
            "{}".into(),
            vec![
                ("webhook-id", "msg_1".into()),
                ("webhook-timestamp", stale.to_string()),
                (
                    "webhook-signature",
                    standard_sig(sw_secret, "msg_1", stale, "{}"),
                ),
            ],
        ),
        (
            url("tok"),
            "{}".into(),
            vec![("authorization", "Bearer not-the-token".into())],
        ),
        (url("tok"), "{}".into(), vec![]),
    ];
    for (u, body, headers) in &refused {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, answer) = post(u, body, &h);
        assert_eq!(status, 401, "{u} {headers:?}: {answer}");
        assert_eq!(answer, json!({"error": "request could not be verified"}));
    }
    assert_eq!(
        events_in(&journal),
        0,
        "refused requests are never journaled"
    );

    // Accepted: both GitHub secrets (rotation), Stripe, Standard Webhooks, the token file.
    let t = now();
    let accepted: Vec<(Request, &str)> = vec![
        (
            (
                url("gh"),
                push.into(),
                vec![
                    ("x-hub-signature-256", github_sig(gh_old, push)),
                    ("x-github-event", "push".into()),
                    ("x-github-delivery", "d-1".into()),
                ],
            ),
            "gh:d-1",
        ),
        (
            (
                url("gh"),
                push.into(),
                vec![
                    ("x-hub-signature-256", github_sig(gh_new, push)),
                    ("x-github-event", "push".into()),
                    ("x-github-delivery", "d-2".into()),
                ],
            ),
            "gh:d-2",
        ),
        (
            (
                url("stripe"),
                charge.into(),
                vec![("stripe-signature", stripe_sig(stripe_secret, t, charge))],
            ),
            "stripe:evt_1",
        ),
        (
            (
                url("std"),
                "{\"n\": 1}".into(),
                vec![
                    ("webhook-id", "msg_2".into()),
                    ("webhook-timestamp", t.to_string()),
                    (
                        "webhook-signature",
                        standard_sig(sw_secret, "msg_2", t, "{\"n\": 1}"),
                    ),
                    // A sender-chosen name does not reach routes: the hook's `event` wins.
                    ("ce-type", "admin.reset".into()),
                ],
            ),
            "std:msg_2",
        ),
        (
            (
                url("tok"),
                "{}".into(),
                vec![("authorization", format!("Bearer {token}"))],
            ),
            "",
        ),
    ];
    for ((u, body, headers), id) in &accepted {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, answer) = post(u, body, &h);
        assert_eq!(status, 202, "{u} {headers:?}: {answer}");
        if !id.is_empty() {
            assert_eq!(answer["id"], *id);
        }
    }
    let runs = common::wait_for_runs(api(), dep, 5);
    let mut names: Vec<String> = runs.iter().map(|r| r.name.clone()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "gh-push",
            "gh-push",
            "std-std.message",
            "stripe-charge.succeeded",
            "tok-tok.received"
        ]
    );
    switchyard_testkit::wait_until("every event settled", common::DEADLINE, || {
        (common::settled_events(&journal) == 5).then_some(())
    });
    // GitHub redelivers d-1: the same event, no second run.
    let (status, answer) = post(
        &url("gh"),
        push,
        &[
            ("x-hub-signature-256", &github_sig(gh_new, push)),
            ("x-github-event", "push"),
            ("x-github-delivery", "d-1"),
        ],
    );
    assert_eq!((status, answer["id"].clone()), (202, json!("gh:d-1")));

    router.wait_for_log(&[("message", "already settled")]);
    assert_eq!(
        common::count_runs(api(), dep),
        5,
        "the redelivery started nothing"
    );
    assert_eq!(events_in(&journal), 5);

    // An unknown hook is a 404 that names no other hook.
    let (status, answer) = post(&url("nope"), "{}", &[]);
    assert_eq!(status, 404);
    assert_eq!(answer, json!({"error": "no such hook"}));

    let logs: Vec<Value> = router.logs();
    let text: String = logs.iter().map(Value::to_string).collect();
    assert!(text.contains("request failed verification"), "{text}");
    for secret in [gh_old, gh_new, stripe_secret, sw_secret, token] {
        assert!(!text.contains(secret), "a secret reached the log");
    }
    assert_eq!(router.stop(libc::SIGINT), Some(0));
}

#[test]
fn https_with_a_configured_certificate_and_config_errors_naming_the_file() {
    let dir = TempDir::new("webhook-tls");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (ca, ca_key) = (dir.path().join("ca.pem"), dir.path().join("ca.key"));
    let (csr, ext) = (dir.path().join("leaf.csr"), dir.path().join("leaf.ext"));
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let openssl = |args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    // A test CA, and a server certificate for localhost signed by it.
    let mut a: Vec<&std::ffi::OsStr> = vec![os("req"), os("-x509")];
    a.extend(ec.iter().map(|s| os(s)));
    a.extend([
        os("-days"),
        os("1"),
        os("-subj"),
        os("/CN=switchyard test CA"),
    ]);
    a.extend([
        os("-keyout"),
        ca_key.as_os_str(),
        os("-out"),
        ca.as_os_str(),
    ]);
    openssl(&a);
    let mut a: Vec<&std::ffi::OsStr> = vec![os("req")];
    a.extend(ec.iter().map(|s| os(s)));
    a.extend([
        os("-subj"),
        os("/CN=localhost"),
        os("-keyout"),
        key.as_os_str(),
    ]);
    a.extend([os("-out"), csr.as_os_str()]);
    openssl(&a);
    openssl(&[
        os("x509"),
        os("-req"),
        os("-in"),
        csr.as_os_str(),
        os("-CA"),
        ca.as_os_str(),
        os("-CAkey"),
        ca_key.as_os_str(),
        os("-CAcreateserial"),
        os("-days"),
        os("1"),
        os("-extfile"),
        ext.as_os_str(),
        os("-out"),
        cert.as_os_str(),
    ]);
    let port = free_port();
    let config = |key: &std::path::Path| {
        format!(
            "http: {{listen: \"127.0.0.1:{port}\", tls: {{cert: \"{}\", key: \"{}\"}}}}\nsources: [{{type: webhook, name: h}}]\nroutes:\n  - {{name: r, when: \"false\", action: {{type: run_deployment, deployment: a/b}}}}\n",
            cert.display(),
            key.display()
        )
    };
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, config(&dir.path().join("missing.pem"))).unwrap();
    let (code, _, stderr) = common::switchyard(&["check", bad.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("http.tls.key") && stderr.contains("missing.pem"),
        "{stderr}"
    );

    let router = Router::start(dir.path(), api(), "tls.yaml", &config(&key), &[]);
    router.wait_for_http(port);
    let pem = std::fs::read(&ca).unwrap();
    let (status, body) = common::rt().block_on(async {
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .build()
            .unwrap();
        let resp = client
            .post(format!("https://localhost:{port}/hooks/h"))
            .header("content-type", "application/json")
            .body("{\"a\": 1}")
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
    });
    assert_eq!(status, 202, "{body}");
    // Plain HTTP on the TLS port gets no HTTP answer.
    let (status, _) = post(&format!("http://127.0.0.1:{port}/hooks/h"), "{}", &[]);
    assert_eq!(status, 0);
    assert_eq!(router.stop(libc::SIGINT), Some(0));
}
