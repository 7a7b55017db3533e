//! `routes` and `default`: what a request is matched on, the provider (or split, or failover
//! chain) it goes to, its response caching and the model names it lists.

use serde::Deserialize;
use wildmatch::WildMatch;

use super::check::{err, header_name, label_name, non_empty, pattern, required, ConfigError};
use super::providers::{self, Provider};
use crate::cache::{RawRouteCache, RouteCache};

/// Most providers one failover chain tries.
pub const MAX_CHAIN: usize = 8;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "match")]
    matcher: RawMatch,
    #[serde(default)]
    to: Option<RawDest>,
    #[serde(default)]
    split: Option<Vec<RawWeightedDest>>,
    #[serde(default)]
    fallback: Option<RawFallback>,
    #[serde(default)]
    cache: Option<RawRouteCache>,
    #[serde(default)]
    models: Vec<String>,
}

/// Providers to try in order after the route's own, through an Envoy composite cluster.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFallback {
    cluster: String,
    to: Vec<RawDest>,
    #[serde(default)]
    first_event_timeout_ms: Option<u64>,
    #[serde(default = "yes")]
    first_event_check: bool,
    /// `tail_clusters[i]`: the composite cluster of the chain's tail that starts at `to[i]`
    /// (its sub-clusters `to[i..]`'s provider clusters), taken when every provider before
    /// `to[i]` is cooling down; `null` or missing: that provider alone.
    #[serde(default)]
    tail_clusters: Vec<Option<String>>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    header: Option<RawHeaderMatch>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeaderMatch {
    name: String,
    #[serde(default)]
    value: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    #[serde(default)]
    to: Option<RawDest>,
    #[serde(default)]
    split: Option<Vec<RawWeightedDest>>,
    #[serde(default)]
    fallback: Option<RawFallback>,
    #[serde(default)]
    cache: Option<RawRouteCache>,
    #[serde(default)]
    models: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDest {
    provider: String,
    #[serde(default)]
    model: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeightedDest {
    provider: String,
    #[serde(default)]
    model: Option<String>,
    weight: u32,
}

/// One destination: a provider index and an optional model rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dest {
    pub provider: usize,
    pub model: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    One(Dest),
    /// Weighted split; weights are > 0 and `total` is their sum.
    Split {
        dests: Vec<(Dest, u32)>,
        total: u32,
    },
    /// A failover chain: the first destination, then the others in order, each attempt made
    /// by Envoy's retry policy through the composite `cluster` (attempt n goes to its n-th
    /// sub-cluster, which must be `dests[n-1]`'s provider cluster).
    Chain {
        dests: Vec<Dest>,
        cluster: String,
        /// For a stream: how long an attempt may take to its first event before the next
        /// provider is tried (Envoy's per-try timeout for the request); `None` keeps the
        /// route's `per_try_timeout`.
        first_event_timeout_ms: Option<u64>,
        /// Whether attempts but the last hold a 200 until its first event.
        first_event_check: bool,
        /// Per destination, the composite cluster of the chain from it on (`cluster` for the
        /// first; `None`: that destination alone, without fallback). A chain starts at its
        /// first provider that is not cooling down.
        tails: Vec<Option<String>>,
    },
}

#[derive(Debug)]
pub struct HeaderMatch {
    pub name: String,
    pub value: Option<WildMatch>,
}

#[derive(Debug, Default)]
pub struct Match {
    pub model: Option<WildMatch>,
    pub path: Option<WildMatch>,
    pub header: Option<HeaderMatch>,
}

#[derive(Debug)]
pub struct Route {
    pub name: String,
    /// The label of every other model the route accepts: `other:<name>`.
    pub other_label: String,
    pub matcher: Match,
    pub target: Target,
    /// Response caching on this route.
    pub cache: Option<RouteCache>,
    /// The model names clients ask this route for, as `GET /v1/models` lists them: the match's
    /// model when it is a plain name (no `*?[`), then the configured `models` examples (each
    /// matched by the model glob, no duplicates). These are also the only client strings that
    /// become a `gen_ai_request_model` label.
    pub models: Vec<String>,
}

/// The validated `default`: where a request no route matches goes.
pub(super) struct Default {
    pub target: Target,
    pub cache: Option<RouteCache>,
    /// The configured `models` examples, as `GET /v1/models` lists them.
    pub models: Vec<String>,
}

/// Whether any route, or the default, caches responses.
pub(super) fn any_caches(routes: &[RawRoute], default: Option<&RawTarget>) -> bool {
    routes.iter().any(|r| r.cache.is_some()) || default.is_some_and(|d| d.cache.is_some())
}

/// Validate `routes`; `semantic` says whether `cache.semantic` is configured.
pub(super) fn parse(
    raw: Vec<RawRoute>,
    providers: &[Provider],
    semantic: bool,
) -> Result<Vec<Route>, ConfigError> {
    raw.into_iter()
        .enumerate()
        .map(|(i, r)| route(i, r, providers, semantic))
        .collect()
}

fn route(
    i: usize,
    r: RawRoute,
    providers: &[Provider],
    semantic: bool,
) -> Result<Route, ConfigError> {
    let field = format!("routes[{i}]");
    let m = r.matcher;
    let header = match m.header {
        Some(h) => Some(HeaderMatch {
            name: header_name(&format!("{field}.match.header.name"), &h.name)?,
            value: h.value.map(|v| WildMatch::new(&v)),
        }),
        None => None,
    };
    let name = r.name.unwrap_or_else(|| format!("route-{i}"));
    label_name(&format!("{field}.name"), &name)?;
    let models = listed_models(&format!("{field}.models"), m.model.as_deref(), r.models)?;
    let matcher = Match {
        model: pattern(&format!("{field}.match.model"), m.model)?,
        path: pattern(&format!("{field}.match.path"), m.path)?,
        header,
    };
    let cache = route_cache(&format!("{field}.cache"), r.cache, semantic)?;
    Ok(Route {
        other_label: format!("other:{name}"),
        name,
        models,
        cache,
        matcher,
        target: target(&field, r.to, r.split, r.fallback, providers)?,
    })
}

/// Validate `default`; `semantic` says whether `cache.semantic` is configured.
pub(super) fn default(
    t: RawTarget,
    providers: &[Provider],
    semantic: bool,
) -> Result<Default, ConfigError> {
    let cache = route_cache("default.cache", t.cache, semantic)?;
    let models = listed_models("default.models", None, t.models)?;
    Ok(Default {
        target: target("default", t.to, t.split, t.fallback, providers)?,
        cache,
        models,
    })
}

fn route_cache(
    field: &str,
    c: Option<RawRouteCache>,
    semantic: bool,
) -> Result<Option<RouteCache>, ConfigError> {
    c.map(|c| RouteCache::parse(field, c, semantic)).transpose()
}

/// Where a route (`field`) sends its requests: `to` (and its `fallback`), or `split`.
fn target(
    field: &str,
    to: Option<RawDest>,
    split: Option<Vec<RawWeightedDest>>,
    fallback: Option<RawFallback>,
    providers: &[Provider],
) -> Result<Target, ConfigError> {
    match (to, split) {
        (Some(d), None) => {
            let first = dest(providers, &format!("{field}.to"), &d.provider, d.model)?;
            match fallback {
                None => Ok(Target::One(first)),
                Some(fb) => chain(&format!("{field}.fallback"), first, fb, providers),
            }
        }
        (_, Some(_)) if fallback.is_some() => Err(err(
            format!("{field}.fallback"),
            "goes with \"to\", not with \"split\"",
        )),
        (None, Some(s)) => weighted(&format!("{field}.split"), s, providers),
        (Some(_), Some(_)) => Err(err(field, "give either \"to\" or \"split\", not both")),
        (None, None) => Err(err(field, "needs \"to\" or \"split\"")),
    }
}

/// A destination (`field`): the provider `provider`, the model rewritten to `model`.
fn dest(
    providers: &[Provider],
    field: &str,
    provider: &str,
    model: Option<String>,
) -> Result<Dest, ConfigError> {
    Ok(Dest {
        provider: providers::index(providers, &format!("{field}.provider"), provider)?,
        model: non_empty(&format!("{field}.model"), model)?,
    })
}

/// `first`, then the providers of `fallback` (`f`).
fn chain(
    f: &str,
    first: Dest,
    fb: RawFallback,
    providers: &[Provider],
) -> Result<Target, ConfigError> {
    required(&format!("{f}.cluster"), &fb.cluster)?;
    if fb.to.is_empty() {
        return Err(err(format!("{f}.to"), "must not be empty"));
    }
    if fb.to.len() >= MAX_CHAIN {
        return Err(err(
            format!("{f}.to"),
            format!("at most {} fallbacks", MAX_CHAIN - 1),
        ));
    }
    let mut dests = vec![first];
    for (i, d) in fb.to.into_iter().enumerate() {
        dests.push(dest(
            providers,
            &format!("{f}.to[{i}]"),
            &d.provider,
            d.model,
        )?);
    }
    if fb.first_event_timeout_ms == Some(0) {
        return Err(err(
            format!("{f}.first_event_timeout_ms"),
            "must be at least 1 (leave it out to keep the route's per_try_timeout)",
        ));
    }
    if fb.tail_clusters.len() > dests.len().saturating_sub(2) {
        return Err(err(
            format!("{f}.tail_clusters"),
            "has one entry per fallback but the last (a tail of one provider is that provider's own cluster)",
        ));
    }
    let mut tails = vec![Some(fb.cluster.clone())];
    for (i, c) in fb.tail_clusters.into_iter().enumerate() {
        tails.push(non_empty(&format!("{f}.tail_clusters[{i}]"), c)?);
    }
    tails.resize(dests.len(), None);
    Ok(Target::Chain {
        dests,
        tails,
        cluster: fb.cluster,
        first_event_timeout_ms: fb.first_event_timeout_ms,
        first_event_check: fb.first_event_check,
    })
}

/// A weighted `split` (`field`).
fn weighted(
    field: &str,
    split: Vec<RawWeightedDest>,
    providers: &[Provider],
) -> Result<Target, ConfigError> {
    if split.is_empty() {
        return Err(err(field, "must not be empty"));
    }
    let mut dests = Vec::with_capacity(split.len());
    let mut total: u32 = 0;
    for (i, d) in split.into_iter().enumerate() {
        let f = format!("{field}[{i}]");
        if d.weight == 0 {
            return Err(err(format!("{f}.weight"), "must be greater than 0"));
        }
        total = total
            .checked_add(d.weight)
            .ok_or_else(|| err(format!("{f}.weight"), "weights sum overflows"))?;
        dests.push((dest(providers, &f, &d.provider, d.model)?, d.weight));
    }
    Ok(Target::Split { dests, total })
}

/// Whether a model pattern is a glob rather than one name.
pub fn is_glob(model: &str) -> bool {
    model.contains(['*', '?', '['])
}

/// A route's client-facing model names (see `Route::models`): the match's plain model name,
/// then the `configured` examples, each matched by the match's model when there is one. Each
/// is a model label, so it must be a label name.
fn listed_models(
    field: &str,
    matched: Option<&str>,
    configured: Vec<String>,
) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<String> = matched
        .filter(|m| !is_glob(m))
        .map(str::to_string)
        .into_iter()
        .collect();
    let pattern = matched.map(WildMatch::new);
    for (i, m) in configured.into_iter().enumerate() {
        let f = format!("{field}[{i}]");
        if m.trim().is_empty() {
            return Err(err(f, "must not be empty"));
        }
        if out.contains(&m) {
            return Err(err(f, format!("duplicate model \"{m}\"")));
        }
        if pattern.as_ref().is_some_and(|p| !p.matches(&m)) {
            return Err(err(
                f,
                format!(
                    "\"{m}\" is not matched by the route's model \"{}\"",
                    matched.unwrap_or_default()
                ),
            ));
        }
        out.push(m);
    }
    for listed in &out {
        // The listed names are the route's model labels.
        label_name(field, listed)?;
    }
    Ok(out)
}
