//! Cases: attributes saved through commit, read, listed and deleted.

use ferroboard::domain::{AttributeScope, KvValue};
use ferroboard::storage::Store;
use uuid::Uuid;

use super::fixtures::*;

pub async fn attributes_save_find_keys_delete(store: &dyn Store) {
    let e = Uuid::new_v4();
    let other = Uuid::new_v4();
    store
        .commit(&[
            attr_op(
                e,
                AttributeScope::Client,
                100,
                &[
                    ("fw", KvValue::Str("1.0".into())),
                    ("on", KvValue::Bool(true)),
                ],
            ),
            attr_op(
                e,
                AttributeScope::Shared,
                110,
                &[
                    ("target", KvValue::Double(21.5)),
                    ("on", KvValue::Bool(false)),
                ],
            ),
            attr_op(
                other,
                AttributeScope::Client,
                120,
                &[("fw", KvValue::Str("9".into()))],
            ),
        ])
        .await
        .unwrap();
    let client = store
        .find_attributes(e, AttributeScope::Client, None)
        .await
        .unwrap();
    let view: Vec<_> = client
        .iter()
        .map(|a| (a.key.as_str(), a.value.clone(), a.last_update_ts))
        .collect();
    assert_eq!(
        view,
        vec![
            ("fw", KvValue::Str("1.0".into()), 100),
            ("on", KvValue::Bool(true), 100)
        ]
    );
    let some = store
        .find_attributes(
            e,
            AttributeScope::Shared,
            Some(&strs(&["target", "absent"])),
        )
        .await
        .unwrap();
    assert_eq!(some.len(), 1);
    assert_eq!(
        (some[0].key.as_str(), &some[0].value, some[0].last_update_ts),
        ("target", &KvValue::Double(21.5), 110)
    );
    assert!(
        store
            .find_attributes(e, AttributeScope::Server, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .find_attributes(e, AttributeScope::Client, Some(&[]))
            .await
            .unwrap()
            .is_empty()
    );

    assert_eq!(
        store
            .attribute_keys(e, Some(AttributeScope::Client))
            .await
            .unwrap(),
        strs(&["fw", "on"])
    );
    assert_eq!(
        store.attribute_keys(e, None).await.unwrap(),
        strs(&["fw", "on", "target"])
    );

    // Overwrite (a later op in the same batch wins) changes value, type and timestamp.
    store
        .commit(&[
            attr_op(e, AttributeScope::Client, 200, &[("fw", KvValue::Long(2))]),
            attr_op(e, AttributeScope::Client, 300, &[("fw", KvValue::Long(3))]),
        ])
        .await
        .unwrap();
    let fw = store
        .find_attributes(e, AttributeScope::Client, Some(&strs(&["fw"])))
        .await
        .unwrap();
    assert_eq!(
        (fw[0].value.clone(), fw[0].last_update_ts),
        (KvValue::Long(3), 300)
    );

    let deleted = store
        .delete_attributes(e, AttributeScope::Client, &strs(&["on", "fw", "absent"]))
        .await
        .unwrap();
    assert_eq!(deleted, strs(&["fw", "on"]));
    assert!(
        store
            .find_attributes(e, AttributeScope::Client, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.attribute_keys(e, None).await.unwrap(),
        strs(&["on", "target"])
    );
    assert_eq!(
        store
            .find_attributes(other, AttributeScope::Client, None)
            .await
            .unwrap()
            .len(),
        1
    );
}
