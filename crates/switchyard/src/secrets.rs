//! Keeping secrets out of every line Switchyard prints.
//!
//! Two layers. Where a value with a secret in it is shown on purpose (a URL in a log line or
//! in `check`), it goes through [`url`], which masks the password and secret query
//! parameters. Beneath that, every secret the config holds (passwords, tokens, keys, the
//! password inside each URL, an Azure connection string's key) and those of the environment
//! Switchyard reads are [registered](register) when the config loads, and the log writer and
//! the CLI's error output replace any of them with `***` ([`redact`]) — whatever library
//! formatted the line.

use std::borrow::Cow;
use std::sync::RwLock;

use serde_json::Value;

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Secrets shorter than this are not masked in free text (a one-letter password would mask
/// every such letter); [`url`] masks them all the same.
const MIN_LEN: usize = 4;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Adds a secret to mask everywhere from now on.
pub fn register(secret: &str) {
    let secret = secret.trim();
    if secret.len() < MIN_LEN {
        return;
    }
    let mut all = SECRETS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut add = |s: String| {
        if !all.contains(&s) {
            all.push(s);
        }
    };
    add(secret.to_string());
    // As it may appear inside a URL, and decoded from one.
    let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    if encoded != secret {
        add(encoded);
    }
    if let Ok(decoded) = urlencoding_decode(secret)
        && decoded != secret
        && decoded.len() >= MIN_LEN
    {
        add(decoded);
    }
    // Longest first, so a secret that contains another is masked whole.
    all.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

fn urlencoding_decode(s: &str) -> Result<String, std::str::Utf8Error> {
    let bytes: Vec<u8> = url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned().into_bytes())
        .unwrap_or_default();
    std::str::from_utf8(&bytes).map(str::to_string)
}

/// `text` with every registered secret replaced by [`MASK`].
pub fn redact(text: &str) -> Cow<'_, str> {
    let all = SECRETS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if all.is_empty() || !all.iter().any(|s| text.contains(s.as_str())) {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_string();
    for s in all.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), MASK);
        }
    }
    Cow::Owned(out)
}

/// Query parameters whose values are secrets (Azure's `sig`, tokens, keys).
fn secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "sig"
        || ["password", "secret", "token", "key", "auth", "credential"]
            .iter()
            .any(|w| n.contains(w))
}

/// A URL fit to print: its password and secret query parameters masked. Text that is not a
/// URL is masked after `user:` up to the last `@` before the path, if it has that shape.
pub fn url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some(MASK));
            }
            if u.query().is_some() {
                let pairs: Vec<(String, String)> = u
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if secret_param(&k) {
                            MASK.to_string()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            u.to_string()
        }
        Err(_) => {
            let Some((scheme, rest)) = raw.split_once("://") else {
                return redact(raw).into_owned();
            };
            let end = rest.find('/').unwrap_or(rest.len());
            match rest[..end].rfind('@') {
                Some(at) => {
                    let user = rest[..at].split(':').next().unwrap_or_default();
                    format!("{scheme}://{user}:{MASK}@{}", &rest[at + 1..])
                }
                None => redact(raw).into_owned(),
            }
        }
    }
}

/// Keys whose string values are secrets.
fn secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k == "sas"
        || k.ends_with("password")
        || k.ends_with("secret")
        || k.ends_with("token")
        || k.contains("api_key")
        || k.contains("apikey")
        || k.ends_with("account_key")
        || k == "auth_string"
        || k == "connection_string"
        || k == "key"
        || k.ends_with(".key")
}

/// Registers the secrets of a value: strings under secret-looking keys, every URL's
/// password, and the keys of connection strings (`AccountKey=...;`).
pub fn register_value(v: &Value) {
    // (key, the key of the object holding it, value)
    let mut stack = vec![(None::<&str>, None::<&str>, v)];
    while let Some((key, parent, v)) = stack.pop() {
        match v {
            Value::Object(map) => {
                stack.extend(map.iter().map(|(k, child)| (Some(k.as_str()), key, child)))
            }
            Value::Array(items) => stack.extend(items.iter().map(|i| (key, parent, i))),
            // `http.tls.key` names the key's file; the file is the secret, not its path.
            Value::String(_) if key == Some("key") && parent == Some("tls") => {}
            Value::String(s) => register_text(key, s),
            _ => {}
        }
    }
}

fn register_text(key: Option<&str>, s: &str) {
    if key.is_some_and(secret_key) {
        register(s);
        if key == Some("auth_string")
            && let Some((_, password)) = s.split_once(':')
        {
            register(password);
        }
    }
    if let Ok(u) = url::Url::parse(s) {
        if let Some(p) = u.password() {
            register(p);
        }
        for (k, v) in u.query_pairs() {
            if secret_param(&k) {
                register(&v);
            }
        }
    }
    for part in s.split(';') {
        if let Some((k, v)) = part.split_once('=')
            && (k.trim().eq_ignore_ascii_case("AccountKey")
                || k.trim().eq_ignore_ascii_case("SharedAccessSignature"))
        {
            register(v.trim());
        }
    }
}

/// The environment variables Switchyard reads secrets from.
pub const SECRET_ENV: [&str; 7] = [
    "PREFECT_API_KEY",
    "PREFECT_API_AUTH_STRING",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_TOKEN",
    "SWITCHYARD_ADMIN_TOKEN",
];

/// Registers the secrets of [`SECRET_ENV`] and the password of `PREFECT_API_URL`.
pub fn register_env() {
    for name in SECRET_ENV.iter().chain(["PREFECT_API_URL"].iter()) {
        if let Ok(v) = std::env::var(name) {
            let key = match *name {
                "PREFECT_API_AUTH_STRING" => "auth_string",
                "AZURE_STORAGE_CONNECTION_STRING" => "connection_string",
                "PREFECT_API_URL" => "url",
                _ => "token",
            };
            register_text(Some(key), &v);
        }
    }
}

/// A writer for the log that masks secrets in each line it is given (the log formats a whole
/// line before writing it).
#[derive(Debug, Clone, Copy, Default)]
pub struct RedactingStderr;

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingStderr;
    fn make_writer(&'a self) -> Self::Writer {
        RedactingStderr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_passwords_and_secret_parameters() {
        assert_eq!(
            url("http://admin:s3cret@127.0.0.1:4200/api"),
            "http://admin:***@127.0.0.1:4200/api"
        );
        assert_eq!(
            url("redis://:hunter22@host:6379/0"),
            "redis://:***@host:6379/0"
        );
        assert_eq!(
            url("https://acct.queue.core.windows.net/q?sv=2020&sig=abc%2Fdef"),
            "https://acct.queue.core.windows.net/q?sv=2020&sig=***"
        );
        assert_eq!(url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
    }

    #[test]
    fn registered_secrets_are_masked_in_any_text() {
        register_value(&serde_json::json!({
            "prefect": {"api_url": "http://u:pw-in-url-1@h/api", "api_key": "pnu_key_abcdef"},
            "sources": [{"options": {"sasl.password": "kafka-pw-9"}},
                        {"connection_string": "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=Zm9vYmFy;"}],
        }));
        let out = redact("connecting with pw-in-url-1, pnu_key_abcdef, kafka-pw-9 and Zm9vYmFy");
        assert_eq!(out, "connecting with ***, ***, *** and ***");
        assert_eq!(redact("nothing here"), "nothing here");
    }
}
