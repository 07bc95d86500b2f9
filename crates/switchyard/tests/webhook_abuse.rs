//! A listener that sheds abuse, against the `switchyard` binary started with a 1,024 open-file
//! limit: 2,000 slow connections are closed within the header timeout while normal requests
//! keep being served; an over-long body is answered 413 that a client without
//! `Expect: 100-continue` can read, and at once for one with it; a body that does not arrive
//! is a 408; a hook's rate limit answers 429 with `Retry-After`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use switchyard_testkit::{ChildGuard, PrefectServer, TempDir, free_port, unique, wait_until};

const SLOW: usize = 2000;

/// Raises this process's soft open-file limit to its hard one (the test holds 2,000 sockets).
fn raise_own_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain calls on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

/// Sends raw bytes and reads the answer's status line (or `None` if the server closed first).
fn raw(port: u16, request: &[u8], timeout: Duration) -> (Option<u16>, Duration) {
    let start = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(timeout)).unwrap();
    let _ = s.write_all(request);
    let mut buf = [0u8; 512];
    let mut got = Vec::new();
    while !got.windows(2).any(|w| w == b"\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let status = String::from_utf8_lossy(&got)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok());
    (status, start.elapsed())
}

#[test]
fn slow_clients_are_shed_and_normal_ones_served_with_a_1024_file_limit() {
    raise_own_file_limit();
    let api = &PrefectServer::shared().api_url;
    let flow = unique("Abuse");
    let dep = common::deploy(api, &flow, "normal", json!({}));
    let port = free_port();
    let dir = TempDir::new("webhook-abuse");
    let config = format!(
        r#"
http:
  listen: "127.0.0.1:{port}"
  max_body_bytes: 1024
  header_timeout: 3s
  idle_timeout: 3s
  body_timeout: 2s
sources:
  - {{type: webhook, name: h}}
  - {{type: webhook, name: limited, rate_limit: {{per_second: 0.5, burst: 2}}}}
routes:
  - name: r
    from: [h]
    action: {{type: run_deployment, deployment: "{flow}/normal"}}
"#
    );
    let path = dir.path().join("abuse.yaml");
    std::fs::write(&path, config).unwrap();
    let log = dir.path().join("switchyard.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.args(["--log-format", "json", "run"])
        .arg(&path)
        .env("PREFECT_API_URL", api)
        .env("SWITCHYARD_JOURNAL", dir.path().join("journal.db"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    // SAFETY: only async-signal-safe setrlimit between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 1024,
                rlim_max: 1024,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut router = ChildGuard::spawn(&mut cmd).unwrap();
    wait_until("the webhook server to listen", common::DEADLINE, || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    });

    // 2,000 clients that start a request and never finish its headers.
    let opened = Instant::now();
    let slow: Vec<TcpStream> = (0..SLOW)
        .filter_map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
            s.write_all(b"POST /hooks/h HTTP/1.1\r\nHost: x\r\n").ok()?;
            Some(s)
        })
        .collect();
    assert_eq!(slow.len(), SLOW, "every slow client got a connection");

    // Meanwhile normal requests are answered.
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let (status, took) = raw(
            port,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        );
        assert_eq!(status, Some(200));
        worst = worst.max(took);
    }
    eprintln!("slowest /healthz with {SLOW} slow connections open: {worst:?}");
    assert!(
        worst < Duration::from_secs(1),
        "healthz took {worst:?} with slow clients connected"
    );
    let (status, answer) = common::post(&format!("http://127.0.0.1:{port}/hooks/h"), "{}", &[]);
    assert_eq!(status, 202, "{answer}");
    common::wait_for_runs(api, dep, 1);

    // Every slow connection is closed by the server: shed to make room, or at its timeout.
    for mut s in slow {
        let left = Duration::from_secs(20).saturating_sub(opened.elapsed());
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            // Closed (0), or an answer before closing (e.g. a timeout status).
            Ok(n) => assert!(n <= buf.len()),
            Err(e) => assert_ne!(
                e.kind(),
                std::io::ErrorKind::WouldBlock,
                "a slow connection was still open after {:?}",
                opened.elapsed()
            ),
        }
    }
    eprintln!(
        "all {SLOW} slow connections closed after {:?}",
        opened.elapsed()
    );

    // Over the size limit without Expect: the body is read and thrown away, so the 413 arrives.
    let mut big = b"POST /hooks/h HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 300000\r\n\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'x', 300_000));
    assert_eq!(raw(port, &big, Duration::from_secs(10)).0, Some(413));
    // With Expect: 100-continue the 413 comes at once, before any body.
    let (status, took) = raw(
        port,
        b"POST /hooks/h HTTP/1.1\r\nHost: x\r\nContent-Length: 300000\r\nExpect: 100-continue\r\n\r\n",
        Duration::from_secs(10),
    );
    assert_eq!(status, Some(413));
    assert!(took < Duration::from_secs(2), "{took:?}");
    // A body that stops arriving: 408 after http.body_timeout.
    let (status, _) = raw(
        port,
        b"POST /hooks/h HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\":",
        Duration::from_secs(10),
    );
    assert_eq!(status, Some(408));

    // The rate-limited hook: a burst of 2, then 429 with Retry-After.
    let limited = format!("http://127.0.0.1:{port}/hooks/limited");
    let answers: Vec<u16> = (0..3)
        .map(|_| common::post(&limited, "{}", &[]).0)
        .collect();
    assert_eq!(answers, [202, 202, 429]);
    let retry = common::rt().block_on(async {
        reqwest::Client::new()
            .post(&limited)
            .body("{}")
            .send()
            .await
            .unwrap()
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string())
    });
    assert!(retry.is_some_and(|r| r.parse::<u64>().is_ok_and(|s| s >= 1)));

    router.signal(libc::SIGINT);
    assert_eq!(router.wait_exit(Duration::from_secs(60)), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("\"max_connections\":896"), "{text}");
}
