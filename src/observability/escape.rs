//! The log's field formatter: every field value and message is written with its control
//! characters escaped (`\n`, `\r`, `\u{1b}`, ...), so a device- or user-supplied string (client id,
//! topic, name, payload text, a rule's log text) can never start a forged line or rewrite the
//! terminal. Otherwise the output matches tracing's default: `message key=value ...`, text
//! fields quoted.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::Writer;

/// Pass to `fmt::layer().fmt_fields(...)`.
pub struct EscapedFields;

impl<'w> MakeVisitor<Writer<'w>> for EscapedFields {
    type Visitor = EscapingVisitor<'w>;

    fn make_visitor(&self, target: Writer<'w>) -> Self::Visitor {
        EscapingVisitor {
            writer: target,
            first: true,
            result: Ok(()),
        }
    }
}

pub struct EscapingVisitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

/// `text` with control characters (and Unicode line and paragraph separators) escaped.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
                write!(f, "{}", c.escape_debug())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

impl EscapingVisitor<'_> {
    fn write(&mut self, field: &Field, text: &str) {
        // `log.*` fields carry the origin of records bridged from the `log` crate, which the
        // line already shows (as tracing's own formatter leaves them out).
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        let sep = if self.first { "" } else { " " };
        self.first = false;
        let name = field.name();
        self.result = if name == "message" {
            write!(self.writer, "{sep}{}", Escaped(text))
        } else {
            let name = name.strip_prefix("r#").unwrap_or(name);
            write!(self.writer, "{sep}{name}={}", Escaped(text))
        };
    }
}

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.write(field, value);
        } else {
            self.write(field, &format!("{value:?}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, &format!("{value:?}"));
    }
}

impl VisitOutput<fmt::Result> for EscapingVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for EscapingVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::EscapedFields;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn device_supplied_text_cannot_forge_a_line() {
        let capture = Capture::default();
        let out = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(EscapedFields)
            .with_ansi(false)
            .with_writer(move || out.clone())
            .finish();
        let forged = "x\n2026-01-01T00:00:00Z  INFO ferroboard: admin logged in\r\u{1b}[2J";
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                client_id = forged,
                name = %forged,
                topic = ?forged,
                "CONNECT from {}",
                forged
            );
        });
        let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches('\n').count(), 1, "one line: {text}");
        assert!(text.ends_with('\n'));
        assert!(!text.contains('\r') && !text.contains('\u{1b}'), "{text:?}");
        assert!(text.contains("CONNECT from x\\n2026"), "{text}");
        assert!(text.contains("name=x\\n2026"), "{text}");
        assert!(text.contains("client_id=\"x\\n2026"), "{text}");
    }
}
