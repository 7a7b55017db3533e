//! Per-consumer limits, exact across every worker VM of one Envoy process.
//!
//! Each limited scope (a consumer, or a consumer × model rule) owns one slot in Envoy's shared
//! data, which every worker VM sees. A slot holds the scope's in-flight count and one GCRA
//! "theoretical arrival time" (TAT) per window: requests per minute, tokens per minute and tokens
//! per day. A window of limit `L` over `W` is a bucket holding `L` that refills continuously at
//! `L/W`; charging `c` moves the TAT forward by `c·W/L` and is refused when the TAT would be more
//! than `W` ahead of now. Every change is a compare-and-swap on the slot, retried on conflict, so
//! concurrent workers never both spend the same unit: a burst of 50 against a limit of 10 admits
//! exactly 10.
//!
//! Memory is bounded: the table has a fixed number of slots, created once at configuration.
//! A scope's slot is found by linear probing from the hash of its name. Claiming a slot for a
//! new scope happens under a short lease lock (also shared data) so two workers cannot give one
//! scope two slots; a slot whose scope is idle (nothing in flight, every bucket full again) may
//! be reclaimed. Slots are never emptied, so a lookup stops at the first empty slot.
//!
//! Admission reserves, the end reconciles: the filter reserves one request and `prompt +
//! max_tokens` tokens, and when the response ends [`Limiter::settle`] corrects the token windows
//! to what the provider reported and releases the in-flight slot.

use std::time::Duration;

use hashbrown::HashMap;
use sha2::{Digest, Sha256};

/// Shared data as Envoy implements it: a value and a CAS token per key; `cas == 0` writes
/// unconditionally, any other value must match the key's current token.
pub trait Store {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), Conflict>;
}

/// A compare-and-swap lost to another writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict;

/// The windows a slot tracks, in storage order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    RequestsPerMinute,
    TokensPerMinute,
    TokensPerDay,
}

impl Window {
    pub const ALL: [Window; 3] = [
        Window::RequestsPerMinute,
        Window::TokensPerMinute,
        Window::TokensPerDay,
    ];

    fn index(self) -> usize {
        self as usize
    }

    pub fn period(self) -> Duration {
        match self {
            Window::RequestsPerMinute | Window::TokensPerMinute => Duration::from_secs(60),
            Window::TokensPerDay => Duration::from_secs(86_400),
        }
    }

    pub fn counts_tokens(self) -> bool {
        !matches!(self, Window::RequestsPerMinute)
    }

    /// Metric label and config name.
    pub fn name(self) -> &'static str {
        match self {
            Window::RequestsPerMinute => "rpm",
            Window::TokensPerMinute => "tpm",
            Window::TokensPerDay => "tpd",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Window::RequestsPerMinute => "requests per minute (RPM)",
            Window::TokensPerMinute => "tokens per minute (TPM)",
            Window::TokensPerDay => "tokens per day (TPD)",
        }
    }
}

/// The limits of one scope. `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spec {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub tpd: Option<u64>,
    pub concurrent: Option<u32>,
}

impl Spec {
    pub fn limit(&self, w: Window) -> Option<u64> {
        match w {
            Window::RequestsPerMinute => self.rpm,
            Window::TokensPerMinute => self.tpm,
            Window::TokensPerDay => self.tpd,
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.rpm.is_none() && self.tpm.is_none() && self.tpd.is_none() && self.concurrent.is_none()
    }
}

/// One limited scope of a request: its display name (for errors) and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `team-a`, or `team-a / gpt-4o*` for a consumer × model rule.
    pub name: String,
    pub spec: Spec,
}

/// What a request costs at admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    pub requests: u64,
    pub tokens: u64,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub scope: String,
    pub reason: Reason,
    /// How long until the request could pass; `None` when it never can (larger than the limit).
    pub retry_after: Option<Duration>,
    pub snapshot: Snapshot,
}

impl Rejection {
    /// The 429 for this rejection, naming the limit the way OpenAI's messages do.
    pub fn error(&self) -> crate::error::HttpError {
        let again = match self.retry_after {
            Some(d) => format!(" Please try again in {}.", format_reset(d)),
            None => String::new(),
        };
        match self.reason {
            Reason::Window {
                window,
                limit,
                remaining,
                requested,
            } => {
                let kind = if window.counts_tokens() {
                    "tokens"
                } else {
                    "requests"
                };
                let message = if self.retry_after.is_none() {
                    format!(
                        "Request too large for {} on {}: Limit {limit}, Requested {requested}. \
                         Reduce the prompt or max_tokens.",
                        self.scope,
                        window.describe()
                    )
                } else {
                    format!(
                        "Rate limit reached for {} on {}: Limit {limit}, Remaining {remaining}, \
                         Requested {requested}.{again}",
                        self.scope,
                        window.describe()
                    )
                };
                crate::error::HttpError::rate_limited(kind, message)
            }
            Reason::Concurrency { limit } => crate::error::HttpError::rate_limited(
                "requests",
                format!(
                    "Too many concurrent requests for {}: Limit {limit} in flight.{again}",
                    self.scope
                ),
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Window {
        window: Window,
        limit: u64,
        remaining: u64,
        requested: u64,
    },
    Concurrency {
        limit: u32,
    },
}

impl Reason {
    /// Metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Reason::Window { window, .. } => window.name(),
            Reason::Concurrency { .. } => "concurrent",
        }
    }
}

/// The most constraining request and token windows after a decision, for the
/// `x-ratelimit-*` response headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub requests: Option<Remaining>,
    pub tokens: Option<Remaining>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remaining {
    pub limit: u64,
    pub remaining: u64,
    /// Until the window is full again.
    pub reset: Duration,
}

impl Snapshot {
    /// A snapshot of one window's figures, of requests or of tokens.
    pub fn of(tokens: bool, r: Remaining) -> Snapshot {
        if tokens {
            Snapshot {
                requests: None,
                tokens: Some(r),
            }
        } else {
            Snapshot {
                requests: Some(r),
                tokens: None,
            }
        }
    }

    /// Keep the tighter of two figures for each kind.
    pub fn merge(&mut self, other: &Snapshot) {
        fn tighter(a: Option<Remaining>, b: Option<Remaining>) -> Option<Remaining> {
            match (a, b) {
                (Some(a), Some(b)) => Some(if b.remaining < a.remaining { b } else { a }),
                (a, b) => a.or(b),
            }
        }
        self.requests = tighter(self.requests, other.requests);
        self.tokens = tighter(self.tokens, other.tokens);
    }
}

/// Slots held by an admitted request, to settle when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    slots: Vec<HeldSlot>,
    reserved_requests: u64,
    /// Tokens reserved in each token window.
    pub reserved_tokens: u64,
    pub snapshot: Snapshot,
    /// Scopes that could not be tracked because the table is full.
    pub untracked: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct HeldSlot {
    index: u32,
    owner: Owner,
    spec: Spec,
    concurrent: bool,
}

type Owner = [u8; 16];
const EMPTY: Owner = [0; 16];

/// One slot's state as stored: owner, in-flight count, one TAT per window (ns since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    owner: Owner,
    in_flight: u32,
    tat: [u64; 3],
}

const SLOT_VERSION: u8 = 1;
const SLOT_LEN: usize = 1 + 16 + 4 + 24;

impl Slot {
    fn empty() -> Slot {
        Slot {
            owner: EMPTY,
            in_flight: 0,
            tat: [0; 3],
        }
    }

    fn encode(&self) -> [u8; SLOT_LEN] {
        let mut b = [0u8; SLOT_LEN];
        b[0] = SLOT_VERSION;
        b[1..17].copy_from_slice(&self.owner);
        b[17..21].copy_from_slice(&self.in_flight.to_le_bytes());
        for (i, t) in self.tat.iter().enumerate() {
            b[21 + i * 8..29 + i * 8].copy_from_slice(&t.to_le_bytes());
        }
        b
    }

    /// A value that is not a slot of this layout reads as empty (it is then overwritten).
    fn decode(b: &[u8]) -> Slot {
        if b.len() != SLOT_LEN || b.first() != Some(&SLOT_VERSION) {
            return Slot::empty();
        }
        let mut s = Slot::empty();
        s.owner.copy_from_slice(&b[1..17]);
        s.in_flight = u32::from_le_bytes([b[17], b[18], b[19], b[20]]);
        for i in 0..3 {
            let mut t = [0u8; 8];
            t.copy_from_slice(&b[21 + i * 8..29 + i * 8]);
            s.tat[i] = u64::from_le_bytes(t);
        }
        s
    }

    /// Nothing in flight and every window full again: the slot can be given to another scope.
    fn idle(&self, now: u64) -> bool {
        self.in_flight == 0 && self.tat.iter().all(|&t| t <= now)
    }
}

/// Nanoseconds of `period` that `amount` units cost under `limit` (rounded up).
fn cost_ns(amount: u64, limit: u64, period: Duration) -> u64 {
    if limit == 0 {
        return u64::MAX;
    }
    let ns = (amount as u128 * period.as_nanos()).div_ceil(limit as u128);
    u64::try_from(ns).unwrap_or(u64::MAX)
}

fn remaining(tat: u64, now: u64, limit: u64, period: Duration) -> Remaining {
    let period_ns = period.as_nanos() as u64;
    let ahead = tat.saturating_sub(now).min(period_ns);
    let left = ((period_ns - ahead) as u128 * limit as u128 / period_ns.max(1) as u128) as u64;
    Remaining {
        limit,
        remaining: left.min(limit),
        reset: Duration::from_nanos(ahead),
    }
}

fn snapshot(slot: &Slot, spec: &Spec, now: u64) -> Snapshot {
    let mut s = Snapshot::default();
    for w in Window::ALL {
        if let Some(limit) = spec.limit(w) {
            let r = remaining(slot.tat[w.index()], now, limit, w.period());
            s.merge(&Snapshot::of(w.counts_tokens(), r));
        }
    }
    s
}

/// Charge `cost` to a slot, or say which window refuses it.
fn charge(
    slot: &Slot,
    spec: &Spec,
    cost: Cost,
    now: u64,
) -> Result<Slot, (Reason, Option<Duration>)> {
    let mut next = *slot;
    if let Some(limit) = spec.concurrent {
        if slot.in_flight >= limit {
            return Err((Reason::Concurrency { limit }, Some(Duration::from_secs(1))));
        }
        next.in_flight = slot.in_flight + 1;
    }
    for w in Window::ALL {
        let Some(limit) = spec.limit(w) else {
            continue;
        };
        let amount = if w.counts_tokens() {
            cost.tokens
        } else {
            cost.requests
        };
        let period = w.period().as_nanos() as u64;
        let tat = slot.tat[w.index()].max(now);
        let new_tat = tat.saturating_add(cost_ns(amount, limit, w.period()));
        if new_tat - now > period {
            let left = remaining(slot.tat[w.index()], now, limit, w.period()).remaining;
            let retry = (amount <= limit).then(|| Duration::from_nanos(new_tat - now - period));
            return Err((
                Reason::Window {
                    window: w,
                    limit,
                    remaining: left,
                    requested: amount,
                },
                retry,
            ));
        }
        next.tat[w.index()] = new_tat;
    }
    Ok(next)
}

/// Correct the token windows from `reserved` to `actual` tokens.
fn correct_tokens(slot: &mut Slot, spec: &Spec, reserved: u64, actual: u64, now: u64) {
    for w in Window::ALL.into_iter().filter(|w| w.counts_tokens()) {
        let Some(limit) = spec.limit(w) else {
            continue;
        };
        let t = &mut slot.tat[w.index()];
        if actual >= reserved {
            let extra = cost_ns(actual - reserved, limit, w.period());
            *t = (*t).max(now).saturating_add(extra);
        } else {
            // A refund cannot make a window fuller than full: a TAT at or before now is full.
            let back = cost_ns(reserved - actual, limit, w.period());
            *t = t.saturating_sub(back);
        }
    }
}

/// Release the in-flight count a request holds.
fn release(slot: &mut Slot, held: &HeldSlot) {
    if held.concurrent {
        slot.in_flight = slot.in_flight.saturating_sub(1);
    }
}

/// How many times a compare-and-swap is retried before the operation gives up.
const MAX_RETRIES: usize = 10_000;
/// How far a lookup probes from a scope's home slot.
const PROBE: u32 = 64;
/// How long a claim lock may be held before another worker may break it.
const LOCK_LEASE_NS: u64 = 1_000_000_000;

/// The limiter of one VM: the shared table plus this VM's cache of where scopes live.
pub struct Limiter {
    prefix: String,
    slots: u32,
    /// Scope owner → slot index, as last seen by this VM (verified on every use).
    cache: HashMap<Owner, u32>,
}

/// What went wrong with the shared table itself (not a limit decision).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableError {
    /// Contention beyond `MAX_RETRIES`; should not happen outside a broken host.
    Contended,
}

impl Limiter {
    /// A limiter over `slots` slots named `<prefix><n>`.
    pub fn new(prefix: &str, slots: u32) -> Limiter {
        Limiter {
            prefix: prefix.to_string(),
            slots: slots.max(1),
            cache: HashMap::new(),
        }
    }

    fn key(&self, i: u32) -> String {
        format!("{}{}", self.prefix, i)
    }

    fn lock_key(&self) -> String {
        format!("{}lock", self.prefix)
    }

    /// Create the slots that do not exist yet. Called at configuration, before traffic.
    pub fn init(&self, store: &dyn Store) {
        let empty = Slot::empty().encode();
        for i in 0..self.slots {
            let k = self.key(i);
            if store.get(&k).is_none() {
                let _ = store.set(&k, &empty, 0);
            }
        }
        let lock = self.lock_key();
        if store.get(&lock).is_none() {
            let _ = store.set(&lock, &0u64.to_le_bytes(), 0);
        }
    }

    fn owner(name: &str) -> Owner {
        let d = Sha256::digest(name.as_bytes());
        let mut o = [0u8; 16];
        o.copy_from_slice(&d[..16]);
        if o == EMPTY {
            o[0] = 1;
        }
        o
    }

    fn home(&self, owner: &Owner) -> u32 {
        let h = u32::from_le_bytes([owner[0], owner[1], owner[2], owner[3]]);
        h % self.slots
    }

    fn read(&self, store: &dyn Store, i: u32) -> (Slot, u32) {
        match store.get(&self.key(i)) {
            Some((v, cas)) => (Slot::decode(&v), cas),
            None => (Slot::empty(), 0),
        }
    }

    /// Where `owner` lives, without claiming: the cached index (the caller checks the slot's
    /// owner when it reads it, and forgets a stale entry), else a probe that stops at the
    /// first empty slot.
    fn find(&mut self, store: &dyn Store, owner: &Owner) -> Option<u32> {
        if let Some(&i) = self.cache.get(owner) {
            return Some(i);
        }
        let home = self.home(owner);
        for step in 0..PROBE.min(self.slots) {
            let i = (home + step) % self.slots;
            let (s, _) = self.read(store, i);
            if s.owner == *owner {
                self.remember(*owner, i);
                return Some(i);
            }
            if s.owner == EMPTY {
                return None;
            }
        }
        None
    }

    fn remember(&mut self, owner: Owner, i: u32) {
        if self.cache.len() >= self.slots as usize {
            self.cache.clear();
        }
        self.cache.insert(owner, i);
    }

    /// Find or claim the slot of `owner`. `None` when the probe window is full of busy scopes.
    fn locate(
        &mut self,
        store: &dyn Store,
        owner: &Owner,
        now: u64,
    ) -> Result<Option<u32>, TableError> {
        if let Some(i) = self.find(store, owner) {
            return Ok(Some(i));
        }
        let lock = self.acquire(store, now)?;
        let result = self.claim(store, owner, now);
        self.release(store, lock);
        let found = result?;
        if let Some(i) = found {
            self.remember(*owner, i);
        }
        Ok(found)
    }

    /// Under the lock: the owner's slot if another worker claimed it meanwhile, else the first
    /// empty or idle slot in its probe window, taken by CAS.
    fn claim(
        &mut self,
        store: &dyn Store,
        owner: &Owner,
        now: u64,
    ) -> Result<Option<u32>, TableError> {
        'retry: for _ in 0..MAX_RETRIES {
            let home = self.home(owner);
            let mut free: Option<(u32, u32)> = None;
            for step in 0..PROBE.min(self.slots) {
                let i = (home + step) % self.slots;
                let (s, cas) = self.read(store, i);
                if s.owner == *owner {
                    return Ok(Some(i));
                }
                if free.is_none() && (s.owner == EMPTY || s.idle(now)) {
                    free = Some((i, cas));
                }
                if s.owner == EMPTY {
                    break;
                }
            }
            let Some((i, cas)) = free else {
                return Ok(None);
            };
            let fresh = Slot {
                owner: *owner,
                ..Slot::empty()
            };
            match store.set(&self.key(i), &fresh.encode(), cas) {
                Ok(()) => return Ok(Some(i)),
                // A request of the idle scope got there first: look again.
                Err(Conflict) => continue 'retry,
            }
        }
        Err(TableError::Contended)
    }

    fn acquire(&self, store: &dyn Store, now: u64) -> Result<u64, TableError> {
        let key = self.lock_key();
        let lease = now.saturating_add(LOCK_LEASE_NS);
        for _ in 0..MAX_RETRIES {
            let (held_until, cas) = match store.get(&key) {
                Some((v, cas)) => (
                    v.get(..8)
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_le_bytes)
                        .unwrap_or(0),
                    cas,
                ),
                None => (0, 0),
            };
            if held_until > now {
                continue;
            }
            if store.set(&key, &lease.to_le_bytes(), cas).is_ok() {
                return Ok(lease);
            }
        }
        Err(TableError::Contended)
    }

    fn release(&self, store: &dyn Store, lease: u64) {
        let key = self.lock_key();
        for _ in 0..MAX_RETRIES {
            let Some((v, cas)) = store.get(&key) else {
                return;
            };
            if v.get(..8) != Some(&lease.to_le_bytes()[..]) {
                return; // broken by another worker after the lease ran out
            }
            if store.set(&key, &0u64.to_le_bytes(), cas).is_ok() {
                return;
            }
        }
    }

    /// Reserve `cost` in every scope, all or nothing.
    pub fn admit(
        &mut self,
        store: &dyn Store,
        scopes: &[Scope],
        cost: Cost,
        now: u64,
    ) -> Result<Result<Held, Rejection>, TableError> {
        let mut held = Held {
            slots: Vec::with_capacity(scopes.len()),
            reserved_requests: cost.requests,
            reserved_tokens: cost.tokens,
            snapshot: Snapshot::default(),
            untracked: 0,
        };
        for scope in scopes.iter().filter(|s| !s.spec.is_unlimited()) {
            let owner = Self::owner(&scope.name);
            let Some(index) = self.locate(store, &owner, now)? else {
                held.untracked += 1;
                continue;
            };
            match self.charge_slot(store, index, &owner, &scope.spec, cost, now)? {
                Ok(snap) => {
                    held.snapshot.merge(&snap);
                    held.slots.push(HeldSlot {
                        index,
                        owner,
                        spec: scope.spec,
                        concurrent: scope.spec.concurrent.is_some(),
                    });
                }
                Err((reason, retry_after, snap)) => {
                    // Give back what the earlier scopes took: nothing was used.
                    let mut snapshot = held.snapshot;
                    snapshot.merge(&snap);
                    self.undo(store, &held, cost, now)?;
                    return Ok(Err(Rejection {
                        scope: scope.name.clone(),
                        reason,
                        retry_after,
                        snapshot,
                    }));
                }
            }
        }
        Ok(Ok(held))
    }

    #[allow(clippy::type_complexity)]
    fn charge_slot(
        &mut self,
        store: &dyn Store,
        index: u32,
        owner: &Owner,
        spec: &Spec,
        cost: Cost,
        now: u64,
    ) -> Result<Result<Snapshot, (Reason, Option<Duration>, Snapshot)>, TableError> {
        for _ in 0..MAX_RETRIES {
            let (mut slot, cas) = self.read(store, index);
            if slot.owner != *owner {
                // Reclaimed since this VM last saw it (the scope was idle): look it up again.
                self.cache.remove(owner);
                return match self.locate(store, owner, now)? {
                    Some(i) if i != index => self.charge_slot(store, i, owner, spec, cost, now),
                    Some(_) => continue,
                    None => Ok(Ok(Snapshot::default())),
                };
            }
            // Windows whose limit was removed keep stale state; fold it into "full".
            for w in Window::ALL {
                if spec.limit(w).is_none() {
                    slot.tat[w.index()] = 0;
                }
            }
            match charge(&slot, spec, cost, now) {
                Ok(next) => {
                    if store.set(&self.key(index), &next.encode(), cas).is_ok() {
                        return Ok(Ok(snapshot(&next, spec, now)));
                    }
                }
                Err((reason, retry)) => {
                    return Ok(Err((reason, retry, snapshot(&slot, spec, now))))
                }
            }
        }
        Err(TableError::Contended)
    }

    fn undo(
        &mut self,
        store: &dyn Store,
        held: &Held,
        cost: Cost,
        now: u64,
    ) -> Result<(), TableError> {
        for h in &held.slots {
            self.update(store, h, |slot| {
                release(slot, h);
                correct_tokens(slot, &h.spec, cost.tokens, 0, now);
                if let Some(limit) = h.spec.rpm {
                    let w = Window::RequestsPerMinute;
                    let t = &mut slot.tat[w.index()];
                    *t = t.saturating_sub(cost_ns(cost.requests, limit, w.period()));
                }
            })?;
        }
        Ok(())
    }

    /// Give back everything an admitted request took: it was refused after all (by the global
    /// service) and never sent.
    pub fn cancel(&mut self, store: &dyn Store, held: &Held, now: u64) -> Result<(), TableError> {
        let cost = Cost {
            requests: held.reserved_requests,
            tokens: held.reserved_tokens,
        };
        self.undo(store, held, cost, now)
    }

    /// The request ended having used `actual_tokens`: correct the reservation and release the
    /// in-flight count. Call exactly once per admitted request.
    pub fn settle(
        &mut self,
        store: &dyn Store,
        held: &Held,
        actual_tokens: u64,
        now: u64,
    ) -> Result<(), TableError> {
        for h in &held.slots {
            self.update(store, h, |slot| {
                release(slot, h);
                correct_tokens(slot, &h.spec, held.reserved_tokens, actual_tokens, now);
            })?;
        }
        Ok(())
    }

    /// Charge `tokens` more to every held slot without refusing (headers-only mode learns the
    /// prompt after the request has left).
    pub fn add_tokens(
        &mut self,
        store: &dyn Store,
        held: &mut Held,
        tokens: u64,
        now: u64,
    ) -> Result<(), TableError> {
        let reserved = held.reserved_tokens;
        for h in &held.slots {
            self.update(store, h, |slot| {
                correct_tokens(
                    slot,
                    &h.spec,
                    reserved,
                    reserved.saturating_add(tokens),
                    now,
                )
            })?;
        }
        held.reserved_tokens = reserved.saturating_add(tokens);
        Ok(())
    }

    /// Apply `f` to a held slot's state by compare-and-swap.
    fn update(
        &mut self,
        store: &dyn Store,
        h: &HeldSlot,
        f: impl Fn(&mut Slot),
    ) -> Result<(), TableError> {
        for _ in 0..MAX_RETRIES {
            let (mut slot, cas) = self.read(store, h.index);
            if slot.owner != h.owner {
                // Cannot happen while the request holds the slot (it is not idle); if a limit
                // was lowered to nothing meanwhile, there is nothing left to correct.
                return Ok(());
            }
            f(&mut slot);
            if store.set(&self.key(h.index), &slot.encode(), cas).is_ok() {
                return Ok(());
            }
        }
        Err(TableError::Contended)
    }
}

/// `x-ratelimit-reset-*` values the way OpenAI writes them: `20ms`, `1.5s`, `6m0s`, `1h2m3s`.
pub fn format_reset(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let h = ms / 3_600_000;
    let m = (ms / 60_000) % 60;
    let s_ms = ms % 60_000;
    let secs = if s_ms % 1000 == 0 {
        format!("{}s", s_ms / 1000)
    } else {
        let mut f = format!("{}.{:03}", s_ms / 1000, s_ms % 1000);
        while f.ends_with('0') {
            f.pop();
        }
        format!("{f}s")
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

/// An in-memory `Store` with Envoy's shared-data semantics, for native tests and benches.
pub mod test_store {
    use super::{Conflict, Store};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    /// CAS tokens per key; `cas == 0` writes unconditionally.
    type Table = (HashMap<String, (Vec<u8>, u32)>, u32);

    #[derive(Default, Clone)]
    pub struct MemStore(Arc<Mutex<Table>>);

    impl MemStore {
        /// Keys stored.
        pub fn len(&self) -> usize {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).0.len()
        }

        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }
    }

    impl Store for MemStore {
        fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
            g.0.get(key).cloned()
        }
        fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), Conflict> {
            let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
            let (map, next) = &mut *g;
            if cas != 0 && map.get(key).map(|(_, c)| *c) != Some(cas) {
                return Err(Conflict);
            }
            *next = next.wrapping_add(1).max(1);
            map.insert(key.to_string(), (value.to_vec(), *next));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_store::MemStore;

    const SEC: u64 = 1_000_000_000;
    const T0: u64 = 1_700_000_000 * SEC;

    fn scope(name: &str, spec: Spec) -> Scope {
        Scope {
            name: name.into(),
            spec,
        }
    }

    fn limiter(store: &MemStore, slots: u32) -> Limiter {
        let l = Limiter::new("t.", slots);
        l.init(store);
        l
    }

    const ONE: Cost = Cost {
        requests: 1,
        tokens: 0,
    };

    #[test]
    fn rpm_admits_exactly_the_limit_then_refills() {
        let store = MemStore::default();
        let mut l = limiter(&store, 16);
        let s = [scope(
            "a",
            Spec {
                rpm: Some(10),
                ..Spec::default()
            },
        )];
        let ok = (0..50)
            .filter(|_| l.admit(&store, &s, ONE, T0).unwrap().is_ok())
            .count();
        assert_eq!(ok, 10);
        let r = l.admit(&store, &s, ONE, T0).unwrap().unwrap_err();
        assert_eq!(r.retry_after, Some(Duration::from_secs(6)));
        let e = r.error();
        assert_eq!(
            (e.status, e.kind, e.code),
            (429, "requests", "rate_limit_exceeded")
        );
        assert_eq!(
            e.message,
            "Rate limit reached for a on requests per minute (RPM): Limit 10, Remaining 0, \
             Requested 1. Please try again in 6s."
        );
        assert_eq!(r.snapshot.requests.unwrap().remaining, 0);
        // One request's worth refills every 6 s.
        assert!(l.admit(&store, &s, ONE, T0 + 6 * SEC).unwrap().is_ok());
        assert!(l.admit(&store, &s, ONE, T0 + 6 * SEC).unwrap().is_err());
    }

    #[test]
    fn tokens_are_reserved_then_refunded() {
        let store = MemStore::default();
        let mut l = limiter(&store, 16);
        let s = [scope(
            "a",
            Spec {
                tpm: Some(1000),
                ..Spec::default()
            },
        )];
        let cost = Cost {
            requests: 1,
            tokens: 400,
        };
        let a = l.admit(&store, &s, cost, T0).unwrap().unwrap();
        assert_eq!(a.snapshot.tokens.unwrap().remaining, 600);
        let b = l.admit(&store, &s, cost, T0).unwrap().unwrap();
        let r = l.admit(&store, &s, cost, T0).unwrap().unwrap_err();
        assert_eq!(
            r.reason,
            Reason::Window {
                window: Window::TokensPerMinute,
                limit: 1000,
                remaining: 200,
                requested: 400
            }
        );
        // Both used 50: 700 come back.
        l.settle(&store, &a, 50, T0).unwrap();
        l.settle(&store, &b, 50, T0).unwrap();
        let c = l.admit(&store, &s, cost, T0).unwrap().unwrap();
        assert_eq!(c.snapshot.tokens.unwrap().remaining, 500);
        // Using more than reserved is charged too.
        l.settle(&store, &c, 900, T0).unwrap();
        let r = l.admit(&store, &s, cost, T0).unwrap().unwrap_err();
        match r.reason {
            Reason::Window { remaining, .. } => assert_eq!(remaining, 0),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn larger_than_the_limit_never_passes() {
        let store = MemStore::default();
        let mut l = limiter(&store, 16);
        let s = [scope(
            "a",
            Spec {
                tpm: Some(100),
                ..Spec::default()
            },
        )];
        let r = l
            .admit(
                &store,
                &s,
                Cost {
                    requests: 1,
                    tokens: 101,
                },
                T0,
            )
            .unwrap()
            .unwrap_err();
        assert_eq!(r.retry_after, None);
    }

    #[test]
    fn concurrency_is_released_on_settle() {
        let store = MemStore::default();
        let mut l = limiter(&store, 16);
        let s = [scope(
            "a",
            Spec {
                concurrent: Some(2),
                ..Spec::default()
            },
        )];
        let a = l.admit(&store, &s, ONE, T0).unwrap().unwrap();
        let _b = l.admit(&store, &s, ONE, T0).unwrap().unwrap();
        assert!(matches!(
            l.admit(&store, &s, ONE, T0).unwrap().unwrap_err().reason,
            Reason::Concurrency { limit: 2 }
        ));
        l.settle(&store, &a, 0, T0).unwrap();
        let c = l.admit(&store, &s, ONE, T0).unwrap().unwrap();
        // A cancelled admission gives its slot back too.
        l.cancel(&store, &c, T0).unwrap();
        assert!(l.admit(&store, &s, ONE, T0).unwrap().is_ok());
    }

    #[test]
    fn a_rejection_in_a_later_scope_gives_back_the_earlier_ones() {
        let store = MemStore::default();
        let mut l = limiter(&store, 16);
        let consumer = scope(
            "a",
            Spec {
                rpm: Some(5),
                tpm: Some(1000),
                concurrent: Some(1),
                ..Spec::default()
            },
        );
        let model = scope(
            "a / gpt-4o",
            Spec {
                tpm: Some(100),
                ..Spec::default()
            },
        );
        let cost = Cost {
            requests: 1,
            tokens: 200,
        };
        let r = l
            .admit(&store, &[consumer.clone(), model], cost, T0)
            .unwrap()
            .unwrap_err();
        assert_eq!(r.scope, "a / gpt-4o");
        // Nothing was kept in the consumer's windows.
        let ok = l.admit(&store, &[consumer], cost, T0).unwrap().unwrap();
        assert_eq!(ok.snapshot.tokens.unwrap().remaining, 800);
        assert_eq!(ok.snapshot.requests.unwrap().remaining, 4);
    }

    #[test]
    fn consumers_do_not_share_and_the_table_is_bounded() {
        let store = MemStore::default();
        let mut l = limiter(&store, 8);
        let spec = Spec {
            rpm: Some(1),
            ..Spec::default()
        };
        for i in 0..8 {
            let s = [scope(&format!("c{i}"), spec)];
            assert!(l.admit(&store, &s, ONE, T0).unwrap().unwrap().untracked == 0);
        }
        // Every slot is busy (refilling): a ninth consumer is not tracked.
        let s = [scope("c8", spec)];
        assert_eq!(l.admit(&store, &s, ONE, T0).unwrap().unwrap().untracked, 1);
        // One minute later the slots are idle and can be reclaimed.
        let later = T0 + 61 * SEC;
        assert_eq!(
            l.admit(&store, &s, ONE, later).unwrap().unwrap().untracked,
            0
        );
        assert_eq!(store.len(), 9);
        // The eight come back while c8 is busy: this VM's cached indexes are stale for the one
        // whose slot c8 took (and for each it displaces in turn); nine busy scopes do not fit in
        // eight slots, so exactly one goes untracked, and c8's window is never touched.
        let untracked: usize = (0..8)
            .map(|i| {
                let s = [scope(&format!("c{i}"), spec)];
                l.admit(&store, &s, ONE, later).unwrap().unwrap().untracked
            })
            .sum();
        assert_eq!(untracked, 1);
        assert!(l.admit(&store, &s, ONE, later).unwrap().is_err());
    }

    #[test]
    fn exact_across_threads() {
        // Eight "workers", each with its own Limiter over one store, hammer one consumer
        // and a few others: exactly the limit passes.
        let store = MemStore::default();
        limiter(&store, 64);
        let spec = Spec {
            rpm: Some(100),
            tpm: Some(10_000),
            ..Spec::default()
        };
        let handles: Vec<_> = (0..8)
            .map(|w| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let mut l = Limiter::new("t.", 64);
                    let mut ok = 0;
                    for i in 0..100 {
                        let name = if i % 4 == 0 {
                            format!("other{w}")
                        } else {
                            "hot".into()
                        };
                        let s = [scope(&name, spec)];
                        let cost = Cost {
                            requests: 1,
                            tokens: 10,
                        };
                        if let Ok(h) = l.admit(&store, &s, cost, T0).unwrap() {
                            if name == "hot" {
                                ok += 1;
                            }
                            l.settle(&store, &h, 10, T0).unwrap();
                        }
                    }
                    ok
                })
            })
            .collect();
        let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 100);
    }

    #[test]
    fn reset_format() {
        assert_eq!(format_reset(Duration::from_millis(20)), "20ms");
        assert_eq!(format_reset(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_reset(Duration::from_secs(360)), "6m0s");
        assert_eq!(format_reset(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(format_reset(Duration::ZERO), "0ms");
    }
}
