//! What a request cost, in dollars, from a price table: per model, USD per million tokens for
//! input, cached input, cache writes and output.
//!
//! Prices are held as picodollars per token (USD per million tokens × 10⁶), so a cost is an exact
//! integer: `0.075` $/M is 75 000 pico$ per token. Events and the access log print dollars; the
//! cost counter counts nanodollars.
//!
//! A model is priced by the first of these that the table has:
//! `provider/model`, `model`, the same two with a snapshot suffix removed (`-2024-08-06`,
//! `-20250929`, `-latest`), then the longest glob pattern (`llama-*`, `azure/gpt-*`) that
//! matches `provider/model` or `model`; the operator's entries first, then the shipped ones (so
//! a configured `claude-*` overrides every shipped Claude price). The served model (the response's) is tried before the
//! model sent upstream, then the model asked for.

use hashbrown::HashMap;
use serde::Deserialize;
use std::collections::BTreeMap;
use wildmatch::WildMatch;

use crate::config::check::{err, ConfigError};

/// Token figures as reported: the provider's usage where it sent one, else the filter's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub prompt: u64,
    pub completion: u64,
    pub total: u64,
    pub cached: u64,
    /// Prompt tokens written to the provider's cache (priced apart).
    pub cache_write: u64,
    pub reasoning: u64,
    pub estimated: bool,
}

/// Prices of one model, in picodollars per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub input: u64,
    pub cached_input: u64,
    pub cache_write: u64,
    pub output: u64,
}

impl Price {
    /// What `t` costs, in picodollars. Prompt tokens are input tokens: the cached reads and the
    /// cache writes among them are priced at their own rates, the rest at `input`.
    pub fn cost(&self, t: &Tokens) -> u64 {
        let cached = t.cached.min(t.prompt);
        let written = t.cache_write.min(t.prompt - cached);
        let plain = t.prompt - cached - written;
        [
            (plain, self.input),
            (cached, self.cached_input),
            (written, self.cache_write),
            (t.completion, self.output),
        ]
        .iter()
        .fold(0u64, |acc, (n, p)| acc.saturating_add(n.saturating_mul(*p)))
    }
}

impl Price {
    /// The most `prompt` input tokens and `output` output tokens can cost, whatever part of
    /// the prompt turns out cached or written to the cache (a budget's reservation).
    pub fn max_cost(&self, prompt: u64, output: u64) -> u64 {
        let input = self.input.max(self.cached_input).max(self.cache_write);
        prompt
            .saturating_mul(input)
            .saturating_add(output.saturating_mul(self.output))
    }
}

/// USD per million tokens, as written in config.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    pub input: f64,
    pub output: f64,
    /// Cached input reads; defaults to `input`.
    #[serde(default)]
    pub cached_input: Option<f64>,
    /// Cache writes (Anthropic's `cache_creation_input_tokens`); defaults to `input`.
    #[serde(default)]
    pub cache_write: Option<f64>,
}

/// The `pricing` config block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPricing {
    /// Start from the shipped table (`DEFAULT_PRICES`); entries in `models` override it.
    #[serde(default = "yes")]
    pub defaults: bool,
    #[serde(default)]
    pub models: BTreeMap<String, RawPrice>,
}

impl Default for RawPricing {
    fn default() -> Self {
        RawPricing {
            defaults: true,
            models: BTreeMap::new(),
        }
    }
}

fn yes() -> bool {
    true
}

/// List prices in USD per million tokens (standard tier, as published by OpenAI and Anthropic
/// for these models in 2025): model, input, cached input, cache write, output. Anthropic's cache
/// writes are the 5-minute rate (1.25 × input). Override any of them in `pricing.models`.
pub const DEFAULT_PRICES: &[(&str, f64, f64, f64, f64)] = &[
    // OpenAI
    ("gpt-5.1", 1.25, 0.125, 1.25, 10.0),
    ("gpt-5", 1.25, 0.125, 1.25, 10.0),
    ("gpt-5-chat", 1.25, 0.125, 1.25, 10.0),
    ("gpt-5-mini", 0.25, 0.025, 0.25, 2.0),
    ("gpt-5-nano", 0.05, 0.005, 0.05, 0.4),
    ("gpt-4.1", 2.0, 0.5, 2.0, 8.0),
    ("gpt-4.1-mini", 0.4, 0.1, 0.4, 1.6),
    ("gpt-4.1-nano", 0.1, 0.025, 0.1, 0.4),
    ("gpt-4o", 2.5, 1.25, 2.5, 10.0),
    ("gpt-4o-2024-05-13", 5.0, 5.0, 5.0, 15.0),
    ("gpt-4o-mini", 0.15, 0.075, 0.15, 0.6),
    ("o1", 15.0, 7.5, 15.0, 60.0),
    ("o1-mini", 1.1, 0.55, 1.1, 4.4),
    ("o3", 2.0, 0.5, 2.0, 8.0),
    ("o3-pro", 20.0, 20.0, 20.0, 80.0),
    ("o3-mini", 1.1, 0.55, 1.1, 4.4),
    ("o4-mini", 1.1, 0.275, 1.1, 4.4),
    ("gpt-4-turbo", 10.0, 10.0, 10.0, 30.0),
    ("gpt-4", 30.0, 30.0, 30.0, 60.0),
    ("gpt-3.5-turbo", 0.5, 0.5, 0.5, 1.5),
    ("text-embedding-3-small", 0.02, 0.02, 0.02, 0.0),
    ("text-embedding-3-large", 0.13, 0.13, 0.13, 0.0),
    ("text-embedding-ada-002", 0.1, 0.1, 0.1, 0.0),
    // Anthropic
    ("claude-opus-4-5", 5.0, 0.5, 6.25, 25.0),
    ("claude-opus-4-1", 15.0, 1.5, 18.75, 75.0),
    ("claude-opus-4", 15.0, 1.5, 18.75, 75.0),
    ("claude-sonnet-4-5", 3.0, 0.3, 3.75, 15.0),
    ("claude-sonnet-4", 3.0, 0.3, 3.75, 15.0),
    ("claude-3-7-sonnet", 3.0, 0.3, 3.75, 15.0),
    ("claude-3-5-sonnet", 3.0, 0.3, 3.75, 15.0),
    ("claude-haiku-4-5", 1.0, 0.1, 1.25, 5.0),
    ("claude-3-5-haiku", 0.8, 0.08, 1.0, 4.0),
    ("claude-3-haiku", 0.25, 0.03, 0.3, 1.25),
    ("claude-3-opus", 15.0, 1.5, 18.75, 75.0),
];

/// One set of prices: exact names and glob patterns (longest first).
#[derive(Debug, Default)]
struct Table {
    exact: HashMap<String, Price>,
    patterns: Vec<(WildMatch, Price)>,
}

impl Table {
    fn lookup(&self, provider: Option<&str>, model: &str) -> Option<Price> {
        let exact = |m: &str| {
            provider
                .and_then(|p| self.exact.get(&format!("{p}/{m}")))
                .or_else(|| self.exact.get(m))
                .copied()
        };
        exact(model)
            .or_else(|| without_snapshot(model).and_then(exact))
            .or_else(|| {
                let qualified = provider.map(|p| format!("{p}/{model}"));
                self.patterns
                    .iter()
                    .find(|(w, _)| {
                        w.matches(model) || qualified.as_deref().is_some_and(|q| w.matches(q))
                    })
                    .map(|(_, p)| *p)
            })
    }
}

/// The price table: the operator's entries, then the shipped ones.
#[derive(Debug, Default)]
pub struct Prices {
    own: Table,
    shipped: Table,
}

/// USD per million tokens → picodollars per token; `None` when not a sane price.
fn pico(v: f64) -> Option<u64> {
    (v.is_finite() && (0.0..=1_000_000.0).contains(&v)).then(|| (v * 1e6).round() as u64)
}

/// A model name without a snapshot suffix: `-2024-08-06`, `-20250929` or `-latest`.
fn without_snapshot(model: &str) -> Option<&str> {
    if let Some(base) = model.strip_suffix("-latest") {
        return Some(base);
    }
    let (base, tail) = model.rsplit_once('-')?;
    if tail.len() == 8 && tail.bytes().all(|b| b.is_ascii_digit()) {
        return Some(base);
    }
    // `-YYYY-MM-DD`: the last three dash-separated parts are 4, 2 and 2 digits.
    let mut parts = model.rsplitn(4, '-');
    let (d, m, y, base) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    (digits(y, 4) && digits(m, 2) && digits(d, 2)).then_some(base)
}

impl Prices {
    pub fn parse(raw: RawPricing) -> Result<Prices, ConfigError> {
        let mut p = Prices::default();
        if raw.defaults {
            for (model, input, cached, write, output) in DEFAULT_PRICES {
                let price = |v: f64| pico(v).unwrap_or(0);
                p.shipped.exact.insert(
                    model.to_string(),
                    Price {
                        input: price(*input),
                        cached_input: price(*cached),
                        cache_write: price(*write),
                        output: price(*output),
                    },
                );
            }
        }
        let mut patterns = Vec::new();
        for (model, r) in raw.models {
            let field = format!("pricing.models.{model}");
            if model.trim().is_empty() {
                return Err(err(field, "the model name must not be empty"));
            }
            let value = |name: &str, v: f64| {
                pico(v).ok_or_else(|| {
                    err(
                        format!("{field}.{name}"),
                        "must be a number of dollars per million tokens, from 0 to 1000000",
                    )
                })
            };
            let input = value("input", r.input)?;
            let price = Price {
                input,
                output: value("output", r.output)?,
                cached_input: match r.cached_input {
                    Some(v) => value("cached_input", v)?,
                    None => input,
                },
                cache_write: match r.cache_write {
                    Some(v) => value("cache_write", v)?,
                    None => input,
                },
            };
            if model.contains(['*', '?']) {
                patterns.push((model, price));
            } else {
                p.own.exact.insert(model, price);
            }
        }
        patterns.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        p.own.patterns = patterns
            .into_iter()
            .map(|(m, price)| (WildMatch::new(&m), price))
            .collect();
        Ok(p)
    }

    /// The price of `model` served by `provider`: any configured entry (exact, then without
    /// its snapshot suffix, then a pattern) before any shipped one.
    pub fn lookup(&self, provider: Option<&str>, model: &str) -> Option<Price> {
        self.own
            .lookup(provider, model)
            .or_else(|| self.shipped.lookup(provider, model))
    }

    /// The cost of a request in picodollars: priced by the first of `models` (served, sent,
    /// asked) the table knows; `None` when it knows none of them.
    pub fn cost<'a>(
        &self,
        provider: Option<&str>,
        models: impl IntoIterator<Item = &'a str>,
        tokens: &Tokens,
    ) -> Option<u64> {
        models
            .into_iter()
            .find_map(|m| self.lookup(provider, m))
            .map(|p| p.cost(tokens))
    }
}

/// Picodollars as dollars (shortest decimal that reads back as the same number).
pub fn dollars(pico: u64) -> f64 {
    pico as f64 / 1e12
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(models: serde_json::Value, defaults: bool) -> Prices {
        let mut raw: RawPricing = serde_json::from_value(serde_json::json!({ "models": models }))
            .expect("pricing parses");
        raw.defaults = defaults;
        Prices::parse(raw).expect("valid")
    }

    fn tokens(prompt: u64, cached: u64, cache_write: u64, completion: u64) -> Tokens {
        Tokens {
            prompt,
            completion,
            total: prompt.saturating_add(completion),
            cached,
            cache_write,
            ..Default::default()
        }
    }

    #[test]
    fn snapshots_and_providers_resolve() {
        let p = table(
            serde_json::json!({
                "azure/gpt-4o": {"input": 2.75, "output": 11},
                "llama-*": {"input": 0, "output": 0},
                "llama-3.1-405b*": {"input": 3, "output": 3},
            }),
            true,
        );
        let gpt4o = p.lookup(None, "gpt-4o").expect("shipped");
        assert_eq!(gpt4o.input, 2_500_000);
        assert_eq!(gpt4o.cached_input, 1_250_000);
        assert_eq!(p.lookup(Some("openai"), "gpt-4o-2024-08-06"), Some(gpt4o));
        // An older snapshot has its own entry, found before the suffix is removed.
        assert_eq!(
            p.lookup(None, "gpt-4o-2024-05-13").map(|p| p.input),
            Some(5_000_000)
        );
        assert_eq!(
            p.lookup(None, "gpt-4o-mini-2024-07-18").map(|p| p.input),
            Some(150_000)
        );
        assert_eq!(
            p.lookup(None, "claude-sonnet-4-5-20250929")
                .map(|p| p.cache_write),
            Some(3_750_000)
        );
        assert_eq!(
            p.lookup(None, "claude-3-5-haiku-latest").map(|p| p.output),
            Some(4_000_000)
        );
        // Provider-qualified entries win for that provider only.
        assert_eq!(
            p.lookup(Some("azure"), "gpt-4o").map(|p| p.input),
            Some(2_750_000)
        );
        // The longest pattern wins; an unknown model has no price.
        assert_eq!(
            p.lookup(None, "llama-3.1-405b-instruct").map(|p| p.input),
            Some(3_000_000)
        );
        assert_eq!(p.lookup(None, "llama-3.1-8b").map(|p| p.input), Some(0));
        assert_eq!(p.lookup(None, "mistral-large"), None);
        // A configured pattern overrides the shipped entries it covers.
        let over = table(
            serde_json::json!({"claude-*": {"input": 10, "output": 30}}),
            true,
        );
        assert_eq!(
            over.lookup(None, "claude-sonnet-4-5-20250929")
                .map(|p| p.input),
            Some(10_000_000)
        );
        assert_eq!(
            over.lookup(None, "gpt-4o").map(|p| p.input),
            Some(2_500_000)
        );
        assert_eq!(p.lookup(None, "gpt-4o-mini-tts"), None);
        // Without the shipped table only the configured entries exist.
        let own = table(
            serde_json::json!({"gpt-4o": {"input": 1, "output": 2}}),
            false,
        );
        assert_eq!(
            own.lookup(None, "gpt-4o").map(|p| p.cached_input),
            Some(1_000_000)
        );
        assert_eq!(own.lookup(None, "gpt-4.1"), None);
    }

    #[test]
    fn cost_is_exact() {
        let p = table(serde_json::json!({}), true);
        // gpt-4o: 1000 prompt of which 400 cached, 200 out:
        // 600 × 2.5 + 400 × 1.25 + 200 × 10 per million = 0.004 $.
        let t = tokens(1000, 400, 0, 200);
        let c = p.cost(None, ["gpt-4o-2024-08-06"], &t).expect("priced");
        assert_eq!(c, 4_000_000_000);
        assert_eq!(dollars(c), 0.004);
        // Claude: cache writes at 1.25 × input, reads at 0.1 ×.
        let t = tokens(100 + 2048 + 472, 2048, 100, 89);
        let c = p.cost(None, ["claude-sonnet-4-5"], &t).expect("priced");
        assert_eq!(
            c,
            472 * 3_000_000 + 2048 * 300_000 + 100 * 3_750_000 + 89 * 15_000_000
        );
        // A tiny request of a cheap model keeps its fractions of a cent.
        let c = p
            .cost(None, ["gpt-4.1-nano"], &tokens(8, 0, 0, 5))
            .expect("priced");
        assert_eq!(dollars(c), 0.0000028);
        // The first model the table knows prices it; none known, no cost.
        assert_eq!(
            p.cost(
                None,
                ["my-deployment", "gpt-4o"],
                &tokens(1_000_000, 0, 0, 0)
            ),
            Some(2_500_000_000_000)
        );
        assert_eq!(p.cost(None, ["x", "y"], &t), None);
        // Figures that disagree (more cached than prompt) never underflow.
        let odd = tokens(10, 50, 50, 0);
        assert_eq!(
            p.lookup(None, "gpt-4o").map(|x| x.cost(&odd)),
            Some(10 * 1_250_000)
        );
    }

    #[test]
    fn bad_prices_are_refused() {
        for (models, field) in [
            (
                serde_json::json!({"m": {"input": -1, "output": 1}}),
                "pricing.models.m.input",
            ),
            (
                serde_json::json!({"m": {"input": 1, "output": 1, "cached_input": 2e6}}),
                "pricing.models.m.cached_input",
            ),
            (
                serde_json::json!({" ": {"input": 1, "output": 1}}),
                "pricing.models. ",
            ),
        ] {
            let raw: RawPricing =
                serde_json::from_value(serde_json::json!({ "models": models })).expect("parses");
            let e = Prices::parse(raw).expect_err("refused");
            assert_eq!(e.field, field);
        }
        assert!(serde_json::from_value::<RawPricing>(
            serde_json::json!({"models": {"m": {"input": 1}}})
        )
        .is_err());
        for (model, input, cached, write, output) in DEFAULT_PRICES {
            for v in [input, cached, write, output] {
                assert!(pico(*v).is_some(), "{model}");
            }
            assert!(cached <= input && output >= &0.0, "{model}");
        }
    }

    #[test]
    fn the_largest_token_counts_saturate() {
        let p = table(serde_json::json!({}), true);
        let price = p.lookup(None, "gpt-4o").expect("shipped");
        let max = u64::MAX;
        for t in [
            tokens(max, 0, 0, 0),
            tokens(0, 0, 0, max),
            tokens(max, max, max, max),
            tokens(max, max - 1, 1, 1),
        ] {
            assert_eq!(price.cost(&t), max, "{t:?}");
        }
        // Cached and written beyond the prompt are capped at it, not subtracted past 0.
        let odd = Tokens {
            prompt: 10,
            cached: max,
            cache_write: max,
            ..Default::default()
        };
        assert_eq!(price.cost(&odd), 10 * price.cached_input);
    }
}
