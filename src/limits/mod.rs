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

pub mod budget;
mod config;
mod limiter;
mod slot;
pub mod test_store;

pub use budget::{Budget, BudgetWindow, Calendar, Crossing, Refusal, Rolling, Spent};
pub use config::{
    ConsumerLimits, FailureMode, Global, Limits, ModelRule, RawLimits, Unpriced,
    DEFAULT_GLOBAL_TIMEOUT_MS, DEFAULT_MAX_TOKENS, DEFAULT_MAX_TRACKED, MAX_BUDGET_USD,
    MAX_DEFAULT_MAX_TOKENS, MAX_TRACKED, TEAM_SCOPE,
};
pub use limiter::{Held, Limiter, Settled, TableError};

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
    /// Dollar budgets (kept in this process; `limits.global.budgets` are the service's).
    pub budget: Budget,
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
        self.rpm.is_none()
            && self.tpm.is_none()
            && self.tpd.is_none()
            && self.concurrent.is_none()
            && self.budget.is_unlimited()
    }
}

/// One limited scope of a request: its display name (for errors) and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `alice`, `team:eng` for a team, or `alice / gpt-4o*` for a consumer × model rule.
    pub name: String,
    pub spec: Spec,
}

/// What a request costs at admission.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    pub requests: u64,
    pub tokens: u64,
    /// The priced maximum, in picodollars (budgets).
    pub pico_usd: u64,
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
        if let Reason::Budget(r) = &self.reason {
            return crate::error::HttpError::over_budget(r.message(&self.scope));
        }
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
            Reason::Budget(_) => crate::error::HttpError::over_budget(String::new()),
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
    /// A dollar budget.
    Budget(Refusal),
}

impl Reason {
    /// Metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Reason::Window { window, .. } => window.name(),
            Reason::Concurrency { .. } => "concurrent",
            Reason::Budget(_) => "budget",
        }
    }
}

/// The most constraining request and token windows after a decision, for the
/// `x-ratelimit-*` response headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub requests: Option<Remaining>,
    pub tokens: Option<Remaining>,
    /// The least any local dollar budget has left, in picodollars.
    pub usd: Option<u64>,
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
                tokens: Some(r),
                ..Snapshot::default()
            }
        } else {
            Snapshot {
                requests: Some(r),
                ..Snapshot::default()
            }
        }
    }

    /// A snapshot of what a dollar budget has left (picodollars).
    pub fn usd(left: u64) -> Snapshot {
        Snapshot {
            usd: Some(left),
            ..Snapshot::default()
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
        self.usd = match (self.usd, other.usd) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
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
    let secs = if s_ms.is_multiple_of(1000) {
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

#[cfg(test)]
mod tests;
