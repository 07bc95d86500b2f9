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

/// Replaces every `${NAME}` / `${NAME:-default}` using `lookup`, in one pass over the text.
///
/// YAML comments are left as they are: a `#` at the start of a line or after a space, outside
/// quotes, starts one, and a `${...}` in it is not a reference (JSON has no comments and no
/// `#` outside strings, so this changes nothing there).
pub fn interpolate(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, InterpolationError> {
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let (code, comment) = line.split_at(comment_start(line));
        interpolate_line(code, n + 1, &lookup, &mut out)?;
        out.push_str(comment);
    }
    Ok(out)
}

/// Where a YAML comment begins in `line` (its length if it has none).
fn comment_start(line: &str) -> usize {
    let (mut single, mut double, mut prev) = (false, false, ' ');
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if double => {
                chars.next();
            }
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev.is_whitespace() => return i,
            _ => {}
        }
        prev = c;
    }
    line.len()
}

fn interpolate_line(
    line: &str,
    number: usize,
    lookup: &impl Fn(&str) -> Option<String>,
    out: &mut String,
) -> Result<(), InterpolationError> {
    let fail = |message: String| InterpolationError {
        line: number,
        message,
    };
    let mut rest = line;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(escaped) = after.strip_prefix("${") {
            out.push_str("${");
            rest = escaped;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                return Err(fail("unclosed ${ (write $${ for a literal ${)".into()));
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
                return Err(fail(format!(
                    "invalid variable reference ${{{expr}}}: expected ${{NAME}} or ${{NAME:-default}}"
                )));
            }
            match (lookup(name), default) {
                (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(fail(format!(
                        "environment variable {name} is not set (write ${{{name}:-default}} to give a default)"
                    )));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(())
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
    fn comments_are_left_alone() {
        let text = "# uses ${NOT_SET}\na: ${HOST} # or ${ALSO_NOT}\nb: \"#${HOST}\" # ${X}\nc: x#${HOST}\n";
        assert_eq!(
            interpolate(text, env).unwrap(),
            "# uses ${NOT_SET}\na: prefect.local # or ${ALSO_NOT}\nb: \"#prefect.local\" # ${X}\nc: x#prefect.local\n"
        );
        // JSON: `#` only inside strings.
        assert_eq!(
            interpolate(r#"{"a": "x #${HOST}"}"#, env).unwrap(),
            r#"{"a": "x #prefect.local"}"#
        );
    }

    #[test]
    fn linear_in_the_number_of_references() {
        // 200k references on one line (a quadratic pass spent minutes on this).
        let text = "a: \"".to_string() + &"${HOST}".repeat(200_000) + "\"\n";
        let out = interpolate(&text, env).unwrap();
        assert_eq!(out.len(), 4 + 200_000 * "prefect.local".len() + 2);
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
