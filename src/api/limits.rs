//! Bounds on what one REST request may ask for, so no request can make the server read or hold
//! an unbounded amount (docs/configuration.md, "REST request limits").

/// Largest page of a list endpoint; a larger `pageSize` is served as this (pages are numbered
/// in the served size, so `hasNext`/`totalPages` stay consistent).
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Keys one telemetry or attribute request may name.
pub const MAX_KEYS: usize = 200;
/// Points one history request returns at most, over all its keys: each key's `limit` is capped
/// at this divided by the number of keys.
pub const MAX_HISTORY_POINTS: u32 = 100_000;
/// Ids one `deviceIds` list may hold.
pub const MAX_DEVICE_IDS: usize = 1000;

/// Longest title (tenants, customers) or e-mail, as ThingsBoard's length validation.
pub const MAX_NAME_CHARS: usize = 255;

/// 400 when `value` (the `what` of the entity) is longer than `MAX_NAME_CHARS`.
pub fn check_length(what: &str, value: &str) -> Result<(), super::error::ApiError> {
    if value.chars().count() > MAX_NAME_CHARS {
        return Err(super::error::ApiError::BadRequest(format!(
            "{what} length must be equal or less than {MAX_NAME_CHARS}"
        )));
    }
    Ok(())
}

/// The per-key `limit` of a history request for `keys` keys.
pub fn history_limit(requested: u32, keys: usize) -> u32 {
    let keys = u32::try_from(keys.max(1)).unwrap_or(u32::MAX);
    requested.clamp(1, (MAX_HISTORY_POINTS / keys).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_points_are_capped_over_all_keys() {
        assert_eq!(history_limit(100, 1), 100);
        assert_eq!(history_limit(u32::MAX, 1), MAX_HISTORY_POINTS);
        assert_eq!(history_limit(u32::MAX, 4), MAX_HISTORY_POINTS / 4);
        assert_eq!(history_limit(0, 1), 1);
        assert_eq!(history_limit(10, MAX_KEYS), 10);
    }
}
