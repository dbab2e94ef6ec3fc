//! A fake of the services for the RPC nodes' unit tests: records what would reach devices.

use std::sync::Mutex;

use uuid::Uuid;

use super::EngineServices;
use crate::bus::RpcRequest;
use crate::domain::StorageError;
use crate::domain::kv::Typing;
use crate::domain::{AttributeScope, DeviceId, Kv, TsKv};

#[derive(Default)]
pub struct RpcFake {
    sent: Mutex<Vec<RpcRequest>>,
    replies: Mutex<Vec<(u64, String, String)>>,
}

impl RpcFake {
    pub fn sent(&self) -> Vec<RpcRequest> {
        self.sent.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn replies(&self) -> Vec<(u64, String, String)> {
        self.replies.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl EngineServices for RpcFake {
    fn typing(&self) -> Typing {
        Typing::default()
    }

    async fn save_timeseries(&self, _: Uuid, _: Vec<TsKv>) -> Result<(), StorageError> {
        Ok(())
    }

    async fn save_attributes(
        &self,
        _: Uuid,
        _: AttributeScope,
        _: Vec<Kv>,
        _: i64,
    ) -> Result<(), StorageError> {
        Ok(())
    }

    async fn send_rpc(&self, _device: DeviceId, request: RpcRequest) -> Result<(), String> {
        if let Ok(mut sent) = self.sent.lock() {
            sent.push(request);
        }
        Ok(())
    }

    async fn reply_to_client_rpc(
        &self,
        _device: DeviceId,
        session: u64,
        request_id: String,
        body: String,
    ) -> Result<(), String> {
        if let Ok(mut replies) = self.replies.lock() {
            replies.push((session, request_id, body));
        }
        Ok(())
    }
}
