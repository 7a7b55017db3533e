//! The plugin configuration: JSON in, validated typed structs out.
//!
//! Parsing is strict (`deny_unknown_fields`) so a typo is an error, and every error names the
//! field it is about (`routes[2].to.provider: unknown provider "opena1"`). The shell logs that
//! line and returns `false` from `on_configure`, which makes Envoy reject the configuration.
//! Provider credentials are read here, once, from the VM environment (the Wasm vm_config's
//! `environment_variables.host_env_keys`); the config itself names only the variable.

use std::collections::BTreeMap;
use std::fmt;

use hashbrown::HashMap;
use serde::Deserialize;
use wildmatch::WildMatch;

use crate::limits::{Scope, Spec};
use crate::names;
use crate::tokens::Encoding;

/// Default cap on a request body the filter buffers (8 MiB).
pub const DEFAULT_MAX_REQUEST_BODY_BYTES: usize = 8 << 20;
/// Default cap on a non-streamed response body the filter copies to read its usage (4 MiB).
pub const DEFAULT_MAX_RESPONSE_BODY_BYTES: usize = 4 << 20;
/// Largest `max_request_body_bytes` and `max_response_body_bytes` (32 MiB): what one request
/// may make a worker's VM hold, several times over while it is parsed and rewritten.
pub const MAX_BODY_BYTES: usize = 32 << 20;
/// Longest deadline of any call the filter makes (the global rate limit service, usage posts,
/// embeddings, the vector store): 60 s. A request waiting on a callout waits at most this.
pub const MAX_TIMEOUT_MS: u64 = 60_000;
/// Most providers one failover chain tries.
pub const MAX_CHAIN: usize = 8;
/// Name used for callers let in without a key when `allow_anonymous` is on.
pub const ANONYMOUS: &str = "anonymous";

/// A configuration error: the field path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

pub(crate) fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Raw (wire) shape
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    cluster_header: Option<String>,
    #[serde(default)]
    max_request_body_bytes: Option<usize>,
    #[serde(default)]
    max_response_body_bytes: Option<usize>,
    providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    default: Option<RawTarget>,
    #[serde(default)]
    consumers: Vec<RawConsumer>,
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
    pricing: crate::cost::RawPricing,
    #[serde(default)]
    usage_export: Option<crate::usage::RawExport>,
    #[serde(default)]
    cache: Option<crate::cache::RawCache>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    cluster: String,
    #[serde(default)]
    format: Option<Format>,
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    auth: Option<AuthStyle>,
    #[serde(default)]
    api_key_env: Option<String>,
    #[serde(default)]
    models: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
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
    cache: Option<crate::cache::RawRouteCache>,
    #[serde(default)]
    models: Vec<String>,
}

/// Providers to try in order after the route's own, through an Envoy composite cluster.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFallback {
    cluster: String,
    to: Vec<RawDest>,
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
struct RawTarget {
    #[serde(default)]
    to: Option<RawDest>,
    #[serde(default)]
    split: Option<Vec<RawWeightedDest>>,
    #[serde(default)]
    fallback: Option<RawFallback>,
    #[serde(default)]
    cache: Option<crate::cache::RawRouteCache>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsumer {
    name: String,
    #[serde(default)]
    key_sha256: KeyList,
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum KeyList {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTokenizer {
    #[serde(default)]
    fallback: Option<String>,
    #[serde(default)]
    models: BTreeMap<String, String>,
    #[serde(default)]
    preload: Vec<String>,
    #[serde(default)]
    max_exact_bytes: Option<usize>,
}

// ---------------------------------------------------------------------------------------------
// Validated shape
// ---------------------------------------------------------------------------------------------

/// The API a provider speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// OpenAI's API and every compatible server (vLLM, Ollama, OpenRouter...).
    #[default]
    Openai,
    /// Anthropic's Messages API (`/v1/messages`): requests and responses are translated.
    Anthropic,
    /// Azure OpenAI: OpenAI's bodies on `/openai/deployments/{deployment}/...?api-version=`,
    /// the deployment being the (mapped) model name.
    Azure,
}

/// Default `api-version` for Azure OpenAI providers.
pub const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";

/// How a provider expects its credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthStyle {
    /// `Authorization: Bearer <key>` (OpenAI and compatible servers).
    Bearer,
    /// `api-key: <key>` (Azure OpenAI).
    ApiKey,
    /// `x-api-key: <key>` (Anthropic).
    XApiKey,
    /// No credential (a local vLLM or Ollama).
    None,
}

impl AuthStyle {
    /// The header carrying `key` in this style, with its value.
    pub fn header(self, key: &str) -> Option<(&'static str, String)> {
        match self {
            AuthStyle::Bearer => Some((names::AUTHORIZATION, format!("Bearer {key}"))),
            AuthStyle::ApiKey => Some((names::API_KEY, key.to_string())),
            AuthStyle::XApiKey => Some((names::X_API_KEY, key.to_string())),
            AuthStyle::None => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub cluster: String,
    pub format: Format,
    /// Azure's `api-version` query parameter.
    pub api_version: Option<String>,
    pub auth: AuthStyle,
    /// The credential read from the VM environment at configure time.
    pub credential: Option<String>,
    /// The environment variable holding it (the upstream filter reads it itself).
    pub key_env: Option<String>,
    /// Model name mapping applied last, after the route's own rewrite.
    pub models: HashMap<String, String>,
}

impl Provider {
    /// The request path for `endpoint` (`chat/completions`...) and `model`, when this provider's
    /// API puts it somewhere else than the client's path.
    pub fn path(&self, endpoint: &str, model: &str) -> Option<String> {
        match self.format {
            Format::Openai => None,
            Format::Anthropic => Some(crate::translate::MESSAGES_PATH.to_string()),
            Format::Azure => Some(format!(
                "/openai/deployments/{}/{endpoint}?api-version={}",
                percent_encode(model),
                self.api_version
                    .as_deref()
                    .unwrap_or(DEFAULT_AZURE_API_VERSION)
            )),
        }
    }

    /// The header carrying this provider's credential, with its value.
    pub fn credential_header(&self) -> Option<(&'static str, String)> {
        self.auth.header(self.credential.as_deref()?)
    }
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
    pub cache: Option<crate::cache::RouteCache>,
    /// The model names clients ask this route for, as `GET /v1/models` lists them: the match's
    /// model when it is a plain name (no `*?[`), then the configured `models` examples (each
    /// matched by the model glob, no duplicates). These are also the only client strings that
    /// become a `gen_ai_request_model` label.
    pub models: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    pub name: String,
}

#[derive(Debug)]
pub struct TokenizerConfig {
    /// Encoding for models tiktoken does not know; `None` means "do not count".
    pub fallback: Option<Encoding>,
    /// Explicit model → encoding overrides, tried first, in order.
    pub models: Vec<(WildMatch, Option<Encoding>)>,
    /// Encodings to load right after configuration rather than on first use.
    pub preload: Vec<Encoding>,
    /// Prompt text counted exactly per request; beyond it, bounded (see `tokens::Counter`).
    pub max_exact_bytes: usize,
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

impl Limits {
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
    pub consumer_labels: hashbrown::HashSet<String>,
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
    /// The price table (the shipped one unless `pricing.defaults` is false).
    pub prices: crate::cost::Prices,
    /// Where usage events go, if anywhere.
    pub usage_export: Option<crate::usage::Export>,
    /// The response cache's store, when any route caches.
    pub cache: Option<crate::cache::CacheConfig>,
    /// Response caching on the default target.
    pub default_cache: Option<crate::cache::RouteCache>,
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

    /// The global rate limit service, when one is configured.
    pub fn global(&self) -> Option<&Global> {
        self.limits.as_ref()?.global.as_ref()
    }

    /// The semantic cache's services, when configured.
    pub fn semantic(&self) -> Option<&crate::cache::SemanticConfig> {
        self.cache.as_ref()?.semantic.as_ref()
    }

    /// The semantic cache's Chroma store, when its vectors live there.
    pub fn chroma(&self) -> Option<&crate::cache::ChromaConfig> {
        match &self.semantic()?.store {
            crate::cache::VectorStore::Chroma(c) => Some(c),
            crate::cache::VectorStore::Local => None,
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

    fn validate(
        raw: RawConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let cluster_header = match raw.cluster_header {
            Some(h) => header_name("cluster_header", &h)?,
            None => names::DEFAULT_CLUSTER_HEADER.to_string(),
        };

        if raw.providers.is_empty() {
            return Err(err("providers", "at least one provider is required"));
        }
        let mut providers = Vec::with_capacity(raw.providers.len());
        for (name, p) in raw.providers {
            let field = format!("providers.{name}");
            if p.cluster.trim().is_empty() {
                return Err(err(format!("{field}.cluster"), "must not be empty"));
            }
            let format = p.format.unwrap_or_default();
            let auth = p.auth.unwrap_or(match (&p.api_key_env, format) {
                (None, _) => AuthStyle::None,
                (Some(_), Format::Anthropic) => AuthStyle::XApiKey,
                (Some(_), Format::Azure) => AuthStyle::ApiKey,
                (Some(_), Format::Openai) => AuthStyle::Bearer,
            });
            let credential = match (auth, &p.api_key_env) {
                (AuthStyle::None, None) => None,
                (AuthStyle::None, Some(_)) => {
                    return Err(err(
                        format!("{field}.api_key_env"),
                        "is set but auth is \"none\"",
                    ))
                }
                (_, None) => {
                    return Err(err(
                        format!("{field}.api_key_env"),
                        "is required when auth is \"bearer\" or \"api-key\"",
                    ))
                }
                (_, Some(var)) => match env(var) {
                    Some(v) if !v.is_empty() => Some(v),
                    _ => {
                        return Err(err(
                            format!("{field}.api_key_env"),
                            format!(
                                "environment variable {var} is not set in the Wasm VM (list it in vm_config.environment_variables.host_env_keys)"
                            ),
                        ))
                    }
                },
            };
            if format != Format::Openai && !raw.body_routing {
                return Err(err(
                    format!("{field}.format"),
                    "needs body_routing (the path or body depends on the model)",
                ));
            }
            let api_version = match (
                format,
                non_empty(&format!("{field}.api_version"), p.api_version)?,
            ) {
                (Format::Azure, v) => {
                    Some(v.unwrap_or_else(|| DEFAULT_AZURE_API_VERSION.to_string()))
                }
                (_, Some(_)) => {
                    return Err(err(
                        format!("{field}.api_version"),
                        "applies to azure providers only",
                    ))
                }
                (_, None) => None,
            };
            label_name(&field, &name)?;
            providers.push(Provider {
                name,
                cluster: p.cluster,
                format,
                api_version,
                auth,
                credential,
                key_env: p.api_key_env,
                models: p.models.into_iter().collect(),
            });
        }

        let provider_index = |field: &str, name: &str| -> Result<usize, ConfigError> {
            providers
                .iter()
                .position(|p| p.name == name)
                .ok_or_else(|| err(field, format!("unknown provider \"{name}\"")))
        };

        let target = |field: &str, t: RawTarget| -> Result<Target, ConfigError> {
            match (t.to, t.split) {
                (Some(d), None) => {
                    let first = Dest {
                        provider: provider_index(&format!("{field}.to.provider"), &d.provider)?,
                        model: non_empty(&format!("{field}.to.model"), d.model)?,
                    };
                    let Some(fb) = t.fallback else {
                        return Ok(Target::One(first));
                    };
                    let f = format!("{field}.fallback");
                    if fb.cluster.trim().is_empty() {
                        return Err(err(format!("{f}.cluster"), "must not be empty"));
                    }
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
                        dests.push(Dest {
                            provider: provider_index(
                                &format!("{f}.to[{i}].provider"),
                                &d.provider,
                            )?,
                            model: non_empty(&format!("{f}.to[{i}].model"), d.model)?,
                        });
                    }
                    Ok(Target::Chain {
                        dests,
                        cluster: fb.cluster,
                    })
                }
                (_, Some(_)) if t.fallback.is_some() => Err(err(
                    format!("{field}.fallback"),
                    "goes with \"to\", not with \"split\"",
                )),
                (None, Some(split)) => {
                    if split.is_empty() {
                        return Err(err(format!("{field}.split"), "must not be empty"));
                    }
                    let mut dests = Vec::with_capacity(split.len());
                    let mut total: u32 = 0;
                    for (i, d) in split.into_iter().enumerate() {
                        let f = format!("{field}.split[{i}]");
                        if d.weight == 0 {
                            return Err(err(format!("{f}.weight"), "must be greater than 0"));
                        }
                        total = total
                            .checked_add(d.weight)
                            .ok_or_else(|| err(format!("{f}.weight"), "weights sum overflows"))?;
                        dests.push((
                            Dest {
                                provider: provider_index(&format!("{f}.provider"), &d.provider)?,
                                model: non_empty(&format!("{f}.model"), d.model)?,
                            },
                            d.weight,
                        ));
                    }
                    Ok(Target::Split { dests, total })
                }
                (Some(_), Some(_)) => Err(err(field, "give either \"to\" or \"split\", not both")),
                (None, None) => Err(err(field, "needs \"to\" or \"split\"")),
            }
        };

        let any_route_caches = raw.routes.iter().any(|r| r.cache.is_some())
            || raw.default.as_ref().is_some_and(|d| d.cache.is_some());
        let cache = match raw.cache {
            Some(c) => Some(crate::cache::CacheConfig::parse(c, &|name| {
                let i = providers.iter().position(|p| p.name == name)?;
                let serves = providers.get(i)?.format != Format::Anthropic;
                Some((i, serves))
            })?),
            None if any_route_caches => Some(crate::cache::CacheConfig::default()),
            None => None,
        };
        let semantic_configured = cache.as_ref().is_some_and(|c| c.semantic.is_some());
        if any_route_caches && !raw.body_routing {
            return Err(err(
                "cache",
                "response caching needs body_routing (the key is the body)",
            ));
        }
        let route_cache = |field: &str, c: Option<crate::cache::RawRouteCache>| {
            c.map(|c| crate::cache::RouteCache::parse(field, c, semantic_configured))
                .transpose()
        };

        let mut routes = Vec::with_capacity(raw.routes.len());
        for (i, r) in raw.routes.into_iter().enumerate() {
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
            let models = route_models(&format!("{field}.models"), m.model.as_deref(), r.models)?;
            for listed in &models {
                // The listed names are the route's model labels.
                label_name(&format!("{field}.models"), listed)?;
            }
            let matcher = Match {
                model: pattern(&format!("{field}.match.model"), m.model)?,
                path: pattern(&format!("{field}.match.path"), m.path)?,
                header,
            };
            routes.push(Route {
                other_label: format!("other:{name}"),
                name,
                models,
                cache: route_cache(&format!("{field}.cache"), r.cache)?,
                matcher,
                target: target(
                    &field,
                    RawTarget {
                        to: r.to,
                        split: r.split,
                        fallback: r.fallback,
                        cache: None,
                        models: Vec::new(),
                    },
                )?,
            });
        }
        let (default, default_cache, default_models) = match raw.default {
            Some(mut t) => {
                let c = route_cache("default.cache", t.cache.take())?;
                let m = route_models("default.models", None, std::mem::take(&mut t.models))?;
                for listed in &m {
                    label_name("default.models", listed)?;
                }
                (Some(target("default", t)?), c, m)
            }
            None => (None, None, Vec::new()),
        };
        if routes.is_empty() && default.is_none() {
            return Err(err(
                "routes",
                "no routes and no default: nothing could be served",
            ));
        }

        let mut consumers = Vec::with_capacity(raw.consumers.len());
        let mut keys = HashMap::new();
        for (i, c) in raw.consumers.into_iter().enumerate() {
            let field = format!("consumers[{i}]");
            if c.name.trim().is_empty() {
                return Err(err(format!("{field}.name"), "must not be empty"));
            }
            if consumers.iter().any(|x: &Consumer| x.name == c.name) {
                return Err(err(
                    format!("{field}.name"),
                    format!("duplicate consumer \"{}\"", c.name),
                ));
            }
            let list = match c.key_sha256 {
                KeyList::None => Vec::new(),
                KeyList::One(k) => vec![k],
                KeyList::Many(ks) => ks,
            };
            for (j, k) in list.iter().enumerate() {
                let f = format!("{field}.key_sha256[{j}]");
                let mut digest = [0u8; 32];
                hex::decode_to_slice(k.trim(), &mut digest).map_err(|_| {
                    err(
                        &f,
                        "must be the 64 hex digits of the key's sha256 (never the key itself)",
                    )
                })?;
                if keys.insert(digest, i).is_some() {
                    return Err(err(f, "the same key is listed twice"));
                }
            }
            label_name(&format!("{field}.name"), &c.name)?;
            consumers.push(Consumer { name: c.name });
        }
        let consumer_header = match raw.consumer_header {
            Some(h) => Some(header_name("consumer_header", &h)?),
            None => None,
        };

        let encoding = |field: &str, name: &str| -> Result<Option<Encoding>, ConfigError> {
            if name == "none" {
                return Ok(None);
            }
            Encoding::from_name(name).map(Some).ok_or_else(|| {
                err(
                    field,
                    format!("unknown encoding \"{name}\" (o200k_base, cl100k_base or none)"),
                )
            })
        };
        let t = raw.tokenizer;
        let fallback = match t.fallback {
            Some(f) => encoding("tokenizer.fallback", &f)?,
            None => Some(Encoding::O200kBase),
        };
        let mut tok_models = Vec::with_capacity(t.models.len());
        for (pat, enc) in t.models {
            let e = encoding(&format!("tokenizer.models.{pat}"), &enc)?;
            tok_models.push((WildMatch::new(&pat), e));
        }
        let max_exact_bytes = bounded(
            "tokenizer.max_exact_bytes",
            t.max_exact_bytes,
            crate::tokens::DEFAULT_MAX_EXACT_BYTES,
            crate::tokens::MAX_EXACT_BYTES_LIMIT,
        )?;
        let mut preload = Vec::new();
        for (i, name) in t.preload.iter().enumerate() {
            if let Some(e) = encoding(&format!("tokenizer.preload[{i}]"), name)? {
                preload.push(e);
            }
        }

        if !raw.body_routing {
            // Without the body before forwarding there is no model to match and no body to
            // rewrite: say so at configuration time rather than silently ignore the rules.
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
                .chain(default.iter().map(|d| ("default".to_string(), d)))
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
        }

        let max_request_body_bytes = bounded(
            "max_request_body_bytes",
            raw.max_request_body_bytes,
            DEFAULT_MAX_REQUEST_BODY_BYTES,
            MAX_BODY_BYTES,
        )?;
        let max_response_body_bytes = at_most(
            "max_response_body_bytes",
            raw.max_response_body_bytes
                .unwrap_or(DEFAULT_MAX_RESPONSE_BODY_BYTES),
            MAX_BODY_BYTES,
        )?;

        // The consumers that get a label of their own: every one the configuration names.
        let mut consumer_labels: hashbrown::HashSet<String> =
            consumers.iter().map(|c| c.name.clone()).collect();
        if raw.allow_anonymous {
            consumer_labels.insert(ANONYMOUS.to_string());
        }
        if let Some(l) = &raw.limits {
            for name in l.consumers.keys() {
                label_name(&format!("limits.consumers.{name}"), name)?;
                consumer_labels.insert(name.clone());
            }
        }
        let limits = match raw.limits {
            Some(l) => Some(limits(
                l,
                &consumers,
                consumer_header.is_some(),
                raw.allow_anonymous,
            )?),
            None => None,
        };
        if let Some(l) = limits.as_ref().filter(|l| l.has_model_rules()) {
            if !raw.body_routing {
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
        }

        let prices = crate::cost::Prices::parse(raw.pricing)?;
        let usage_export = raw
            .usage_export
            .map(crate::usage::Export::parse)
            .transpose()?;

        Ok(Config {
            cache,
            default_cache,
            default_models,
            prices,
            usage_export,
            limits,
            cluster_header,
            max_request_body_bytes,
            max_response_body_bytes,
            providers,
            routes,
            default,
            consumers,
            consumer_labels,
            keys,
            consumer_header,
            allow_anonymous: raw.allow_anonymous,
            body_routing: raw.body_routing,
            tokenizer: TokenizerConfig {
                fallback,
                models: tok_models,
                preload,
                max_exact_bytes,
            },
        })
    }
}

/// Whether a model pattern is a glob rather than one name.
pub fn is_glob(model: &str) -> bool {
    model.contains(['*', '?', '['])
}

/// A route's client-facing model names (see `Route::models`): the match's plain model name,
/// then the `configured` examples, each matched by the match's model when there is one.
fn route_models(
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
    Ok(out)
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

fn limits(
    raw: RawLimits,
    consumers: &[Consumer],
    by_header: bool,
    anonymous: bool,
) -> Result<Limits, ConfigError> {
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
    let mut by_name = HashMap::new();
    for (name, o) in raw.consumers {
        let field = format!("limits.consumers.{name}");
        let known = consumers.iter().any(|c| c.name == name) || (anonymous && name == ANONYMOUS);
        if !known && !by_header {
            return Err(err(
                field,
                format!("unknown consumer \"{name}\" (not in consumers, and no consumer_header)"),
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
        by_name.insert(name, ConsumerLimits { spec, models });
    }
    let global = match raw.global {
        Some(g) => {
            if g.cluster.trim().is_empty() {
                return Err(err("limits.global.cluster", "must not be empty"));
            }
            let timeout_ms = bounded(
                "limits.global.timeout_ms",
                g.timeout_ms,
                DEFAULT_GLOBAL_TIMEOUT_MS,
                MAX_TIMEOUT_MS,
            )?;
            Some(Global {
                cluster: g.cluster,
                domain: non_empty("limits.global.domain", g.domain)?
                    .unwrap_or_else(|| "llm-gateway".to_string()),
                timeout_ms,
                failure_mode: g.failure_mode.unwrap_or(FailureMode::Open),
            })
        }
        None => None,
    };
    let max_tracked = bounded(
        "limits.max_tracked",
        raw.max_tracked,
        DEFAULT_MAX_TRACKED,
        MAX_TRACKED,
    )?;
    Ok(Limits {
        default,
        consumers: by_name,
        default_max_tokens: at_most(
            "limits.default_max_tokens",
            raw.default_max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            MAX_DEFAULT_MAX_TOKENS,
        )?,
        max_tracked,
        global,
    })
}

/// A model name as one path segment: unreserved characters kept, the rest percent-encoded.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn header_name(field: &str, name: &str) -> Result<String, ConfigError> {
    let n = name.trim().to_ascii_lowercase();
    let valid = !n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !valid {
        return Err(err(field, format!("\"{name}\" is not a valid header name")));
    }
    Ok(n)
}

/// A configured name that becomes a metric label value (route, provider, consumer, listed
/// model): ASCII letters, digits and `-_.:/@+`, at most 128. With neither `=` nor `;` nor `,`,
/// no such name can spell a `stats_tags` pattern (`key=.=value;.;`) or end a value early.
pub(crate) fn label_name(field: &str, name: &str) -> Result<(), ConfigError> {
    let valid = (1..=MAX_LABEL_BYTES).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/@+".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(err(
            field,
            format!(
                "\"{}\" cannot be a metric label: use 1 to {MAX_LABEL_BYTES} ASCII letters, digits and -_.:/@+",
                name.chars().take(64).collect::<String>()
            ),
        ))
    }
}

/// Longest configured name that becomes a label value.
pub const MAX_LABEL_BYTES: usize = 128;

fn pattern(field: &str, p: Option<String>) -> Result<Option<WildMatch>, ConfigError> {
    match p {
        Some(p) if p.is_empty() => Err(err(field, "must not be empty")),
        Some(p) => Ok(Some(WildMatch::new(&p))),
        None => Ok(None),
    }
}

/// A number that must be greater than 0 when given; `default` when not.
pub(crate) fn positive<T: PartialOrd + Default + Copy>(
    field: &str,
    v: Option<T>,
    default: T,
) -> Result<T, ConfigError> {
    match v {
        Some(x) if x <= T::default() => Err(err(field, "must be greater than 0")),
        Some(x) => Ok(x),
        None => Ok(default),
    }
}

/// A number in `1..=max` when given; `default` when not.
pub(crate) fn bounded<T: PartialOrd + Default + Copy + fmt::Display>(
    field: &str,
    v: Option<T>,
    default: T,
    max: T,
) -> Result<T, ConfigError> {
    at_most(field, positive(field, v, default)?, max)
}

/// `v`, unless it is over `max`: every size and count in the configuration has a maximum
/// the VM can afford (see the configuration reference in the README).
pub(crate) fn at_most<T: PartialOrd + Copy + fmt::Display>(
    field: &str,
    v: T,
    max: T,
) -> Result<T, ConfigError> {
    if v > max {
        Err(err(field, format!("must be at most {max}")))
    } else {
        Ok(v)
    }
}

pub(crate) fn non_empty(field: &str, v: Option<String>) -> Result<Option<String>, ConfigError> {
    match v {
        Some(v) if v.trim().is_empty() => Err(err(field, "must not be empty")),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "OPENAI_API_KEY" => Some("sk-provider".into()),
            "AZURE_KEY" => Some("az-key".into()),
            _ => None,
        }
    }

    fn parse(v: serde_json::Value) -> Result<Config, ConfigError> {
        Config::parse(v.to_string().as_bytes(), &env)
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "providers": {
                "openai": {"cluster": "openai", "api_key_env": "OPENAI_API_KEY"},
                "azure": {"cluster": "azure", "auth": "api-key", "api_key_env": "AZURE_KEY",
                          "models": {"gpt-4o": "my-gpt4o-deployment"}}
            },
            "routes": [
                {"match": {"model": "gpt-4o*"}, "to": {"provider": "openai"}},
                {"match": {"model": "split-me"}, "split": [
                    {"provider": "openai", "weight": 90}, {"provider": "azure", "weight": 10}]}
            ],
            "consumers": [{"name": "team-a", "key_sha256":
                "3c8e4ff4d9e5a8fa1ec0c8b0b2a5d1b2f0b1d0b3e1a2c3d4e5f60718293a4b5c"}]
        })
    }

    #[test]
    fn valid_config() {
        let c = parse(base()).unwrap();
        assert_eq!(c.cluster_header, "x-llm-gateway-cluster");
        assert_eq!(c.providers.len(), 2);
        let az = c.providers.iter().find(|p| p.name == "azure").unwrap();
        assert_eq!(
            az.credential_header(),
            Some(("api-key", "az-key".to_string()))
        );
        let oa = c.providers.iter().find(|p| p.name == "openai").unwrap();
        assert_eq!(oa.auth, AuthStyle::Bearer);
        assert_eq!(
            oa.credential_header(),
            Some(("authorization", "Bearer sk-provider".to_string()))
        );
        assert!(matches!(
            c.routes[1].target,
            Target::Split { total: 100, .. }
        ));
        assert_eq!(c.keys.len(), 1);
        assert_eq!(c.tokenizer.fallback, Some(Encoding::O200kBase));
        assert_eq!(c.max_request_body_bytes, DEFAULT_MAX_REQUEST_BODY_BYTES);
    }

    fn field_of(v: serde_json::Value) -> String {
        match parse(v) {
            Ok(_) => panic!("config was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn names_that_become_labels_cannot_spell_a_tag() {
        for bad in ["a=.=b", "x;y", "a b", "", "é", "a,b", &"x".repeat(129)] {
            let mut v = base();
            v["consumers"][0]["name"] = bad.into();
            assert!(field_of(v).starts_with("consumers[0].name: "), "{bad:?}");
            let mut v = base();
            v["routes"][0]["name"] = bad.into();
            if !bad.is_empty() {
                assert!(field_of(v).starts_with("routes[0].name: "), "{bad:?}");
            }
            let mut v = base();
            v["routes"][1]["match"]["model"] = format!("m{bad}").into();
            if bad.contains(['=', ';', ' ', ',']) || bad.len() > 127 || !bad.is_ascii() {
                assert!(field_of(v).starts_with("routes[1].models: "), "{bad:?}");
            }
        }
        let mut v = base();
        v["providers"]["bad=.=name"] = serde_json::json!({"cluster": "c"});
        assert!(field_of(v).starts_with("providers.bad=.=name: "));
        // Fine: the characters real model and consumer names use.
        let mut v = base();
        v["routes"][1]["match"]["model"] = "meta-llama/Llama-3.1-8B@v1:0+x_y".into();
        v["consumers"][0]["name"] = "alice@example.com".into();
        let c = parse(v).unwrap();
        assert_eq!(c.routes[1].models, ["meta-llama/Llama-3.1-8B@v1:0+x_y"]);
        assert_eq!(c.routes[0].other_label, "other:route-0");
    }

    #[test]
    fn only_listed_consumers_get_a_label() {
        let mut v = base();
        v["consumer_header"] = "x-team".into();
        v["limits"] = serde_json::json!({"consumers": {"team-b": {"rpm": 1}}});
        let c = parse(v).unwrap();
        assert_eq!(c.consumer_label("team-a"), "team-a");
        assert_eq!(c.consumer_label("team-b"), "team-b");
        assert_eq!(c.consumer_label("consumer=.=victim"), "other");
        assert_eq!(c.consumer_label("anonymous"), "other");
    }

    #[test]
    fn the_exact_counting_budget_is_bounded() {
        let mut v = base();
        v["tokenizer"] =
            serde_json::json!({"max_exact_bytes": crate::tokens::MAX_EXACT_BYTES_LIMIT});
        assert_eq!(
            parse(v).unwrap().tokenizer.max_exact_bytes,
            crate::tokens::MAX_EXACT_BYTES_LIMIT
        );
        let mut v = base();
        v["tokenizer"] =
            serde_json::json!({"max_exact_bytes": crate::tokens::MAX_EXACT_BYTES_LIMIT + 1});
        assert!(field_of(v).starts_with("tokenizer.max_exact_bytes: must be at most"));
        let mut v = base();
        v["tokenizer"] = serde_json::json!({"max_exact_bytes": 0});
        assert!(field_of(v).starts_with("tokenizer.max_exact_bytes: "));
        assert_eq!(
            parse(base()).unwrap().tokenizer.max_exact_bytes,
            crate::tokens::DEFAULT_MAX_EXACT_BYTES
        );
    }

    #[test]
    fn errors_name_the_field() {
        let mut v = base();
        v["routes"][1]["split"][1]["provider"] = "nope".into();
        assert!(field_of(v).starts_with("routes[1].split[1].provider: unknown provider"));

        let mut v = base();
        v["providers"]["openai"]["api_key_env"] = "MISSING_VAR".into();
        let e = field_of(v);
        assert!(
            e.starts_with("providers.openai.api_key_env: environment variable MISSING_VAR"),
            "{e}"
        );

        let mut v = base();
        v["providers"]["openai"]["auth"] = "basic".into();
        let e = field_of(v);
        assert!(e.starts_with("providers.openai.auth"), "{e}");

        let mut v = base();
        v["routes"][0]["mtach"] = serde_json::json!({});
        let e = field_of(v);
        assert!(e.contains("mtach"), "{e}");

        let mut v = base();
        v["consumers"][0]["key_sha256"] = "sk-plaintext-key".into();
        assert!(field_of(v).starts_with("consumers[0].key_sha256[0]"));

        let mut v = base();
        v["routes"][1]["split"][0]["weight"] = 0.into();
        assert!(field_of(v).starts_with("routes[1].split[0].weight"));

        let mut v = base();
        v["routes"][0] = serde_json::json!({"match": {"model": "x"}});
        assert!(field_of(v).starts_with("routes[0]: needs"));

        let mut v = base();
        v["max_request_body_bytes"] = (-1).into();
        assert!(field_of(v).starts_with("max_request_body_bytes"));

        let mut v = base();
        v["tokenizer"] = serde_json::json!({"fallback": "p99k"});
        assert!(field_of(v).starts_with("tokenizer.fallback"));

        let mut v = base();
        v["cluster_header"] = "bad header".into();
        assert!(field_of(v).starts_with("cluster_header"));

        let mut v = base();
        v["consumers"] = serde_json::json!([{"name": "a"}, {"name": "a"}]);
        assert!(field_of(v).starts_with("consumers[1].name"));

        assert!(field_of(serde_json::json!({"providers": {}})).starts_with("providers"));

        // Without body routing, nothing may depend on the body.
        let mut v = base();
        v["body_routing"] = false.into();
        assert!(field_of(v).starts_with("routes[0].match.model"));
        let headers_only = |extra: serde_json::Value| {
            let mut v = serde_json::json!({
                "body_routing": false,
                "providers": {"openai": {"cluster": "openai", "api_key_env": "OPENAI_API_KEY"}},
                "routes": [{"match": {"header": {"name": "x-tier"}}, "to": {"provider": "openai"}}],
                "default": {"to": {"provider": "openai"}}
            });
            if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
                for (k, val) in e {
                    o.insert(k.clone(), val.clone());
                }
            }
            parse(v)
        };
        assert!(!headers_only(serde_json::json!({})).unwrap().body_routing);
        let e = headers_only(
            serde_json::json!({"default": {"to": {"provider": "openai", "model": "x"}}}),
        );
        assert!(e
            .unwrap_err()
            .to_string()
            .starts_with("default: a model rewrite"));
        assert!(Config::parse(b"not json", &env).is_err());
        assert!(Config::parse(b"", &env).is_err());
    }

    #[test]
    fn limits_inherit_override_and_unlimit() {
        let mut v = base();
        v["consumers"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"name": "team-b"}));
        v["limits"] = serde_json::json!({
            "default": {"rpm": 60, "tpm": 1000, "concurrent": 4,
                        "models": [{"model": "gpt-4o*", "tpm": 100}]},
            "consumers": {"team-a": {"tpm": 5000, "concurrent": null, "models": []}},
            "default_max_tokens": 256
        });
        let c = parse(v).unwrap();
        let l = c.limits.unwrap();
        assert_eq!(l.default_max_tokens, 256);
        assert_eq!(l.reservation(10, None, 1), 266);
        assert_eq!(l.reservation(10, Some(5), 1), 15);
        // Without a cap, each of n choices may take the default.
        assert_eq!(l.reservation(10, None, 3), 10 + 3 * 256);
        assert_eq!(l.reservation(10, Some(15), 3), 25);
        let a = l.scopes("team-a", Some("gpt-4o"));
        assert_eq!(a.len(), 1);
        assert_eq!(
            a[0].spec,
            Spec {
                rpm: Some(60),
                tpm: Some(5000),
                tpd: None,
                concurrent: None
            }
        );
        let b = l.scopes("team-b", Some("gpt-4o-mini"));
        assert_eq!(b.len(), 2);
        assert_eq!(b[1].name, "team-b / gpt-4o*");
        assert_eq!(b[1].spec.tpm, Some(100));
        assert_eq!(l.scopes("team-b", None).len(), 1);
        assert!(l.global.is_none());
    }

    #[test]
    fn limits_errors_name_the_field() {
        let mut v = base();
        v["limits"] = serde_json::json!({"consumers": {"team-x": {"rpm": 1}}});
        assert!(field_of(v).starts_with("limits.consumers.team-x: unknown consumer"));

        let mut v = base();
        v["limits"] = serde_json::json!({"default": {"rpm": "ten"}});
        assert!(field_of(v).starts_with("limits.default.rpm"));

        let mut v = base();
        v["limits"] = serde_json::json!({"default": {"models": [{"model": "x"}]}});
        assert!(field_of(v).starts_with("limits.default.models[0]: sets no limit"));

        let mut v = base();
        v["limits"] = serde_json::json!({"global": {"cluster": "rls", "failure_mode": "maybe"}});
        assert!(field_of(v).starts_with("limits.global.failure_mode"));

        let mut v = base();
        v["routes"] = serde_json::json!([]);
        v["default"] = serde_json::json!({"to": {"provider": "openai"}});
        v["body_routing"] = false.into();
        v["providers"]["azure"]["models"] = serde_json::json!({});
        v["limits"] = serde_json::json!({"default": {"models": [{"model": "x", "rpm": 1}]}});
        assert!(
            field_of(v).starts_with("limits.default.models: per-model limits need body_routing")
        );

        let mut v = base();
        v["limits"] = serde_json::json!({"global": {"cluster": "rls"}});
        let g = parse(v).unwrap().limits.unwrap().global.unwrap();
        assert_eq!(g.failure_mode, FailureMode::Open);
        assert_eq!(g.domain, "llm-gateway");
        assert_eq!(g.timeout_ms, DEFAULT_GLOBAL_TIMEOUT_MS);
    }

    #[test]
    fn route_models_are_the_plain_name_then_the_examples() {
        let mut v = base();
        v["routes"][0]["models"] = serde_json::json!(["gpt-4o", "gpt-4o-mini"]);
        v["routes"][1]["models"] = serde_json::json!([]);
        v["routes"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"match": {"header": {"name": "x-tier"}},
                                     "to": {"provider": "openai"}, "models": ["any-1"]}));
        v["default"] = serde_json::json!({"to": {"provider": "openai"}, "models": ["d-1", "d-2"]});
        let c = parse(v).unwrap();
        assert_eq!(c.routes[0].models, ["gpt-4o", "gpt-4o-mini"]);
        assert_eq!(c.routes[1].models, ["split-me"]);
        assert_eq!(c.routes[2].models, ["any-1"]);
        assert_eq!(c.default_models, ["d-1", "d-2"]);
        assert!(is_glob("a*") && is_glob("a?") && is_glob("a[bc]") && !is_glob("gpt-4.1"));

        for (i, models, want) in [
            (
                0,
                serde_json::json!(["gpt-5"]),
                "routes[0].models[0]: \"gpt-5\" is not matched",
            ),
            (
                0,
                serde_json::json!(["gpt-4o", "gpt-4o"]),
                "routes[0].models[1]: duplicate",
            ),
            (
                0,
                serde_json::json!([""]),
                "routes[0].models[0]: must not be empty",
            ),
            (
                1,
                serde_json::json!(["split-me"]),
                "routes[1].models[0]: duplicate",
            ),
            (
                1,
                serde_json::json!(["other"]),
                "routes[1].models[0]: \"other\" is not matched",
            ),
            (1, serde_json::json!("split-me"), "routes[1].models"),
        ] {
            let mut v = base();
            v["routes"][i]["models"] = models;
            let e = field_of(v);
            assert!(e.starts_with(want), "{e}");
        }
        let mut v = base();
        v["default"] = serde_json::json!({"to": {"provider": "openai"}, "models": ["d", "d"]});
        assert!(field_of(v).starts_with("default.models[1]: duplicate"));
    }

    #[test]
    fn provider_formats_and_paths() {
        let mut v = base();
        v["providers"]["az"] =
            serde_json::json!({"cluster": "az", "format": "azure", "api_key_env": "AZURE_KEY"});
        v["providers"]["claude"] =
            serde_json::json!({"cluster": "c", "format": "anthropic", "api_key_env": "AZURE_KEY"});
        let c = parse(v).unwrap();
        let az = c.providers.iter().find(|p| p.name == "az").unwrap();
        assert_eq!(az.auth, AuthStyle::ApiKey);
        assert_eq!(
            az.path("chat/completions", "gpt 4o/x").as_deref(),
            Some("/openai/deployments/gpt%204o%2Fx/chat/completions?api-version=2024-10-21")
        );
        let claude = c.providers.iter().find(|p| p.name == "claude").unwrap();
        assert_eq!(claude.credential_header().unwrap().0, "x-api-key");
        assert_eq!(
            claude.path("chat/completions", "m").as_deref(),
            Some("/v1/messages")
        );

        let mut v = base();
        v["providers"]["openai"]["api_version"] = "1".into();
        assert!(field_of(v).starts_with("providers.openai.api_version: applies to azure"));
    }

    /// A configuration with every size and count at its maximum (what tests/bounds.rs loads
    /// in Envoy).
    fn at_maxima() -> serde_json::Value {
        use crate::{cache, usage};
        let mut v = base();
        v["max_request_body_bytes"] = MAX_BODY_BYTES.into();
        v["max_response_body_bytes"] = MAX_BODY_BYTES.into();
        v["limits"] = serde_json::json!({
            "default": {"rpm": 1000},
            "max_tracked": MAX_TRACKED,
            "default_max_tokens": MAX_DEFAULT_MAX_TOKENS,
            "global": {"cluster": "rls", "timeout_ms": MAX_TIMEOUT_MS}
        });
        v["usage_export"] = serde_json::json!({
            "cluster": "usage",
            "batch_size": usage::MAX_BATCH_SIZE,
            "max_buffered_events": usage::MAX_BUFFERED_EVENTS,
            "flush_interval_ms": usage::MAX_FLUSH_INTERVAL_MS,
            "max_retries": usage::MAX_RETRIES,
            "timeout_ms": MAX_TIMEOUT_MS
        });
        v["cache"] = serde_json::json!({
            "max_entries": cache::MAX_ENTRIES,
            "max_bytes": cache::MAX_BYTES,
            "max_entry_bytes": cache::MAX_ENTRY_BYTES,
            "semantic": {
                "embeddings": {"provider": "openai", "model": "e", "timeout_ms": MAX_TIMEOUT_MS,
                               "dimensions": cache::MAX_DIMENSIONS},
                "max_vectors": cache::MAX_VECTORS
            }
        });
        v["routes"][0]["cache"] =
            serde_json::json!({"ttl_s": cache::MAX_TTL_S, "semantic": {"threshold": 0.9}});
        v
    }

    #[test]
    fn every_size_has_a_maximum_named_in_its_error() {
        use crate::{cache, usage};
        let at_max = at_maxima();
        let c = parse(at_max.clone()).unwrap();
        assert_eq!(c.max_request_body_bytes, MAX_BODY_BYTES);
        assert_eq!(c.limits.as_ref().unwrap().max_tracked, MAX_TRACKED);
        assert_eq!(
            c.usage_export.as_ref().unwrap().batch_size,
            usage::MAX_BATCH_SIZE
        );
        assert_eq!(c.cache.as_ref().unwrap().max_entries, cache::MAX_ENTRIES);
        let mut chroma = at_max.clone();
        chroma["cache"]["semantic"]["store"] =
            serde_json::json!({"chroma": {"cluster": "chroma", "timeout_ms": MAX_TIMEOUT_MS}});
        assert!(parse(chroma.clone()).is_ok());
        let over = |v: &serde_json::Value, path: &[&str], max: u64| {
            let mut v = v.clone();
            let mut at = &mut v;
            for p in path {
                at = match p.parse::<usize>() {
                    Ok(i) => &mut at[i],
                    Err(_) => &mut at[*p],
                };
            }
            assert_eq!(*at, serde_json::json!(max), "{path:?} is at its maximum");
            *at = (max + 1).into();
            match parse(v) {
                Ok(_) => panic!("{path:?} = {} accepted", max + 1),
                Err(e) => e,
            }
        };
        let body = MAX_BODY_BYTES as u64;
        for (path, max, field) in [
            (
                &["max_request_body_bytes"][..],
                body,
                "max_request_body_bytes",
            ),
            (
                &["max_response_body_bytes"],
                body,
                "max_response_body_bytes",
            ),
            (
                &["limits", "max_tracked"],
                u64::from(MAX_TRACKED),
                "limits.max_tracked",
            ),
            (
                &["limits", "default_max_tokens"],
                MAX_DEFAULT_MAX_TOKENS,
                "limits.default_max_tokens",
            ),
            (
                &["limits", "global", "timeout_ms"],
                MAX_TIMEOUT_MS,
                "limits.global.timeout_ms",
            ),
            (
                &["usage_export", "max_buffered_events"],
                usage::MAX_BUFFERED_EVENTS as u64,
                "usage_export.max_buffered_events",
            ),
            (
                &["usage_export", "flush_interval_ms"],
                usage::MAX_FLUSH_INTERVAL_MS,
                "usage_export.flush_interval_ms",
            ),
            (
                &["usage_export", "max_retries"],
                u64::from(usage::MAX_RETRIES),
                "usage_export.max_retries",
            ),
            (
                &["usage_export", "timeout_ms"],
                MAX_TIMEOUT_MS,
                "usage_export.timeout_ms",
            ),
            (
                &["cache", "max_entries"],
                u64::from(cache::MAX_ENTRIES),
                "cache.max_entries",
            ),
            (&["cache", "max_bytes"], cache::MAX_BYTES, "cache.max_bytes"),
            (
                &["cache", "max_entry_bytes"],
                cache::MAX_ENTRY_BYTES as u64,
                "cache.max_entry_bytes",
            ),
            (
                &["cache", "semantic", "max_vectors"],
                u64::from(cache::MAX_VECTORS),
                "cache.semantic.max_vectors",
            ),
            (
                &["cache", "semantic", "embeddings", "timeout_ms"],
                MAX_TIMEOUT_MS,
                "cache.semantic.embeddings.timeout_ms",
            ),
            (
                &["cache", "semantic", "embeddings", "dimensions"],
                u64::from(cache::MAX_DIMENSIONS),
                "cache.semantic.embeddings.dimensions",
            ),
            (
                &["routes", "0", "cache", "ttl_s"],
                cache::MAX_TTL_S,
                "routes[0].cache.ttl_s",
            ),
        ] {
            let e = over(&at_max, path, max);
            assert_eq!(e.field, field, "{path:?}");
            assert_eq!(e.message, format!("must be at most {max}"), "{path:?}");
        }
        // batch_size: at most its maximum, and max_buffered_events at least batch_size.
        let mut small = at_max.clone();
        small["usage_export"]["max_buffered_events"] = (usage::MAX_BATCH_SIZE * 2).into();
        assert!(parse(small.clone()).is_ok());
        let e = over(
            &small,
            &["usage_export", "batch_size"],
            usage::MAX_BATCH_SIZE as u64,
        );
        assert_eq!(e.field, "usage_export.batch_size");
        assert_eq!(
            e.message,
            format!("must be at most {}", usage::MAX_BATCH_SIZE)
        );
        let e = over(
            &chroma,
            &["cache", "semantic", "store", "chroma", "timeout_ms"],
            MAX_TIMEOUT_MS,
        );
        assert_eq!(e.field, "cache.semantic.store.chroma.timeout_ms");
        // The values: refused at configuration, not an abort at the first flush.
        for (path, v) in [
            (&["usage_export", "batch_size"][..], 1_000_000u64),
            (&["cache", "max_entries"], 4_000_000_000),
            (&["cache", "semantic", "max_vectors"], 4_000_000_000),
            (&["limits", "max_tracked"], 10_000_000),
        ] {
            let mut b = at_max.clone();
            let mut at = &mut b;
            for p in path {
                at = &mut at[*p];
            }
            *at = v.into();
            assert_eq!(parse(b).unwrap_err().field, path.join("."));
        }
    }
}
