//! The negative caches of CONNECT credentials, each bounded in entries (oldest forgotten first),
//! short-lived, and emptied whenever credentials are created or changed on this node (other
//! nodes' changes are seen when an entry expires):
//! - `connects`: a refused CONNECT (client id, user name and password together) is refused again
//!   from memory, without any lookup;
//! - `tokens`: a user name no credential has as its id (an unknown access token) is not looked up
//!   again, whatever client id comes with it — so a flood of a wrong token from changing client
//!   ids costs at most the one client-id lookup per CONNECT that MQTT_BASIC credentials need.
//!
//! Concurrent lookups of the same key share one lookup.
//!
//! Beside them, `accepted`: access tokens of the HTTP device API accepted a moment ago, with
//! their device, so a device's requests do not each look its token up (see `AcceptedTokens`).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha3::{Digest, Sha3_256};
use tokio::sync::watch;

/// A refusal worth remembering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    NoCredentials,
    NotAuthorized,
}

/// A digest of the looked-up credentials.
pub type Key = [u8; 32];

enum Slot {
    /// A lookup for these credentials is running; its end is signalled by the sender's drop.
    Pending(watch::Receiver<()>),
    Refused(Refused, Instant),
}

struct Inner {
    slots: HashMap<Key, Slot>,
    /// Bumped by `invalidate`: a lookup begun before it may not store its refusal.
    generation: u64,
    /// Refused entries in insertion (= expiry) order; may name entries already replaced.
    order: VecDeque<(Key, Instant)>,
}

/// The caches (see the module note).
pub struct AuthCache {
    pub connects: NegativeCache,
    pub tokens: NegativeCache,
    pub accepted: AcceptedTokens,
}

impl AuthCache {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            connects: NegativeCache::new("connect", ttl, capacity),
            tokens: NegativeCache::new("token", ttl, capacity),
            accepted: AcceptedTokens::new(ttl.min(MAX_ACCEPTED_TTL), capacity),
        }
    }

    /// Credentials were created or changed: nothing refused so far may stay refused.
    pub fn invalidate(&self) {
        self.connects.invalidate();
        self.tokens.invalidate();
    }

    /// The cache key of a CONNECT's credentials (a digest: no token is kept in memory).
    pub fn key(client_id: &str, username: Option<&str>, password: Option<&[u8]>) -> Key {
        let mut h = Sha3_256::new();
        for part in [
            client_id.as_bytes(),
            username.unwrap_or_default().as_bytes(),
            password.unwrap_or_default(),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.finalize().into()
    }
}

/// One negative cache: refusals by key, with storage lookups and cache hits counted
/// (`ferroboard_mqtt_auth_lookups_total{kind}`, `ferroboard_mqtt_auth_cache_hits_total{kind}`).
pub struct NegativeCache {
    kind: &'static str,
    ttl: Duration,
    capacity: usize,
    inner: Mutex<Inner>,
    lookups: AtomicU64,
    hits: AtomicU64,
}

/// What `begin` decided for one CONNECT.
pub enum Begin {
    /// Refused recently: answer without a lookup.
    Cached(Refused),
    /// Do the lookup and report it with `finish` (dropping the ticket without `finish` just
    /// lets waiters look up themselves).
    Lookup(Ticket),
    /// Another CONNECT is looking up the same credentials: wait for it, then `begin` again.
    Wait(watch::Receiver<()>),
}

/// The right (and duty) to look up one set of credentials.
pub struct Ticket {
    key: Key,
    generation: u64,
    _done: watch::Sender<()>,
}

impl NegativeCache {
    pub fn new(kind: &'static str, ttl: Duration, capacity: usize) -> Self {
        Self {
            kind,
            ttl,
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                slots: HashMap::new(),
                generation: 0,
                order: VecDeque::new(),
            }),
            lookups: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Looks `key` up; `may_wait` is false after one wait, so a CONNECT waits at most once.
    pub fn begin(&self, key: Key, may_wait: bool) -> Begin {
        let now = Instant::now();
        let mut inner = self.lock();
        match inner.slots.get(&key) {
            Some(Slot::Refused(r, at)) if now.duration_since(*at) < self.ttl => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("ferroboard_mqtt_auth_cache_hits_total", "kind" => self.kind)
                    .increment(1);
                return Begin::Cached(*r);
            }
            Some(Slot::Pending(rx)) if may_wait => return Begin::Wait(rx.clone()),
            _ => {}
        }
        if inner.slots.len() >= self.capacity.saturating_mul(2) {
            // Lookups abandoned midway (timed out) leave entries nobody finishes: drop them,
            // and expired refusals with them.
            let ttl = self.ttl;
            inner.slots.retain(|_, slot| match slot {
                Slot::Pending(rx) => rx.has_changed().is_ok(),
                Slot::Refused(_, at) => now.duration_since(*at) < ttl,
            });
        }
        let (tx, rx) = watch::channel(());
        inner.slots.insert(key, Slot::Pending(rx));
        self.lookups.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("ferroboard_mqtt_auth_lookups_total", "kind" => self.kind).increment(1);
        Begin::Lookup(Ticket {
            key,
            generation: inner.generation,
            _done: tx,
        })
    }

    /// Ends a lookup: a refusal is remembered, anything else forgotten.
    pub fn finish(&self, ticket: Ticket, outcome: Option<Refused>) {
        let now = Instant::now();
        let mut inner = self.lock();
        let inner = &mut *inner;
        match outcome {
            Some(r) if ticket.generation == inner.generation => {
                inner.slots.insert(ticket.key, Slot::Refused(r, now));
                inner.order.push_back((ticket.key, now));
                self.evict(inner, now);
            }
            _ => {
                if matches!(inner.slots.get(&ticket.key), Some(Slot::Pending(_))) {
                    inner.slots.remove(&ticket.key);
                }
            }
        }
    }

    /// Drops expired entries, then the oldest while over capacity.
    fn evict(&self, inner: &mut Inner, now: Instant) {
        while let Some(&(key, at)) = inner.order.front() {
            let expired = now.duration_since(at) >= self.ttl;
            if !expired && inner.order.len() <= self.capacity {
                break;
            }
            inner.order.pop_front();
            if matches!(inner.slots.get(&key), Some(Slot::Refused(_, t)) if *t == at) {
                inner.slots.remove(&key);
            }
        }
    }

    /// Forgets every refusal; lookups running now may not store theirs.
    pub fn invalidate(&self) {
        let mut inner = self.lock();
        inner
            .slots
            .retain(|_, slot| matches!(slot, Slot::Pending(_)));
        inner.order.clear();
        inner.generation += 1;
    }

    /// Lookups made so far (also `ferroboard_mqtt_auth_lookups_total{kind}`).
    pub fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }

    /// Lookups answered from the cache so far (also `ferroboard_mqtt_auth_cache_hits_total{kind}`).
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Refused entries held now.
    pub fn len(&self) -> usize {
        let inner = self.lock();
        inner
            .slots
            .values()
            .filter(|s| matches!(s, Slot::Refused(..)))
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The longest an accepted token is answered from memory: well below the 30 s a node remembers
/// a revocation (`Registry::revoked_since`), so no entry outlives the memory of its revocation.
pub const MAX_ACCEPTED_TTL: Duration = Duration::from_secs(10);

/// Access tokens accepted recently, with their device and the instant their lookup began;
/// bounded in entries (oldest forgotten first) and short-lived. The caller uses an entry only
/// while the device's credentials were not revoked since that instant (a credentials change, a
/// deletion, a profile change: `Registry::revoked_since`, on every node), so a changed token stops
/// working at once; other changes to the device (its name) made on this node drop its entries
/// (`forget_device`), made on another node are seen when an entry expires. Hits are counted as
/// `ferroboard_mqtt_auth_cache_hits_total{kind="accepted_token"}`.
pub struct AcceptedTokens {
    ttl: Duration,
    capacity: usize,
    inner: Mutex<Accepted>,
    hits: AtomicU64,
}

#[derive(Default)]
struct Accepted {
    entries: HashMap<Key, (crate::domain::Device, Instant)>,
    /// Keys in insertion order, with their instant; may name entries already replaced.
    order: VecDeque<(Key, Instant)>,
}

impl AcceptedTokens {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity: capacity.max(1),
            inner: Mutex::new(Accepted::default()),
            hits: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Accepted> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The device `key` was accepted for and when that lookup began, while the entry is fresh
    /// and `valid` (given the device and that instant) holds; an entry that fails is dropped.
    pub fn get(
        &self,
        key: &Key,
        valid: impl FnOnce(&crate::domain::Device, Instant) -> bool,
    ) -> Option<(crate::domain::Device, Instant)> {
        let (device, since) = {
            let inner = self.lock();
            let (device, since) = inner.entries.get(key)?;
            (device.clone(), *since)
        };
        // Checked without the lock held (`valid` takes the registry's).
        if since.elapsed() >= self.ttl || !valid(&device, since) {
            let mut inner = self.lock();
            if inner.entries.get(key).is_some_and(|(_, t)| *t == since) {
                inner.entries.remove(key);
            }
            return None;
        }
        self.hits.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("ferroboard_mqtt_auth_cache_hits_total", "kind" => "accepted_token")
            .increment(1);
        Some((device, since))
    }

    /// Remembers that `key` belongs to `device`, as looked up from `since` on.
    pub fn insert(&self, key: Key, device: crate::domain::Device, since: Instant) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        inner.entries.insert(key, (device, since));
        inner.order.push_back((key, since));
        let now = Instant::now();
        while let Some(&(key, at)) = inner.order.front() {
            if now.duration_since(at) < self.ttl && inner.order.len() <= self.capacity {
                break;
            }
            inner.order.pop_front();
            if inner.entries.get(&key).is_some_and(|(_, t)| *t == at) {
                inner.entries.remove(&key);
            }
        }
    }

    /// Forgets every token of `device` (it changed on this node).
    pub fn forget_device(&self, device: crate::domain::DeviceId) {
        self.lock().entries.retain(|_, (d, _)| d.id != device);
    }

    /// Checks answered from memory so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> Key {
        AuthCache::key("c", Some(&format!("token-{n}")), None)
    }

    fn negative(ttl: Duration, capacity: usize) -> NegativeCache {
        NegativeCache::new("test", ttl, capacity)
    }

    fn lookup(cache: &NegativeCache, k: Key) -> Ticket {
        match cache.begin(k, true) {
            Begin::Lookup(t) => t,
            _ => panic!("expected a lookup"),
        }
    }

    #[test]
    fn a_refusal_is_remembered_until_it_expires_or_is_invalidated() {
        let cache = negative(Duration::from_secs(3600), 100);
        let t = lookup(&cache, key(1));
        cache.finish(t, Some(Refused::NotAuthorized));
        for _ in 0..10 {
            assert!(matches!(
                cache.begin(key(1), true),
                Begin::Cached(Refused::NotAuthorized)
            ));
        }
        assert_eq!((cache.lookups(), cache.hits()), (1, 10));
        cache.invalidate();
        let t = lookup(&cache, key(1));
        cache.finish(t, None);
        assert_eq!(cache.lookups(), 2);
        // A lookup that began before a credentials change does not store its refusal.
        let t = lookup(&cache, key(1));
        cache.invalidate();
        cache.finish(t, Some(Refused::NotAuthorized));
        assert!(matches!(cache.begin(key(1), true), Begin::Lookup(_)));
        let expired = negative(Duration::ZERO, 100);
        let t = lookup(&expired, key(1));
        expired.finish(t, Some(Refused::NotAuthorized));
        assert!(matches!(expired.begin(key(1), true), Begin::Lookup(_)));
    }

    #[test]
    fn accepted_credentials_are_never_cached() {
        let cache = negative(Duration::from_secs(3600), 100);
        let t = lookup(&cache, key(1));
        cache.finish(t, None);
        assert!(matches!(cache.begin(key(1), true), Begin::Lookup(_)));
        assert!(cache.is_empty());
    }

    #[test]
    fn concurrent_connects_share_one_lookup() {
        let cache = negative(Duration::from_secs(3600), 100);
        let t = lookup(&cache, key(1));
        let Begin::Wait(rx) = cache.begin(key(1), true) else {
            panic!("second CONNECT waits");
        };
        cache.finish(t, Some(Refused::NoCredentials));
        // The waiter is woken (the sender is gone) and then finds the refusal.
        assert!(rx.has_changed().is_err());
        assert!(matches!(
            cache.begin(key(1), false),
            Begin::Cached(Refused::NoCredentials)
        ));
        // A waiter that already waited once looks up itself rather than wait again.
        let t2 = lookup(&cache, key(2));
        assert!(matches!(cache.begin(key(2), false), Begin::Lookup(_)));
        drop(t2);
    }

    #[test]
    fn the_cache_is_bounded_oldest_first() {
        let cache = negative(Duration::from_secs(3600), 3);
        for n in 0..10 {
            let t = lookup(&cache, key(n));
            cache.finish(t, Some(Refused::NotAuthorized));
        }
        assert_eq!(cache.len(), 3);
        assert!(matches!(cache.begin(key(9), true), Begin::Cached(_)));
        assert!(matches!(cache.begin(key(0), true), Begin::Lookup(_)));
    }

    #[test]
    fn abandoned_lookups_do_not_pile_up() {
        let cache = negative(Duration::from_secs(3600), 5);
        for n in 0..1000 {
            drop(lookup(&cache, key(n)));
        }
        assert!(
            cache.lock().slots.len() <= 10,
            "{}",
            cache.lock().slots.len()
        );
    }

    fn device(name: &str) -> crate::domain::Device {
        let profile = crate::domain::DeviceProfile::new(
            crate::domain::TenantId(uuid::Uuid::new_v4()),
            "p",
            true,
            0,
        );
        crate::domain::Device::new_of_profile(&profile, name.to_owned(), serde_json::Value::Null, 0)
    }

    #[test]
    fn accepted_tokens_are_kept_while_valid_fresh_and_within_capacity() {
        let cache = AcceptedTokens::new(Duration::from_secs(3600), 2);
        let (a, b, c) = (device("a"), device("b"), device("c"));
        let since = Instant::now();
        cache.insert(key(1), a.clone(), since);
        let (found, at) = cache.get(&key(1), |_, _| true).expect("cached");
        assert_eq!((found.id, at), (a.id, since));
        assert_eq!(cache.hits(), 1);
        // A revoked entry is dropped, not just skipped.
        assert!(cache.get(&key(1), |_, _| false).is_none());
        assert!(cache.get(&key(1), |_, _| true).is_none());
        for (n, d) in [(1, &a), (2, &b), (3, &c)] {
            cache.insert(key(n), d.clone(), Instant::now());
        }
        assert_eq!(cache.len(), 2, "the oldest is forgotten");
        assert!(cache.get(&key(1), |_, _| true).is_none());
        cache.forget_device(b.id);
        assert!(cache.get(&key(2), |_, _| true).is_none());
        assert!(cache.get(&key(3), |_, _| true).is_some());
        let expired = AcceptedTokens::new(Duration::ZERO, 10);
        expired.insert(key(1), a, Instant::now());
        assert!(expired.get(&key(1), |_, _| true).is_none());
        assert!(expired.is_empty());
    }

    #[test]
    fn credentials_differ_by_every_part() {
        assert_ne!(
            AuthCache::key("ab", Some("c"), None),
            AuthCache::key("a", Some("bc"), None)
        );
        assert_ne!(
            AuthCache::key("a", Some("b"), Some(b"p1")),
            AuthCache::key("a", Some("b"), Some(b"p2"))
        );
    }
}
