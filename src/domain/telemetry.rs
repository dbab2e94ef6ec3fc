//! Stored attributes and time-series history queries.

use super::{KvValue, SortOrder};

/// One stored attribute.
#[derive(Clone, Debug, PartialEq)]
pub struct AttributeKv {
    pub key: String,
    pub value: KvValue,
    pub last_update_ts: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregation {
    None,
    Avg,
    Min,
    Max,
    Sum,
    Count,
}

/// A history query for one key. The range is `[start_ts, end_ts)`.
#[derive(Clone, Debug)]
pub struct HistoryQuery {
    pub key: String,
    pub start_ts: i64,
    pub end_ts: i64,
    /// Bucket length in ms; only used when `agg != None` (0 means no aggregation).
    pub interval: i64,
    pub agg: Aggregation,
    /// Points per key; only for `agg == None`.
    pub limit: u32,
    pub order: SortOrder,
}
