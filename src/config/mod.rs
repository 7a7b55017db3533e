//! The plugin configuration: JSON in, validated typed structs out.
//!
//! Parsing is strict (`deny_unknown_fields`) so a typo is an error, and every error names the
//! field it is about (`routes[2].to.provider: unknown provider "opena1"`). The shell logs that
//! line and returns `false` from `on_configure`, which makes Envoy reject the configuration.
//!
//! Each section is validated by the module it configures: `providers`, `routes` and
//! `consumers` here, `limits` by [`crate::limits`], `tokenizer` by [`crate::tokens`], `cache` by
//! [`crate::cache`], `pricing` by [`crate::cost`], `usage_export` by [`crate::usage`], `tracing` by
//! [`crate::trace`], all with
//! the field checks of [`check`]. This module composes them and checks what crosses sections:
//! references to providers, and what needs `body_routing`. Provider credentials are read here,
//! once, from the VM environment (the Wasm vm_config's `environment_variables.host_env_keys`);
//! the config itself names only the variable.

use std::collections::BTreeMap;

use hashbrown::{HashMap, HashSet};
use serde::Deserialize;

pub mod check;
mod consumers;
pub mod providers;
mod routes;

pub use check::{ConfigError, MAX_LABEL_BYTES, MAX_TIMEOUT_MS};
pub use consumers::{Consumer, ANONYMOUS};
pub use providers::{
    AuthStyle, Cooldown, Format, Provider, ResponsesApi, VertexSite, Wire,
    DEFAULT_AZURE_API_VERSION,
};
pub use routes::{is_glob, Dest, HeaderMatch, Match, Route, Target, MAX_CHAIN};

pub use crate::limits::{
    ConsumerLimits, FailureMode, Global, Limits, ModelRule, Unpriced, DEFAULT_GLOBAL_TIMEOUT_MS,
    DEFAULT_MAX_TOKENS, DEFAULT_MAX_TRACKED, MAX_DEFAULT_MAX_TOKENS, MAX_TRACKED,
};
pub use crate::tokens::TokenizerConfig;

use crate::access::{Access, RawAccess};
use crate::cache::{CacheConfig, ChromaConfig, RawCache, RouteCache, SemanticConfig, VectorStore};
use crate::cost::{Prices, RawPricing};
use crate::limits::RawLimits;
use crate::names;
use crate::tokens::RawTokenizer;
use crate::trace::{RawTracing, Tracing};
use crate::usage::{Export, RawExport};
use check::{at_most, bounded, err, header_name};

/// Default cap on a request body the filter buffers (8 MiB).
pub const DEFAULT_MAX_REQUEST_BODY_BYTES: usize = 8 << 20;
/// Default cap on a non-streamed response body the filter copies to read its usage (4 MiB).
pub const DEFAULT_MAX_RESPONSE_BODY_BYTES: usize = 4 << 20;
/// Largest `max_request_body_bytes` and `max_response_body_bytes` (32 MiB): what one request
/// may make a worker's VM hold, several times over while it is parsed and rewritten.
pub const MAX_BODY_BYTES: usize = 32 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    cluster_header: Option<String>,
    #[serde(default)]
    max_request_body_bytes: Option<usize>,
    #[serde(default)]
    max_response_body_bytes: Option<usize>,
    providers: BTreeMap<String, providers::RawProvider>,
    #[serde(default)]
    routes: Vec<routes::RawRoute>,
    #[serde(default)]
    default: Option<routes::RawTarget>,
    #[serde(default)]
    consumers: Vec<consumers::RawConsumer>,
    #[serde(default)]
    consumer_header: Option<String>,
    #[serde(default)]
    allow_anonymous: bool,
    #[serde(default)]
    tokenizer: RawTokenizer,
    #[serde(default = "yes")]
    body_routing: bool,
    #[serde(default)]
    limits: Option<RawLimits>,
    #[serde(default)]
    access: Option<RawAccess>,
    #[serde(default)]
    pricing: RawPricing,
    #[serde(default)]
    usage_export: Option<RawExport>,
    #[serde(default)]
    tracing: Option<RawTracing>,
    #[serde(default)]
    cache: Option<RawCache>,
}

fn yes() -> bool {
    true
}

#[derive(Debug)]
pub struct Config {
    pub cluster_header: String,
    pub max_request_body_bytes: usize,
    pub max_response_body_bytes: usize,
    pub providers: Vec<Provider>,
    pub routes: Vec<Route>,
    pub default: Option<Target>,
    pub consumers: Vec<Consumer>,
    /// Consumer names the configuration lists (see `consumer_label`).
    pub consumer_labels: HashSet<String>,
    /// sha256 (raw bytes) of each accepted key → index into `consumers`.
    pub keys: HashMap<[u8; 32], usize>,
    pub consumer_header: Option<String>,
    pub allow_anonymous: bool,
    pub tokenizer: TokenizerConfig,
    /// Route on the body (hold the headers until the body is read). Off where the Wasm filter
    /// cannot be given `allow_on_headers_stop_iteration` (Istio's WasmPlugin): the route is then
    /// chosen from the headers alone and the body is read as it passes, for accounting only.
    pub body_routing: bool,
    pub limits: Option<Limits>,
    /// Which models each consumer and team may call.
    pub access: Access,
    /// Consumer name → its team, for the consumers that have one.
    pub teams: HashMap<String, String>,
    /// The price table (the shipped one unless `pricing.defaults` is false).
    pub prices: Prices,
    /// Where usage events go, if anywhere.
    pub usage_export: Option<Export>,
    /// Spans: where they go, the sampling, which routes show content.
    pub tracing: Option<Tracing>,
    /// The response cache's store, when any route caches.
    pub cache: Option<CacheConfig>,
    /// Response caching on the default target.
    pub default_cache: Option<RouteCache>,
    /// The default target's configured `models` examples, as `GET /v1/models` lists them.
    pub default_models: Vec<String>,
}

impl Config {
    /// The `consumer` label of `name`: itself when the configuration lists it (in `consumers`
    /// or `limits.consumers`, or `anonymous` when allowed), else `other`, so a consumer named
    /// by a header (`consumer_header`) never creates a series of its own unless listed.
    pub fn consumer_label<'a>(&self, name: &'a str) -> &'a str {
        if self.consumer_labels.contains(name) {
            name
        } else {
            names::metric::OTHER
        }
    }

    /// The team of consumer `name`, when it has one.
    pub fn team_of(&self, name: &str) -> Option<&str> {
        self.teams.get(name).map(String::as_str)
    }

    /// Whether any provider cools down after a 429 (see `crate::cooldown`).
    pub fn cools_down(&self) -> bool {
        self.providers.iter().any(|p| !p.cooldown.max.is_zero())
    }

    /// The global rate limit service, when one is configured.
    pub fn global(&self) -> Option<&Global> {
        self.limits.as_ref()?.global.as_ref()
    }

    /// The semantic cache's services, when configured.
    pub fn semantic(&self) -> Option<&SemanticConfig> {
        self.cache.as_ref()?.semantic.as_ref()
    }

    /// The semantic cache's Chroma store, when its vectors live there.
    pub fn chroma(&self) -> Option<&ChromaConfig> {
        match &self.semantic()?.store {
            VectorStore::Chroma(c) => Some(c),
            VectorStore::Local => None,
        }
    }

    /// The largest answer the response cache stores.
    pub fn max_entry_bytes(&self) -> usize {
        self.cache
            .as_ref()
            .map_or(crate::cache::DEFAULT_MAX_ENTRY_BYTES, |c| c.max_entry_bytes)
    }

    /// Parse and validate the plugin configuration. `env` reads the VM environment.
    pub fn parse(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let de = &mut serde_json::Deserializer::from_slice(json);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { String::new() } else { path };
            err(field, e.into_inner().to_string())
        })?;
        Self::validate(raw, env)
    }

    /// Validate each section, in the order of the errors a configuration with several reports
    /// first, and the rules across them.
    fn validate(
        raw: RawConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let cluster_header = match raw.cluster_header {
            Some(h) => header_name("cluster_header", &h)?,
            None => names::DEFAULT_CLUSTER_HEADER.to_string(),
        };
        let providers = providers::parse(raw.providers, raw.body_routing, env)?;
        let cache = cache(
            raw.cache,
            routes::any_caches(&raw.routes, raw.default.as_ref()),
            raw.body_routing,
            &providers,
        )?;
        let semantic = cache.as_ref().is_some_and(|c| c.semantic.is_some());
        let routes = routes::parse(raw.routes, &providers, semantic)?;
        let default = raw
            .default
            .map(|t| routes::default(t, &providers, semantic))
            .transpose()?;
        if routes.is_empty() && default.is_none() {
            return Err(err(
                "routes",
                "no routes and no default: nothing could be served",
            ));
        }
        let (consumers, keys) = consumers::parse(raw.consumers)?;
        let consumer_header = match raw.consumer_header {
            Some(h) => Some(header_name("consumer_header", &h)?),
            None => None,
        };
        let tokenizer = TokenizerConfig::parse(raw.tokenizer)?;
        if !raw.body_routing {
            headers_only(&routes, default.as_ref().map(|d| &d.target), &providers)?;
        }
        let (max_request_body_bytes, max_response_body_bytes) =
            body_sizes(raw.max_request_body_bytes, raw.max_response_body_bytes)?;
        let teams: HashMap<String, String> = consumers
            .iter()
            .filter_map(|c| Some((c.name.clone(), c.team.clone()?)))
            .collect();
        let team_known = |t: &str| teams.values().any(|x| x == t);
        let known = |name: &str| {
            consumer_header.is_some()
                || consumers.iter().any(|c| c.name == name)
                || (raw.allow_anonymous && name == ANONYMOUS)
        };
        let limits = match raw.limits {
            Some(l) => Some(limits(l, &known, &team_known, raw.body_routing)?),
            None => None,
        };
        let access = match raw.access {
            Some(a) => Access::parse(a, &known, &team_known)?,
            None => Access::default(),
        };
        let has_default = default.is_some();
        let tracing = raw
            .tracing
            .map(|t| {
                Tracing::parse(t, &|name| {
                    routes.iter().any(|r| r.name == name) || (has_default && name == "default")
                })
            })
            .transpose()?;
        let (default, default_cache, default_models) = match default {
            Some(d) => (Some(d.target), d.cache, d.models),
            None => (None, None, Vec::new()),
        };
        Ok(Config {
            consumer_labels: consumer_labels(&consumers, raw.allow_anonymous, limits.as_ref()),
            prices: Prices::parse(raw.pricing)?,
            usage_export: raw.usage_export.map(Export::parse).transpose()?,
            tracing,
            cache,
            default_cache,
            default_models,
            limits,
            access,
            teams,
            cluster_header,
            max_request_body_bytes,
            max_response_body_bytes,
            providers,
            routes,
            default,
            consumers,
            keys,
            consumer_header,
            allow_anonymous: raw.allow_anonymous,
            body_routing: raw.body_routing,
            tokenizer,
        })
    }
}

/// The response cache's store: as configured, or the defaults when only routes ask for
/// caching. Caching needs `body_routing` (the key is the body); embeddings come from a
/// configured provider that serves them.
fn cache(
    raw: Option<RawCache>,
    any_route_caches: bool,
    body_routing: bool,
    providers: &[Provider],
) -> Result<Option<CacheConfig>, ConfigError> {
    let cache = match raw {
        Some(c) => Some(CacheConfig::parse(c, &|name| {
            let i = providers.iter().position(|p| p.name == name)?;
            let serves = providers.get(i)?.format.serves_embeddings();
            Some((i, serves))
        })?),
        None if any_route_caches => Some(CacheConfig::default()),
        None => None,
    };
    if any_route_caches && !body_routing {
        return Err(err(
            "cache",
            "response caching needs body_routing (the key is the body)",
        ));
    }
    Ok(cache)
}

/// Without the body before forwarding there is no model to match and no body to rewrite: say
/// so at configuration time rather than silently ignore the rules.
fn headers_only(
    routes: &[Route],
    default: Option<&Target>,
    providers: &[Provider],
) -> Result<(), ConfigError> {
    for (i, r) in routes.iter().enumerate() {
        if r.matcher.model.is_some() {
            return Err(err(
                format!("routes[{i}].match.model"),
                "needs body_routing (the model is in the body)",
            ));
        }
    }
    for (field, t) in routes
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("routes[{i}]"), &r.target))
        .chain(default.map(|d| ("default".to_string(), d)))
    {
        let rewrites = match t {
            Target::One(d) => d.model.is_some(),
            Target::Split { dests, .. } => dests.iter().any(|(d, _)| d.model.is_some()),
            Target::Chain { .. } => {
                return Err(err(
                    format!("{field}.fallback"),
                    "needs body_routing (each attempt's body is rewritten)",
                ))
            }
        };
        if rewrites {
            return Err(err(
                field,
                "a model rewrite needs body_routing (the model is in the body)",
            ));
        }
    }
    if let Some(p) = providers.iter().find(|p| !p.models.is_empty()) {
        return Err(err(
            format!("providers.{}.models", p.name),
            "a model map needs body_routing (the model is in the body)",
        ));
    }
    Ok(())
}

/// The caps on the bodies the filter holds: `max_request_body_bytes` and
/// `max_response_body_bytes`.
fn body_sizes(
    request: Option<usize>,
    response: Option<usize>,
) -> Result<(usize, usize), ConfigError> {
    let request = bounded(
        "max_request_body_bytes",
        request,
        DEFAULT_MAX_REQUEST_BODY_BYTES,
        MAX_BODY_BYTES,
    )?;
    let response = at_most(
        "max_response_body_bytes",
        response.unwrap_or(DEFAULT_MAX_RESPONSE_BODY_BYTES),
        MAX_BODY_BYTES,
    )?;
    Ok((request, response))
}

/// `limits`, whose consumers must be known (listed, anonymous and allowed, or named by a
/// header), and whose per-model rules need `body_routing` (the model is in the body).
fn limits(
    raw: RawLimits,
    known: &dyn Fn(&str) -> bool,
    team_known: &dyn Fn(&str) -> bool,
    body_routing: bool,
) -> Result<Limits, ConfigError> {
    let l = Limits::parse(raw, known, team_known)?;
    if l.budgets && !body_routing {
        return Err(err(
            "limits.budgets",
            "dollar budgets need body_routing (the price is the model's, and the reservation \
             counts the prompt)",
        ));
    }
    if l.has_model_rules() && !body_routing {
        let field = if l.default.models.is_empty() {
            "limits.consumers"
        } else {
            "limits.default.models"
        };
        return Err(err(
            field,
            "per-model limits need body_routing (the model is in the body)",
        ));
    }
    Ok(l)
}

/// The consumers that get a label of their own: every one the configuration names.
fn consumer_labels(
    consumers: &[Consumer],
    anonymous: bool,
    limits: Option<&Limits>,
) -> HashSet<String> {
    let mut labels: HashSet<String> = consumers.iter().map(|c| c.name.clone()).collect();
    if anonymous {
        labels.insert(ANONYMOUS.to_string());
    }
    labels.extend(limits.iter().flat_map(|l| l.consumers.keys().cloned()));
    labels
}

#[cfg(test)]
mod tests;
