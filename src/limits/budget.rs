//! Dollar budgets of one scope: a day and a month on calendar boundaries (UTC or a configured
//! fixed offset) and a rolling window, in picodollars (10⁻¹² USD, the unit of `cost::Price`).
//!
//! A calendar window is a fixed window: it holds what was spent and what in-flight requests
//! reserved, and starts again at zero at the next boundary. A request is admitted when
//! `spent + reserved + its reservation ≤ limit`, so concurrent requests never overshoot; its
//! end moves its reservation to `spent` at the actual cost (a provider error costs nothing). A
//! request admitted before a boundary and finished after it is charged to the window it was
//! admitted in, which has ended: the new window does not see it.
//!
//! The rolling window refills continuously over its period (GCRA, like the token windows).

use std::time::Duration;

use super::slot::{advance, correct};

/// Alert thresholds a budget may have.
pub const MAX_ALERTS: usize = 8;
const DAY_S: i64 = 86_400;
const NS: u64 = 1_000_000_000;

/// Which of a scope's budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BudgetWindow {
    Day,
    Month,
    Rolling,
}

impl BudgetWindow {
    pub const CALENDAR: [BudgetWindow; 2] = [BudgetWindow::Day, BudgetWindow::Month];

    /// Metric label and config name.
    pub fn name(self) -> &'static str {
        match self {
            BudgetWindow::Day => "day",
            BudgetWindow::Month => "month",
            BudgetWindow::Rolling => "rolling",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            BudgetWindow::Day => "USD per day",
            BudgetWindow::Month => "USD per month",
            BudgetWindow::Rolling => "USD per rolling window",
        }
    }
}

/// A rolling budget: `limit` picodollars refilling over `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rolling {
    pub limit: u64,
    pub period: Duration,
}

/// The clock calendar windows are cut on: UTC shifted by `offset_s` (a fixed time zone), and
/// `skew_s` added to the time itself (for tests of a boundary; 0 in production).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Calendar {
    pub offset_s: i32,
    pub skew_s: i64,
}

/// The dollar budgets of one scope. `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    pub day: Option<u64>,
    pub month: Option<u64>,
    pub rolling: Option<Rolling>,
    pub calendar: Calendar,
    /// Spent fractions (parts per million of the limit) that raise an alert, ascending;
    /// 0 ends the list.
    pub alerts: [u32; MAX_ALERTS],
}

impl Budget {
    pub fn is_unlimited(&self) -> bool {
        self.day.is_none() && self.month.is_none() && self.rolling.is_none()
    }

    pub fn limit(&self, w: BudgetWindow) -> Option<u64> {
        match w {
            BudgetWindow::Day => self.day,
            BudgetWindow::Month => self.month,
            BudgetWindow::Rolling => self.rolling.map(|r| r.limit),
        }
    }
}

/// A spent fraction that crossed an alert threshold (once per window).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crossing {
    pub scope: String,
    pub window: BudgetWindow,
    pub threshold_ppm: u32,
    pub spent: u64,
    pub limit: u64,
    /// When the window starts again (ns since the epoch, real time).
    pub resets_ns: u64,
}

/// What a calendar budget holds after a request settled, for the spent-fraction gauge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spent {
    pub scope: String,
    pub window: BudgetWindow,
    pub spent: u64,
    pub limit: u64,
}

/// One calendar window's state in a slot. The window is named by when it ends (ns, on the
/// budget's clock), so a slot needs no calendar to tell a stale window from the current one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Period {
    pub(super) ends: u64,
    pub(super) spent: u64,
    pub(super) reserved: u64,
    /// Bit `k`: alert `k` fired in this window.
    pub(super) alerted: u8,
}

pub(super) const PERIOD_LEN: usize = 8 + 8 + 8 + 1;

impl Period {
    pub(super) fn write(&self, b: &mut [u8]) {
        for (at, v) in b
            .chunks_exact_mut(8)
            .zip([self.ends, self.spent, self.reserved])
        {
            at.copy_from_slice(&v.to_le_bytes());
        }
        if let Some(last) = b.get_mut(24) {
            *last = self.alerted;
        }
    }

    pub(super) fn read(b: &[u8]) -> Option<Period> {
        let at = |i: usize| -> Option<u64> {
            Some(u64::from_le_bytes(
                b.get(i * 8..i * 8 + 8)?.try_into().ok()?,
            ))
        };
        Some(Period {
            ends: at(0)?,
            spent: at(1)?,
            reserved: at(2)?,
            alerted: *b.get(24)?,
        })
    }

    /// Nothing spent or reserved, or the window is over: the slot may go to another scope.
    pub(super) fn idle(&self, now: u64) -> bool {
        (self.spent == 0 && self.reserved == 0) || self.ends <= now
    }
}

impl Calendar {
    /// `now_ns` on this calendar's clock.
    pub fn now(&self, now_ns: u64) -> u64 {
        let t = i128::from(now_ns) + i128::from(self.skew_s) * i128::from(NS);
        u64::try_from(t.max(0)).unwrap_or(u64::MAX)
    }

    /// Real time of an instant `t` of this clock.
    pub fn real(&self, t: u64) -> u64 {
        let r = i128::from(t) - i128::from(self.skew_s) * i128::from(NS);
        u64::try_from(r.max(0)).unwrap_or(u64::MAX)
    }

    /// The end of the window `w` holding the instant `t` (ns on this clock).
    pub fn end(&self, w: BudgetWindow, t: u64) -> u64 {
        let local_s = (t / NS) as i64 + i64::from(self.offset_s);
        let day = local_s.div_euclid(DAY_S);
        let end_day = match w {
            BudgetWindow::Month => {
                let (y, m, _) = civil_from_days(day);
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(y, m, 1)
            }
            BudgetWindow::Day | BudgetWindow::Rolling => day + 1,
        };
        let end_s = end_day
            .saturating_mul(DAY_S)
            .saturating_sub(i64::from(self.offset_s));
        u64::try_from(end_s.max(0)).unwrap_or(0).saturating_mul(NS)
    }

    /// The period of window `w` holding `t` (ns on this clock), as the service's descriptor
    /// names it: `2027-06-15` for a day, `2027-06` for a month.
    pub fn period(&self, w: BudgetWindow, t: u64) -> String {
        let local_s = (t / NS) as i64 + i64::from(self.offset_s);
        let (y, m, d) = civil_from_days(local_s.div_euclid(DAY_S));
        match w {
            BudgetWindow::Month => format!("{y:04}-{m:02}"),
            BudgetWindow::Day | BudgetWindow::Rolling => format!("{y:04}-{m:02}-{d:02}"),
        }
    }

    /// `t` (ns on this clock) as the local date and time, `2027-01-01 00:00 UTC+05:30`.
    pub fn format(&self, t: u64) -> String {
        let local_s = (t / NS) as i64 + i64::from(self.offset_s);
        let (y, m, d) = civil_from_days(local_s.div_euclid(DAY_S));
        let secs = local_s.rem_euclid(DAY_S);
        let zone = if self.offset_s == 0 {
            "UTC".to_string()
        } else {
            let sign = if self.offset_s < 0 { '-' } else { '+' };
            let o = self.offset_s.unsigned_abs();
            format!("UTC{sign}{:02}:{:02}", o / 3600, (o % 3600) / 60)
        };
        format!(
            "{y:04}-{m:02}-{d:02} {:02}:{:02} {zone}",
            secs / 3600,
            (secs % 3600) / 60
        )
    }
}

/// Days since 1970-01-01 → (year, month 1–12, day 1–31), proleptic Gregorian (H. Hinnant's
/// algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month 1–12, day 1–31) → days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Why a budget refused: the window, its limit, what is left and what was asked (picodollars),
/// and when it starts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub window: BudgetWindow,
    pub limit: u64,
    pub remaining: u64,
    pub requested: u64,
    pub reset: Duration,
    /// The window's end (on the budget's clock), calendar windows.
    pub resets_at: Option<u64>,
    pub calendar: Calendar,
}

impl Refusal {
    /// The message of the 429, naming the budget the way the token limits' messages do.
    pub fn message(&self, scope: &str) -> String {
        let what = self.window.describe();
        let (limit, left, asked) = (usd(self.limit), usd(self.remaining), usd(self.requested));
        if self.requested > self.limit {
            return format!(
                "Request too expensive for {scope} on {what}: Limit {limit}, Requested {asked} \
                 (the prompt at the input price plus the output cap at the output price). \
                 Reduce the prompt or max_tokens."
            );
        }
        let when = match self.resets_at {
            Some(t) => format!(
                " The budget resets at {} (in {}).",
                self.calendar.format(t),
                super::format_reset(self.reset)
            ),
            None => format!(" Please try again in {}.", super::format_reset(self.reset)),
        };
        format!(
            "Budget exceeded for {scope} on {what}: Limit {limit}, Remaining {left}, \
             Requested {asked}.{when}"
        )
    }
}

/// The windows of a slot a budget uses.
pub(super) struct State<'a> {
    pub(super) day: &'a mut Period,
    pub(super) month: &'a mut Period,
    pub(super) rolling_tat: &'a mut u64,
}

impl State<'_> {
    fn period(&mut self, w: BudgetWindow) -> &mut Period {
        match w {
            BudgetWindow::Month => self.month,
            BudgetWindow::Day | BudgetWindow::Rolling => self.day,
        }
    }
}

/// Reserve `amount` in every window of `b`, or say which refuses. Returns the end of each
/// calendar window the reservation went into (day, month).
pub(super) fn reserve(
    s: &mut State,
    b: &Budget,
    amount: u64,
    now: u64,
) -> Result<[u64; 2], Refusal> {
    let t = b.calendar.now(now);
    let mut ends = [0u64; 2];
    for (i, w) in BudgetWindow::CALENDAR.into_iter().enumerate() {
        let Some(limit) = b.limit(w) else { continue };
        let p = s.period(w);
        if t >= p.ends {
            *p = Period {
                ends: b.calendar.end(w, t),
                ..Period::default()
            };
        }
        let used = p.spent.saturating_add(p.reserved);
        if used.saturating_add(amount) > limit {
            return Err(Refusal {
                window: w,
                limit,
                remaining: limit.saturating_sub(used),
                requested: amount,
                reset: Duration::from_nanos(p.ends.saturating_sub(t)),
                resets_at: Some(p.ends),
                calendar: b.calendar,
            });
        }
        p.reserved = p.reserved.saturating_add(amount);
        if let Some(e) = ends.get_mut(i) {
            *e = p.ends;
        }
    }
    if let Some(r) = b.rolling {
        *s.rolling_tat =
            advance(*s.rolling_tat, now, amount, r.limit, r.period).map_err(|(left, wait)| {
                Refusal {
                    window: BudgetWindow::Rolling,
                    limit: r.limit,
                    remaining: left,
                    requested: amount,
                    reset: wait,
                    resets_at: None,
                    calendar: b.calendar,
                }
            })?;
    }
    Ok(ends)
}

/// The request that reserved `reserved` into the windows ending at `ends` cost `actual`: move
/// it to spent (in windows that have not ended since), and report the alert thresholds this
/// crossed and what each calendar window now holds.
#[allow(clippy::too_many_arguments)]
pub(super) fn settle(
    s: &mut State,
    b: &Budget,
    scope: &str,
    ends: [u64; 2],
    reserved: u64,
    actual: u64,
    now: u64,
    report: &mut (Vec<Crossing>, Vec<Spent>),
) {
    for (i, w) in BudgetWindow::CALENDAR.into_iter().enumerate() {
        let Some(limit) = b.limit(w) else { continue };
        let p = s.period(w);
        if ends.get(i) != Some(&p.ends) {
            continue; // the window it was reserved in is over
        }
        p.reserved = p.reserved.saturating_sub(reserved);
        p.spent = p.spent.saturating_add(actual);
        for (k, &ppm) in b.alerts.iter().enumerate().take_while(|(_, &x)| x > 0) {
            let at = (u128::from(limit) * u128::from(ppm)).div_ceil(1_000_000);
            let bit = 1u8 << k;
            if u128::from(p.spent) >= at && p.alerted & bit == 0 {
                p.alerted |= bit;
                report.0.push(Crossing {
                    scope: scope.to_string(),
                    window: w,
                    threshold_ppm: ppm,
                    spent: p.spent,
                    limit,
                    resets_ns: b.calendar.real(p.ends),
                });
            }
        }
        report.1.push(Spent {
            scope: scope.to_string(),
            window: w,
            spent: p.spent,
            limit,
        });
    }
    if let Some(r) = b.rolling {
        correct(s.rolling_tat, reserved, actual, r.limit, r.period, now);
    }
}

/// Dollars of a picodollar amount, for messages: at least cents, at most micro-dollars, without
/// trailing zeros beyond the cents (`$500.00`, `$0.019`, `$0.000042`).
pub fn usd(pico: u64) -> String {
    let micros = pico.saturating_add(500_000) / 1_000_000;
    let mut s = format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000);
    while s.ends_with('0') && s.len() > s.find('.').map_or(0, |i| i + 3) {
        s.pop();
    }
    format!("${s}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = NS;
    /// 2026-12-31 23:59:00 UTC.
    const NEW_YEARS_EVE: u64 = 1_798_761_540 * S;
    const USD: u64 = 1_000_000_000_000;

    fn state(slot: &mut (Period, Period, u64)) -> State<'_> {
        State {
            day: &mut slot.0,
            month: &mut slot.1,
            rolling_tat: &mut slot.2,
        }
    }

    #[test]
    fn civil_dates_round_trip_against_known_days() {
        for (ymd, days) in [
            ((1970, 1, 1), 0),
            ((1969, 12, 31), -1),
            ((2000, 3, 1), 11_017),
            ((2024, 2, 29), 19_782),
            ((2026, 12, 1), 20_788),
            ((2027, 1, 1), 20_819),
            ((2100, 3, 1), 47_541),
        ] {
            assert_eq!(days_from_civil(ymd.0, ymd.1, ymd.2), days, "{ymd:?}");
            assert_eq!(civil_from_days(days), ymd, "{days}");
        }
        // Every day of four centuries, both ways.
        let mut prev = civil_from_days(-1);
        for z in 0..146_097 * 4 {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
            assert!((y, m, d) > prev);
            prev = (y, m, d);
        }
    }

    #[test]
    fn windows_end_on_calendar_boundaries_in_the_configured_zone() {
        let utc = Calendar::default();
        let jan1 = 1_798_761_600 * S;
        assert_eq!(utc.end(BudgetWindow::Day, NEW_YEARS_EVE), jan1);
        assert_eq!(utc.end(BudgetWindow::Month, NEW_YEARS_EVE), jan1);
        assert_eq!(utc.end(BudgetWindow::Month, jan1), jan1 + 31 * 86_400 * S);
        // February of a leap year.
        let feb_2028 = (days_from_civil(2028, 2, 10) as u64) * 86_400 * S;
        let mar_2028 = (days_from_civil(2028, 3, 1) as u64) * 86_400 * S;
        assert_eq!(utc.end(BudgetWindow::Month, feb_2028), mar_2028);
        // UTC+05:30: the local new year came 5h30 earlier.
        let india = Calendar {
            offset_s: 19_800,
            skew_s: 0,
        };
        assert_eq!(
            india.end(BudgetWindow::Month, NEW_YEARS_EVE - 6 * 3600 * S),
            jan1 - 19_800 * S
        );
        assert_eq!(
            india.end(BudgetWindow::Month, NEW_YEARS_EVE),
            (days_from_civil(2027, 2, 1) as u64 * 86_400 - 19_800) * S
        );
        assert_eq!(
            india.format(jan1 - 19_800 * S),
            "2027-01-01 00:00 UTC+05:30"
        );
        let pacific = Calendar {
            offset_s: -8 * 3600,
            skew_s: 0,
        };
        assert_eq!(
            pacific.end(BudgetWindow::Day, NEW_YEARS_EVE),
            jan1 + 8 * 3600 * S
        );
        assert_eq!(pacific.format(jan1), "2026-12-31 16:00 UTC-08:00");
        assert_eq!(utc.format(jan1), "2027-01-01 00:00 UTC");
        // The skew moves the clock, not the zone.
        let skewed = Calendar {
            offset_s: 0,
            skew_s: 120,
        };
        assert_eq!(skewed.now(NEW_YEARS_EVE), jan1 + 60 * S);
        assert_eq!(skewed.real(jan1 + 60 * S), NEW_YEARS_EVE);
    }

    /// Settle one request on `slot`: the crossings and what the calendar windows hold.
    fn settle_one(
        slot: &mut (Period, Period, u64),
        b: &Budget,
        ends: [u64; 2],
        reserved: u64,
        actual: u64,
        now: u64,
    ) -> (Vec<Crossing>, Vec<Spent>) {
        let mut report = Default::default();
        settle(
            &mut state(slot),
            b,
            "alice",
            ends,
            reserved,
            actual,
            now,
            &mut report,
        );
        report
    }

    fn monthly(limit: u64) -> Budget {
        let mut alerts = [0; MAX_ALERTS];
        alerts[..3].copy_from_slice(&[500_000, 800_000, 1_000_000]);
        Budget {
            month: Some(limit),
            alerts,
            ..Budget::default()
        }
    }

    #[test]
    fn reservations_never_overshoot_and_settle_to_the_actual_cost() {
        let b = monthly(10 * USD);
        let mut slot = Default::default();
        let mut admitted = 0;
        for _ in 0..10 {
            if reserve(&mut state(&mut slot), &b, 3 * USD, NEW_YEARS_EVE).is_ok() {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 3);
        let refusal = reserve(&mut state(&mut slot), &b, 3 * USD, NEW_YEARS_EVE).unwrap_err();
        assert_eq!(refusal.remaining, USD);
        assert_eq!(refusal.reset, Duration::from_secs(60));
        assert_eq!(
            refusal.message("team:eng"),
            "Budget exceeded for team:eng on USD per month: Limit $10.00, Remaining $1.00, \
             Requested $3.00. The budget resets at 2027-01-01 00:00 UTC (in 1m0s)."
        );
        // Two end costing $1 each: $5 is free again ($2 spent, $3 still reserved), and the
        // 50 % alert has not fired.
        let end = [0, b.calendar.end(BudgetWindow::Month, NEW_YEARS_EVE)];
        for spent in [USD, 2 * USD] {
            let (crossings, held) = settle_one(&mut slot, &b, end, 3 * USD, USD, NEW_YEARS_EVE);
            assert!(crossings.is_empty());
            assert_eq!(held.last().map(|s| s.spent), Some(spent));
        }
        assert!(reserve(&mut state(&mut slot), &b, 3 * USD, NEW_YEARS_EVE).is_ok());
        assert!(reserve(&mut state(&mut slot), &b, 3 * USD, NEW_YEARS_EVE).is_err());
        // A request larger than the whole budget is told so.
        let too_big = reserve(&mut state(&mut slot), &b, 11 * USD, NEW_YEARS_EVE).unwrap_err();
        assert!(too_big
            .message("a")
            .starts_with("Request too expensive for a on USD per month"));
    }

    #[test]
    fn alerts_fire_once_per_threshold_per_window_and_the_window_starts_again() {
        let b = monthly(10 * USD);
        let mut slot = Default::default();
        let t = NEW_YEARS_EVE - 86_400 * S;
        let mut fired = Vec::new();
        for cost in [4, 1, 2, 1, 2] {
            let ends = reserve(&mut state(&mut slot), &b, 2 * USD, t).unwrap();
            let report = settle_one(&mut slot, &b, ends, 2 * USD, cost * USD, t);
            fired.push(
                report
                    .0
                    .iter()
                    .map(|c| c.threshold_ppm / 10_000)
                    .collect::<Vec<_>>(),
            );
        }
        // Spent 4, 5, 7, 8, 10.
        assert_eq!(fired, [vec![], vec![50], vec![], vec![80], vec![100]]);
        assert_eq!(slot.1.reserved, 0);
        // Refused until the month ends; a new month holds nothing.
        assert!(reserve(&mut state(&mut slot), &b, USD, t).is_err());
        let next = NEW_YEARS_EVE + 2 * 60 * S;
        let ends = reserve(&mut state(&mut slot), &b, USD, next).unwrap();
        assert_eq!(slot.1.spent, 0);
        let report = settle_one(&mut slot, &b, ends, USD, 6 * USD, next);
        assert_eq!(report.0.len(), 1, "a new window alerts again");
    }

    #[test]
    fn a_request_settling_after_its_window_ended_is_not_charged_to_the_next() {
        let b = monthly(10 * USD);
        let mut slot = Default::default();
        let old = reserve(&mut state(&mut slot), &b, 9 * USD, NEW_YEARS_EVE).unwrap();
        let jan = NEW_YEARS_EVE + 120 * S;
        let new = reserve(&mut state(&mut slot), &b, 10 * USD, jan).unwrap();
        assert_ne!(old, new);
        let (crossings, spent) = settle_one(&mut slot, &b, old, 9 * USD, 9 * USD, jan);
        assert!(crossings.is_empty() && spent.is_empty());
        assert_eq!((slot.1.spent, slot.1.reserved), (0, 10 * USD));
    }

    #[test]
    fn the_rolling_window_refills_continuously() {
        let b = Budget {
            rolling: Some(Rolling {
                limit: 10 * USD,
                period: Duration::from_secs(3600),
            }),
            ..Budget::default()
        };
        let mut slot = Default::default();
        let t = NEW_YEARS_EVE;
        assert!(reserve(&mut state(&mut slot), &b, 10 * USD, t).is_ok());
        let r = reserve(&mut state(&mut slot), &b, USD, t).unwrap_err();
        assert_eq!(r.reset, Duration::from_secs(360));
        assert!(r.message("a").ends_with("Please try again in 6m0s."));
        // Refunded $5 of it: $5 is there at once.
        let (crossings, _) = settle_one(&mut slot, &b, [0; 2], 10 * USD, 5 * USD, t);
        assert!(crossings.is_empty(), "no alerts on a rolling window");
        assert!(reserve(&mut state(&mut slot), &b, 5 * USD, t).is_ok());
        assert!(reserve(&mut state(&mut slot), &b, USD, t + 300 * S).is_err());
        assert!(reserve(&mut state(&mut slot), &b, USD, t + 360 * S).is_ok());
    }

    #[test]
    fn dollars_read_well() {
        assert_eq!(usd(0), "$0.00");
        assert_eq!(usd(12_345_000_000_000), "$12.345");
        assert_eq!(usd(500_000_000_000_000), "$500.00");
        assert_eq!(usd(19_000_000_000), "$0.019");
        assert_eq!(usd(42_000_000), "$0.000042");
    }
}
