//! Builders and small helpers shared by the conformance cases.

use ferroboard::domain::{AttributeScope, DeviceId, Kv, KvValue, TenantId, TsKv};
use ferroboard::storage::{
    Aggregation, Device, DeviceCredentials, DeviceProfile, HistoryQuery, PageQuery, SortOrder,
    StorageError, Store, Tenant, WriteOp,
};
use serde_json::json;
use uuid::Uuid;

pub fn conflict_text(err: StorageError) -> String {
    match err {
        StorageError::Conflict(text) => text,
        other => panic!("expected Conflict, got {other:?}"),
    }
}

pub async fn tenant(store: &dyn Store) -> TenantId {
    let t = Tenant {
        id: TenantId::new(),
        title: "Tenant".into(),
        created_time: 1,
    };
    store.create_tenant(&t).await.expect("create tenant");
    t.id
}

pub fn profile(tenant: TenantId, name: &str, is_default: bool, created_time: i64) -> DeviceProfile {
    DeviceProfile {
        description: Some(format!("{name} profile")),
        ..DeviceProfile::new(tenant, name, is_default, created_time)
    }
}

pub async fn default_profile(store: &dyn Store, tenant: TenantId) -> DeviceProfile {
    let p = profile(tenant, "default", true, 1);
    store.create_profile(&p).await.expect("create profile");
    p
}

pub fn device(tenant: TenantId, profile: &DeviceProfile, name: &str, created_time: i64) -> Device {
    Device {
        id: DeviceId::new(),
        tenant_id: tenant,
        customer_id: None,
        created_time,
        name: name.into(),
        label: None,
        profile_id: profile.id,
        profile_name: profile.name.clone(),
        additional_info: json!({"gateway": false, "description": "d"}),
        firmware_id: None,
        software_id: None,
        version: 1,
    }
}

pub fn token(device: &Device, token: &str) -> DeviceCredentials {
    DeviceCredentials {
        id: Uuid::new_v4(),
        device_id: device.id,
        created_time: device.created_time,
        credentials_type: "ACCESS_TOKEN".into(),
        credentials_id: token.into(),
        credentials_value: None,
        version: 1,
    }
}

pub async fn new_device(
    store: &dyn Store,
    tenant: TenantId,
    profile: &DeviceProfile,
    name: &str,
    t: i64,
) -> Device {
    let d = device(tenant, profile, name, t);
    store
        .create_device(&d, &token(&d, &format!("token-{name}")))
        .await
        .expect("create device");
    d
}

pub fn pt(ts: i64, key: &str, value: KvValue) -> TsKv {
    TsKv {
        ts,
        key: key.into(),
        value,
    }
}

pub fn ts_op(entity: Uuid, points: Vec<TsKv>) -> WriteOp {
    WriteOp::Timeseries {
        entity,
        points,
        ttl_ms: None,
    }
}

/// Points that expire `ttl_ms` after their timestamps.
pub fn ts_op_ttl(entity: Uuid, points: Vec<TsKv>, ttl_ms: i64) -> WriteOp {
    WriteOp::Timeseries {
        entity,
        points,
        ttl_ms: Some(ttl_ms),
    }
}

pub fn attr_op(entity: Uuid, scope: AttributeScope, ts: i64, kvs: &[(&str, KvValue)]) -> WriteOp {
    let kvs = kvs
        .iter()
        .map(|(k, v)| Kv {
            key: (*k).into(),
            value: v.clone(),
        })
        .collect();
    WriteOp::Attributes {
        entity,
        scope,
        kvs,
        ts,
    }
}

pub fn history(key: &str, start: i64, end: i64, limit: u32, order: SortOrder) -> HistoryQuery {
    HistoryQuery {
        key: key.into(),
        start_ts: start,
        end_ts: end,
        interval: 0,
        agg: Aggregation::None,
        limit,
        order,
    }
}

pub fn agg(key: &str, start: i64, end: i64, interval: i64, agg: Aggregation) -> HistoryQuery {
    HistoryQuery {
        key: key.into(),
        start_ts: start,
        end_ts: end,
        interval,
        agg,
        limit: 0,
        order: SortOrder::Asc,
    }
}

pub fn page(
    size: u32,
    page: u32,
    search: Option<&str>,
    sort: Option<&str>,
    order: SortOrder,
) -> PageQuery {
    PageQuery {
        page_size: size,
        page,
        text_search: search.map(str::to_owned),
        sort_property: sort.map(str::to_owned),
        sort_order: order,
    }
}

pub fn pairs(points: &[TsKv]) -> Vec<(i64, KvValue)> {
    points.iter().map(|p| (p.ts, p.value.clone())).collect()
}

pub fn strs(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}
