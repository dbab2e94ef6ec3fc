//! Rule-engine messages: type, originator, JSON data and string metadata.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, OnceLock};

use serde_json::Value;
use uuid::Uuid;

use super::ids::{CustomerId, EntityId, TenantId};
use super::kv::Kv;

/// Message types the platform emits; any other string is `Custom`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MsgType {
    PostTelemetryRequest,
    PostAttributesRequest,
    ToServerRpcRequest,
    RpcCallFromServerToDevice,
    ActivityEvent,
    InactivityEvent,
    ConnectEvent,
    DisconnectEvent,
    EntityCreated,
    EntityUpdated,
    EntityDeleted,
    AttributesUpdated,
    AttributesDeleted,
    TimeseriesUpdated,
    TimeseriesDeleted,
    Custom(String),
}

impl MsgType {
    const KNOWN: [(MsgType, &'static str, &'static str); 15] = [
        (
            Self::PostTelemetryRequest,
            "POST_TELEMETRY_REQUEST",
            "Post telemetry",
        ),
        (
            Self::PostAttributesRequest,
            "POST_ATTRIBUTES_REQUEST",
            "Post attributes",
        ),
        (
            Self::ToServerRpcRequest,
            "TO_SERVER_RPC_REQUEST",
            "RPC Request from Device",
        ),
        (
            Self::RpcCallFromServerToDevice,
            "RPC_CALL_FROM_SERVER_TO_DEVICE",
            "RPC Request to Device",
        ),
        (Self::ActivityEvent, "ACTIVITY_EVENT", "Activity Event"),
        (
            Self::InactivityEvent,
            "INACTIVITY_EVENT",
            "Inactivity Event",
        ),
        (Self::ConnectEvent, "CONNECT_EVENT", "Connect Event"),
        (
            Self::DisconnectEvent,
            "DISCONNECT_EVENT",
            "Disconnect Event",
        ),
        (Self::EntityCreated, "ENTITY_CREATED", "Entity Created"),
        (Self::EntityUpdated, "ENTITY_UPDATED", "Entity Updated"),
        (Self::EntityDeleted, "ENTITY_DELETED", "Entity Deleted"),
        (
            Self::AttributesUpdated,
            "ATTRIBUTES_UPDATED",
            "Attributes Updated",
        ),
        (
            Self::AttributesDeleted,
            "ATTRIBUTES_DELETED",
            "Attributes Deleted",
        ),
        (
            Self::TimeseriesUpdated,
            "TIMESERIES_UPDATED",
            "Timeseries Updated",
        ),
        (
            Self::TimeseriesDeleted,
            "TIMESERIES_DELETED",
            "Timeseries Deleted",
        ),
    ];

    pub fn parse(name: &str) -> Self {
        Self::KNOWN
            .iter()
            .find(|(_, n, _)| *n == name)
            .map(|(t, _, _)| t.clone())
            .unwrap_or_else(|| Self::Custom(name.to_owned()))
    }

    /// The wire name, e.g. `POST_TELEMETRY_REQUEST`.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Custom(s) => s,
            known => Self::KNOWN
                .iter()
                .find(|(t, _, _)| t == known)
                .map(|(_, n, _)| *n)
                .unwrap_or("OTHER"),
        }
    }

    /// A metric label: the wire name of a known type, `CUSTOM` for any other string (so that
    /// user-chosen types cannot grow the label set without bound). No allocation.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Custom(_) => "CUSTOM",
            known => Self::KNOWN
                .iter()
                .find(|(t, _, _)| t == known)
                .map(|(_, n, _)| *n)
                .unwrap_or("CUSTOM"),
        }
    }

    /// The relation a message-type switch emits for this type (`Other` for custom types).
    pub fn switch_label(&self) -> &'static str {
        Self::KNOWN
            .iter()
            .find(|(t, _, _)| t == self)
            .map(|(_, _, label)| *label)
            .unwrap_or("Other")
    }
}

/// A message's string metadata, shared by copies of the message until one of them changes it
/// (copy on write: reading derefs to the map, any mutable access copies a shared map first).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Metadata(Arc<BTreeMap<String, String>>);

impl Deref for Metadata {
    type Target = BTreeMap<String, String>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Metadata {
    fn deref_mut(&mut self) -> &mut Self::Target {
        Arc::make_mut(&mut self.0)
    }
}

impl From<BTreeMap<String, String>> for Metadata {
    fn from(map: BTreeMap<String, String>) -> Self {
        Self(Arc::new(map))
    }
}

impl std::fmt::Debug for Metadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl serde::Serialize for Metadata {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// A rule-engine message. `data` is kept parsed; ThingsBoard's JSON text is its serialisation.
/// A message of a device's typed values builds `data` from them only when something reads it.
#[derive(Clone, Debug)]
pub struct Msg {
    pub id: Uuid,
    pub ts: i64,
    pub msg_type: MsgType,
    pub tenant: TenantId,
    pub customer: Option<CustomerId>,
    pub originator: EntityId,
    pub metadata: Metadata,
    /// Set, or built on first read from `typed` (one of the two is always there).
    data: OnceLock<Value>,
    /// The typed values `data` was built from (a device's telemetry or attributes, typed once by
    /// the transport), so save nodes need not type `data` again. Dropped whenever `data` changes.
    typed: Option<Arc<Vec<Kv>>>,
}

impl Msg {
    pub fn new(msg_type: MsgType, tenant: TenantId, originator: EntityId, data: Value) -> Self {
        Self::with_data(msg_type, tenant, originator, OnceLock::from(data), None)
    }

    fn with_data(
        msg_type: MsgType,
        tenant: TenantId,
        originator: EntityId,
        data: OnceLock<Value>,
        typed: Option<Arc<Vec<Kv>>>,
    ) -> Self {
        Self {
            id: Uuid::new_v4(),
            ts: super::now_ms(),
            msg_type,
            tenant,
            customer: None,
            originator,
            metadata: Metadata::default(),
            data,
            typed,
        }
    }

    /// A message whose data is the flat object of `values`, remembering the typed values.
    /// (Values holding both a `ts` and a `values` key would read back as the timestamped form,
    /// so those are not remembered and are typed again from `data` like any other message.)
    pub fn with_values(
        msg_type: MsgType,
        tenant: TenantId,
        originator: EntityId,
        values: Vec<Kv>,
    ) -> Self {
        let reads_as_timestamped = ["ts", "values"]
            .iter()
            .all(|k| values.iter().any(|kv| kv.key == *k));
        if reads_as_timestamped {
            let data = super::payload::kvs_to_object(&values);
            return Self::new(msg_type, tenant, originator, data);
        }
        let typed = Some(Arc::new(values));
        Self::with_data(msg_type, tenant, originator, OnceLock::new(), typed)
    }

    pub fn data(&self) -> &Value {
        self.data.get_or_init(|| {
            self.typed.as_deref().map_or_else(
                || Value::Object(serde_json::Map::new()),
                |values| super::payload::kvs_to_object(values),
            )
        })
    }

    /// Replaces the data (and forgets the typed values it no longer matches).
    pub fn set_data(&mut self, data: Value) {
        self.data = OnceLock::from(data);
        self.typed = None;
    }

    /// The typed values `data` was built from, if they are known.
    pub fn values(&self) -> Option<&[Kv]> {
        self.typed.as_deref().map(Vec::as_slice)
    }

    /// `metadata.ts` when it parses, else the message creation time (TbMsg#getMetaDataTs).
    pub fn metadata_ts(&self) -> i64 {
        self.metadata
            .get("ts")
            .and_then(|t| t.parse().ok())
            .unwrap_or(self.ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DeviceId, KvValue};

    fn values(keys: &[&str]) -> Vec<Kv> {
        keys.iter()
            .map(|k| Kv {
                key: (*k).to_owned(),
                value: KvValue::Long(1),
            })
            .collect()
    }

    fn device_msg(keys: &[&str]) -> Msg {
        Msg::with_values(
            MsgType::PostTelemetryRequest,
            TenantId::new(),
            EntityId::Device(DeviceId::new()),
            values(keys),
        )
    }

    #[test]
    fn typed_values_follow_the_data() {
        let msg = device_msg(&["a", "b"]);
        assert_eq!(msg.values(), Some(values(&["a", "b"]).as_slice()));
        let mut copy = msg.clone();
        assert_eq!(
            msg.data().to_string(),
            r#"{"a":1,"b":1}"#,
            "built when read"
        );
        assert_eq!(copy.data().to_string(), r#"{"a":1,"b":1}"#);
        assert!(msg.values().is_some(), "reading the data keeps the values");
        copy.set_data(serde_json::json!({"c": 2}));
        assert_eq!(copy.values(), None, "changed data forgets the values");
        assert_eq!(
            msg.data().to_string(),
            r#"{"a":1,"b":1}"#,
            "the original keeps its own"
        );
        let timestamped = device_msg(&["ts", "values"]);
        assert_eq!(timestamped.values(), None);
        assert_eq!(timestamped.data().to_string(), r#"{"ts":1,"values":1}"#);
        assert!(device_msg(&["ts", "x"]).values().is_some());
    }

    #[test]
    fn copies_share_metadata_until_one_changes_it() {
        let mut msg = device_msg(&["a"]);
        msg.metadata.insert("k".into(), "1".into());
        let mut copy = msg.clone();
        assert!(Arc::ptr_eq(&msg.metadata.0, &copy.metadata.0));
        copy.metadata.insert("k".into(), "2".into());
        assert_eq!(msg.metadata["k"], "1");
        assert_eq!(copy.metadata["k"], "2");
        assert_eq!(format!("{:?}", msg.metadata), r#"{"k": "1"}"#);
        assert_eq!(
            serde_json::to_string(&msg.metadata).unwrap(),
            r#"{"k":"1"}"#
        );
    }

    #[test]
    fn types_round_trip_and_label() {
        let t = MsgType::parse("POST_TELEMETRY_REQUEST");
        assert_eq!(t, MsgType::PostTelemetryRequest);
        assert_eq!(t.as_str(), "POST_TELEMETRY_REQUEST");
        assert_eq!(t.switch_label(), "Post telemetry");
        let c = MsgType::parse("MY_TYPE");
        assert_eq!(c.as_str(), "MY_TYPE");
        assert_eq!(c.switch_label(), "Other");
        assert_eq!(c.metric_label(), "CUSTOM");
        assert_eq!(t.metric_label(), "POST_TELEMETRY_REQUEST");
    }
}
