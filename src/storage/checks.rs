//! What the databases cannot hold, refused before a write joins a batch: keys beyond the key
//! columns, NUL characters in text (PostgreSQL refuses them in `text` and `jsonb`).

use super::{Result, StorageError, WriteOp};
use crate::domain::KvValue;
use crate::domain::kv::check_key;

/// `Invalid` naming the first key or value of `ops` that no backend could store.
pub(crate) fn check_ops(ops: &[WriteOp]) -> Result<()> {
    for op in ops {
        match op {
            WriteOp::Timeseries { points, .. } => {
                for p in points {
                    check_kv(&p.key, &p.value)?;
                }
            }
            WriteOp::Attributes { kvs, .. } => {
                for kv in kvs {
                    check_kv(&kv.key, &kv.value)?;
                }
            }
        }
    }
    Ok(())
}

fn check_kv(key: &str, value: &KvValue) -> Result<()> {
    check_key(key).map_err(|e| StorageError::Invalid(e.to_string()))?;
    let nul = match value {
        KvValue::Str(s) => s.contains('\0'),
        KvValue::Json(text) => json_has_nul(text),
        KvValue::Bool(_) | KvValue::Long(_) | KvValue::Double(_) => false,
    };
    if nul {
        let key: String = key.chars().take(64).collect();
        return Err(StorageError::Invalid(format!(
            "value of key '{key}' contains a NUL character"
        )));
    }
    Ok(())
}

/// A NUL in JSON text, raw or as the escape `\u0000` (an escaped backslash before `u0000` is not one).
fn json_has_nul(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            0 => return true,
            b'\\' => {
                if bytes[i + 1..].starts_with(b"u0000") {
                    return true;
                }
                i += 2;
            }
            _ => i += 1,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Kv, TsKv};

    fn attrs(key: &str, value: KvValue) -> Vec<WriteOp> {
        vec![WriteOp::Attributes {
            entity: uuid::Uuid::nil(),
            scope: crate::domain::AttributeScope::Server,
            kvs: vec![Kv {
                key: key.to_owned(),
                value,
            }],
            ts: 1,
        }]
    }

    #[test]
    fn keys_and_nul_that_storage_cannot_hold_are_invalid() {
        assert!(check_ops(&attrs("k", KvValue::Str("fine".into()))).is_ok());
        assert!(check_ops(&attrs(&"k".repeat(255), KvValue::Long(1))).is_ok());
        for bad in [
            attrs(&"k".repeat(256), KvValue::Long(1)),
            attrs("k\0", KvValue::Long(1)),
            attrs("k", KvValue::Str("a\0".into())),
            attrs("k", KvValue::Json(r#"{"a":"\u0000"}"#.into())),
            attrs("k", KvValue::Json(r#"["\\\u0000"]"#.into())),
            vec![WriteOp::Timeseries {
                entity: uuid::Uuid::nil(),
                points: vec![TsKv {
                    ts: 1,
                    key: "t".into(),
                    value: KvValue::Str("\0".into()),
                }],
                ttl_ms: None,
            }],
        ] {
            assert!(
                matches!(check_ops(&bad), Err(StorageError::Invalid(_))),
                "{bad:?}"
            );
        }
        // A literal backslash followed by "u0000" is ordinary text.
        assert!(check_ops(&attrs("k", KvValue::Json(r#"["\\u0000"]"#.into()))).is_ok());
        assert!(!json_has_nul(r"\"));
    }
}
