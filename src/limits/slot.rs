//! One scope's slot in shared data, and the GCRA arithmetic on it.

use std::time::Duration;

use super::budget::{self, Period, State, PERIOD_LEN};
use super::{Cost, Reason, Remaining, Snapshot, Spec, Window};

/// Who a slot belongs to: the first 16 bytes of the sha256 of the scope's name.
pub(super) type Owner = [u8; 16];
pub(super) const EMPTY: Owner = [0; 16];

/// One slot's state as stored: owner, in-flight count, one TAT per window (ns since the epoch),
/// and the dollar budgets: the day's and the month's windows and the rolling window's TAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Slot {
    pub(super) owner: Owner,
    pub(super) in_flight: u32,
    /// In the order of `Window::ALL`.
    pub(super) tat: [u64; 3],
    pub(super) usd_tat: u64,
    pub(super) day: Period,
    pub(super) month: Period,
}

const SLOT_VERSION: u8 = 2;
const BUDGET_AT: usize = 1 + 16 + 4 + 24;
pub(super) const SLOT_LEN: usize = BUDGET_AT + 8 + 2 * PERIOD_LEN;

impl Slot {
    pub(super) fn empty() -> Slot {
        Slot {
            owner: EMPTY,
            in_flight: 0,
            tat: [0; 3],
            usd_tat: 0,
            day: Period::default(),
            month: Period::default(),
        }
    }

    /// The budget windows of the slot.
    pub(super) fn budget(&mut self) -> State<'_> {
        State {
            day: &mut self.day,
            month: &mut self.month,
            rolling_tat: &mut self.usd_tat,
        }
    }

    pub(super) fn encode(&self) -> [u8; SLOT_LEN] {
        let mut b = [0u8; SLOT_LEN];
        b[0] = SLOT_VERSION;
        b[1..17].copy_from_slice(&self.owner);
        b[17..21].copy_from_slice(&self.in_flight.to_le_bytes());
        for (at, t) in b[21..BUDGET_AT].chunks_exact_mut(8).zip(self.tat) {
            at.copy_from_slice(&t.to_le_bytes());
        }
        let (usd, periods) = b[BUDGET_AT..].split_at_mut(8);
        usd.copy_from_slice(&self.usd_tat.to_le_bytes());
        let (day, month) = periods.split_at_mut(PERIOD_LEN);
        self.day.write(day);
        self.month.write(month);
        b
    }

    /// The TAT of window `w`.
    pub(super) fn tat(&self, w: Window) -> u64 {
        let [rpm, tpm, tpd] = self.tat;
        match w {
            Window::RequestsPerMinute => rpm,
            Window::TokensPerMinute => tpm,
            Window::TokensPerDay => tpd,
        }
    }

    pub(super) fn tat_mut(&mut self, w: Window) -> &mut u64 {
        let [rpm, tpm, tpd] = &mut self.tat;
        match w {
            Window::RequestsPerMinute => rpm,
            Window::TokensPerMinute => tpm,
            Window::TokensPerDay => tpd,
        }
    }

    /// A value that is not a slot of this layout reads as empty (it is then overwritten).
    /// Shared data is untrusted (another filter version or a dying worker may have written
    /// it), so it is read through `get` only.
    pub(super) fn decode(b: &[u8]) -> Slot {
        Self::read(b).unwrap_or_else(Slot::empty)
    }

    fn read(b: &[u8]) -> Option<Slot> {
        if b.len() != SLOT_LEN || *b.first()? != SLOT_VERSION {
            return None;
        }
        let at = |i: usize| -> Option<u64> {
            Some(u64::from_le_bytes(
                b.get(21 + i * 8..29 + i * 8)?.try_into().ok()?,
            ))
        };
        Some(Slot {
            owner: b.get(1..17)?.try_into().ok()?,
            in_flight: u32::from_le_bytes(b.get(17..21)?.try_into().ok()?),
            tat: [at(0)?, at(1)?, at(2)?],
            usd_tat: at(3)?,
            day: Period::read(b.get(BUDGET_AT + 8..)?)?,
            month: Period::read(b.get(BUDGET_AT + 8 + PERIOD_LEN..)?)?,
        })
    }

    /// Nothing in flight, every window full again and no budget window holding anything: the
    /// slot can be given to another scope.
    pub(super) fn idle(&self, now: u64) -> bool {
        self.in_flight == 0
            && self.tat.iter().all(|&t| t <= now)
            && self.usd_tat <= now
            && self.day.idle(now)
            && self.month.idle(now)
    }
}

/// Nanoseconds of `period` that `amount` units cost under `limit` (rounded up).
pub(super) fn cost_ns(amount: u64, limit: u64, period: Duration) -> u64 {
    if limit == 0 {
        return u64::MAX;
    }
    let ns = (amount as u128 * period.as_nanos()).div_ceil(limit as u128);
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// One GCRA window charged `amount`: its new TAT, or what is left in it and how long until
/// `amount` would fit.
pub(super) fn advance(
    tat: u64,
    now: u64,
    amount: u64,
    limit: u64,
    period: Duration,
) -> Result<u64, (u64, Duration)> {
    let period_ns = period.as_nanos() as u64;
    let new_tat = tat.max(now).saturating_add(cost_ns(amount, limit, period));
    if new_tat - now > period_ns {
        let left = remaining(tat, now, limit, period).remaining;
        return Err((left, Duration::from_nanos(new_tat - now - period_ns)));
    }
    Ok(new_tat)
}

/// Move one GCRA window's TAT from `reserved` to `actual` units.
pub(super) fn correct(
    tat: &mut u64,
    reserved: u64,
    actual: u64,
    limit: u64,
    period: Duration,
    now: u64,
) {
    if actual >= reserved {
        let extra = cost_ns(actual - reserved, limit, period);
        *tat = (*tat).max(now).saturating_add(extra);
    } else {
        // A refund cannot make a window fuller than full: a TAT at or before now is full.
        *tat = tat.saturating_sub(cost_ns(reserved - actual, limit, period));
    }
}

pub(super) fn remaining(tat: u64, now: u64, limit: u64, period: Duration) -> Remaining {
    let period_ns = period.as_nanos() as u64;
    let ahead = tat.saturating_sub(now).min(period_ns);
    let left = ((period_ns - ahead) as u128 * limit as u128 / period_ns.max(1) as u128) as u64;
    Remaining {
        limit,
        remaining: left.min(limit),
        reset: Duration::from_nanos(ahead),
    }
}

pub(super) fn snapshot(slot: &Slot, spec: &Spec, now: u64) -> Snapshot {
    let mut s = Snapshot::default();
    for w in Window::ALL {
        if let Some(limit) = spec.limit(w) {
            let r = remaining(slot.tat(w), now, limit, w.period());
            s.merge(&Snapshot::of(w.counts_tokens(), r));
        }
    }
    let b = &spec.budget;
    for (w, p) in [
        (budget::BudgetWindow::Day, &slot.day),
        (budget::BudgetWindow::Month, &slot.month),
    ] {
        if let Some(limit) = b.limit(w) {
            let current = p.ends > b.calendar.now(now);
            let used = if current {
                p.spent.saturating_add(p.reserved)
            } else {
                0
            };
            s.merge(&Snapshot::usd(limit.saturating_sub(used)));
        }
    }
    if let Some(r) = b.rolling {
        let left = remaining(slot.usd_tat, now, r.limit, r.period).remaining;
        s.merge(&Snapshot::usd(left));
    }
    s
}

/// Charge `cost` to a slot, or say which window refuses it. Returns the slot and the ends of
/// the budget windows the reservation went into.
pub(super) fn charge(
    slot: &Slot,
    spec: &Spec,
    cost: Cost,
    now: u64,
) -> Result<(Slot, [u64; 2]), (Reason, Option<Duration>)> {
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
        match advance(slot.tat(w), now, amount, limit, w.period()) {
            Ok(new_tat) => *next.tat_mut(w) = new_tat,
            Err((left, wait)) => {
                return Err((
                    Reason::Window {
                        window: w,
                        limit,
                        remaining: left,
                        requested: amount,
                    },
                    (amount <= limit).then_some(wait),
                ))
            }
        }
    }
    let mut ends = [0; 2];
    if !spec.budget.is_unlimited() {
        ends =
            budget::reserve(&mut next.budget(), &spec.budget, cost.pico_usd, now).map_err(|r| {
                let retry = (r.requested <= r.limit).then_some(r.reset);
                (Reason::Budget(r), retry)
            })?;
    }
    Ok((next, ends))
}

/// Correct the token windows from `reserved` to `actual` tokens.
pub(super) fn correct_tokens(slot: &mut Slot, spec: &Spec, reserved: u64, actual: u64, now: u64) {
    for w in Window::ALL.into_iter().filter(|w| w.counts_tokens()) {
        let Some(limit) = spec.limit(w) else {
            continue;
        };
        correct(slot.tat_mut(w), reserved, actual, limit, w.period(), now);
    }
}
