//! Small HTTP helpers the webhook intake and the admin server share.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// A JSON response.
pub fn reply(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// A header's text, trimmed; `None` when absent, empty or not text.
pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The rest of `value` after an authorization scheme (any case) and a space.
pub fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = value.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    strip_scheme(header_str(headers, "authorization")?, "bearer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_takes_any_case_of_the_scheme_and_nothing_else() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "bearer  s3cret ".parse().unwrap());
        assert_eq!(bearer(&h), Some("s3cret"));
        h.insert("authorization", "Basic czNjcmV0".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "Bearer".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
