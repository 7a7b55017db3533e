//! The shared table of slots: finding or claiming a scope's slot, and every change to it by
//! compare-and-swap.

use std::time::Duration;

use hashbrown::HashMap;
use sha2::{Digest, Sha256};

use super::budget::{self, Crossing, Spent};
use super::slot::{charge, correct_tokens, cost_ns, snapshot, Owner, Slot, EMPTY};
use super::{Conflict, Cost, Reason, Rejection, Scope, Snapshot, Spec, Store, Window};

/// Slots held by an admitted request, to settle when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    slots: Vec<HeldSlot>,
    reserved_requests: u64,
    /// Tokens reserved in each token window.
    pub reserved_tokens: u64,
    /// Picodollars reserved in each budget.
    pub reserved_pico: u64,
    pub snapshot: Snapshot,
    /// Scopes that could not be tracked because the table is full.
    pub untracked: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct HeldSlot {
    index: u32,
    owner: Owner,
    /// The scope's name, for alerts.
    scope: String,
    spec: Spec,
    concurrent: bool,
    /// The ends of the budget windows (day, month) the reservation went into.
    ends: [u64; 2],
}

/// What settling a request found in its budgets: thresholds crossed, and what each calendar
/// budget now holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settled {
    pub crossings: Vec<Crossing>,
    pub spent: Vec<Spent>,
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

    pub(super) fn owner(name: &str) -> Owner {
        let d = Sha256::digest(name.as_bytes());
        let mut o = EMPTY;
        for (o, d) in o.iter_mut().zip(d) {
            *o = d;
        }
        if o == EMPTY {
            o[0] = 1;
        }
        o
    }

    pub(super) fn home(&self, owner: &Owner) -> u32 {
        let h = u32::from_le_bytes([owner[0], owner[1], owner[2], owner[3]]);
        h % self.slots
    }

    /// The slot `step` places after `home`, round the table.
    fn probe(&self, home: u32, step: u32) -> u32 {
        ((u64::from(home) + u64::from(step)) % u64::from(self.slots)) as u32
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
            let i = self.probe(home, step);
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
                let i = self.probe(home, step);
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
            reserved_pico: cost.pico_usd,
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
                Ok((snap, index, ends)) => {
                    held.snapshot.merge(&snap);
                    held.slots.push(HeldSlot {
                        index,
                        owner,
                        scope: scope.name.clone(),
                        spec: scope.spec,
                        concurrent: scope.spec.concurrent.is_some(),
                        ends,
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
    ) -> Result<Result<(Snapshot, u32, [u64; 2]), (Reason, Option<Duration>, Snapshot)>, TableError>
    {
        for _ in 0..MAX_RETRIES {
            let (mut slot, cas) = self.read(store, index);
            if slot.owner != *owner {
                // Reclaimed since this VM last saw it (the scope was idle): look it up again.
                self.cache.remove(owner);
                return match self.locate(store, owner, now)? {
                    Some(i) if i != index => self.charge_slot(store, i, owner, spec, cost, now),
                    Some(_) => continue,
                    None => Ok(Ok((Snapshot::default(), index, [0; 2]))),
                };
            }
            // Windows whose limit was removed keep stale state; fold it into "full".
            for w in Window::ALL {
                if spec.limit(w).is_none() {
                    *slot.tat_mut(w) = 0;
                }
            }
            if spec.budget.rolling.is_none() {
                slot.usd_tat = 0;
            }
            if spec.budget.day.is_none() {
                slot.day = Default::default();
            }
            if spec.budget.month.is_none() {
                slot.month = Default::default();
            }
            match charge(&slot, spec, cost, now) {
                Ok((next, ends)) => {
                    if store.set(&self.key(index), &next.encode(), cas).is_ok() {
                        return Ok(Ok((snapshot(&next, spec, now), index, ends)));
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
                    let t = slot.tat_mut(w);
                    *t = t.saturating_sub(cost_ns(cost.requests, limit, w.period()));
                }
                let mut nothing = Default::default();
                let b = &h.spec.budget;
                budget::settle(
                    &mut slot.budget(),
                    b,
                    "",
                    h.ends,
                    cost.pico_usd,
                    0,
                    now,
                    &mut nothing,
                );
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
            pico_usd: held.reserved_pico,
        };
        self.undo(store, held, cost, now)
    }

    /// The request ended having used `actual_tokens` costing `actual_pico`: correct the
    /// reservations and release the in-flight count. Call exactly once per admitted request.
    pub fn settle(
        &mut self,
        store: &dyn Store,
        held: &Held,
        actual_tokens: u64,
        actual_pico: u64,
        now: u64,
    ) -> Result<Settled, TableError> {
        let mut settled = Settled::default();
        for h in &held.slots {
            let report = self.update(store, h, |slot| {
                release(slot, h);
                correct_tokens(slot, &h.spec, held.reserved_tokens, actual_tokens, now);
                let mut report = (Vec::new(), Vec::new());
                if !h.spec.budget.is_unlimited() {
                    budget::settle(
                        &mut slot.budget(),
                        &h.spec.budget,
                        &h.scope,
                        h.ends,
                        held.reserved_pico,
                        actual_pico,
                        now,
                        &mut report,
                    );
                }
                report
            })?;
            if let Some((crossings, spent)) = report {
                settled.crossings.extend(crossings);
                settled.spent.extend(spent);
            }
        }
        Ok(settled)
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
        held.reserved_tokens = held.reserved_tokens.saturating_add(tokens);
        Ok(())
    }

    /// Apply `f` to a held slot's state by compare-and-swap; what `f` returned on the write
    /// that succeeded (`None`: the slot is no longer the scope's).
    fn update<R>(
        &mut self,
        store: &dyn Store,
        h: &HeldSlot,
        mut f: impl FnMut(&mut Slot) -> R,
    ) -> Result<Option<R>, TableError> {
        for _ in 0..MAX_RETRIES {
            let (mut slot, cas) = self.read(store, h.index);
            if slot.owner != h.owner {
                // Cannot happen while the request holds the slot (it is not idle); if a limit
                // was lowered to nothing meanwhile, there is nothing left to correct.
                return Ok(None);
            }
            let r = f(&mut slot);
            if store.set(&self.key(h.index), &slot.encode(), cas).is_ok() {
                return Ok(Some(r));
            }
        }
        Err(TableError::Contended)
    }
}
