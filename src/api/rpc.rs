//! Server-side RPC over REST: v1 `/api/plugins/rpc/{oneway|twoway}/{deviceId}` and
//! v2 `/api/rpc/{oneway|twoway}/{deviceId}`. A call becomes an RPC_CALL_FROM_SERVER_TO_DEVICE message
//! for the rule engine; lightweight calls wait for the device, persistent ones are stored and answered
//! with their id at once (their management routes are in `rpc_persistent`).

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::State as AppStateRef;
use super::auth::TenantUser;
use super::devices::device_for;
use super::error::{ApiError, JsonBody, code, error_json, parse_uuid};
use crate::bus::{RpcReply, RpcRequest};
use crate::domain::{Device, Rpc, RpcStatus};
use crate::domain::{EntityId, Msg, MsgType, now_ms};

pub fn routes() -> Router<AppStateRef> {
    Router::new()
        .route("/api/plugins/rpc/{kind}/{device}", post(call_v1))
        .route("/api/rpc/{kind}/{device}", post(call_v2))
        .merge(super::rpc_persistent::routes())
}

/// The two API generations differ only in their timeout statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

async fn call_v1(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    Path((kind, device)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    call(&state, caller, Version::V1, &kind, &device, body).await
}

async fn call_v2(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    Path((kind, device)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    call(&state, caller, Version::V2, &kind, &device, body).await
}

/// The request body, validated.
#[derive(Debug)]
struct Call {
    rpc: Uuid,
    method: String,
    /// JSON text of `params`.
    params: String,
    oneway: bool,
    persistent: bool,
    expiration_time: i64,
    retries: Option<i64>,
    additional_info: Option<Value>,
}

impl Call {
    fn parse(
        body: &Value,
        oneway: bool,
        config: &crate::config::RpcConfig,
    ) -> Result<Self, ApiError> {
        let obj = body
            .as_object()
            .ok_or_else(|| ApiError::bad_request("Invalid request body"))?;
        let method = match obj.get("method") {
            Some(Value::String(m)) if !m.is_empty() => m.clone(),
            _ => {
                return Err(ApiError::bad_request(
                    "Request body must contain a non-empty \"method\"",
                ));
            }
        };
        let params = obj
            .get("params")
            .cloned()
            .unwrap_or(Value::Null)
            .to_string();
        let expiration_time = match int_field(obj, "expirationTime")? {
            Some(t) => t,
            None => {
                let timeout = int_field(obj, "timeout")?.unwrap_or(config.default_timeout_ms);
                now_ms().saturating_add(timeout.max(config.min_timeout_ms))
            }
        };
        let rpc = match obj.get("requestUUID") {
            Some(Value::String(id)) => parse_uuid(id)?,
            _ => Uuid::new_v4(),
        };
        let persistent = match obj.get("persistent") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(ApiError::bad_request("\"persistent\" must be a boolean")),
        };
        Ok(Self {
            rpc,
            method,
            params,
            oneway,
            persistent,
            expiration_time,
            retries: int_field(obj, "retries")?,
            additional_info: obj.get("additionalInfo").filter(|v| !v.is_null()).cloned(),
        })
    }

    /// The rule-engine message: params and additionalInfo as JSON text.
    fn msg(&self, device: &Device, node_id: &str) -> Msg {
        let data = json!({
            "method": self.method,
            "params": self.params,
            "additionalInfo": self.additional_info.as_ref().map(Value::to_string),
        });
        let mut msg = Msg::new(
            MsgType::RpcCallFromServerToDevice,
            device.tenant_id,
            EntityId::Device(device.id),
            data,
        );
        msg.customer = device.customer_id;
        let mut meta = vec![
            ("requestUUID", self.rpc.to_string()),
            ("originServiceId", node_id.to_owned()),
            ("expirationTime", self.expiration_time.to_string()),
            ("oneway", self.oneway.to_string()),
            ("persistent", self.persistent.to_string()),
            ("deviceName", device.name.clone()),
            ("deviceType", device.profile_name.clone()),
        ];
        if let Some(r) = self.retries {
            meta.push(("retries", r.to_string()));
        }
        msg.metadata
            .extend(meta.into_iter().map(|(k, v)| (k.to_owned(), v)));
        msg
    }

    fn request(&self) -> RpcRequest {
        RpcRequest {
            rpc: self.rpc,
            request_id: 0,
            method: self.method.clone(),
            params: self.params.clone(),
            oneway: self.oneway,
            persistent: self.persistent,
            expiration_time: self.expiration_time,
            traceparent: crate::observability::trace::current_traceparent(),
        }
    }

    fn stored(&self, device: &Device) -> Rpc {
        Rpc {
            id: self.rpc,
            tenant_id: device.tenant_id,
            device_id: device.id,
            created_time: now_ms(),
            expiration_time: self.expiration_time,
            request: json!({
                "method": self.method,
                "params": self.params,
                "oneway": self.oneway,
                "retries": self.retries,
            }),
            response: None,
            status: RpcStatus::Queued,
            retries: 0,
            additional_info: self.additional_info.clone(),
        }
    }
}

/// Stores a persistent one-way RPC to `device` and hands it to the rules, as a REST call with
/// `"persistent": true` does: an offline device gets it when it next subscribes to RPC.
pub async fn send_persistent_oneway(
    state: &AppStateRef,
    device: &Device,
    method: &str,
    params: &Value,
    ttl_ms: i64,
    retries: u32,
) -> Result<Uuid, ApiError> {
    let call = Call {
        rpc: Uuid::new_v4(),
        method: method.to_owned(),
        params: params.to_string(),
        oneway: true,
        persistent: true,
        expiration_time: now_ms().saturating_add(ttl_ms),
        retries: Some(i64::from(retries)),
        additional_info: None,
    };
    state
        .services
        .store
        .create_rpc(&call.stored(device))
        .await?;
    if let Err(e) = state
        .ingest(vec![call.msg(device, &state.config.node_id)])
        .await
    {
        tracing::warn!(rpc = %call.rpc, error = %e, "persistent RPC stored but not routed");
    }
    Ok(call.rpc)
}

/// An optional integer field; present but not an integer is 400.
fn int_field(obj: &Map<String, Value>, name: &str) -> Result<Option<i64>, ApiError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| ApiError::BadRequest(format!("\"{name}\" must be a number"))),
    }
}

async fn call(
    state: &AppStateRef,
    caller: TenantUser,
    version: Version,
    kind: &str,
    device: &str,
    body: Value,
) -> Result<Response, ApiError> {
    let oneway = match kind {
        "oneway" => true,
        "twoway" => false,
        _ => {
            return Err(ApiError::NotFound(
                super::error::ITEM_NOT_FOUND_MSG.to_owned(),
            ));
        }
    };
    let device = device_for(state, caller.tenant, caller.customer, device).await?;
    let call = Call::parse(&body, oneway, &state.config.rpc)?;
    let msg = call.msg(&device, &state.config.node_id);
    if call.persistent {
        state
            .services
            .store
            .create_rpc(&call.stored(&device))
            .await?;
        if let Err(e) = state.ingest(vec![msg]).await {
            tracing::warn!(rpc = %call.rpc, error = %e, "persistent RPC stored but not routed");
        }
        return Ok(axum::Json(json!({ "rpcId": call.rpc })).into_response());
    }
    // Dropped with this future (the caller went away, or an error below): the waiter goes too.
    let mut waiting = state
        .services
        .rpc
        .waiters
        .wait(caller.tenant, device.id, call.request())
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if let Err(e) = state.ingest(vec![msg]).await {
        return Err(ApiError::General(format!("RPC not routed: {e}")));
    }
    let left = u64::try_from(call.expiration_time.saturating_sub(now_ms())).unwrap_or(0);
    let outcome =
        tokio::time::timeout(std::time::Duration::from_millis(left), &mut waiting.reply).await;
    Ok(match outcome {
        Ok(Ok(reply)) => answer(reply, oneway),
        Ok(Err(_)) | Err(_) => timed_out(version, waiting.give_up()),
    })
}

/// The device's reply: JSON as it came, empty as 200 without a body, other text 406.
fn answer(reply: RpcReply, oneway: bool) -> Response {
    match reply {
        RpcReply::Delivered => StatusCode::OK.into_response(),
        RpcReply::Ok { .. } if oneway => StatusCode::OK.into_response(),
        RpcReply::Ok { body } if body.trim().is_empty() => StatusCode::OK.into_response(),
        RpcReply::Ok { body } => {
            if serde_json::from_str::<Value>(&body).is_err() {
                return error(
                    StatusCode::NOT_ACCEPTABLE,
                    "Device reply is not valid JSON",
                    code::BAD_REQUEST_PARAMS,
                );
            }
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body))
                .unwrap_or_else(|_| StatusCode::OK.into_response())
        }
        RpcReply::Failed { error: text } => {
            error(StatusCode::INTERNAL_SERVER_ERROR, &text, code::GENERAL)
        }
    }
}

/// No answer before expiration: v1 408 once delivered, 409 when never sent; v2 504 for both.
fn timed_out(version: Version, delivered: bool) -> Response {
    match (version, delivered) {
        (Version::V2, _) => error(
            StatusCode::GATEWAY_TIMEOUT,
            "Request timeout",
            code::GENERAL,
        ),
        (Version::V1, true) => error(
            StatusCode::REQUEST_TIMEOUT,
            "Request timeout",
            code::GENERAL,
        ),
        (Version::V1, false) => error(
            StatusCode::CONFLICT,
            "Device has no active RPC session",
            code::GENERAL,
        ),
    }
}

fn error(status: StatusCode, message: &str, error_code: u16) -> Response {
    (status, axum::Json(error_json(status, message, error_code))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RpcConfig;

    #[test]
    fn expiration_and_params_follow_the_spec() {
        let config = RpcConfig::default();
        let before = now_ms();
        let c = Call::parse(
            &json!({"method": "m", "params": {"a": 1}, "timeout": 100}),
            false,
            &config,
        )
        .unwrap();
        assert_eq!(c.params, r#"{"a":1}"#);
        assert!(c.expiration_time >= before + 5000 && c.expiration_time < before + 6000);
        let c = Call::parse(
            &json!({"method": "m", "params": "x", "expirationTime": 7}),
            true,
            &config,
        )
        .unwrap();
        assert_eq!((c.params.as_str(), c.expiration_time), ("\"x\"", 7));
        let c = Call::parse(&json!({"method": "m"}), true, &config).unwrap();
        assert!(c.expiration_time >= before + 10_000);
        assert!(Call::parse(&json!({"params": {}}), true, &config).is_err());
        assert!(Call::parse(&json!([1]), true, &config).is_err());
        assert!(Call::parse(&json!({"method": "m", "timeout": "x"}), true, &config).is_err());
    }

    #[test]
    fn timeouts_differ_by_version() {
        assert_eq!(timed_out(Version::V1, false).status(), StatusCode::CONFLICT);
        assert_eq!(
            timed_out(Version::V1, true).status(),
            StatusCode::REQUEST_TIMEOUT
        );
        assert_eq!(
            timed_out(Version::V2, false).status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        let r = answer(RpcReply::Ok { body: "ok".into() }, false);
        assert_eq!(r.status(), StatusCode::NOT_ACCEPTABLE);
        assert_eq!(
            answer(
                RpcReply::Ok {
                    body: String::new()
                },
                false
            )
            .status(),
            StatusCode::OK
        );
    }
}
