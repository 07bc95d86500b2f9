//! `${VAR}` and `${VAR:-default}` in config files; `$${` writes a literal `${`.

/// A variable the file needs that the environment does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct InterpolationError {
    /// 1-based line of the reference.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Replaces every `${NAME}` / `${NAME:-default}` using `lookup`.
pub fn interpolate(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, InterpolationError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let line = text[..text.len() - rest.len() + pos].matches('\n').count() + 1;
        if let Some(escaped) = after.strip_prefix("${") {
            out.push_str("${");
            rest = escaped;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                return Err(InterpolationError {
                    line,
                    message: "unclosed ${ (write $${ for a literal ${)".into(),
                });
            };
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(InterpolationError {
                    line,
                    message: format!(
                        "invalid variable reference ${{{expr}}}: expected ${{NAME}} or ${{NAME:-default}}"
                    ),
                });
            }
            match (lookup(name), default) {
                (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(InterpolationError {
                        line,
                        message: format!(
                            "environment variable {name} is not set (write ${{{name}:-default}} to give a default)"
                        ),
                    });
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("prefect.local".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes() {
        assert_eq!(
            interpolate("url: http://${HOST}:4200", env).unwrap(),
            "url: http://prefect.local:4200"
        );
        assert_eq!(interpolate("p: ${PORT:-8080}", env).unwrap(), "p: 8080");
        assert_eq!(
            interpolate("e: ${EMPTY:-x} ${EMPTY}.", env).unwrap(),
            "e: x ."
        );
        assert_eq!(
            interpolate("lit: $${HOST} $5 {{ a }}", env).unwrap(),
            "lit: ${HOST} $5 {{ a }}"
        );
    }

    #[test]
    fn reports_line_and_name() {
        let err = interpolate("a: 1\nb: ${MISSING}\n", env).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(
            err.to_string()
                .contains("environment variable MISSING is not set"),
            "{err}"
        );
        assert!(
            interpolate("x: ${BAD NAME}", env)
                .unwrap_err()
                .message
                .contains("invalid variable reference")
        );
        assert!(
            interpolate("x: ${OPEN", env)
                .unwrap_err()
                .message
                .contains("unclosed")
        );
    }
}
