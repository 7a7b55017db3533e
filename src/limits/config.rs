//! `limits`: each consumer's windows and per-model rules, the completion reservation, the size
//! of the shared table, and the global rate limit service.

use std::collections::BTreeMap;

use hashbrown::HashMap;
use serde::Deserialize;
use wildmatch::WildMatch;

use super::{Scope, Spec};
use crate::config::check::{at_most, bounded, err, label_name, non_empty, pattern, ConfigError};
use crate::config::check::{required, MAX_TIMEOUT_MS};

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
    #[serde(default)]
    models: Option<Vec<RawModelSpec>>,
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
    /// Tokens reserved for the completion when a request sets no `max_tokens`.
    pub default_max_tokens: u64,
    /// Slots in the shared table: scopes tracked at once.
    pub max_tracked: u32,
    pub global: Option<Global>,
}

impl Limits {
    /// Validate `limits`. `known` says whether a consumer may be named in `limits.consumers`
    /// (it is listed, or anonymous and allowed, or consumers are named by a header).
    pub fn parse(raw: RawLimits, known: &dyn Fn(&str) -> bool) -> Result<Limits, ConfigError> {
        for name in raw.consumers.keys() {
            // Each becomes a consumer label.
            label_name(&format!("limits.consumers.{name}"), name)?;
        }
        let d = raw.default;
        let default = ConsumerLimits {
            spec: Spec {
                rpm: d.rpm.flatten(),
                tpm: d.tpm.flatten(),
                tpd: d.tpd.flatten(),
                concurrent: d.concurrent.flatten(),
            },
            models: model_rules("limits.default.models", d.models.unwrap_or_default())?,
        };
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
            };
            let models = match o.models {
                Some(m) => model_rules(&format!("{field}.models"), m)?,
                None => default.models.clone(),
            };
            consumers.insert(name, ConsumerLimits { spec, models });
        }
        let global = raw.global.map(Global::parse).transpose()?;
        let max_tracked = bounded(
            "limits.max_tracked",
            raw.max_tracked,
            DEFAULT_MAX_TRACKED,
            MAX_TRACKED,
        )?;
        Ok(Limits {
            default,
            consumers,
            default_max_tokens: at_most(
                "limits.default_max_tokens",
                raw.default_max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
                MAX_DEFAULT_MAX_TOKENS,
            )?,
            max_tracked,
            global,
        })
    }

    /// The limited scopes of a request by `consumer` for `model` (`None`: not known yet).
    pub fn scopes(&self, consumer: &str, model: Option<&str>) -> Vec<Scope> {
        let c = self.consumers.get(consumer).unwrap_or(&self.default);
        let mut out = Vec::with_capacity(2);
        if !c.spec.is_unlimited() {
            out.push(Scope {
                name: consumer.to_string(),
                spec: c.spec,
            });
        }
        if let Some(rule) = model.and_then(|m| c.models.iter().find(|r| r.pattern.matches(m))) {
            out.push(Scope {
                name: format!("{consumer} / {}", rule.pattern_text),
                spec: rule.spec,
            });
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

    /// Whether any consumer has a per-model rule.
    pub fn has_model_rules(&self) -> bool {
        !self.default.models.is_empty() || self.consumers.values().any(|c| !c.models.is_empty())
    }
}

impl Global {
    fn parse(g: RawGlobal) -> Result<Global, ConfigError> {
        required("limits.global.cluster", &g.cluster)?;
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
        })
    }
}

fn model_rules(field: &str, raw: Vec<RawModelSpec>) -> Result<Vec<ModelRule>, ConfigError> {
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
        };
        if spec.is_unlimited() {
            return Err(err(f, "sets no limit (rpm, tpm, tpd or concurrent)"));
        }
        out.push(ModelRule {
            pattern_text: m.model,
            pattern,
            spec,
        });
    }
    Ok(out)
}
