//! Rule-engine messages: type, originator, JSON data and string metadata.

use std::collections::BTreeMap;
use std::sync::Arc;

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

/// A rule-engine message. `data` is kept parsed; ThingsBoard's JSON text is its serialisation.
#[derive(Clone, Debug)]
pub struct Msg {
    pub id: Uuid,
    pub ts: i64,
    pub msg_type: MsgType,
    pub tenant: TenantId,
    pub customer: Option<CustomerId>,
    pub originator: EntityId,
    pub metadata: BTreeMap<String, String>,
    data: Value,
    /// The typed values `data` was built from (a device's telemetry or attributes, typed once by
    /// the transport), so save nodes need not type `data` again. Dropped whenever `data` changes.
    typed: Option<Arc<Vec<Kv>>>,
}

impl Msg {
    pub fn new(msg_type: MsgType, tenant: TenantId, originator: EntityId, data: Value) -> Self {
        Self {
            id: Uuid::new_v4(),
            ts: super::now_ms(),
            msg_type,
            tenant,
            customer: None,
            originator,
            metadata: BTreeMap::new(),
            data,
            typed: None,
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
        let mut msg = Self::new(
            msg_type,
            tenant,
            originator,
            super::payload::kvs_to_object(&values),
        );
        let reads_as_timestamped = ["ts", "values"]
            .iter()
            .all(|k| values.iter().any(|kv| kv.key == *k));
        if !reads_as_timestamped {
            msg.typed = Some(Arc::new(values));
        }
        msg
    }

    pub fn data(&self) -> &Value {
        &self.data
    }

    /// Replaces the data (and forgets the typed values it no longer matches).
    pub fn set_data(&mut self, data: Value) {
        self.data = data;
        self.typed = None;
    }

    /// Takes the typed values `data` was built from, if they are known; the message keeps its
    /// data. Cloned only when another copy of the message still shares them.
    pub fn take_values(&mut self) -> Option<Vec<Kv>> {
        self.typed
            .take()
            .map(|shared| Arc::try_unwrap(shared).unwrap_or_else(|shared| (*shared).clone()))
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
        let mut msg = device_msg(&["a", "b"]);
        assert_eq!(msg.data().to_string(), r#"{"a":1,"b":1}"#);
        let copy = msg.clone();
        assert_eq!(msg.take_values(), Some(values(&["a", "b"])));
        assert_eq!(msg.take_values(), None, "taken once");
        let mut copy = copy;
        copy.set_data(serde_json::json!({"c": 2}));
        assert_eq!(copy.take_values(), None, "changed data forgets the values");
        assert_eq!(device_msg(&["ts", "values"]).take_values(), None);
        assert!(device_msg(&["ts", "x"]).take_values().is_some());
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
