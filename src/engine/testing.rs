//! Test helpers for the engine's unit tests: a recording fake of the services, messages, scripts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;

use super::ScriptLimits;
use super::nodes::EngineServices;
use super::script::{Sandbox, Script};
use crate::domain::StorageError;
use crate::domain::kv::Typing;
use crate::domain::{AttributeScope, DeviceId, EntityId, Kv, Msg, MsgType, TenantId, TsKv};

/// One write the fake received.
#[derive(Clone, Debug, PartialEq)]
pub enum Saved {
    Timeseries(Uuid, Vec<TsKv>),
    Attributes(Uuid, AttributeScope, Vec<Kv>),
}

/// Records writes; fails every write when `fail` is set.
#[derive(Default)]
pub struct FakeServices {
    pub saved: Mutex<Vec<Saved>>,
    /// The TTL of every `save_timeseries_ttl`, in order.
    pub ttls: Mutex<Vec<u64>>,
    pub fail: bool,
}

impl FakeServices {
    pub fn failing() -> Self {
        Self {
            fail: true,
            ..Self::default()
        }
    }

    pub fn saved(&self) -> Vec<Saved> {
        self.saved.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn ttls(&self) -> Vec<u64> {
        self.ttls.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn record(&self, s: Saved) -> Result<(), StorageError> {
        if self.fail {
            return Err(StorageError::Database("disk on fire".to_owned()));
        }
        if let Ok(mut saved) = self.saved.lock() {
            saved.push(s);
        }
        Ok(())
    }
}

impl EngineServices for FakeServices {
    fn typing(&self) -> Typing {
        Typing::default()
    }

    async fn save_timeseries(&self, entity: Uuid, points: Vec<TsKv>) -> Result<(), StorageError> {
        self.record(Saved::Timeseries(entity, points))
    }

    async fn save_timeseries_ttl(
        &self,
        entity: Uuid,
        points: Vec<TsKv>,
        ttl_s: u64,
    ) -> Result<(), StorageError> {
        if let Ok(mut ttls) = self.ttls.lock() {
            ttls.push(ttl_s);
        }
        self.record(Saved::Timeseries(entity, points))
    }

    async fn save_attributes(
        &self,
        entity: Uuid,
        scope: AttributeScope,
        kvs: Vec<Kv>,
        _ts: i64,
    ) -> Result<(), StorageError> {
        self.record(Saved::Attributes(entity, scope, kvs))
    }
}

pub fn limits() -> ScriptLimits {
    ScriptLimits {
        max_operations: 100_000,
        timeout: Duration::from_millis(1_000),
        workers: 4,
    }
}

pub fn sandbox() -> Arc<Sandbox> {
    Arc::new(Sandbox::new(limits()))
}

pub fn script(text: &str) -> Script {
    match sandbox().compile("test.rhai", text) {
        Ok(s) => s,
        Err(e) => panic!("test script does not compile: {e}"),
    }
}

/// A device message of `msg_type` with `data` (JSON text).
pub fn msg(msg_type: &str, data: &str) -> Msg {
    let data: Value =
        serde_json::from_str(data).unwrap_or_else(|e| panic!("bad test JSON {data}: {e}"));
    Msg::new(
        MsgType::parse(msg_type),
        TenantId::new(),
        EntityId::Device(DeviceId::new()),
        data,
    )
}
