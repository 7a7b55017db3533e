//! The global rate limit service: Envoy's `envoy.service.ratelimit.v3.RateLimitService`
//! (`ShouldRateLimit`), as spoken by envoyproxy/ratelimit and Limitador.
//!
//! The messages are the protobuf definitions of `rls.proto` and `ratelimit.proto` written as
//! prost derives (the crates that ship them generated, such as `envoy-types`, pull in tonic and
//! tokio, which do not build for wasm32); a test checks them field by field against
//! `envoy-types`. Only the fields the filter uses are declared: protobuf skips the others.
//!
//! Descriptors, one pair per scope, each with its own `hits_addend`:
//! `[consumer=<name>, unit=requests]`, `[consumer=<name>, unit=tokens]`, and with a model
//! `[consumer=<name>, model=<model>, unit=requests|tokens]`; with global dollar budgets
//! (`limits.global.budgets`), `[consumer=<name>, budget_month=2026-12]` and
//! `[consumer=<name>, budget_day=2026-12-03]`, and the same with `team=<team>`, whose hits are
//! the cost in `limits.global.budget_unit_usd` units (micro-dollars by default). The calendar
//! period is the descriptor's value, so each day and month has its own counter in the service.
//! The service's configuration decides which of them are limited.

use std::time::Duration;

use prost::Message;

use crate::limits::{Remaining, Snapshot};

pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";

pub const KEY_CONSUMER: &str = "consumer";
pub const KEY_MODEL: &str = "model";
pub const KEY_UNIT: &str = "unit";
pub const UNIT_REQUESTS: &str = "requests";
pub const UNIT_TOKENS: &str = "tokens";
pub const KEY_TEAM: &str = "team";
pub const KEY_BUDGET_DAY: &str = "budget_day";
pub const KEY_BUDGET_MONTH: &str = "budget_month";

/// A request's charge to the global dollar budgets: its team, the calendar periods (descriptor
/// key and value) and the hits, in budget units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetCharge {
    pub team: Option<String>,
    /// `(budget_month, 2026-12)`, `(budget_day, 2026-12-03)`, with when each period ends.
    pub periods: Vec<(&'static str, String, Duration)>,
    pub units: u64,
}

#[derive(Clone, PartialEq, Message)]
pub struct RateLimitRequest {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(message, repeated, tag = "2")]
    pub descriptors: Vec<RateLimitDescriptor>,
    #[prost(uint32, tag = "3")]
    pub hits_addend: u32,
}

#[derive(Clone, PartialEq, Message)]
pub struct RateLimitDescriptor {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<Entry>,
    /// `google.protobuf.UInt64Value`: overrides the request's `hits_addend` for this descriptor.
    #[prost(message, optional, tag = "3")]
    pub hits_addend: Option<u64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Entry {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct RateLimitResponse {
    #[prost(enumeration = "Code", tag = "1")]
    pub overall_code: i32,
    #[prost(message, repeated, tag = "2")]
    pub statuses: Vec<DescriptorStatus>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Code {
    Unknown = 0,
    Ok = 1,
    OverLimit = 2,
}

#[derive(Clone, PartialEq, Message)]
pub struct DescriptorStatus {
    #[prost(enumeration = "Code", tag = "1")]
    pub code: i32,
    #[prost(message, optional, tag = "2")]
    pub current_limit: Option<RateLimit>,
    #[prost(uint32, tag = "3")]
    pub limit_remaining: u32,
    #[prost(message, optional, tag = "4")]
    pub duration_until_reset: Option<prost_types::Duration>,
}

#[derive(Clone, PartialEq, Message)]
pub struct RateLimit {
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    #[prost(enumeration = "Unit", tag = "2")]
    pub unit: i32,
    #[prost(string, tag = "3")]
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Unit {
    Unknown = 0,
    Second = 1,
    Minute = 2,
    Hour = 3,
    Day = 4,
    Month = 5,
    Year = 6,
    Week = 7,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Unknown => "window",
            Unit::Second => "second",
            Unit::Minute => "minute",
            Unit::Hour => "hour",
            Unit::Day => "day",
            Unit::Month => "month",
            Unit::Year => "year",
            Unit::Week => "week",
        }
    }
}

/// What one descriptor stands for, to read its status back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Described {
    pub tokens: bool,
    pub model: Option<String>,
    /// A dollar budget: whose (`team eng`, or empty for the consumer's own), the window's
    /// description, and how long until its period ends.
    pub budget: Option<(String, &'static str, Duration)>,
}

/// The request for one gateway request: `requests` and `tokens` hits for the consumer and, when
/// known, the consumer × model pair. Descriptors with nothing to add are left out.
pub fn request(
    domain: &str,
    consumer: &str,
    model: Option<&str>,
    requests: u64,
    tokens: u64,
    budget: Option<&BudgetCharge>,
) -> (Vec<u8>, Vec<Described>) {
    let mut descriptors = Vec::with_capacity(8);
    let mut described = Vec::with_capacity(8);
    for m in std::iter::once(None).chain(model.map(Some)) {
        for (unit, hits) in [(UNIT_REQUESTS, requests), (UNIT_TOKENS, tokens)] {
            if hits == 0 {
                continue;
            }
            let mut entries = vec![Entry {
                key: KEY_CONSUMER.into(),
                value: consumer.into(),
            }];
            if let Some(m) = m {
                entries.push(Entry {
                    key: KEY_MODEL.into(),
                    value: m.into(),
                });
            }
            entries.push(Entry {
                key: KEY_UNIT.into(),
                value: unit.into(),
            });
            descriptors.push(RateLimitDescriptor {
                entries,
                hits_addend: Some(hits),
            });
            described.push(Described {
                tokens: unit == UNIT_TOKENS,
                model: m.map(str::to_string),
                budget: None,
            });
        }
    }
    if let Some(b) = budget.filter(|b| b.units > 0) {
        let team = b.team.as_deref().map(|t| (KEY_TEAM, t));
        for (key, who) in std::iter::once((KEY_CONSUMER, consumer)).chain(team) {
            for (period_key, period, reset) in &b.periods {
                descriptors.push(RateLimitDescriptor {
                    entries: vec![
                        Entry {
                            key: key.into(),
                            value: who.into(),
                        },
                        Entry {
                            key: (*period_key).into(),
                            value: period.clone(),
                        },
                    ],
                    hits_addend: Some(b.units),
                });
                let whose = if key == KEY_TEAM {
                    format!("team {who}")
                } else {
                    String::new()
                };
                let window = if *period_key == KEY_BUDGET_DAY {
                    "USD per day"
                } else {
                    "USD per month"
                };
                described.push(Described {
                    tokens: false,
                    model: None,
                    budget: Some((whose, window, *reset)),
                });
            }
        }
    }
    let req = RateLimitRequest {
        domain: domain.into(),
        descriptors,
        hits_addend: 1,
    };
    (req.encode_to_vec(), described)
}

/// The service's answer, read for the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub over_limit: Option<OverLimit>,
    pub snapshot: Snapshot,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverLimit {
    /// `requests` or `tokens`, OpenAI's error type for it.
    pub kind: &'static str,
    /// "tokens per minute for model gpt-4o" and the like.
    pub what: String,
    pub limit: u64,
    pub retry_after: Option<Duration>,
    /// A global dollar budget refused (its limit is in budget units).
    pub budget: bool,
}

impl OverLimit {
    /// The 429 for `consumer`, naming the global limit; a budget's limit is `limit` units of
    /// `unit_pico` picodollars.
    pub fn error(&self, consumer: &str, unit_pico: u64) -> crate::error::HttpError {
        let again = self
            .retry_after
            .map(|d| format!(" Please try again in {}.", crate::limits::format_reset(d)))
            .unwrap_or_default();
        if self.budget {
            let limit = crate::limits::budget::usd(self.limit.saturating_mul(unit_pico));
            let when = self
                .retry_after
                .map(|d| format!(" The budget resets in {}.", crate::limits::format_reset(d)))
                .unwrap_or_default();
            return crate::error::HttpError::over_budget(format!(
                "Budget exceeded for {consumer} on {} (global): Limit {limit}.{when}",
                self.what
            ));
        }
        crate::error::HttpError::rate_limited(
            self.kind,
            format!(
                "Rate limit reached for {consumer} on {} (global): Limit {}.{again}",
                self.what, self.limit
            ),
        )
    }
}

fn duration(d: &Option<prost_types::Duration>) -> Option<Duration> {
    let d = d.as_ref()?;
    let secs = u64::try_from(d.seconds).ok()?;
    let nanos = u64::try_from(d.nanos).ok()?;
    // `Duration::new` panics when the nanoseconds carry past the largest seconds count.
    Duration::from_secs(secs).checked_add(Duration::from_nanos(nanos))
}

/// Read a `RateLimitResponse`. `None` when the bytes are not one.
pub fn verdict(bytes: &[u8], described: &[Described]) -> Option<Verdict> {
    let resp = RateLimitResponse::decode(bytes).ok()?;
    let mut snapshot = Snapshot::default();
    let mut over_limit = None;
    for (i, st) in resp.statuses.iter().enumerate() {
        let Some(d) = described.get(i) else {
            break;
        };
        let Some(limit) = &st.current_limit else {
            continue;
        };
        let reset = duration(&st.duration_until_reset);
        if let Some((whose, window, until)) = &d.budget {
            if st.code == Code::OverLimit as i32 && over_limit.is_none() {
                let what = if whose.is_empty() {
                    window.to_string()
                } else {
                    format!("{window} of {whose}")
                };
                over_limit = Some(OverLimit {
                    kind: "insufficient_quota",
                    what,
                    limit: u64::from(limit.requests_per_unit),
                    // The period's end, not the service's window.
                    retry_after: Some(*until),
                    budget: true,
                });
            }
            continue;
        }
        let r = Remaining {
            limit: u64::from(limit.requests_per_unit),
            remaining: u64::from(st.limit_remaining),
            reset: reset.unwrap_or_default(),
        };
        snapshot.merge(&Snapshot::of(d.tokens, r));
        if st.code == Code::OverLimit as i32 && over_limit.is_none() {
            let unit = Unit::try_from(limit.unit).unwrap_or(Unit::Unknown);
            let kind = if d.tokens { "tokens" } else { "requests" };
            let what = match &d.model {
                Some(m) => format!("{kind} per {} for model {m}", unit.name()),
                None => format!("{kind} per {}", unit.name()),
            };
            over_limit = Some(OverLimit {
                kind,
                what,
                limit: u64::from(limit.requests_per_unit),
                retry_after: reset,
                budget: false,
            });
        }
    }
    if over_limit.is_none() && resp.overall_code == Code::OverLimit as i32 {
        over_limit = Some(OverLimit {
            kind: "requests",
            what: "the global limit".into(),
            limit: 0,
            retry_after: None,
            budget: false,
        });
    }
    Some(Verdict {
        over_limit,
        snapshot,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::ratelimit::v3 as pb;

    #[test]
    fn request_decodes_as_envoy_types() {
        let (bytes, described) = request("llm", "team-a", Some("gpt-4o"), 1, 420, None);
        let r = pb::RateLimitRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(r.domain, "llm");
        assert_eq!(r.descriptors.len(), 4);
        assert_eq!(described.len(), 4);
        let d = &r.descriptors[3];
        let entries: Vec<(&str, &str)> = d
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(
            entries,
            [
                ("consumer", "team-a"),
                ("model", "gpt-4o"),
                ("unit", "tokens")
            ]
        );
        assert_eq!(d.hits_addend.as_ref().map(|v| v.value), Some(420));
        assert_eq!(
            r.descriptors[0].hits_addend.as_ref().map(|v| v.value),
            Some(1)
        );
        // Nothing to add: left out.
        let (bytes, described) = request("llm", "a", None, 0, 7, None);
        let r = pb::RateLimitRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(r.descriptors.len(), 1);
        assert!(described[0].tokens);
    }

    #[test]
    fn response_from_envoy_types() {
        use pb::rate_limit_response::{rate_limit::Unit as PbUnit, Code as PbCode, *};
        let status =
            |code: PbCode, rpu: u32, unit: PbUnit, left: u32, reset: i64| DescriptorStatus {
                code: code as i32,
                current_limit: Some(RateLimit {
                    requests_per_unit: rpu,
                    unit: unit as i32,
                    ..Default::default()
                }),
                limit_remaining: left,
                duration_until_reset: Some(envoy_types::pb::google::protobuf::Duration {
                    seconds: reset,
                    nanos: 0,
                }),
                ..Default::default()
            };
        let resp = pb::RateLimitResponse {
            overall_code: PbCode::OverLimit as i32,
            statuses: vec![
                status(PbCode::Ok, 10, PbUnit::Minute, 7, 30),
                status(PbCode::OverLimit, 1000, PbUnit::Day, 0, 3600),
            ],
            ..Default::default()
        };
        let described = [
            Described {
                tokens: false,
                model: None,
                budget: None,
            },
            Described {
                tokens: true,
                model: Some("gpt-4o".into()),
                budget: None,
            },
        ];
        let v = verdict(&resp.encode_to_vec(), &described).unwrap();
        let o = v.over_limit.unwrap();
        assert_eq!(o.what, "tokens per day for model gpt-4o");
        let e = o.error("team-a", 1);
        assert_eq!((e.status, e.kind), (429, "tokens"));
        assert_eq!(
            e.message,
            "Rate limit reached for team-a on tokens per day for model gpt-4o (global): \
             Limit 1000. Please try again in 1h0m0s."
        );
        assert_eq!(o.limit, 1000);
        assert_eq!(o.retry_after, Some(Duration::from_secs(3600)));
        assert_eq!(v.snapshot.requests.unwrap().remaining, 7);
        assert_eq!(v.snapshot.tokens.unwrap().limit, 1000);
        assert!(verdict(b"\xff\xff", &described).is_none());
    }

    #[test]
    fn budget_descriptors_name_the_period_and_refusals_name_the_budget() {
        use pb::rate_limit_response::{rate_limit::Unit as PbUnit, Code as PbCode, *};
        let charge = BudgetCharge {
            team: Some("eng".into()),
            periods: vec![
                (
                    KEY_BUDGET_MONTH,
                    "2027-06".into(),
                    Duration::from_secs(86_400),
                ),
                (
                    KEY_BUDGET_DAY,
                    "2027-06-30".into(),
                    Duration::from_secs(3600),
                ),
            ],
            units: 8000,
        };
        let (bytes, described) = request("llm", "alice", None, 1, 0, Some(&charge));
        let r = pb::RateLimitRequest::decode(bytes.as_slice()).unwrap();
        let budget: Vec<(Vec<(String, String)>, u64)> = r
            .descriptors
            .iter()
            .skip(1)
            .map(|d| {
                let e = d.entries.iter().map(|e| (e.key.clone(), e.value.clone()));
                (e.collect(), d.hits_addend.as_ref().map_or(0, |v| v.value))
            })
            .collect();
        let pair = |a: &str, b: &str, c: &str, d: &str| {
            (
                vec![
                    (a.to_string(), b.to_string()),
                    (c.to_string(), d.to_string()),
                ],
                8000,
            )
        };
        assert_eq!(
            budget,
            [
                pair("consumer", "alice", "budget_month", "2027-06"),
                pair("consumer", "alice", "budget_day", "2027-06-30"),
                pair("team", "eng", "budget_month", "2027-06"),
                pair("team", "eng", "budget_day", "2027-06-30"),
            ]
        );
        assert_eq!(described.len(), 5);
        // Nothing to charge: no budget descriptors.
        let none = BudgetCharge { units: 0, ..charge };
        assert_eq!(request("llm", "alice", None, 1, 0, Some(&none)).1.len(), 1);

        let ok = DescriptorStatus {
            code: PbCode::Ok as i32,
            ..Default::default()
        };
        let over = DescriptorStatus {
            code: PbCode::OverLimit as i32,
            current_limit: Some(RateLimit {
                requests_per_unit: 500_000_000,
                unit: PbUnit::Year as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        let resp = pb::RateLimitResponse {
            overall_code: PbCode::OverLimit as i32,
            statuses: vec![ok.clone(), ok.clone(), ok, over],
            ..Default::default()
        };
        let v = verdict(&resp.encode_to_vec(), &described).unwrap();
        let o = v.over_limit.unwrap();
        assert!(o.budget);
        assert_eq!(o.retry_after, Some(Duration::from_secs(86_400)));
        let e = o.error("alice", 1_000_000);
        assert_eq!(
            (e.status, e.kind, e.code),
            (429, "insufficient_quota", "insufficient_quota")
        );
        assert_eq!(
            e.message,
            "Budget exceeded for alice on USD per month of team eng (global): Limit $500.00. \
             The budget resets in 24h0m0s."
        );
    }

    #[test]
    fn reset_durations_at_the_largest_values_do_not_panic() {
        use prost_types::Duration as PbDuration;
        let d = |seconds: i64, nanos: i32| duration(&Some(PbDuration { seconds, nanos }));
        // `Duration::new(u64::MAX, 1e9)` would panic on the carry.
        assert_eq!(
            d(i64::MAX, 999_999_999),
            Some(Duration::new(i64::MAX as u64, 999_999_999))
        );
        assert_eq!(
            d(i64::MAX, i32::MAX),
            Some(Duration::new(i64::MAX as u64, 0) + Duration::from_nanos(i32::MAX as u64))
        );
        assert_eq!(d(1, 1_500_000_000), Some(Duration::from_millis(2500)));
        assert_eq!(d(-1, 0), None);
        assert_eq!(d(0, -1), None);
    }
}
