//! Aggregation buckets: turning per-bucket SQL aggregates into typed points at bucket midpoints.

use super::super::{Aggregation, HistoryQuery};
use crate::domain::{KvValue, TsKv};

/// Per-bucket aggregates as computed by SQL (`GROUP BY (ts - start) / interval`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Bucket {
    pub idx: i64,
    pub count: i64,
    pub long_count: i64,
    pub dbl_count: i64,
    /// Exact sum of the LONG values; None when not computed or out of range.
    pub long_sum: Option<i64>,
    pub long_sum_f: Option<f64>,
    pub dbl_sum: Option<f64>,
    pub long_min: Option<i64>,
    pub long_max: Option<i64>,
    pub dbl_min: Option<f64>,
    pub dbl_max: Option<f64>,
    pub str_min: Option<String>,
    pub str_max: Option<String>,
}

/// The bucket length to aggregate with, or None for raw points.
pub(crate) fn agg_interval(q: &HistoryQuery) -> Option<i64> {
    (q.agg != Aggregation::None && q.interval > 0).then_some(q.interval)
}

/// Turns one bucket into its point: stamped at the midpoint of the bucket clipped at `end_ts`.
pub(crate) fn bucket_point(q: &HistoryQuery, interval: i64, b: Bucket) -> Option<TsKv> {
    let start = q.start_ts.saturating_add(b.idx.saturating_mul(interval));
    let end = start.saturating_add(interval).min(q.end_ts);
    let ts = start + (end - start) / 2;
    let value = bucket_value(q.agg, b)?;
    Some(TsKv {
        ts,
        key: q.key.clone(),
        value,
    })
}

fn bucket_value(agg: Aggregation, b: Bucket) -> Option<KvValue> {
    let numeric = b.long_count + b.dbl_count;
    let long_sum_f = b.long_sum_f.unwrap_or(0.0);
    let dbl_sum = b.dbl_sum.unwrap_or(0.0);
    match agg {
        Aggregation::None => None,
        Aggregation::Count => Some(KvValue::Long(b.count)),
        Aggregation::Avg => {
            (numeric > 0).then(|| KvValue::Double((long_sum_f + dbl_sum) / numeric as f64))
        }
        Aggregation::Sum if numeric == 0 => None,
        Aggregation::Sum => Some(match (b.dbl_count, b.long_sum) {
            (0, Some(sum)) => KvValue::Long(sum),
            _ => KvValue::Double(long_sum_f + dbl_sum),
        }),
        Aggregation::Min => extreme(b.long_min, b.dbl_min, b.str_min, f64::min),
        Aggregation::Max => extreme(b.long_max, b.dbl_max, b.str_max, f64::max),
    }
}

/// MIN/MAX: Long when only longs, Double when any double, the string extreme when nothing is numeric.
fn extreme(
    long: Option<i64>,
    dbl: Option<f64>,
    text: Option<String>,
    pick: fn(f64, f64) -> f64,
) -> Option<KvValue> {
    match (long, dbl) {
        (Some(l), None) => Some(KvValue::Long(l)),
        (None, Some(d)) => Some(KvValue::Double(d)),
        (Some(l), Some(d)) => Some(KvValue::Double(pick(l as f64, d))),
        (None, None) => text.map(KvValue::Str),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SortOrder;

    #[test]
    fn buckets_are_stamped_at_clipped_midpoints() {
        let q = HistoryQuery {
            key: "k".into(),
            start_ts: 0,
            end_ts: 250,
            interval: 100,
            agg: Aggregation::Sum,
            limit: 0,
            order: SortOrder::Asc,
        };
        let b = Bucket {
            idx: 2,
            count: 1,
            long_count: 1,
            long_sum: Some(7),
            long_sum_f: Some(7.0),
            ..Bucket::default()
        };
        let p = bucket_point(&q, 100, b).unwrap();
        assert_eq!((p.ts, p.value), (225, KvValue::Long(7)));
    }
}
