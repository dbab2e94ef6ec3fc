//! Secrets out of log lines and error texts: the password of any `scheme://user:password@host`
//! URL and the value of any `password=` parameter (URL query or `key=value` connection string).

/// `text` with every URL password and every `...password=` value replaced by `***`.
pub fn redact_secrets(text: &str) -> String {
    redact_params(&redact_userinfo(text))
}

/// Replaces the password part of each `scheme://user:password@` in `text`. The userinfo ends at
/// the last `@` before the next whitespace; when in doubt more is hidden, never less.
fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (before, after) = rest.split_at(pos + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| c.is_whitespace() || c == '\'' || c == '"')
            .unwrap_or(after.len());
        let (url, tail) = after.split_at(end);
        match url.rfind('@') {
            Some(at) => {
                let userinfo = &url[..at];
                match userinfo.split_once(':') {
                    Some((user, _)) => {
                        out.push_str(user);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&url[at..]);
            }
            None => out.push_str(url),
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// Replaces the value of every parameter whose name ends in `password` (any case): `password=`,
/// `sslpassword=`, in URL queries (`&`-separated) and connection strings (space-separated,
/// optionally quoted).
fn redact_params(text: &str) -> String {
    const NAME: &str = "password=";
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = lower[from..].find(NAME) {
        let value_start = from + found + NAME.len();
        let value = &text[value_start..];
        let len = if let Some(quoted) = value.strip_prefix('\'') {
            quoted.find('\'').map_or(value.len(), |q| q + 2)
        } else {
            value
                .find(|c: char| c == '&' || c == '#' || c == ';' || c.is_whitespace())
                .unwrap_or(value.len())
        };
        out.push_str(&text[copied..value_start]);
        out.push_str("***");
        copied = value_start + len;
        from = copied.max(value_start);
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::redact_secrets;

    #[test]
    fn url_passwords_are_hidden_in_every_form() {
        let cases = [
            (
                "postgres://fb:s3cret@db:5432/fb",
                "postgres://fb:***@db:5432/fb",
            ),
            ("postgresql://fb:s3cret@db/fb", "postgresql://fb:***@db/fb"),
            ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
            ("rediss://user:s3cret@cache", "rediss://user:***@cache"),
            // An unencoded '@' inside the password: everything up to the last '@' is hidden.
            ("postgres://fb:s3@cr@et@db/fb", "postgres://fb:***@db/fb"),
            (
                "postgres://db/fb?sslmode=require&password=s3cret&user=fb",
                "postgres://db/fb?sslmode=require&password=***&user=fb",
            ),
            (
                "postgres://db/fb?PASSWORD=s3cret",
                "postgres://db/fb?PASSWORD=***",
            ),
            (
                "postgres://db/fb?sslpassword=s3cret",
                "postgres://db/fb?sslpassword=***",
            ),
            (
                "host=db user=fb password='s3 cret' dbname=fb",
                "host=db user=fb password=*** dbname=fb",
            ),
            ("host=db password=s3cret", "host=db password=***"),
            ("postgres://fb@db/fb", "postgres://fb@db/fb"),
            (
                "sqlite://./data/ferroboard.db",
                "sqlite://./data/ferroboard.db",
            ),
        ];
        for (input, want) in cases {
            let got = redact_secrets(input);
            assert_eq!(got, want, "{input}");
            assert!(!got.contains("s3"), "{got}");
        }
    }

    #[test]
    fn urls_inside_messages_are_hidden_too() {
        let text = "cannot open database 'mysql://root:s3cret@h/db': unsupported; \
                    also redis://u:s3cret@r:6379 failed";
        let got = redact_secrets(text);
        assert!(!got.contains("s3cret"), "{got}");
        assert!(got.contains("mysql://root:***@h/db'"), "{got}");
        assert!(got.contains("redis://u:***@r:6379 failed"), "{got}");
    }
}
