//! `cache` (where entries and vectors live) and a route's `cache` (how it caches).

use serde::Deserialize;

use crate::config::check::{bounded, err, non_empty, ConfigError, MAX_TIMEOUT_MS};

pub const DEFAULT_MAX_ENTRIES: u32 = 4096;
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;
pub const DEFAULT_MAX_ENTRY_BYTES: usize = 1 << 20;
pub const DEFAULT_TTL_S: u64 = 300;
pub const DEFAULT_MAX_VECTORS: u32 = 10_000;
pub const DEFAULT_EMBEDDING_TIMEOUT_MS: u64 = 1000;
pub const DEFAULT_STORE_TIMEOUT_MS: u64 = 500;
/// Largest `max_entries`: every store reads and writes the index, 32 bytes an entry (2 MiB).
pub const MAX_ENTRIES: u32 = 65_536;
/// Largest `max_bytes` (1 GiB of Envoy's memory, shared by the workers).
pub const MAX_BYTES: u64 = 1 << 30;
/// Largest `max_entry_bytes` (16 MiB): an answer is held whole in the VM to be stored.
pub const MAX_ENTRY_BYTES: usize = 16 << 20;
/// Largest `semantic.max_vectors`: every worker mirrors the whole ring and scans it on each
/// lookup, `max_vectors` × (72 + 4 × dimensions) bytes (330 MiB at 4096 dimensions).
pub const MAX_VECTORS: u32 = 20_000;
/// Largest embedding the semantic cache keeps (`dimensions`, and what the service returns).
pub const MAX_DIMENSIONS: u32 = 4096;
/// Longest `ttl_s` (30 days).
pub const MAX_TTL_S: u64 = 30 * 86_400;

/// `cache` at the top of the plugin configuration: where entries and vectors live.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    #[serde(default)]
    max_entries: Option<u32>,
    #[serde(default)]
    max_bytes: Option<u64>,
    #[serde(default)]
    max_entry_bytes: Option<usize>,
    #[serde(default)]
    semantic: Option<RawSemantic>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSemantic {
    embeddings: RawEmbeddings,
    #[serde(default)]
    max_vectors: Option<u32>,
    #[serde(default)]
    store: Option<RawVectorStore>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmbeddings {
    provider: String,
    model: String,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default)]
    dimensions: Option<u32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawVectorStore {
    Named(String),
    Chroma { chroma: RawChroma },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChroma {
    cluster: String,
    #[serde(default)]
    collection: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    database: Option<String>,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// `cache` on a route (or the default target).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteCache {
    #[serde(default)]
    ttl_s: Option<u64>,
    #[serde(default)]
    scope: Option<Scope>,
    #[serde(default)]
    tool_calls: bool,
    #[serde(default)]
    charge_hits: bool,
    #[serde(default)]
    semantic: Option<RawRouteSemantic>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouteSemantic {
    threshold: f32,
    #[serde(default)]
    multi_turn: bool,
}

/// Who shares a route's entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Each consumer has its own entries.
    #[default]
    Consumer,
    /// Every consumer of the route shares them.
    Shared,
}

/// The validated store settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    pub max_entries: u32,
    pub max_bytes: u64,
    pub max_entry_bytes: usize,
    pub semantic: Option<SemanticConfig>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_entries: DEFAULT_MAX_ENTRIES,
            max_bytes: DEFAULT_MAX_BYTES,
            max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
            semantic: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SemanticConfig {
    pub embeddings: Embeddings,
    pub max_vectors: u32,
    pub store: VectorStore,
}

/// Where embeddings come from: a configured provider's `/v1/embeddings`.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// Index into `Config::providers`.
    pub provider: usize,
    pub model: String,
    pub timeout_ms: u64,
    /// `:authority` of the call; the provider's cluster name when not set.
    pub authority: Option<String>,
    pub dimensions: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum VectorStore {
    /// Envoy's shared data, per Envoy process.
    Local,
    /// A Chroma server over its HTTP API, shared by every replica.
    Chroma(ChromaConfig),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChromaConfig {
    pub cluster: String,
    pub authority: String,
    pub collection: String,
    pub tenant: String,
    pub database: String,
    pub timeout_ms: u64,
}

/// A route's cache settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteCache {
    pub ttl_ms: u64,
    pub scope: Scope,
    pub tool_calls: bool,
    pub charge_hits: bool,
    pub semantic: Option<RouteSemantic>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouteSemantic {
    pub threshold: f32,
    pub multi_turn: bool,
}

impl CacheConfig {
    /// Validate `cache`; `provider` finds a provider by name and says whether it serves
    /// embeddings (OpenAI or Azure format).
    pub fn parse(
        raw: RawCache,
        provider: &dyn Fn(&str) -> Option<(usize, bool)>,
    ) -> Result<CacheConfig, ConfigError> {
        let max_entries = bounded(
            "cache.max_entries",
            raw.max_entries,
            DEFAULT_MAX_ENTRIES,
            MAX_ENTRIES,
        )?;
        let max_bytes = bounded(
            "cache.max_bytes",
            raw.max_bytes,
            DEFAULT_MAX_BYTES,
            MAX_BYTES,
        )?;
        let max_entry_bytes = bounded(
            "cache.max_entry_bytes",
            raw.max_entry_bytes,
            DEFAULT_MAX_ENTRY_BYTES,
            MAX_ENTRY_BYTES,
        )?;
        let semantic = match raw.semantic {
            None => None,
            Some(s) => Some(SemanticConfig::parse(s, provider)?),
        };
        Ok(CacheConfig {
            max_entries,
            max_bytes,
            max_entry_bytes,
            semantic,
        })
    }
}

impl SemanticConfig {
    /// Validate `cache.semantic`.
    fn parse(
        s: RawSemantic,
        provider: &dyn Fn(&str) -> Option<(usize, bool)>,
    ) -> Result<SemanticConfig, ConfigError> {
        let embeddings = Embeddings::parse(s.embeddings, provider)?;
        let store = match s.store {
            None => VectorStore::Local,
            Some(RawVectorStore::Named(n)) if n == "local" => VectorStore::Local,
            Some(RawVectorStore::Named(n)) => {
                return Err(err(
                    "cache.semantic.store",
                    format!("\"{n}\": expected \"local\" or {{\"chroma\": {{...}}}}"),
                ))
            }
            Some(RawVectorStore::Chroma { chroma }) => {
                VectorStore::Chroma(ChromaConfig::parse(chroma)?)
            }
        };
        Ok(SemanticConfig {
            embeddings,
            max_vectors: bounded(
                "cache.semantic.max_vectors",
                s.max_vectors,
                DEFAULT_MAX_VECTORS,
                MAX_VECTORS,
            )?,
            store,
        })
    }
}

impl Embeddings {
    /// Validate `cache.semantic.embeddings`.
    fn parse(
        e: RawEmbeddings,
        provider: &dyn Fn(&str) -> Option<(usize, bool)>,
    ) -> Result<Embeddings, ConfigError> {
        let f = "cache.semantic.embeddings";
        let (index, serves) = provider(&e.provider).ok_or_else(|| {
            err(
                format!("{f}.provider"),
                format!("unknown provider \"{}\"", e.provider),
            )
        })?;
        if !serves {
            return Err(err(
                format!("{f}.provider"),
                "must be an openai or azure provider (embeddings)",
            ));
        }
        if e.model.trim().is_empty() {
            return Err(err(format!("{f}.model"), "must not be empty"));
        }
        Ok(Embeddings {
            provider: index,
            model: e.model,
            timeout_ms: bounded(
                &format!("{f}.timeout_ms"),
                e.timeout_ms,
                DEFAULT_EMBEDDING_TIMEOUT_MS,
                MAX_TIMEOUT_MS,
            )?,
            authority: non_empty(&format!("{f}.authority"), e.authority)?,
            dimensions: match e.dimensions {
                Some(d) => Some(bounded(
                    &format!("{f}.dimensions"),
                    Some(d),
                    d,
                    MAX_DIMENSIONS,
                )?),
                None => None,
            },
        })
    }
}

impl ChromaConfig {
    /// Validate `cache.semantic.store.chroma`.
    fn parse(c: RawChroma) -> Result<ChromaConfig, ConfigError> {
        let f = "cache.semantic.store.chroma";
        if c.cluster.trim().is_empty() {
            return Err(err(format!("{f}.cluster"), "must not be empty"));
        }
        Ok(ChromaConfig {
            authority: non_empty(&format!("{f}.authority"), c.authority)?
                .unwrap_or_else(|| c.cluster.clone()),
            cluster: c.cluster,
            collection: non_empty(&format!("{f}.collection"), c.collection)?
                .unwrap_or_else(|| "llm-gateway-cache".into()),
            tenant: non_empty(&format!("{f}.tenant"), c.tenant)?
                .unwrap_or_else(|| "default_tenant".into()),
            database: non_empty(&format!("{f}.database"), c.database)?
                .unwrap_or_else(|| "default_database".into()),
            timeout_ms: bounded(
                &format!("{f}.timeout_ms"),
                c.timeout_ms,
                DEFAULT_STORE_TIMEOUT_MS,
                MAX_TIMEOUT_MS,
            )?,
        })
    }
}

impl RouteCache {
    /// Validate a route's `cache` (`field` names it); `semantic_configured` says whether
    /// `cache.semantic` exists.
    pub fn parse(
        field: &str,
        raw: RawRouteCache,
        semantic_configured: bool,
    ) -> Result<RouteCache, ConfigError> {
        let ttl_s = bounded(
            &format!("{field}.ttl_s"),
            raw.ttl_s,
            DEFAULT_TTL_S,
            MAX_TTL_S,
        )?;
        let semantic = match raw.semantic {
            None => None,
            Some(s) => {
                if !semantic_configured {
                    return Err(err(
                        format!("{field}.semantic"),
                        "needs cache.semantic (the embeddings service)",
                    ));
                }
                if !(s.threshold > 0.0 && s.threshold <= 1.0) {
                    return Err(err(
                        format!("{field}.semantic.threshold"),
                        "must be in (0, 1]",
                    ));
                }
                Some(RouteSemantic {
                    threshold: s.threshold,
                    multi_turn: s.multi_turn,
                })
            }
        };
        Ok(RouteCache {
            ttl_ms: ttl_s.saturating_mul(1000),
            scope: raw.scope.unwrap_or_default(),
            tool_calls: raw.tool_calls,
            charge_hits: raw.charge_hits,
            semantic,
        })
    }
}
