//! Standard input: one JSON document per line. Each line is journaled before it is queued, so
//! a restart finishes what was accepted.
//!
//! A blank, oversized or malformed line is reported (with its line number) and skipped; end
//! of input ends this source cleanly, not the process. Lines are read on a dedicated thread
//! and passed through a small bounded channel, so a full queue stops the reading and a read
//! that never returns cannot hold up shutdown.

use std::io::{BufRead, BufReader, Read};

use serde_json::Value;
use switchyard_core::Event;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{StdinConfig, StdinFormat};
use crate::codec::LegacyMessage;
use crate::sources::Dispatcher;

enum Line {
    Text(usize, String),
    TooLong(usize, usize),
    Invalid(usize, String),
}

/// Reads `input` until end of input or shutdown.
pub async fn run<R: Read + Send + 'static>(
    cfg: StdinConfig,
    input: R,
    dispatch: Dispatcher,
    shutdown: CancellationToken,
) {
    let (tx, mut rx) = mpsc::channel::<Line>(16);
    let max = cfg.max_line_bytes.get();
    std::thread::Builder::new()
        .name("stdin-reader".into())
        .spawn(move || read_lines(BufReader::new(input), max, &tx))
        .map_err(
            |e| tracing::error!(source = %cfg.name, error = %e, "cannot start the stdin reader"),
        )
        .ok();
    let event_name = cfg
        .event
        .clone()
        .unwrap_or_else(|| format!("{}.line", cfg.name));
    tracing::info!(source = %cfg.name, format = cfg.format.as_str(), "reading events from standard input");
    loop {
        let line = tokio::select! {
            _ = shutdown.cancelled() => break,
            line = rx.recv() => line,
        };
        let Some(line) = line else {
            tracing::info!(source = %cfg.name, "standard input closed; stdin source finished");
            break;
        };
        let (n, text) = match line {
            Line::Text(n, text) => (n, text),
            Line::TooLong(n, len) => {
                tracing::warn!(source = %cfg.name, line = n, bytes = len, max_bytes = max, "line too long, skipped");
                continue;
            }
            Line::Invalid(n, why) => {
                tracing::warn!(source = %cfg.name, line = n, error = %why, "unreadable line, skipped");
                continue;
            }
        };
        if text.trim().is_empty() {
            tracing::debug!(source = %cfg.name, line = n, "blank line skipped");
            continue;
        }
        let payload = match parse(cfg.format, &text) {
            Ok(p) => p,
            Err(why) => {
                tracing::warn!(source = %cfg.name, line = n, error = %why, "malformed message, skipped");
                continue;
            }
        };
        let event = Event::builder(&cfg.name, &event_name, payload)
            .label("stdin.line", n.to_string())
            .build();
        let id = event.id.clone();
        // A journal that cannot write for now (a full disk) holds the reading: the line is
        // offered again each second, never skipped.
        let accepted = loop {
            let sent = tokio::select! {
                _ = shutdown.cancelled() => None,
                sent = dispatch.dispatch(event.clone()) => Some(sent),
            };
            match sent {
                Some(Err(crate::sources::Refused::Journal(
                    crate::journal::JournalError::Unavailable(why),
                ))) => {
                    tracing::warn!(source = %cfg.name, line = n, event_id = %id, reason = %why, "journal cannot take the event yet; waiting");
                    tokio::select! {
                        _ = shutdown.cancelled() => break None,
                        _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                    }
                }
                other => break other,
            }
        };
        match accepted {
            None => {
                tracing::warn!(source = %cfg.name, line = n, event_id = %id, "shutting down while the event was being accepted (the journal has it if it was)");
                break;
            }
            Some(Ok(_)) => {
                tracing::info!(source = %cfg.name, line = n, event_id = %id, "event received")
            }
            Some(Err(crate::sources::Refused::Journal(e))) => {
                // The line cannot be made durable; stopping is better than losing more.
                tracing::error!(source = %cfg.name, line = n, event_id = %id, error = %e, "cannot journal the event; stdin source stops");
                break;
            }
            Some(Err(e)) => {
                tracing::warn!(source = %cfg.name, line = n, event_id = %id, error = %e, "event not accepted");
                break;
            }
        }
    }
}

/// Decodes one line in `format` (public for the fuzz targets).
pub fn parse(format: StdinFormat, text: &str) -> Result<Value, String> {
    let value: Value = crate::sources::parse_json(text.as_bytes())?;
    if format == StdinFormat::PrefectEventRouter {
        let msg: LegacyMessage = serde_json::from_value(value.clone()).map_err(|e| {
            format!("not a prefect-event-router message {{\"flow_name\", \"deployment_name\", \"payload\"}}: {e}")
        })?;
        if msg.flow_name.is_empty() || msg.deployment_name.is_empty() {
            return Err("flow_name and deployment_name must not be empty".into());
        }
    }
    Ok(value)
}

/// Blocking reader: bounded lines, numbered from 1.
fn read_lines(mut input: impl BufRead, max: usize, tx: &mpsc::Sender<Line>) {
    let mut n = 0;
    loop {
        n += 1;
        let mut buf = Vec::new();
        let mut too_long = 0usize;
        loop {
            let chunk = match input.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = tx.blocking_send(Line::Invalid(n, e.to_string()));
                    return;
                }
            };
            if chunk.is_empty() {
                if buf.is_empty() && too_long == 0 {
                    return;
                }
                break;
            }
            let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            if too_long > 0 || buf.len() + take > max + 1 {
                too_long += take + std::mem::take(&mut buf).len();
            } else {
                buf.extend_from_slice(&chunk[..take]);
            }
            input.consume(take);
            if done {
                break;
            }
        }
        let line = if too_long > 0 {
            Line::TooLong(n, too_long)
        } else {
            match String::from_utf8(buf) {
                Ok(s) => Line::Text(n, s),
                Err(_) => Line::Invalid(n, "not valid UTF-8".into()),
            }
        };
        if tx.blocking_send(line).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &str, max: usize) -> Vec<String> {
        let (tx, mut rx) = mpsc::channel(100);
        read_lines(input.as_bytes(), max, &tx);
        drop(tx);
        let mut out = Vec::new();
        while let Ok(l) = rx.try_recv() {
            out.push(match l {
                Line::Text(n, t) => format!("{n}:{}", t.trim_end()),
                Line::TooLong(n, len) => format!("{n}:too long {len}"),
                Line::Invalid(n, e) => format!("{n}:invalid {e}"),
            });
        }
        out
    }

    #[test]
    fn bounded_numbered_lines() {
        assert_eq!(
            lines("a\n\nbcdefgh\nxy", 4),
            ["1:a", "2:", "3:too long 8", "4:xy"]
        );
        assert_eq!(lines("", 4), Vec::<String>::new());
    }

    #[test]
    fn legacy_messages_are_checked() {
        let ok = r#"{"flow_name": "Test Flow", "deployment_name": "d", "payload": {"a": 1}}"#;
        assert!(parse(StdinFormat::PrefectEventRouter, ok).is_ok());
        let err = parse(
            StdinFormat::PrefectEventRouter,
            r#"{"deployment_name": "d"}"#,
        )
        .unwrap_err();
        assert!(err.contains("missing field `flow_name`"), "{err}");
        assert!(
            parse(
                StdinFormat::PrefectEventRouter,
                r#"{"flow_name": "f", "deployment_name": "d", "payload": 3}"#
            )
            .is_err()
        );
        assert!(
            parse(StdinFormat::Json, "{oops")
                .unwrap_err()
                .starts_with("not valid JSON")
        );
        assert_eq!(
            parse(StdinFormat::Json, "[1]").unwrap(),
            serde_json::json!([1])
        );
    }
}
