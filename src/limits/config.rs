//! `limits`: each consumer's windows and per-model rules, the completion reservation, the size
//! of the shared table, and the global rate limit service.

use std::collections::BTreeMap;

use hashbrown::HashMap;
use serde::Deserialize;
use wildmatch::WildMatch;

use super::budget::{Budget, BudgetWindow, Calendar, Rolling, MAX_ALERTS};
use super::{Scope, Spec};
use crate::config::check::{at_most, bounded, err, label_name, non_empty, pattern, ConfigError};
use crate::config::check::{required, MAX_TIMEOUT_MS};

/// Largest dollar budget, in USD (picodollars must fit in 64 bits with room to add).
pub const MAX_BUDGET_USD: f64 = 1_000_000.0;
/// Longest rolling budget window, in hours (a year).
pub const MAX_ROLLING_HOURS: f64 = 8_760.0;
/// Alert thresholds when `limits.budgets.alerts` is not set, in percent of a budget.
pub const DEFAULT_ALERTS: [u32; 3] = [50, 80, 100];
/// Prefix of a team's scope name (`team:eng`): never a consumer's own scope.
pub const TEAM_SCOPE: &str = "team:";
/// Prefix of a consumer's scope name when the name itself starts with `team:` or this.
const CONSUMER_ESCAPE: &str = "consumer:";

/// Default completion reservation when a request sets no `max_tokens`.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;
/// Largest `limits.default_max_tokens`.
pub const MAX_DEFAULT_MAX_TOKENS: u64 = 1_000_000;
/// Default number of scopes (consumer, or consumer × model rule) tracked at once.
pub const DEFAULT_MAX_TRACKED: u32 = 10_000;
/// Largest `limits.max_tracked`: its slots are created in shared data at configuration, on
/// the main thread, before Envoy takes the configuration.
pub const MAX_TRACKED: u32 = 100_000;
/// Default deadline of a call to the global rate limit service.
pub const DEFAULT_GLOBAL_TIMEOUT_MS: u64 = 100;

/// `limits` in the plugin configuration.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    #[serde(default)]
    default: RawSpec,
    #[serde(default)]
    consumers: BTreeMap<String, RawSpec>,
    /// Limits and budgets of each team, shared by its members (on top of their own).
    #[serde(default)]
    teams: BTreeMap<String, RawSpec>,
    #[serde(default)]
    budgets: RawBudgets,
    #[serde(default)]
    default_max_tokens: Option<u64>,
    #[serde(default)]
    max_tracked: Option<u32>,
    #[serde(default)]
    global: Option<RawGlobal>,
}

/// A limit field: absent inherits the default, `null` is unlimited, a number is the limit.
type Inherit<T> = Option<Option<T>>;

fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Inherit<T>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    #[serde(default, deserialize_with = "present")]
    rpm: Inherit<u64>,
    #[serde(default, deserialize_with = "present")]
    tpm: Inherit<u64>,
    #[serde(default, deserialize_with = "present")]
    tpd: Inherit<u64>,
    #[serde(default, deserialize_with = "present")]
    concurrent: Inherit<u32>,
    #[serde(default, deserialize_with = "present")]
    budget: Inherit<RawBudget>,
    #[serde(default)]
    models: Option<Vec<RawModelSpec>>,
}

/// A scope's dollar budgets, in USD.
#[derive(Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    #[serde(default)]
    day: Option<f64>,
    #[serde(default)]
    month: Option<f64>,
    #[serde(default)]
    rolling: Option<RawRolling>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct RawRolling {
    usd: f64,
    hours: f64,
}

/// `limits.budgets`: how every budget's windows are cut, alerted and priced.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBudgets {
    /// The calendar's fixed offset from UTC, `+05:30` or `-08:00` (default UTC).
    #[serde(default)]
    utc_offset: Option<String>,
    /// Percent of a budget at which an alert fires, once per window (default 50, 80, 100).
    #[serde(default)]
    alerts: Option<Vec<u32>>,
    #[serde(default)]
    unpriced: Option<Unpriced>,
    /// Seconds added to the clock the calendar windows read (tests of a boundary only).
    #[serde(default)]
    clock_skew_s: Option<i64>,
}

/// What a request under a budget does when its model has no price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Unpriced {
    /// Refused (403 `model_not_priced`): a budget cannot admit what it cannot price.
    #[default]
    Refuse,
    /// Let through uncharged, and counted (`llm_gateway_budget_unpriced_total`).
    Allow,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModelSpec {
    model: String,
    #[serde(default)]
    rpm: Option<u64>,
    #[serde(default)]
    tpm: Option<u64>,
    #[serde(default)]
    tpd: Option<u64>,
    #[serde(default)]
    concurrent: Option<u32>,
    #[serde(default)]
    budget: Option<RawBudget>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGlobal {
    cluster: String,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    failure_mode: Option<FailureMode>,
    /// Calendar windows charged to the service in dollars: `day`, `month`.
    #[serde(default)]
    budgets: Vec<String>,
    /// Dollars one hit stands for (default 0.000001: micro-dollars). The service's limits are
    /// 32-bit, so micro-dollars reach $4294.96; a larger budget needs a larger unit.
    #[serde(default)]
    budget_unit_usd: Option<f64>,
}

/// What a request does when the global rate limit service cannot answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Let the request through (local limits still apply).
    Open,
    /// Refuse it with a 503.
    Closed,
}

/// The global rate limit service (Envoy's `RateLimitService` gRPC protocol).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    /// The Envoy cluster of the service (HTTP/2).
    pub cluster: String,
    pub domain: String,
    pub timeout_ms: u64,
    pub failure_mode: FailureMode,
    /// The calendar windows whose dollar budgets the service keeps.
    pub budgets: Vec<BudgetWindow>,
    /// Picodollars per budget hit.
    pub unit_pico: u64,
    /// The calendar the periods are cut on (`limits.budgets`).
    pub calendar: Calendar,
}

/// Limits of one consumer: its own windows and its per-model rules (first match applies).
#[derive(Debug, Clone, Default)]
pub struct ConsumerLimits {
    pub spec: Spec,
    pub models: Vec<ModelRule>,
}

#[derive(Debug, Clone)]
pub struct ModelRule {
    pub pattern_text: String,
    pub pattern: WildMatch,
    pub spec: Spec,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub default: ConsumerLimits,
    pub consumers: HashMap<String, ConsumerLimits>,
    pub teams: HashMap<String, ConsumerLimits>,
    /// A model without a price, under a budget.
    pub unpriced: Unpriced,
    /// Whether any scope has a dollar budget.
    pub budgets: bool,
    /// Tokens reserved for the completion when a request sets no `max_tokens`.
    pub default_max_tokens: u64,
    /// Slots in the shared table: scopes tracked at once.
    pub max_tracked: u32,
    pub global: Option<Global>,
}

impl Limits {
    /// Validate `limits`. `known` says whether a consumer may be named in `limits.consumers`
    /// (it is listed, or anonymous and allowed, or consumers are named by a header), and
    /// `team_known` whether a team may be named in `limits.teams` (a consumer has it).
    pub fn parse(
        raw: RawLimits,
        known: &dyn Fn(&str) -> bool,
        team_known: &dyn Fn(&str) -> bool,
    ) -> Result<Limits, ConfigError> {
        for name in raw.consumers.keys() {
            // Each becomes a consumer label.
            label_name(&format!("limits.consumers.{name}"), name)?;
        }
        let shape = raw.budgets.parse()?;
        let default = standalone("limits.default", raw.default, &shape)?;
        let mut teams = HashMap::new();
        for (name, t) in raw.teams {
            let field = format!("limits.teams.{name}");
            if !team_known(&name) {
                return Err(err(
                    field,
                    format!("unknown team \"{name}\" (no consumer in consumers has it)"),
                ));
            }
            teams.insert(name, standalone(&field, t, &shape)?);
        }
        let mut consumers = HashMap::new();
        for (name, o) in raw.consumers {
            let field = format!("limits.consumers.{name}");
            if !known(&name) {
                return Err(err(
                    field,
                    format!(
                        "unknown consumer \"{name}\" (not in consumers, and no consumer_header)"
                    ),
                ));
            }
            let base = default.spec;
            let spec = Spec {
                rpm: o.rpm.unwrap_or(base.rpm),
                tpm: o.tpm.unwrap_or(base.tpm),
                tpd: o.tpd.unwrap_or(base.tpd),
                concurrent: o.concurrent.unwrap_or(base.concurrent),
                budget: match o.budget {
                    Some(b) => budget(&format!("{field}.budget"), b, &shape)?,
                    None => base.budget,
                },
            };
            let models = match o.models {
                Some(m) => model_rules(&format!("{field}.models"), m, &shape)?,
                None => default.models.clone(),
            };
            consumers.insert(name, ConsumerLimits { spec, models });
        }
        let global = raw
            .global
            .map(|g| Global::parse(g, shape.calendar))
            .transpose()?;
        let max_tracked = bounded(
            "limits.max_tracked",
            raw.max_tracked,
            DEFAULT_MAX_TRACKED,
            MAX_TRACKED,
        )?;
        let budgets = std::iter::once(&default)
            .chain(consumers.values())
            .chain(teams.values())
            .any(|c| {
                !c.spec.budget.is_unlimited()
                    || c.models.iter().any(|m| !m.spec.budget.is_unlimited())
            });
        Ok(Limits {
            default,
            consumers,
            teams,
            unpriced: shape.unpriced,
            budgets,
            default_max_tokens: at_most(
                "limits.default_max_tokens",
                raw.default_max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
                MAX_DEFAULT_MAX_TOKENS,
            )?,
            max_tracked,
            global,
        })
    }

    /// The limited scopes of a request by `consumer` of `team` for `model` (`None`: not
    /// known yet): the consumer's own, its team's, and the first per-model rule of each that
    /// matches.
    pub fn scopes(&self, consumer: &str, team: Option<&str>, model: Option<&str>) -> Vec<Scope> {
        let c = self.consumers.get(consumer).unwrap_or(&self.default);
        let mut out = Vec::with_capacity(2);
        // A consumer (named by a header) that looks like a team scope, or like this escape,
        // is escaped, so no consumer ever shares a team's counters.
        let own = if consumer.starts_with(TEAM_SCOPE) || consumer.starts_with(CONSUMER_ESCAPE) {
            format!("{CONSUMER_ESCAPE}{consumer}")
        } else {
            consumer.to_string()
        };
        let team = team.and_then(|t| Some((format!("{TEAM_SCOPE}{t}"), self.teams.get(t)?)));
        for (name, limits) in std::iter::once((own, c)).chain(team) {
            if !limits.spec.is_unlimited() {
                out.push(Scope {
                    name: name.clone(),
                    spec: limits.spec,
                });
            }
            let rule = model.and_then(|m| limits.models.iter().find(|r| r.pattern.matches(m)));
            if let Some(rule) = rule {
                out.push(Scope {
                    name: format!("{name} / {}", rule.pattern_text),
                    spec: rule.spec,
                });
            }
        }
        out
    }

    /// Tokens a request reserves: its prompt and its completion cap (`max_output`, already
    /// covering all its `choices`), or `default_max_tokens` for each of its choices when it sets
    /// none.
    pub fn reservation(&self, prompt: u64, max_output: Option<u64>, choices: u64) -> u64 {
        let output =
            max_output.unwrap_or_else(|| self.default_max_tokens.saturating_mul(choices.max(1)));
        prompt.saturating_add(output)
    }

    /// Whether any consumer or team has a per-model rule.
    pub fn has_model_rules(&self) -> bool {
        !self.default.models.is_empty()
            || self.consumers.values().any(|c| !c.models.is_empty())
            || self.teams.values().any(|c| !c.models.is_empty())
    }
}

impl Global {
    fn parse(g: RawGlobal, calendar: Calendar) -> Result<Global, ConfigError> {
        required("limits.global.cluster", &g.cluster)?;
        let mut budgets = Vec::new();
        for (i, w) in g.budgets.iter().enumerate() {
            let w = match w.as_str() {
                "day" => BudgetWindow::Day,
                "month" => BudgetWindow::Month,
                _ => {
                    return Err(err(
                        format!("limits.global.budgets[{i}]"),
                        "must be day or month (the service keeps calendar windows)",
                    ))
                }
            };
            if !budgets.contains(&w) {
                budgets.push(w);
            }
        }
        let unit = g.budget_unit_usd.unwrap_or(0.000_001);
        if !unit.is_finite() || !(0.000_001..=1.0).contains(&unit) {
            return Err(err(
                "limits.global.budget_unit_usd",
                "must be from 0.000001 (a micro-dollar) to 1",
            ));
        }
        let timeout_ms = bounded(
            "limits.global.timeout_ms",
            g.timeout_ms,
            DEFAULT_GLOBAL_TIMEOUT_MS,
            MAX_TIMEOUT_MS,
        )?;
        Ok(Global {
            cluster: g.cluster,
            domain: non_empty("limits.global.domain", g.domain)?
                .unwrap_or_else(|| "llm-gateway".to_string()),
            timeout_ms,
            failure_mode: g.failure_mode.unwrap_or(FailureMode::Open),
            budgets,
            unit_pico: (unit * 1e12).round() as u64,
            calendar,
        })
    }
}

/// The limits of a scope that inherits nothing (the default's, a team's), at `field`.
fn standalone(field: &str, raw: RawSpec, shape: &Shape) -> Result<ConsumerLimits, ConfigError> {
    Ok(ConsumerLimits {
        spec: Spec {
            rpm: raw.rpm.flatten(),
            tpm: raw.tpm.flatten(),
            tpd: raw.tpd.flatten(),
            concurrent: raw.concurrent.flatten(),
            budget: budget(&format!("{field}.budget"), raw.budget.flatten(), shape)?,
        },
        models: model_rules(
            &format!("{field}.models"),
            raw.models.unwrap_or_default(),
            shape,
        )?,
    })
}

/// What every budget shares: its calendar, its alerts, and the unpriced rule.
struct Shape {
    calendar: Calendar,
    alerts: [u32; MAX_ALERTS],
    unpriced: Unpriced,
}

impl RawBudgets {
    fn parse(self) -> Result<Shape, ConfigError> {
        let offset_s = match self.utc_offset.as_deref() {
            None => 0,
            Some(o) => utc_offset(o).ok_or_else(|| {
                err(
                    "limits.budgets.utc_offset",
                    "must be a fixed offset such as +05:30, -08:00 or +00:00 (at most 14 hours)",
                )
            })?,
        };
        let skew_s = self.clock_skew_s.unwrap_or(0);
        if skew_s.unsigned_abs() > 100 * 366 * 86_400 {
            return Err(err(
                "limits.budgets.clock_skew_s",
                "must be within 100 years",
            ));
        }
        let percents = self.alerts.unwrap_or_else(|| DEFAULT_ALERTS.to_vec());
        if percents.len() > MAX_ALERTS {
            return Err(err(
                "limits.budgets.alerts",
                format!("at most {MAX_ALERTS} thresholds"),
            ));
        }
        let mut alerts = [0u32; MAX_ALERTS];
        for (i, (a, &p)) in alerts.iter_mut().zip(&percents).enumerate() {
            let ascending = i == 0 || percents.get(i - 1).is_some_and(|&q| q < p);
            if p == 0 || p > 100 || !ascending {
                return Err(err(
                    format!("limits.budgets.alerts[{i}]"),
                    "thresholds are percents from 1 to 100, in ascending order",
                ));
            }
            *a = p * 10_000;
        }
        Ok(Shape {
            calendar: Calendar { offset_s, skew_s },
            alerts,
            unpriced: self.unpriced.unwrap_or_default(),
        })
    }
}

/// `+05:30` → 19800 seconds; `Z`/`UTC` → 0.
fn utc_offset(o: &str) -> Option<i32> {
    let o = o.trim();
    if o.eq_ignore_ascii_case("z") || o.eq_ignore_ascii_case("utc") {
        return Some(0);
    }
    let sign = match o.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = o.get(1..)?.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 14 && m < 60 && h * 60 + m <= 14 * 60).then_some(sign * (h * 3600 + m * 60))
}

fn usd_to_pico(field: &str, usd: f64) -> Result<u64, ConfigError> {
    if !usd.is_finite() || !(0.0..=MAX_BUDGET_USD).contains(&usd) {
        return Err(err(
            field,
            format!("must be a dollar amount from 0 to {MAX_BUDGET_USD}"),
        ));
    }
    Ok((usd * 1e12).round() as u64)
}

fn budget(field: &str, raw: Option<RawBudget>, shape: &Shape) -> Result<Budget, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Budget::default());
    };
    let day = raw
        .day
        .map(|d| usd_to_pico(&format!("{field}.day"), d))
        .transpose()?;
    let month = raw
        .month
        .map(|d| usd_to_pico(&format!("{field}.month"), d))
        .transpose()?;
    let rolling = match raw.rolling {
        None => None,
        Some(r) => {
            let f = format!("{field}.rolling");
            if !r.hours.is_finite() || r.hours <= 0.0 || r.hours > MAX_ROLLING_HOURS {
                return Err(err(
                    format!("{f}.hours"),
                    format!("must be more than 0 and at most {MAX_ROLLING_HOURS}"),
                ));
            }
            Some(Rolling {
                limit: usd_to_pico(&format!("{f}.usd"), r.usd)?,
                period: std::time::Duration::from_secs_f64(r.hours * 3600.0),
            })
        }
    };
    let b = Budget {
        day,
        month,
        rolling,
        calendar: shape.calendar,
        alerts: shape.alerts,
    };
    if b.is_unlimited() {
        return Err(err(field, "sets no budget (day, month or rolling)"));
    }
    Ok(b)
}

fn model_rules(
    field: &str,
    raw: Vec<RawModelSpec>,
    shape: &Shape,
) -> Result<Vec<ModelRule>, ConfigError> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, m) in raw.into_iter().enumerate() {
        let f = format!("{field}[{i}]");
        let pattern = pattern(&format!("{f}.model"), Some(m.model.clone()))?
            .ok_or_else(|| err(format!("{f}.model"), "must not be empty"))?;
        let spec = Spec {
            rpm: m.rpm,
            tpm: m.tpm,
            tpd: m.tpd,
            concurrent: m.concurrent,
            budget: budget(&format!("{f}.budget"), m.budget, shape)?,
        };
        if spec.is_unlimited() {
            return Err(err(
                f,
                "sets no limit (rpm, tpm, tpd, concurrent or budget)",
            ));
        }
        out.push(ModelRule {
            pattern_text: m.model,
            pattern,
            spec,
        });
    }
    Ok(out)
}
