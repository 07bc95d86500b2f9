//! Request verification: signatures (Standard Webhooks, GitHub, Stripe, any HMAC) and
//! credentials (bearer, basic), each over the raw body as received, compared in constant time.
//!
//! A failure is a [`Rejected`] naming the check that failed, for the log; the sender only ever
//! hears a generic 401.

use std::time::Duration;

use axum::http::HeaderMap;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use subtle::ConstantTimeEq;

use super::config::{HmacAlgorithm, SignatureEncoding, Verify};
use crate::http::strip_scheme;

/// A hook's verification, its secrets read.
pub struct Verifier {
    scheme: Scheme,
    /// Each secret's key bytes.
    keys: Vec<Vec<u8>>,
}

enum Scheme {
    StandardWebhooks {
        tolerance: Duration,
    },
    Github,
    Stripe {
        tolerance: Duration,
    },
    Hmac {
        header: String,
        algorithm: HmacAlgorithm,
        encoding: SignatureEncoding,
        prefix: String,
    },
    Bearer,
    Basic {
        username: String,
    },
}

/// What a verified request says about itself.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verified {
    /// The sender's delivery id (the event id, prefixed by the hook).
    pub id: Option<String>,
    /// The sender's event name.
    pub name: Option<String>,
    /// Labels to add, e.g. `github.event`.
    pub labels: Vec<(String, String)>,
}

/// Why a request failed verification (for the log, never for the sender).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejected(pub String);

fn reject<T>(why: impl Into<String>) -> Result<T, Rejected> {
    Err(Rejected(why.into()))
}

impl Verifier {
    /// Reads the secrets a `verify` block names; `(key, message)` when one is missing.
    pub fn new(cfg: &Verify) -> Result<Self, (&'static str, String)> {
        let (key, secrets) = cfg.secrets();
        let values = secrets
            .resolve()
            .map_err(|m| ("verify", format!("{}.{key}: {m}", cfg.scheme())))?;
        let keys = values
            .iter()
            .map(|v| match cfg {
                Verify::StandardWebhooks { .. } => {
                    let b64 = v.strip_prefix("whsec_").unwrap_or(v);
                    base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .map_err(|_| {
                            (
                                "verify",
                                "standard_webhooks.secret: expected whsec_ followed by base64"
                                    .to_string(),
                            )
                        })
                }
                _ => Ok(v.as_bytes().to_vec()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let scheme = match cfg {
            Verify::StandardWebhooks { tolerance, .. } => Scheme::StandardWebhooks {
                tolerance: *tolerance,
            },
            Verify::Github { .. } => Scheme::Github,
            Verify::Stripe { tolerance, .. } => Scheme::Stripe {
                tolerance: *tolerance,
            },
            Verify::Hmac {
                header,
                algorithm,
                encoding,
                prefix,
                ..
            } => {
                if axum::http::HeaderName::try_from(header.as_str()).is_err() {
                    return Err((
                        "verify",
                        format!("hmac.header: {header:?} is not a header name"),
                    ));
                }
                Scheme::Hmac {
                    header: header.clone(),
                    algorithm: *algorithm,
                    encoding: *encoding,
                    prefix: prefix.clone(),
                }
            }
            Verify::Bearer { .. } => Scheme::Bearer,
            Verify::Basic { username, .. } => Scheme::Basic {
                username: username.clone(),
            },
        };
        Ok(Self { scheme, keys })
    }

    /// Checks a request against the hook's secrets at `now` (unix seconds).
    pub fn verify(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<Verified, Rejected> {
        match &self.scheme {
            Scheme::StandardWebhooks { tolerance } => {
                let id = header(headers, "webhook-id")?;
                let ts = header(headers, "webhook-timestamp")?;
                fresh(ts, now, *tolerance)?;
                let signed = [id.as_bytes(), b".", ts.as_bytes(), b".", body].concat();
                let given: Vec<Vec<u8>> = header(headers, "webhook-signature")?
                    .split_whitespace()
                    .filter_map(|s| s.strip_prefix("v1,"))
                    .filter_map(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                    .collect();
                if given.is_empty() {
                    return reject("webhook-signature has no v1 signature");
                }
                self.any_key(|key| {
                    let mac = mac(HmacAlgorithm::Sha256, key, &signed);
                    given.iter().any(|g| eq(g, &mac))
                })?;
                Ok(Verified {
                    id: Some(id.to_string()),
                    ..Verified::default()
                })
            }
            Scheme::Github => {
                let sig = header(headers, "x-hub-signature-256")?;
                let Some(hex) = sig.strip_prefix("sha256=") else {
                    return reject("X-Hub-Signature-256 does not start with sha256=");
                };
                let hex = hex.to_ascii_lowercase();
                self.any_key(|key| {
                    eq(
                        hex.as_bytes(),
                        to_hex(&mac(HmacAlgorithm::Sha256, key, body)).as_bytes(),
                    )
                })?;
                let event = headers
                    .get("x-github-event")
                    .and_then(|v| v.to_str().ok())
                    .map(String::from);
                Ok(Verified {
                    id: header(headers, "x-github-delivery").ok().map(String::from),
                    labels: event
                        .iter()
                        .map(|e| ("github.event".to_string(), e.clone()))
                        .collect(),
                    name: event,
                })
            }
            Scheme::Stripe { tolerance } => {
                let sig = header(headers, "stripe-signature")?;
                let mut t = None;
                let mut v1 = Vec::new();
                for part in sig.split(',') {
                    match part.trim().split_once('=') {
                        Some(("t", v)) => t = Some(v),
                        Some(("v1", v)) => v1.push(v.to_ascii_lowercase()),
                        _ => {}
                    }
                }
                let Some(t) = t else {
                    return reject("Stripe-Signature has no t=");
                };
                if v1.is_empty() {
                    return reject("Stripe-Signature has no v1=");
                }
                fresh(t, now, *tolerance)?;
                let signed = [t.as_bytes(), b".", body].concat();
                self.any_key(|key| {
                    let mine = to_hex(&mac(HmacAlgorithm::Sha256, key, &signed));
                    v1.iter().any(|g| eq(g.as_bytes(), mine.as_bytes()))
                })?;
                let parsed: Option<Value> = serde_json::from_slice(body).ok();
                let field = |k: &str| {
                    parsed
                        .as_ref()
                        .and_then(|v| v.get(k))
                        .and_then(Value::as_str)
                        .map(String::from)
                };
                let name = field("type");
                Ok(Verified {
                    id: field("id"),
                    labels: name
                        .iter()
                        .map(|n| ("stripe.type".to_string(), n.clone()))
                        .collect(),
                    name,
                })
            }
            Scheme::Hmac {
                header: name,
                algorithm,
                encoding,
                prefix,
            } => {
                let sig = header(headers, name)?;
                let Some(sig) = sig.strip_prefix(prefix.as_str()) else {
                    return reject(format!("{name} does not start with {prefix:?}"));
                };
                let given = match encoding {
                    SignatureEncoding::Hex => decode_hex(sig),
                    SignatureEncoding::Base64 => {
                        base64::engine::general_purpose::STANDARD.decode(sig).ok()
                    }
                };
                let Some(given) = given else {
                    return reject(format!("{name} is not {encoding:?}-encoded"));
                };
                self.any_key(|key| eq(&given, &mac(*algorithm, key, body)))?;
                Ok(Verified::default())
            }
            Scheme::Bearer => {
                let auth = header(headers, "authorization")?;
                let Some(token) = strip_scheme(auth, "bearer") else {
                    return reject("Authorization is not Bearer");
                };
                self.any_key(|key| eq(token.as_bytes(), key))?;
                Ok(Verified::default())
            }
            Scheme::Basic { username } => {
                let auth = header(headers, "authorization")?;
                let Some(b64) = strip_scheme(auth, "basic") else {
                    return reject("Authorization is not Basic");
                };
                let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(b64) else {
                    return reject("Authorization Basic is not base64");
                };
                let Some(split) = decoded.iter().position(|&b| b == b':') else {
                    return reject("Authorization Basic has no user:password");
                };
                let (user, pass) = (&decoded[..split], &decoded[split + 1..]);
                let user_ok = eq(user, username.as_bytes());
                let pass_ok = self.any_key(|key| eq(pass, key)).is_ok();
                if user_ok && pass_ok {
                    Ok(Verified::default())
                } else {
                    reject("wrong user name or password")
                }
            }
        }
    }

    /// Passes when `check` holds for any secret (all are tried, so timing does not tell which).
    fn any_key(&self, mut check: impl FnMut(&[u8]) -> bool) -> Result<(), Rejected> {
        let mut ok = false;
        for key in &self.keys {
            ok |= check(key);
        }
        if ok {
            Ok(())
        } else {
            reject("signature does not match any secret")
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, Rejected> {
    match headers.get(name).map(|v| v.to_str()) {
        Some(Ok(v)) if !v.trim().is_empty() => Ok(v.trim()),
        Some(_) => reject(format!("header {name} is not readable text")),
        None => reject(format!("header {name} is missing")),
    }
}

/// The timestamp is within `tolerance` of `now`, either way.
fn fresh(ts: &str, now: i64, tolerance: Duration) -> Result<(), Rejected> {
    let Ok(ts) = ts.parse::<i64>() else {
        return reject("timestamp is not a number of seconds");
    };
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if ts.abs_diff(now) > tolerance.unsigned_abs() {
        return reject(format!(
            "timestamp is {}s from now, over the tolerance",
            ts.saturating_sub(now)
        ));
    }
    Ok(())
}

fn mac(algorithm: HmacAlgorithm, key: &[u8], data: &[u8]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
        match <M as hmac::digest::KeyInit>::new_from_slice(key) {
            Ok(mut m) => {
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            // HMAC takes keys of any length.
            Err(_) => Vec::new(),
        }
    }
    match algorithm {
        HmacAlgorithm::Sha256 => run::<Hmac<sha2::Sha256>>(key, data),
        HmacAlgorithm::Sha512 => run::<Hmac<sha2::Sha512>>(key, data),
        HmacAlgorithm::Sha1 => run::<Hmac<sha1::Sha1>>(key, data),
    }
}

/// Constant-time equality (lengths may differ: that alone says nothing about the secret).
fn eq(a: &[u8], b: &[u8]) -> bool {
    !a.is_empty() && bool::from(a.ct_eq(b))
}

fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::webhook::config::{SecretRef, Secrets};

    fn verifier(cfg: Verify) -> Verifier {
        Verifier::new(&cfg).unwrap()
    }

    fn env_secret(var: &str, value: &str) -> Secrets {
        // SAFETY: each test uses its own variable name.
        unsafe { std::env::set_var(var, value) };
        Secrets::One(SecretRef::Env(var.into()))
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        super::super::test_headers(pairs)
    }

    #[test]
    fn standard_webhooks_reference_vector() {
        // The Standard Webhooks libraries' test vector.
        let v = verifier(Verify::StandardWebhooks {
            secret: env_secret("SY_T_SW", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            tolerance: Duration::from_secs(300),
        });
        let body = br#"{"test": 2432232314}"#;
        let h = headers(&[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1,bm9ldHUl v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ]);
        let ok = v.verify(&h, body, 1614265330 + 10).unwrap();
        assert_eq!(ok.id.as_deref(), Some("msg_p5jXN8AQM9LWM0D4loKWxJek"));
        assert!(v.verify(&h, b"{\"test\": 1}", 1614265330).is_err());
        let stale = v.verify(&h, body, 1614265330 + 301).unwrap_err();
        assert!(stale.0.contains("tolerance"), "{stale}");
    }

    #[test]
    fn github_documented_vector() {
        // GitHub's "Validating webhook deliveries" example.
        let v = verifier(Verify::Github {
            secret: env_secret("SY_T_GH", "It's a Secret to Everybody"),
        });
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let h = headers(&[
            ("x-hub-signature-256", sig),
            ("x-github-event", "push"),
            ("x-github-delivery", "72d3162e"),
        ]);
        let ok = v.verify(&h, b"Hello, World!", 0).unwrap();
        assert_eq!(ok.id.as_deref(), Some("72d3162e"));
        assert_eq!(ok.name.as_deref(), Some("push"));
        assert!(v.verify(&h, b"Hello, World?", 0).is_err());
        let missing = v.verify(&headers(&[]), b"Hello, World!", 0).unwrap_err();
        assert!(missing.0.contains("missing"), "{missing}");
    }

    #[test]
    fn basic_bearer_and_hmac() {
        let v = verifier(Verify::Bearer {
            token: env_secret("SY_T_BEARER", "tok-123456789"),
        });
        assert!(
            v.verify(
                &headers(&[("authorization", "Bearer tok-123456789")]),
                b"",
                0
            )
            .is_ok()
        );
        assert!(
            v.verify(
                &headers(&[("authorization", "Bearer tok-12345678")]),
                b"",
                0
            )
            .is_err()
        );
        let v = verifier(Verify::Basic {
            username: "svc".into(),
            password: env_secret("SY_T_BASIC", "pa:ss"),
        });
        // base64("svc:pa:ss")
        let h = headers(&[("authorization", "Basic c3ZjOnBhOnNz")]);
        assert!(v.verify(&h, b"", 0).is_ok());
        let h = headers(&[("authorization", "Basic c3ZjOnBhc3M=")]);
        assert!(v.verify(&h, b"", 0).is_err());
        let v = verifier(Verify::Hmac {
            secret: env_secret("SY_T_HMAC", "It's a Secret to Everybody"),
            header: "x-sig".into(),
            algorithm: HmacAlgorithm::Sha256,
            encoding: SignatureEncoding::Hex,
            prefix: "sha256=".into(),
        });
        let sig = "sha256=757107EA0EB2509FC211221CCE984B8A37570B6D7586C22C46F4379C8B043E17";
        assert!(
            v.verify(&headers(&[("x-sig", sig)]), b"Hello, World!", 0)
                .is_ok()
        );
    }

    #[test]
    fn missing_secrets_are_config_errors_without_values() {
        let cfg = Verify::Github {
            secret: Secrets::One(SecretRef::Env("SY_T_NOT_SET_ANYWHERE".into())),
        };
        let Err((key, msg)) = Verifier::new(&cfg) else {
            panic!("accepted a missing secret")
        };
        assert_eq!(key, "verify");
        assert!(msg.starts_with("github.secret: "), "{msg}");
        assert!(msg.contains("SY_T_NOT_SET_ANYWHERE is not set"), "{msg}");
    }
}
