//! Time series over REST: save, latest, history with aggregation, keys, delete;
//! plus what the attribute routes share (entity resolution, key lists). Bad payloads inside these
//! handlers answer bare text bodies; errors before that (ids, enums) answer error JSON.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{Map, Value};

use super::State as AppStateRef;
use super::auth::{Scope, TenantUser};
use super::error::{ApiError, Params, RawBody, parse_uuid};
use crate::domain::payload;
use crate::domain::{Aggregation, Device, HistoryQuery, SortOrder};
use crate::domain::{DeviceId, TsKv, now_ms};

pub const PREFIX: &str = "/api/plugins/telemetry";
/// ThingsBoard's `database.ts_max_intervals`.
const MAX_INTERVALS: i64 = 700;
const DEFAULT_LIMIT: i64 = 100;

pub fn routes() -> Router<AppStateRef> {
    let p = |suffix: &str| format!("{PREFIX}/{{p1}}/{{p2}}/{suffix}");
    Router::new()
        .route(&p("timeseries/{p4}"), post(save_timeseries))
        .route(&p("timeseries/{p4}/{p5}"), post(save_timeseries_ttl))
        .route(&p("timeseries/delete"), delete(delete_timeseries))
        .route(&p("values/timeseries"), get(latest_or_history))
        .route(&p("values/timeseries/history"), get(history))
        .route(&p("keys/timeseries"), get(timeseries_keys))
}

/// The telemetry owner named by `{entityType}/{entityId}`. Only devices are supported so far.
pub async fn resolve_entity(
    state: &AppStateRef,
    scope: Scope,
    entity_type: &str,
    entity_id: &str,
) -> Result<Device, ApiError> {
    if entity_type != DeviceId::ENTITY_TYPE {
        return Err(ApiError::BadRequest(format!(
            "Unsupported entity type: {entity_type}"
        )));
    }
    let id = parse_uuid(entity_id)?;
    let device = state
        .services
        .store
        .find_device(DeviceId(id))
        .await?
        .ok_or_else(|| {
            ApiError::Text(
                StatusCode::NOT_FOUND,
                "Device with requested id wasn't found!".to_owned(),
            )
        })?;
    // ThingsBoard's access validator: another tenant's, or another customer's, is forbidden.
    let denied = |text: &str| Err(ApiError::Text(StatusCode::FORBIDDEN, text.to_owned()));
    if device.tenant_id != scope.tenant {
        return denied("Device doesn't belong to the current Tenant!");
    }
    if scope
        .customer
        .is_some_and(|c| device.customer_id != Some(c))
    {
        return denied("Device doesn't belong to the current Customer!");
    }
    Ok(device)
}

/// Requested keys: repeated `key` wins (keys may contain commas), else the comma list `keys`;
/// at most `MAX_KEYS` of them.
pub fn requested_keys(params: &Params) -> Result<Vec<String>, ApiError> {
    let repeated = params.all("key");
    let raw: Vec<&str> = if repeated.is_empty() {
        params
            .get("keys")
            .map(|k| k.split(',').collect())
            .unwrap_or_default()
    } else {
        repeated
    };
    let mut keys: Vec<String> = Vec::new();
    for key in raw.into_iter().map(str::trim).filter(|k| !k.is_empty()) {
        if !keys.iter().any(|k| k == key) {
            if keys.len() == super::limits::MAX_KEYS {
                return Err(ApiError::bad_request(format!(
                    "Too many keys: at most {} keys per request",
                    super::limits::MAX_KEYS
                )));
            }
            keys.push(key.to_owned());
        }
    }
    Ok(keys)
}

/// A body parsed as strict JSON, whatever its Content-Type.
pub fn parse_body(bytes: &[u8], invalid: &str) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|_| ApiError::text_bad_request(invalid))
}

async fn save_timeseries(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    Path((entity_type, entity_id, _scope)): Path<(String, String, String)>,
    RawBody(body): RawBody,
) -> Result<StatusCode, ApiError> {
    store_timeseries(&state, caller.scope(), &entity_type, &entity_id, &body, 0).await
}

/// As `save_timeseries`, the points expiring `ttl` seconds after their timestamps (0: the
/// tenant's default, `retention.default_ttl_s`).
async fn save_timeseries_ttl(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    Path((entity_type, entity_id, _scope, ttl)): Path<(String, String, String, String)>,
    RawBody(body): RawBody,
) -> Result<StatusCode, ApiError> {
    let ttl = ttl
        .trim()
        .parse::<i64>()
        .map_err(|_| ApiError::BadRequest(format!("Invalid ttl: {ttl}")))?;
    // A negative TTL is no TTL, as ThingsBoard reads it.
    let ttl = u64::try_from(ttl).unwrap_or(0);
    store_timeseries(&state, caller.scope(), &entity_type, &entity_id, &body, ttl).await
}

async fn store_timeseries(
    state: &AppStateRef,
    scope: Scope,
    entity_type: &str,
    entity_id: &str,
    body: &[u8],
    ttl_s: u64,
) -> Result<StatusCode, ApiError> {
    let device = resolve_entity(state, scope, entity_type, entity_id).await?;
    let value = parse_body(body, "Unable to parse time series payload: invalid JSON")?;
    let groups = payload::telemetry(&value, state.services.typing).map_err(|e| {
        if e.is_limit() {
            crate::observability::log_gate::refused_input("rest", &device.id, &e);
        }
        ApiError::text_bad_request(format!("Unable to parse time series payload: {e}"))
    })?;
    let points: Vec<TsKv> = payload::points(groups, now_ms());
    if points.is_empty() {
        return Err(ApiError::text_bad_request(
            "No time series data found in request body!",
        ));
    }
    if points.iter().any(|p| p.key.trim().is_empty()) {
        return Err(ApiError::text_bad_request("Key cannot be empty!"));
    }
    state
        .services
        .save_timeseries_ttl(device.id.0, points, ttl_s)
        .await?;
    // Seam: a TIMESERIES_UPDATED rule-engine message belongs here once the engine accepts REST events.
    Ok(StatusCode::OK)
}

/// `{"ts","value"}` with the Java string rendering, or typed with `useStrictDataTypes=true`.
fn point_json(ts: i64, value: Option<&crate::domain::KvValue>, strict: bool) -> Value {
    let value = match value {
        None => Value::Null,
        Some(v) if strict => v.to_json(),
        Some(v) => Value::String(v.to_java_string()),
    };
    let mut obj = Map::new();
    obj.insert("ts".to_owned(), Value::from(ts));
    obj.insert("value".to_owned(), value);
    Value::Object(obj)
}

/// The legacy route: history when both `startTs` and `endTs` are given, else latest values.
async fn latest_or_history(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    Path((entity_type, entity_id)): Path<(String, String)>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let device = resolve_entity(&state, caller.scope(), &entity_type, &entity_id).await?;
    if params.get("startTs").is_some() && params.get("endTs").is_some() {
        return history_of(&state, &device, &params).await;
    }
    let strict = params.bool("useStrictDataTypes")?.unwrap_or(false);
    let keys = requested_keys(&params)?;
    let store = &state.services.store;
    let mut out = Map::new();
    if keys.is_empty() {
        for p in store.latest(device.id.0, None).await? {
            out.insert(
                p.key.clone(),
                Value::Array(vec![point_json(p.ts, Some(&p.value), strict)]),
            );
        }
        return Ok(Json(Value::Object(out)));
    }
    let found = store.latest(device.id.0, Some(&keys)).await?;
    let now = now_ms();
    for key in &keys {
        let point = match found.iter().find(|p| &p.key == key) {
            Some(p) => point_json(p.ts, Some(&p.value), strict),
            None => point_json(now, None, strict),
        };
        out.insert(key.clone(), Value::Array(vec![point]));
    }
    Ok(Json(Value::Object(out)))
}

async fn history(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    Path((entity_type, entity_id)): Path<(String, String)>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let device = resolve_entity(&state, caller.scope(), &entity_type, &entity_id).await?;
    history_of(&state, &device, &params).await
}

/// The history parameters shared by every key of one request.
struct HistoryParams {
    start_ts: i64,
    end_ts: i64,
    interval: i64,
    agg: Aggregation,
    limit: u32,
    order: SortOrder,
    strict: bool,
}

pub(crate) fn parse_aggregation(text: &str) -> Result<Aggregation, ApiError> {
    Ok(match text {
        "NONE" => Aggregation::None,
        "AVG" => Aggregation::Avg,
        "MIN" => Aggregation::Min,
        "MAX" => Aggregation::Max,
        "SUM" => Aggregation::Sum,
        "COUNT" => Aggregation::Count,
        other => {
            return Err(ApiError::BadRequest(format!(
                "Invalid aggregation: {other}"
            )));
        }
    })
}

fn history_params(params: &Params) -> Result<HistoryParams, ApiError> {
    params.required("startTs")?;
    params.required("endTs")?;
    let start_ts = params.int("startTs")?.unwrap_or(0);
    let end_ts = params.int("endTs")?.unwrap_or(0);
    let interval = params.int("interval")?.unwrap_or(0);
    if let Some(kind) = params.get("intervalType").filter(|k| *k != "MILLISECONDS") {
        return Err(ApiError::BadRequest(format!(
            "Unsupported intervalType: {kind}"
        )));
    }
    let mut agg = parse_aggregation(params.get("agg").unwrap_or("NONE"))?;
    if interval <= 0 {
        agg = Aggregation::None;
    }
    let order = match params.get("orderBy").unwrap_or("DESC") {
        o if o.eq_ignore_ascii_case("DESC") => SortOrder::Desc,
        o if o.eq_ignore_ascii_case("ASC") => SortOrder::Asc,
        other => return Err(ApiError::BadRequest(format!("Invalid orderBy: {other}"))),
    };
    let limit = params
        .int("limit")?
        .unwrap_or(DEFAULT_LIMIT)
        .clamp(1, i64::from(u32::MAX));
    if agg != Aggregation::None {
        let intervals = end_ts.saturating_sub(start_ts) / interval.max(1000);
        if !(0..=MAX_INTERVALS).contains(&intervals) {
            return Err(ApiError::text_bad_request(format!(
                "Incorrect TsKvQuery. Number of intervals is to high - {intervals}. Please increase \
                 'interval' parameter for your query or reduce the time range of the query."
            )));
        }
    }
    Ok(HistoryParams {
        start_ts,
        end_ts,
        interval,
        agg,
        limit: u32::try_from(limit).unwrap_or(u32::MAX),
        order,
        strict: params.bool("useStrictDataTypes")?.unwrap_or(false),
    })
}

/// `{"key":[{ts,value}...]}` for `[startTs, endTs)`; keys without points are left out.
async fn history_of(
    state: &AppStateRef,
    device: &Device,
    params: &Params,
) -> Result<Json<Value>, ApiError> {
    let hp = history_params(params)?;
    let mut out = Map::new();
    if hp.end_ts <= hp.start_ts {
        return Ok(Json(Value::Object(out)));
    }
    let keys = requested_keys(params)?;
    let limit = super::limits::history_limit(hp.limit, keys.len());
    for key in keys {
        let query = HistoryQuery {
            key: key.clone(),
            start_ts: hp.start_ts,
            end_ts: hp.end_ts,
            interval: hp.interval,
            agg: hp.agg,
            limit,
            order: hp.order,
        };
        let points = state.services.store.history(device.id.0, &query).await?;
        if !points.is_empty() {
            let rows = points
                .iter()
                .map(|p| point_json(p.ts, Some(&p.value), hp.strict))
                .collect();
            out.insert(key, Value::Array(rows));
        }
    }
    Ok(Json(Value::Object(out)))
}

async fn timeseries_keys(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    Path((entity_type, entity_id)): Path<(String, String)>,
) -> Result<Json<Vec<String>>, ApiError> {
    let device = resolve_entity(&state, caller.scope(), &entity_type, &entity_id).await?;
    Ok(Json(
        state.services.store.timeseries_keys(device.id.0).await?,
    ))
}

async fn delete_timeseries(
    State(state): State<AppStateRef>,
    caller: TenantUser,
    Path((entity_type, entity_id)): Path<(String, String)>,
    params: Params,
) -> Result<StatusCode, ApiError> {
    let device = resolve_entity(&state, caller.scope(), &entity_type, &entity_id).await?;
    let keys = requested_keys(&params)?;
    if keys.is_empty() {
        return Err(ApiError::text_bad_request(format!(
            "Empty keys: [{}]",
            params.get("keys").unwrap_or_default()
        )));
    }
    let all = params.bool("deleteAllDataForKeys")?.unwrap_or(false);
    let range = if all {
        None
    } else {
        match (params.int("startTs")?, params.int("endTs")?) {
            (Some(start), Some(end)) => Some((start, end)),
            _ => {
                return Err(ApiError::text_bad_request(
                    "When deleteAllDataForKeys is false, start and end timestamp values shouldn't be empty",
                ));
            }
        }
    };
    let delete_latest = params.bool("deleteLatest")?.unwrap_or(true);
    // A deleted latest value is replaced by the newest point left only when asked (ThingsBoard's default).
    let rewrite_latest = params.bool("rewriteLatestIfDeleted")?.unwrap_or(false);
    let services = &state.services;
    // Subscribers learn of latest values that went (or were replaced by an older point).
    let watched = delete_latest && services.live.is_watched(device.id.0);
    let before = if watched {
        services.store.latest(device.id.0, Some(&keys)).await?
    } else {
        Vec::new()
    };
    services
        .store
        .delete_timeseries(device.id.0, &keys, range, delete_latest, rewrite_latest)
        .await?;
    if watched {
        let after = services.store.latest(device.id.0, Some(&keys)).await?;
        live_latest_changes(services, device.id.0, &before, &after);
    }
    // Seam: a TIMESERIES_DELETED rule-engine message belongs here.
    Ok(StatusCode::OK)
}

/// Pushes the difference of a deletion to WebSocket subscribers: keys whose latest value is gone
/// as deleted, keys whose latest value was replaced by an older point with that point.
fn live_latest_changes(
    services: &crate::services::Services,
    entity: uuid::Uuid,
    before: &[TsKv],
    after: &[TsKv],
) {
    let gone: Vec<String> = before
        .iter()
        .filter(|b| !after.iter().any(|a| a.key == b.key))
        .map(|b| b.key.clone())
        .collect();
    services.live_deleted(entity, crate::bus::live::ChangeKind::Timeseries, &gone);
    let replaced: Vec<TsKv> = after
        .iter()
        .filter(|a| !before.contains(a))
        .cloned()
        .collect();
    if !replaced.is_empty() {
        let change = crate::bus::live::Changed::timeseries(entity, &replaced);
        services.live.committed(vec![change]);
    }
}
