//! Rule chains over REST in ThingsBoard's JSON (list, get, metadata get and save, test script),
//! plus ferroboard's dry runs and the debug events of rule nodes. The chains are the rules
//! directory's files, shared by every tenant of the server: saving one writes the files back.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::State as AppStateRef;
use super::auth::TenantAdmin;
use super::error::{ApiError, Params, parse_uuid};
use crate::domain::{DeviceId, EntityId, Msg, MsgType, Page};
use crate::engine::Chain;
use crate::engine::edit::EditError;
use crate::engine::recent::RecordedMsg;
use crate::engine::tb_json;

/// Messages one dry run may take.
const MAX_DRY_RUN_MESSAGES: usize = 100;

pub fn routes() -> Router<AppStateRef> {
    Router::new()
        .route("/api/ruleChains", get(list))
        .route("/api/ruleChains/status", get(status))
        .route("/api/ruleChain/{id}", get(get_chain))
        .route("/api/ruleChain/{id}/metadata", get(get_metadata))
        .route("/api/ruleChain/metadata", post(save_metadata))
        .route("/api/ruleChain/testScript", post(test_script))
        .route("/api/ruleChain/tbelEnabled", get(tbel_enabled))
        .route("/api/ruleChain/dryRun", post(dry_run))
        .route("/api/ruleChain/dryRun/messages", get(recorded))
        .route(
            "/api/events/RULE_NODE/{id}/DEBUG_RULE_NODE",
            get(debug_events),
        )
        .route("/api/ruleNode/{id}/debugIn", get(debug_in))
}

fn edit_error(e: EditError) -> ApiError {
    match e {
        EditError::Invalid(errors) => {
            ApiError::BadRequest(format!("Invalid rule chain: {}", errors.join("; ")))
        }
        EditError::UnknownChain(_) => ApiError::NotFound(e.to_string()),
        EditError::Conflict(msg) => ApiError::VersionConflict(msg),
        EditError::Io(msg) => ApiError::General(msg),
    }
}

fn page_of(items: Vec<Value>, params: &Params) -> Result<Value, ApiError> {
    let query = super::paging::page_query_sorted(params, &["name", "createdTime"])?;
    let total = items.len();
    let size = query.page_size as usize;
    let data = items
        .into_iter()
        .skip((query.page as usize).saturating_mul(size))
        .take(size)
        .collect();
    let page = Page {
        data,
        total_elements: i64::try_from(total).unwrap_or(i64::MAX),
    };
    Ok(super::paging::page_json(&page, &query, Value::clone))
}

async fn list(
    State(state): State<AppStateRef>,
    admin: TenantAdmin,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let chains = state.engine.chains();
    let search = params.get("textSearch").map(str::to_lowercase);
    let mut items: Vec<Value> = chains
        .chains
        .iter()
        .filter(|c| {
            search
                .as_deref()
                .is_none_or(|s| c.name.to_lowercase().contains(s))
        })
        .map(|c| tb_json::rule_chain(c, admin.tenant.0))
        .collect();
    if params.get("sortProperty") == Some("name") {
        items.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        if params
            .get("sortOrder")
            .is_some_and(|o| o.eq_ignore_ascii_case("DESC"))
        {
            items.reverse();
        }
    }
    Ok(Json(page_of(items, &params)?))
}

/// When and how the running chains were activated, and the last failed reload since.
async fn status(
    State(state): State<AppStateRef>,
    _admin: TenantAdmin,
) -> Json<crate::engine::status::ReloadStatus> {
    Json(state.engine.status.get())
}

fn unknown(id: uuid::Uuid) -> ApiError {
    edit_error(EditError::UnknownChain(id))
}

/// The running chain whose id is `id`, as `convert` makes it; 404 when there is none.
fn chain_as(
    state: &AppStateRef,
    id: &str,
    convert: impl FnOnce(&Chain, &BTreeMap<String, String>) -> Value,
) -> Result<Json<Value>, ApiError> {
    let id = parse_uuid(id)?;
    let chains = state.engine.chains();
    let chain = chains.by_id(id).ok_or_else(|| unknown(id))?;
    Ok(Json(convert(chain, &chains.scripts)))
}

async fn get_chain(
    State(state): State<AppStateRef>,
    admin: TenantAdmin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    chain_as(&state, &id, |chain, _| {
        tb_json::rule_chain(chain, admin.tenant.0)
    })
}

async fn get_metadata(
    State(state): State<AppStateRef>,
    _admin: TenantAdmin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    chain_as(&state, &id, |chain, scripts| {
        tb_json::metadata(chain, scripts, &state.engine.debug)
    })
}

/// Validates the whole rules directory with the new chain; 400 lists every problem and leaves the
/// running chains as they are; 200 answers the saved metadata (node ids included).
async fn save_metadata(
    State(state): State<AppStateRef>,
    _admin: TenantAdmin,
    super::error::JsonBody(body): super::error::JsonBody,
) -> Result<Json<Value>, ApiError> {
    let engine = state.engine.clone();
    let id = tokio::task::spawn_blocking(move || engine.save_metadata(&body))
        .await
        .map_err(|e| ApiError::General(format!("save aborted: {e}")))?
        .map_err(edit_error)?;
    let chains = state.engine.chains();
    let chain = chains.by_id(id).ok_or_else(|| unknown(id))?;
    Ok(Json(tb_json::metadata(
        chain,
        &chains.scripts,
        &state.engine.debug,
    )))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TestScript {
    script: String,
    #[serde(default)]
    script_type: Option<String>,
    /// The message data as JSON text.
    #[serde(default)]
    msg: Option<String>,
    #[serde(default)]
    metadata: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    msg_type: Option<String>,
}

/// `{"output","error"}`, always 200, as ThingsBoard answers it; the script runs with the
/// server's budgets (`[engine]`).
async fn test_script(
    State(state): State<AppStateRef>,
    admin: TenantAdmin,
    super::error::JsonBody(body): super::error::JsonBody,
) -> Result<Json<Value>, ApiError> {
    let body: TestScript = serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("Invalid request body: {e}")))?;
    let data = match body.msg.as_deref().map(serde_json::from_str::<Value>) {
        None => Value::Object(Map::new()),
        Some(Ok(v)) => v,
        Some(Err(e)) => {
            return Ok(Json(
                json!({"output": "", "error": format!("msg is not JSON: {e}")}),
            ));
        }
    };
    let msg_type = MsgType::parse(body.msg_type.as_deref().unwrap_or("POST_TELEMETRY_REQUEST"));
    let mut msg = Msg::new(
        msg_type,
        admin.tenant,
        EntityId::Device(DeviceId(uuid::Uuid::nil())),
        data,
    );
    msg.metadata = body.metadata.into();
    let kind = body.script_type.as_deref().unwrap_or("update");
    match state.engine.test_script(&body.script, kind, &msg).await {
        Ok(output) => Ok(Json(json!({"output": output, "error": ""}))),
        Err(error) => Ok(Json(json!({"output": "", "error": error}))),
    }
}

/// Scripts are Rhai here, not TBEL.
async fn tbel_enabled(_admin: TenantAdmin) -> Json<bool> {
    Json(false)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DryRun {
    /// The chain to run; defaults to `metadata.ruleChainId`, then the root chain.
    #[serde(default)]
    rule_chain_id: Option<String>,
    /// A candidate `RuleChainMetaData` of that chain, run instead of the saved one (not saved).
    #[serde(default)]
    metadata: Option<Value>,
    device_id: String,
    /// The messages to run; defaults to the device's recorded ones.
    #[serde(default)]
    messages: Option<Vec<RecordedMsg>>,
}

async fn dry_run(
    State(state): State<AppStateRef>,
    admin: TenantAdmin,
    super::error::JsonBody(body): super::error::JsonBody,
) -> Result<Json<Value>, ApiError> {
    let body: DryRun = serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("Invalid request body: {e}")))?;
    let device = own_device(&state, &admin, &body.device_id).await?;
    let chain = match body
        .rule_chain_id
        .as_deref()
        .or_else(|| body.metadata.as_ref()?.pointer("/ruleChainId/id")?.as_str())
    {
        Some(id) => parse_uuid(id)?,
        None => state.engine.chains().root().id,
    };
    let messages = match body.messages {
        Some(m) => m,
        None => state.engine.recent.of(device),
    };
    if messages.len() > MAX_DRY_RUN_MESSAGES {
        return Err(ApiError::bad_request(format!(
            "Too many messages: at most {MAX_DRY_RUN_MESSAGES} per dry run"
        )));
    }
    let results = state
        .engine
        .dry_run(
            chain,
            body.metadata.as_ref(),
            admin.tenant,
            device,
            &messages,
        )
        .await
        .map_err(edit_error)?;
    Ok(Json(
        json!({"ruleChainId": chain.to_string(), "results": results}),
    ))
}

/// A device of the caller's tenant (404 when absent, 403 when another tenant's).
async fn own_device(
    state: &AppStateRef,
    admin: &TenantAdmin,
    id: &str,
) -> Result<DeviceId, ApiError> {
    let scope = super::auth::Scope {
        tenant: admin.tenant,
        customer: None,
    };
    let device = super::telemetry::resolve_entity(state, scope, DeviceId::ENTITY_TYPE, id).await?;
    Ok(device.id)
}

/// The device's recorded messages (`engine.recorded_messages` per device), oldest first.
async fn recorded(
    State(state): State<AppStateRef>,
    admin: TenantAdmin,
    params: Params,
) -> Result<Json<Vec<RecordedMsg>>, ApiError> {
    let id = params.required("deviceId")?;
    let device = own_device(&state, &admin, id).await?;
    Ok(Json(state.engine.recent.of(device)))
}

/// The node's captured events of the caller's tenant, newest first, as `PageData` of
/// ThingsBoard's `EventInfo`.
async fn debug_events(
    State(state): State<AppStateRef>,
    admin: TenantAdmin,
    Path(id): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let node = parse_uuid(&id)?;
    let start = params.int("startTime")?;
    let end = params.int("endTime")?;
    let events: Vec<Value> = events_of(&state, &admin, node)
        .into_iter()
        .filter(|e| {
            let t = e["createdTime"].as_i64().unwrap_or(0);
            start.is_none_or(|s| t >= s) && end.is_none_or(|x| t < x)
        })
        .collect();
    Ok(Json(page_of(events, &params)?))
}

fn events_of(state: &AppStateRef, admin: &TenantAdmin, node: uuid::Uuid) -> Vec<Value> {
    let Some(slot) = state.engine.debug.get(node) else {
        return Vec::new();
    };
    slot.events()
        .into_iter()
        .filter(|e| e.tenant == admin.tenant.0)
        .map(|e| {
            json!({
                "id": {"id": e.id.to_string()},
                "createdTime": e.created_time,
                "tenantId": {"entityType": "TENANT", "id": e.tenant.to_string()},
                "type": "DEBUG_RULE_NODE",
                "uid": "",
                "entityId": {"entityType": "RULE_NODE", "id": node.to_string()},
                "body": e,
            })
        })
        .collect()
}

/// The latest IN event's message of the node (`{}` when none), for the script editor's test input.
async fn debug_in(
    State(state): State<AppStateRef>,
    admin: TenantAdmin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let node = parse_uuid(&id)?;
    let latest = events_of(&state, &admin, node)
        .into_iter()
        .find(|e| e["body"]["eventType"] == "IN")
        .map(|e| {
            let body = &e["body"];
            json!({
                "msg": body["data"],
                "metadata": body["metadata"],
                "msgType": body["msgType"],
            })
        });
    Ok(Json(latest.unwrap_or_else(|| json!({}))))
}
