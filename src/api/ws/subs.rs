//! One WebSocket connection's subscriptions: commands checked against what the user may read,
//! limits per connection and per user, the first snapshot read from storage, and live changes
//! filtered into updates.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::mpsc;
use uuid::Uuid;

use super::Closing;
use super::cmds::{self, BadCmd, CmdKind, Data, ErrorCode, SubCmd, Wrapper};
use crate::api::State as AppStateRef;
use crate::api::auth::TenantUser;
use crate::api::error::ApiError;
use crate::bus::live::{ChangeKind, Changed, Subscriber};
use crate::domain::{Aggregation, AttributeScope, DeviceId, HistoryQuery, SortOrder, now_ms};
use crate::storage::StorageError;

/// Points a history command or a time-window subscription returns per key when it names no limit.
const DEFAULT_LIMIT: i64 = 100;

/// `Err(None)`: the outgoing queue is full (the client is too slow); `Err(Some)`: close for that reason.
pub type Step = Result<(), Option<Closing>>;

struct Sub {
    entity: Uuid,
    /// None for time series; Some(None) for attributes of every scope.
    scope: Option<Option<AttributeScope>>,
    keys: Option<HashSet<String>>,
}

impl Sub {
    fn wants(&self, what: ChangeKind) -> bool {
        match (self.scope, what.scope()) {
            (None, None) => true,
            (Some(None), Some(_)) => true,
            (Some(Some(want)), Some(got)) => want == got,
            _ => false,
        }
    }
}

pub struct Conn {
    state: AppStateRef,
    user: TenantUser,
    sub: Subscriber,
    out: mpsc::Sender<String>,
    subs: HashMap<i32, Sub>,
    /// Subscriptions per entity (the hub knows an entity once per connection).
    entities: HashMap<Uuid, usize>,
}

impl Conn {
    pub fn new(
        state: AppStateRef,
        user: TenantUser,
        sub: Subscriber,
        out: mpsc::Sender<String>,
    ) -> Self {
        Self {
            state,
            user,
            sub,
            out,
            subs: HashMap::new(),
            entities: HashMap::new(),
        }
    }

    fn send(&self, text: String) -> Step {
        self.out.try_send(text).map_err(|_| None)
    }

    fn fail(&self, cmd_id: i32, code: ErrorCode, msg: &str) -> Step {
        self.send(cmds::error(cmd_id, code, msg))
    }

    pub fn reply_parse_error(&self, why: &str) -> Step {
        self.fail(
            0,
            ErrorCode::BadRequest,
            &format!("Failed to parse the payload: {why}"),
        )
    }

    pub async fn handle_text(&mut self, text: &str) -> Step {
        match serde_json::from_str::<Wrapper>(text) {
            Ok(wrapper) => self.handle(wrapper).await,
            Err(e) => self.reply_parse_error(&e.to_string()),
        }
    }

    pub async fn handle(&mut self, wrapper: Wrapper) -> Step {
        for cmd in wrapper.commands() {
            match cmd {
                Ok((kind, cmd)) => self.command(kind, cmd).await?,
                Err(BadCmd { cmd_id, error }) => {
                    self.fail(cmd_id, ErrorCode::BadRequest, &error)?
                }
            }
        }
        Ok(())
    }

    async fn command(&mut self, kind: CmdKind, cmd: SubCmd) -> Step {
        if cmd.unsubscribe {
            self.remove(cmd.cmd_id);
            return Ok(());
        }
        let entity = match self.entity(&cmd).await {
            Ok(entity) => entity,
            Err(e) => return self.fail(cmd.cmd_id, code_of(&e), &e.to_string()),
        };
        let result = match kind {
            CmdKind::History => self.history(entity, &cmd).await,
            CmdKind::Timeseries => self.subscribe(entity, None, &cmd).await,
            CmdKind::Attributes => match parse_scope(cmd.scope.as_deref()) {
                Ok(scope) => self.subscribe(entity, Some(scope), &cmd).await,
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(text) => self.send(text),
            Err(e) => self.fail(cmd.cmd_id, code_of(&e), &e.to_string()),
        }
    }

    /// The device the command names, if the user may read it.
    async fn entity(&self, cmd: &SubCmd) -> Result<Uuid, ApiError> {
        let entity_type = cmd.entity_type.as_deref().unwrap_or(DeviceId::ENTITY_TYPE);
        let id = cmd
            .entity_id
            .as_deref()
            .ok_or_else(|| ApiError::bad_request("entityId is required"))?;
        let device =
            crate::api::telemetry::resolve_entity(&self.state, self.user.scope(), entity_type, id)
                .await?;
        Ok(device.id.0)
    }

    async fn subscribe(
        &mut self,
        entity: Uuid,
        scope: Option<Option<AttributeScope>>,
        cmd: &SubCmd,
    ) -> Result<String, ApiError> {
        let limits = &self.state.config.ws;
        let replacing = self.subs.contains_key(&cmd.cmd_id);
        if !replacing {
            if self.subs.len() >= limits.max_subscriptions_per_connection {
                return Err(ApiError::bad_request(format!(
                    "Too many subscriptions: at most {} per connection (ws.max_subscriptions_per_connection)",
                    limits.max_subscriptions_per_connection
                )));
            }
            let user = self.user.user.user_id.0;
            if !self
                .state
                .services
                .live
                .reserve(user, 1, limits.max_subscriptions_per_user)
            {
                return Err(ApiError::bad_request(format!(
                    "Too many subscriptions: at most {} per user (ws.max_subscriptions_per_user)",
                    limits.max_subscriptions_per_user
                )));
            }
        } else {
            self.remove_keeping_slot(cmd.cmd_id);
        }
        let keys = cmd.key_list();
        // Registered before the snapshot is read, so that no change falls between the two.
        self.add(
            cmd.cmd_id,
            Sub {
                entity,
                scope,
                keys: keys.clone().map(|k| k.into_iter().collect()),
            },
        );
        let data = match scope {
            None => self.timeseries_snapshot(entity, keys, cmd).await,
            Some(scope) => self.attributes_snapshot(entity, scope, keys).await,
        };
        match data {
            Ok(data) => Ok(cmds::update(cmd.cmd_id, data, scope.is_none())),
            Err(e) => {
                self.remove(cmd.cmd_id);
                Err(e.into())
            }
        }
    }

    fn add(&mut self, cmd_id: i32, sub: Sub) {
        let count = self.entities.entry(sub.entity).or_default();
        *count += 1;
        if *count == 1 {
            self.state.services.live.watch(sub.entity, self.sub.clone());
        }
        self.subs.insert(cmd_id, sub);
    }

    /// Drops a subscription but keeps its slot of the user's count (it is being replaced).
    fn remove_keeping_slot(&mut self, cmd_id: i32) -> bool {
        let Some(sub) = self.subs.remove(&cmd_id) else {
            return false;
        };
        if let Some(count) = self.entities.get_mut(&sub.entity) {
            *count -= 1;
            if *count == 0 {
                self.entities.remove(&sub.entity);
                self.state.services.live.unwatch(sub.entity, self.sub.conn);
            }
        }
        true
    }

    fn remove(&mut self, cmd_id: i32) {
        if self.remove_keeping_slot(cmd_id) {
            self.state
                .services
                .live
                .release(self.user.user.user_id.0, 1);
        }
    }

    /// Forgets every subscription (the connection ends).
    pub fn close(&mut self) {
        let ids: Vec<i32> = self.subs.keys().copied().collect();
        for id in ids {
            self.remove(id);
        }
    }

    /// Latest values; with `startTs` or `timeWindow`, the points of that window instead.
    async fn timeseries_snapshot(
        &self,
        entity: Uuid,
        keys: Option<Vec<String>>,
        cmd: &SubCmd,
    ) -> Result<Data, StorageError> {
        let now = now_ms();
        let window_start = match (cmd.start_ts, cmd.time_window) {
            (Some(start), _) if start > 0 => Some(start),
            (_, Some(window)) if window > 0 => Some(now.saturating_sub(window)),
            _ => None,
        };
        if let Some(start) = window_start {
            let end = cmd.end_ts.unwrap_or(now + 1);
            return self.history_data(entity, keys, start, end, cmd).await;
        }
        let store = &self.state.services.store;
        let mut data = Data::new();
        for p in store.latest(entity, keys.as_deref()).await? {
            cmds::push_point(&mut data, &p.key, p.ts, &p.value.to_java_string());
        }
        Ok(data)
    }

    async fn attributes_snapshot(
        &self,
        entity: Uuid,
        scope: Option<AttributeScope>,
        keys: Option<Vec<String>>,
    ) -> Result<Data, StorageError> {
        let scopes = match scope {
            Some(s) => vec![s],
            None => AttributeScope::ALL.to_vec(),
        };
        let mut data = Data::new();
        for scope in scopes {
            let found = self
                .state
                .services
                .store
                .find_attributes(entity, scope, keys.as_deref())
                .await?;
            for a in found {
                cmds::push_point(
                    &mut data,
                    &a.key,
                    a.last_update_ts,
                    &a.value.to_java_string(),
                );
            }
        }
        Ok(data)
    }

    async fn history(&self, entity: Uuid, cmd: &SubCmd) -> Result<String, ApiError> {
        let (Some(start), Some(end)) = (cmd.start_ts, cmd.end_ts) else {
            return Err(ApiError::bad_request(
                "startTs and endTs are required by a history command",
            ));
        };
        let data = self
            .history_data(entity, cmd.key_list(), start, end, cmd)
            .await?;
        Ok(cmds::update(cmd.cmd_id, data, false))
    }

    /// Points of `[start, end)` per key (every key of the entity when none is named), ascending.
    async fn history_data(
        &self,
        entity: Uuid,
        keys: Option<Vec<String>>,
        start: i64,
        end: i64,
        cmd: &SubCmd,
    ) -> Result<Data, StorageError> {
        let store = &self.state.services.store;
        let keys = match keys {
            Some(keys) => keys,
            None => store.timeseries_keys(entity).await?,
        };
        let interval = cmd.interval.unwrap_or(0);
        let agg = match cmd.agg.as_deref() {
            Some(text) if interval > 0 => {
                crate::api::telemetry::parse_aggregation(text).unwrap_or(Aggregation::None)
            }
            _ => Aggregation::None,
        };
        let requested = cmd
            .limit
            .unwrap_or(DEFAULT_LIMIT)
            .clamp(1, i64::from(u32::MAX));
        let limit = crate::api::limits::history_limit(
            u32::try_from(requested).unwrap_or(u32::MAX),
            keys.len(),
        );
        let mut data = Data::new();
        for key in keys {
            let query = HistoryQuery {
                key: key.clone(),
                start_ts: start,
                end_ts: end,
                interval: interval.max(1000),
                agg,
                limit,
                order: SortOrder::Desc,
            };
            let mut points = store.history(entity, &query).await?;
            points.sort_by_key(|p| p.ts);
            for p in points {
                cmds::push_point(&mut data, &p.key, p.ts, &p.value.to_java_string());
            }
        }
        Ok(data)
    }

    /// A committed change: one update per subscription that wants some of its keys.
    pub fn push(&self, change: &Arc<Changed>) -> Step {
        for (cmd_id, sub) in &self.subs {
            if sub.entity != change.entity || !sub.wants(change.what) {
                continue;
            }
            let mut data = Data::new();
            for v in &change.values {
                if sub.keys.as_ref().is_none_or(|k| k.contains(&v.key)) {
                    cmds::push_point(&mut data, &v.key, v.ts, &v.value);
                }
            }
            if !data.is_empty() {
                let text = cmds::update(*cmd_id, data, sub.scope.is_none());
                self.send(text)?;
                metrics::counter!("ferroboard_ws_updates_total").increment(1);
            }
        }
        Ok(())
    }
}

/// `CLIENT_SCOPE`, `SERVER_SCOPE`, `SHARED_SCOPE`, or empty for every scope.
fn parse_scope(text: Option<&str>) -> Result<Option<AttributeScope>, ApiError> {
    match text.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => s.parse().map(Some).map_err(ApiError::BadRequest),
    }
}

fn code_of(e: &ApiError) -> ErrorCode {
    match e {
        ApiError::Text(status, _) if status.as_u16() == 403 => ErrorCode::Unauthorized,
        ApiError::PermissionDenied => ErrorCode::Unauthorized,
        ApiError::Database(_) | ApiError::General(_) => ErrorCode::Internal,
        _ => ErrorCode::BadRequest,
    }
}
