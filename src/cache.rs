//! Response caching: configuration, cache keys, the entry store and the local vector index.
//!
//! The exact key is a SHA-256 over the provider and model the route chose, the scope (the
//! consumer unless the route shares its entries) and the whole request body in canonical form
//! (serde_json's sorted maps, numbers normalised) without `stream` and `stream_options`, so any
//! change to anything that can change an answer is another entry. The semantic partition is
//! the same hash with the last user message's text left out: a paraphrase is only compared with
//! entries whose provider, model, scope, earlier messages and parameters are identical.
//!
//! Entries live in Envoy's shared data (`Store`, as for the rate limits): a fixed set of slots
//! (two candidate slots per key) plus one index record holding, oldest first, which slot holds
//! what and how large it is, updated by compare-and-swap. The index keeps the total under
//! `max_bytes` by evicting the oldest entries; an expired entry is never served. The local
//! vector index is a ring of segments in shared data with a version per segment; each VM
//! mirrors the segments and re-reads only those whose version moved, so a lookup reads one
//! small record and scans vectors in its own memory.

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::check::{bounded, err, non_empty, ConfigError, MAX_TIMEOUT_MS};
use crate::limits::Store;

pub const DEFAULT_MAX_ENTRIES: u32 = 4096;
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;
pub const DEFAULT_MAX_ENTRY_BYTES: usize = 1 << 20;
pub const DEFAULT_TTL_S: u64 = 300;
pub const DEFAULT_MAX_VECTORS: u32 = 10_000;
pub const DEFAULT_EMBEDDING_TIMEOUT_MS: u64 = 1000;
pub const DEFAULT_STORE_TIMEOUT_MS: u64 = 500;
/// Vectors per shared-data segment of the local index.
pub const SEGMENT: u32 = 64;
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

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

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
            Some(s) => {
                let e = s.embeddings;
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
                let embeddings = Embeddings {
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
                };
                let store = match s.store {
                    None => VectorStore::Local,
                    Some(RawVectorStore::Named(n)) if n == "local" => VectorStore::Local,
                    Some(RawVectorStore::Named(n)) => {
                        return Err(err(
                            "cache.semantic.store",
                            format!("\"{n}\": expected \"local\" or {{\"chroma\": {{...}}}}"),
                        ))
                    }
                    Some(RawVectorStore::Chroma { chroma: c }) => {
                        let f = "cache.semantic.store.chroma";
                        if c.cluster.trim().is_empty() {
                            return Err(err(format!("{f}.cluster"), "must not be empty"));
                        }
                        VectorStore::Chroma(ChromaConfig {
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
                };
                Some(SemanticConfig {
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
        };
        Ok(CacheConfig {
            max_entries,
            max_bytes,
            max_entry_bytes,
            semantic,
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

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

pub type Key = [u8; 32];

/// What a request is looked up by.
#[derive(Debug, Clone, PartialEq)]
pub struct Keys {
    pub exact: Key,
    /// The semantic partition and the text to embed, when the route is semantic and the
    /// request is eligible.
    pub semantic: Option<(Key, String)>,
}

/// What the client's `Cache-Control` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Directives {
    /// `no-cache`: do not serve from the cache.
    pub no_cache: bool,
    /// `no-store`: do not store the answer either.
    pub no_store: bool,
}

impl Directives {
    pub fn parse(cache_control: Option<&str>) -> Directives {
        let mut d = Directives::default();
        for part in cache_control.unwrap_or_default().split(',') {
            let name = part.split('=').next().unwrap_or_default().trim();
            if name.eq_ignore_ascii_case("no-cache") {
                d.no_cache = true;
            } else if name.eq_ignore_ascii_case("no-store") {
                d.no_store = true;
                d.no_cache = true;
            }
        }
        d
    }
}

fn digest(domain: &[u8], provider: &str, model: &str, scope: Option<&str>, body: &Value) -> Key {
    let mut h = Sha256::new();
    h.update(domain);
    for part in [provider, model] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    match scope {
        Some(c) => {
            h.update([1]);
            h.update((c.len() as u64).to_le_bytes());
            h.update(c.as_bytes());
        }
        None => h.update([0]),
    }
    // serde_json's maps are sorted (no preserve_order): the serialisation is canonical.
    h.update(body.to_string().as_bytes());
    h.finalize().into()
}

/// The text of a user message whose content is text only (a string or text parts).
fn user_text(m: &Value) -> Option<String> {
    if m.get("role")?.as_str()? != "user" {
        return None;
    }
    match m.get("content")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for p in parts {
                if p.get("type")?.as_str()? != "text" {
                    return None;
                }
                out.push(p.get("text")?.as_str()?);
            }
            Some(out.join("\n"))
        }
        _ => None,
    }
}

/// The cache keys of an OpenAI chat request `body` routed to `provider`/`model`; `consumer`
/// is the scope (`None` when shared). `None` when the body is not a JSON object.
pub fn keys(
    body: &[u8],
    provider: &str,
    model: &str,
    consumer: Option<&str>,
    semantic: Option<&RouteSemantic>,
) -> Option<Keys> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let o = v.as_object_mut()?;
    o.remove("stream");
    o.remove("stream_options");
    o.insert("model".into(), Value::String(model.into()));
    let exact = digest(b"llm-gateway/exact/v1\0", provider, model, consumer, &v);
    let semantic = semantic.and_then(|s| {
        let messages = v.get_mut("messages")?.as_array_mut()?;
        let (last, earlier) = messages.split_last_mut()?;
        let text = user_text(last)?;
        let single_turn = match earlier {
            [] => true,
            [m] => matches!(
                m.get("role").and_then(Value::as_str),
                Some("system" | "developer")
            ),
            _ => false,
        };
        if !(single_turn || s.multi_turn) || text.trim().is_empty() {
            return None;
        }
        // Everything but the question's text must match exactly.
        if let Some(o) = last.as_object_mut() {
            o.remove("content");
        }
        let partition = digest(b"llm-gateway/semantic/v1\0", provider, model, consumer, &v);
        Some((partition, text))
    });
    Some(Keys { exact, semantic })
}

// ---------------------------------------------------------------------------------------------
// Entry store
// ---------------------------------------------------------------------------------------------

const ENTRY_MAGIC: &[u8; 4] = b"LGC2";
const ENTRY_HEADER: usize = 4 + 32 + 8 + 8 + 8;
/// One index record: slot, size, sequence number, expiry, key prefix.
const INDEX_RECORD: usize = 4 + 4 + 8 + 8 + 8;
/// One directory reference: key prefix, slot, sequence number.
const DIR_RECORD: usize = 8 + 4 + 8;
/// Entries per directory bucket on average, and references a bucket keeps at most.
const BUCKET_LOAD: u32 = 4;
const BUCKET_REFS: usize = 16;
/// Compare-and-swap attempts before giving up on a store.
const MAX_CAS: usize = 32;

// Everything read back from shared data is untrusted: another version of the filter, another
// plugin with the same `vm_id`, or a worker that died mid-update may have written it. Decoders
// read it through `get` and checked arithmetic only, and a record they cannot read is absent.

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// The first eight bytes of a key, as a number.
fn prefix(key: &Key) -> u64 {
    u64_at(key, 0).unwrap_or(0)
}

struct EntryHeader {
    key: Key,
    seq: u64,
    expires_ms: u64,
}

/// An entry's header (magic, key, sequence, expiry, store time); `None` unless the whole
/// header is there, so the answer after it can always be split off.
fn entry_header(b: &[u8]) -> Option<EntryHeader> {
    let h = b.get(..ENTRY_HEADER)?;
    if h.get(..4)? != ENTRY_MAGIC {
        return None;
    }
    Some(EntryHeader {
        key: h.get(4..36)?.try_into().ok()?,
        seq: u64_at(h, 36)?,
        expires_ms: u64_at(h, 44)?,
    })
}

/// The answer stored after an entry's header.
fn entry_body(b: &[u8]) -> Option<&[u8]> {
    b.get(ENTRY_HEADER..)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IndexRecord {
    slot: u32,
    size: u32,
    seq: u64,
    expires_ms: u64,
    key: u64,
}

/// Every stored entry, oldest first: what holds the count and size bounds.
#[derive(Debug, Default, PartialEq, Eq)]
struct Index {
    next_seq: u64,
    records: Vec<IndexRecord>,
}

impl Index {
    fn decode(b: &[u8]) -> Index {
        let mut idx = Index {
            next_seq: u64_at(b, 0).unwrap_or(0),
            records: Vec::new(),
        };
        let mut at = 8;
        while let (Some(slot), Some(size), Some(seq), Some(expires_ms), Some(key)) = (
            u32_at(b, at),
            u32_at(b, at + 4),
            u64_at(b, at + 8),
            u64_at(b, at + 16),
            u64_at(b, at + 24),
        ) {
            idx.records.push(IndexRecord {
                slot,
                size,
                seq,
                expires_ms,
                key,
            });
            at += INDEX_RECORD;
        }
        idx
    }

    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(8 + self.records.len() * INDEX_RECORD);
        b.extend_from_slice(&self.next_seq.to_le_bytes());
        for r in &self.records {
            b.extend_from_slice(&r.slot.to_le_bytes());
            b.extend_from_slice(&r.size.to_le_bytes());
            b.extend_from_slice(&r.seq.to_le_bytes());
            b.extend_from_slice(&r.expires_ms.to_le_bytes());
            b.extend_from_slice(&r.key.to_le_bytes());
        }
        b
    }

    fn total(&self) -> u64 {
        self.records
            .iter()
            .fold(0u64, |t, r| t.saturating_add(u64::from(r.size)))
    }
}

/// A directory bucket: which slots may hold keys with these prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DirRef {
    key: u64,
    slot: u32,
    seq: u64,
}

fn decode_dir(b: &[u8]) -> Vec<DirRef> {
    b.chunks_exact(DIR_RECORD)
        .filter_map(|c| {
            Some(DirRef {
                key: u64_at(c, 0)?,
                slot: u32_at(c, 8)?,
                seq: u64_at(c, 12)?,
            })
        })
        .collect()
}

fn encode_dir(refs: &[DirRef]) -> Vec<u8> {
    let mut b = Vec::with_capacity(refs.len() * DIR_RECORD);
    for r in refs {
        b.extend_from_slice(&r.key.to_le_bytes());
        b.extend_from_slice(&r.slot.to_le_bytes());
        b.extend_from_slice(&r.seq.to_le_bytes());
    }
    b
}

/// What a store did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stored {
    pub stored: bool,
    /// Entries evicted to make room (by count or size), not counting expired ones.
    pub evicted: u32,
}

/// The answers, in shared data: `max_entries` slots, one index (every entry, oldest first,
/// which the bounds are kept on), and directory buckets that say which slot may hold a key, so
/// a lookup reads one small bucket and one slot.
#[derive(Debug, Clone)]
pub struct Entries {
    prefix: String,
    slots: u32,
    buckets: u32,
    max_bytes: u64,
}

impl Entries {
    pub fn new(prefix: &str, cfg: &CacheConfig) -> Entries {
        let slots = cfg.max_entries.max(1);
        Entries {
            prefix: prefix.to_string(),
            slots,
            buckets: slots.div_ceil(BUCKET_LOAD),
            max_bytes: cfg.max_bytes,
        }
    }

    fn slot_key(&self, slot: u32) -> String {
        format!("{}e.{slot}", self.prefix)
    }

    fn index_key(&self) -> String {
        format!("{}index", self.prefix)
    }

    fn bucket_key(&self, key: &Key) -> String {
        let b = u64_at(key, 8).unwrap_or(0) % u64::from(self.buckets);
        format!("{}d.{b}", self.prefix)
    }

    /// The stored answer for `key`, unless absent or expired.
    pub fn get(&self, store: &dyn Store, key: &Key, now_ms: u64) -> Option<Vec<u8>> {
        let (dir, _) = store.get(&self.bucket_key(key))?;
        let mut refs: Vec<DirRef> = decode_dir(&dir)
            .into_iter()
            .filter(|r| r.key == prefix(key))
            .collect();
        refs.sort_by_key(|r| std::cmp::Reverse(r.seq));
        for r in refs {
            let Some((value, _)) = store.get(&self.slot_key(r.slot)) else {
                continue;
            };
            let Some(h) = entry_header(&value) else {
                continue;
            };
            if &h.key == key && h.seq == r.seq {
                if h.expires_ms <= now_ms {
                    return None;
                }
                return entry_body(&value).map(<[u8]>::to_vec);
            }
        }
        None
    }

    /// Store `body` for `key` until `expires_ms`, evicting the oldest entries beyond the count
    /// and size bounds (and the entry it replaces).
    pub fn put(
        &self,
        store: &dyn Store,
        key: &Key,
        body: &[u8],
        expires_ms: u64,
        now_ms: u64,
    ) -> Stored {
        let size = (ENTRY_HEADER + body.len()) as u64;
        if size > self.max_bytes || size > u64::from(u32::MAX) {
            return Stored::default();
        }
        let index_key = self.index_key();
        let kp = prefix(key);
        // Claim a slot and its bytes in the index.
        let mut claimed = None;
        for _ in 0..MAX_CAS {
            let (bytes, cas) = store.get(&index_key).unwrap_or_default();
            let mut idx = Index::decode(&bytes);
            let mut drop: Vec<IndexRecord> = Vec::new();
            let mut evicted = 0;
            // Expired entries, and an older answer to the same key, go without counting as
            // evictions.
            idx.records.retain(|r| {
                let keep = r.expires_ms > now_ms && r.key != kp && r.slot < self.slots;
                if !keep {
                    drop.push(*r);
                }
                keep
            });
            while !idx.records.is_empty()
                && (idx.records.len() >= self.slots as usize
                    || idx.total().saturating_add(size) > self.max_bytes)
            {
                drop.push(idx.records.remove(0));
                evicted += 1;
            }
            // The slots in use, as many as there are entries (not one per slot).
            let mut used: Vec<u32> = idx.records.iter().map(|r| r.slot).collect();
            used.sort_unstable();
            let seq = idx.next_seq.wrapping_add(1);
            // Start the search where the sequence points, so slots are used round the table;
            // fewer entries than slots are left, so one of the next `used.len() + 1` is free.
            let start = seq % u64::from(self.slots);
            let free = (0..=used.len() as u64)
                .map(|i| ((start + i) % u64::from(self.slots)) as u32)
                .find(|s| used.binary_search(s).is_err());
            let Some(slot) = free else {
                return Stored::default();
            };
            idx.next_seq = seq;
            idx.records.push(IndexRecord {
                slot,
                size: size as u32,
                seq,
                expires_ms,
                key: kp,
            });
            if store.set(&index_key, &idx.encode(), cas).is_ok() {
                claimed = Some((slot, seq, drop, evicted));
                break;
            }
        }
        let Some((slot, seq, drop, evicted)) = claimed else {
            return Stored::default();
        };
        let mut value = Vec::with_capacity(size as usize);
        value.extend_from_slice(ENTRY_MAGIC);
        value.extend_from_slice(key);
        value.extend_from_slice(&seq.to_le_bytes());
        value.extend_from_slice(&expires_ms.to_le_bytes());
        value.extend_from_slice(&now_ms.to_le_bytes());
        value.extend_from_slice(body);
        let _ = store.set(&self.slot_key(slot), &value, 0);
        for r in drop.iter().filter(|r| r.slot != slot) {
            self.blank(store, r.slot, r.seq);
        }
        // Point the key's bucket at the slot (replacing what it said of this key).
        let bucket = self.bucket_key(key);
        for _ in 0..MAX_CAS {
            let (bytes, cas) = store.get(&bucket).unwrap_or_default();
            let mut refs = decode_dir(&bytes);
            refs.retain(|r| r.key != kp);
            if refs.len() >= BUCKET_REFS {
                // References to evicted entries linger until a bucket fills: drop the oldest.
                refs.sort_by_key(|r| r.seq);
                refs.drain(..=refs.len() - BUCKET_REFS);
            }
            refs.push(DirRef { key: kp, slot, seq });
            if store.set(&bucket, &encode_dir(&refs), cas).is_ok() {
                break;
            }
        }
        // Another writer may have evicted this entry before it was written: then it must not
        // stay behind untracked.
        let (bytes, _) = store.get(&index_key).unwrap_or_default();
        let still = Index::decode(&bytes)
            .records
            .iter()
            .any(|r| r.slot == slot && r.seq == seq);
        if !still {
            self.blank(store, slot, seq);
            return Stored {
                stored: false,
                evicted,
            };
        }
        Stored {
            stored: true,
            evicted,
        }
    }

    /// Empty `slot` if it still holds the entry numbered `seq`.
    fn blank(&self, store: &dyn Store, slot: u32, seq: u64) {
        let k = self.slot_key(slot);
        if let Some((value, cas)) = store.get(&k) {
            if entry_header(&value).is_some_and(|h| h.seq == seq) {
                let _ = store.set(&k, &[], cas);
            }
        }
    }

    /// Bytes the index accounts for (for tests and the bench).
    pub fn total_bytes(&self, store: &dyn Store) -> u64 {
        let (bytes, _) = store.get(&self.index_key()).unwrap_or_default();
        Index::decode(&bytes).total()
    }
}

// ---------------------------------------------------------------------------------------------
// Local vector index
// ---------------------------------------------------------------------------------------------

/// L2-normalise `v` in place; `false` when it is empty, longer than `MAX_DIMENSIONS`, zero or
/// not finite (such a vector is not kept or looked up).
pub fn normalise(v: &mut [f32]) -> bool {
    if v.is_empty() || v.len() > MAX_DIMENSIONS as usize {
        return false;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !norm.is_finite() || norm == 0.0 {
        return false;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    true
}

#[derive(Debug, Clone, PartialEq)]
struct VecEntry {
    partition: Key,
    key: Key,
    expires_ms: u64,
    vector: Vec<f32>,
}

/// A stored vector's header: partition, key, expiry (its length comes before it).
const VEC_HEADER: usize = 32 + 32 + 8;

fn encode_segment(entries: &[Option<VecEntry>]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        match e {
            None => b.extend_from_slice(&0u32.to_le_bytes()),
            Some(e) => {
                b.extend_from_slice(&(e.vector.len() as u32).to_le_bytes());
                b.extend_from_slice(&e.partition);
                b.extend_from_slice(&e.key);
                b.extend_from_slice(&e.expires_ms.to_le_bytes());
                for x in &e.vector {
                    b.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
    }
    b
}

fn decode_segment(b: &[u8]) -> Vec<Option<VecEntry>> {
    let n = u32_at(b, 0).unwrap_or(0).min(SEGMENT) as usize;
    let mut out = Vec::with_capacity(n);
    let mut at: usize = 4;
    for _ in 0..n {
        let Some(dim) = u32_at(b, at) else { break };
        at += 4;
        if dim == 0 {
            out.push(None);
            continue;
        }
        // A length from shared data: checked, so a corrupt one cannot wrap past the record.
        let Some(end) = usize::try_from(dim)
            .ok()
            .and_then(|d| d.checked_mul(4))
            .and_then(|d| d.checked_add(at + VEC_HEADER))
        else {
            break;
        };
        let (Some(partition), Some(key), Some(expires_ms), Some(raw)) = (
            b.get(at..at + 32).and_then(|s| Key::try_from(s).ok()),
            b.get(at + 32..at + 64).and_then(|s| Key::try_from(s).ok()),
            u64_at(b, at + 64),
            b.get(at + VEC_HEADER..end),
        ) else {
            break;
        };
        let vector = raw
            .chunks_exact(4)
            .filter_map(|c| c.try_into().ok().map(f32::from_le_bytes))
            .collect();
        out.push(Some(VecEntry {
            partition,
            key,
            expires_ms,
            vector,
        }));
        at = end;
    }
    out
}

/// The nearest stored neighbour of a vector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbour {
    /// The exact key the neighbour's answer is stored under.
    pub key: Key,
    pub similarity: f32,
}

/// A ring of `max_vectors` vectors in shared data, mirrored in each VM.
#[derive(Debug)]
pub struct VectorIndex {
    prefix: String,
    max_vectors: u32,
    segments: u32,
    mirror: Vec<Option<(u32, Vec<Option<VecEntry>>)>>,
}

impl VectorIndex {
    pub fn new(prefix: &str, max_vectors: u32) -> VectorIndex {
        let max_vectors = max_vectors.max(1);
        let segments = max_vectors.div_ceil(SEGMENT);
        VectorIndex {
            prefix: prefix.to_string(),
            max_vectors,
            segments,
            mirror: vec![None; segments as usize],
        }
    }

    fn meta_key(&self) -> String {
        format!("{}meta", self.prefix)
    }

    fn segment_key(&self, s: u32) -> String {
        format!("{}s.{s}", self.prefix)
    }

    /// meta: next position, then one version per segment.
    fn decode_meta(&self, b: &[u8]) -> (u64, Vec<u32>) {
        let next = u64_at(b, 0).unwrap_or(0);
        let versions = (0..self.segments as usize)
            .map(|i| u32_at(b, 8 + i * 4).unwrap_or(0))
            .collect();
        (next, versions)
    }

    fn encode_meta(next: u64, versions: &[u32]) -> Vec<u8> {
        let mut b = Vec::with_capacity(8 + versions.len() * 4);
        b.extend_from_slice(&next.to_le_bytes());
        for v in versions {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Add a vector (normalised) for the answer stored under `key`, overwriting the oldest
    /// once the ring is full.
    pub fn insert(
        &mut self,
        store: &dyn Store,
        partition: &Key,
        key: &Key,
        expires_ms: u64,
        vector: &[f32],
    ) -> bool {
        if vector.is_empty() || vector.len() > MAX_DIMENSIONS as usize {
            return false;
        }
        let meta_key = self.meta_key();
        // Claim a position. The stored one is kept inside the ring, so it cannot overflow
        // whatever shared data says.
        let ring = u64::from(self.max_vectors);
        let mut pos = None;
        for _ in 0..MAX_CAS {
            let (bytes, cas) = store.get(&meta_key).unwrap_or_default();
            let (next, versions) = self.decode_meta(&bytes);
            let at = next % ring;
            if store
                .set(
                    &meta_key,
                    &Self::encode_meta((at + 1) % ring, &versions),
                    cas,
                )
                .is_ok()
            {
                pos = Some(at);
                break;
            }
        }
        let Some(at) = pos else { return false };
        let seg = (at / u64::from(SEGMENT)) as u32;
        let slot = (at % u64::from(SEGMENT)) as usize;
        let entry = VecEntry {
            partition: *partition,
            key: *key,
            expires_ms,
            vector: vector.to_vec(),
        };
        let seg_key = self.segment_key(seg);
        let mut written = false;
        for _ in 0..MAX_CAS {
            let (bytes, cas) = store.get(&seg_key).unwrap_or_default();
            let mut entries = decode_segment(&bytes);
            if entries.len() <= slot {
                entries.resize(slot + 1, None);
            }
            if let Some(e) = entries.get_mut(slot) {
                *e = Some(entry.clone());
            }
            if store.set(&seg_key, &encode_segment(&entries), cas).is_ok() {
                written = true;
                break;
            }
        }
        if !written {
            return false;
        }
        // Only now tell the mirrors: a reader never caches a version without its vector.
        for _ in 0..MAX_CAS {
            let (bytes, cas) = store.get(&meta_key).unwrap_or_default();
            let (next, mut versions) = self.decode_meta(&bytes);
            if let Some(v) = versions.get_mut(seg as usize) {
                // 0 means "never written": a wrapped version skips it.
                *v = v.wrapping_add(1).max(1);
            }
            if store
                .set(&meta_key, &Self::encode_meta(next, &versions), cas)
                .is_ok()
            {
                return true;
            }
        }
        false
    }

    /// The nearest unexpired neighbour of `vector` (normalised) in `partition`.
    pub fn nearest(
        &mut self,
        store: &dyn Store,
        partition: &Key,
        vector: &[f32],
        now_ms: u64,
    ) -> Option<Neighbour> {
        let (bytes, _) = store.get(&self.meta_key()).unwrap_or_default();
        let (_, versions) = self.decode_meta(&bytes);
        for (s, version) in versions.iter().enumerate() {
            let fresh = matches!(self.mirror.get(s), Some(Some((v, _))) if v == version);
            if !fresh && *version != 0 {
                let (seg, _) = store.get(&self.segment_key(s as u32)).unwrap_or_default();
                if let Some(m) = self.mirror.get_mut(s) {
                    *m = Some((*version, decode_segment(&seg)));
                }
            }
        }
        let mut best: Option<Neighbour> = None;
        for (_, entries) in self.mirror.iter().flatten() {
            for e in entries.iter().flatten() {
                if &e.partition != partition
                    || e.expires_ms <= now_ms
                    || e.vector.len() != vector.len()
                {
                    continue;
                }
                let similarity = dot(&e.vector, vector);
                if best.is_none_or(|b| similarity > b.similarity) {
                    best = Some(Neighbour {
                        key: e.key,
                        similarity,
                    });
                }
            }
        }
        best
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_sums(a, b)
}

/// In the filter the vector search is compiled with wasm SIMD (128-bit lanes): about 2× faster
/// in V8 at 10,000 vectors (`make bench`). Only this function: the rest of the module is built
/// without SIMD.
#[cfg(target_arch = "wasm32")]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[target_feature(enable = "simd128")]
    unsafe fn simd(a: &[f32], b: &[f32]) -> f32 {
        dot_sums(a, b)
    }
    // SAFETY: nothing here depends on the feature at run time: a module with SIMD instructions
    // is refused whole by an engine without them, at load time (V8, which Envoy uses, and
    // Wasmtime have them).
    unsafe { simd(a, b) }
}

/// Dot product with eight independent sums, so the compiler can keep several multiply-adds in
/// flight (and vectorise them); a single running sum would wait on each addition.
#[inline(always)]
fn dot_sums(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::test_store::MemStore;
    use serde_json::json;

    fn k(body: Value, consumer: Option<&str>) -> Keys {
        keys(
            body.to_string().as_bytes(),
            "openai",
            "gpt-4o-mini",
            consumer,
            Some(&RouteSemantic {
                threshold: 0.9,
                multi_turn: false,
            }),
        )
        .unwrap()
    }

    fn chat() -> Value {
        json!({"model": "m", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is the capital of France?"}
        ], "temperature": 0.2})
    }

    #[test]
    fn every_parameter_changes_the_exact_key_but_stream_does_not() {
        let base = k(chat(), Some("a")).exact;
        let mut streamed = chat();
        streamed["stream"] = json!(true);
        streamed["stream_options"] = json!({"include_usage": true});
        assert_eq!(k(streamed, Some("a")).exact, base);
        // Key order and number spelling do not matter.
        let reordered: Value = serde_json::from_str(
            r#"{"temperature": 0.20, "messages": [{"content": "Be brief.", "role": "system"},
                {"role": "user", "content": "What is the capital of France?"}], "model": "m"}"#,
        )
        .unwrap();
        assert_eq!(k(reordered, Some("a")).exact, base);
        for (field, value) in [
            ("temperature", json!(0.3)),
            ("top_p", json!(0.5)),
            ("seed", json!(1)),
            ("n", json!(2)),
            ("max_tokens", json!(10)),
            ("max_completion_tokens", json!(10)),
            ("stop", json!(["x"])),
            (
                "tools",
                json!([{"type": "function", "function": {"name": "f"}}]),
            ),
            ("tool_choice", json!("none")),
            ("response_format", json!({"type": "json_object"})),
            ("user", json!("u")),
        ] {
            let mut b = chat();
            b[field] = value;
            assert_ne!(k(b, Some("a")).exact, base, "{field}");
        }
        assert_ne!(k(chat(), Some("b")).exact, base);
        assert_ne!(k(chat(), None).exact, base);
        let other_model = keys(
            chat().to_string().as_bytes(),
            "openai",
            "gpt-4o",
            Some("a"),
            None,
        )
        .unwrap();
        assert_ne!(other_model.exact, base);
        let other_provider = keys(
            chat().to_string().as_bytes(),
            "azure",
            "gpt-4o-mini",
            Some("a"),
            None,
        )
        .unwrap();
        assert_ne!(other_provider.exact, base);
    }

    #[test]
    fn the_partition_leaves_out_only_the_question() {
        let (p, text) = k(chat(), Some("a")).semantic.unwrap();
        assert_eq!(text, "What is the capital of France?");
        let mut para = chat();
        para["messages"][1]["content"] = json!("Tell me France's capital city");
        assert_eq!(k(para, Some("a")).semantic.unwrap().0, p);
        let mut sys = chat();
        sys["messages"][0]["content"] = json!("Be verbose.");
        assert_ne!(k(sys, Some("a")).semantic.unwrap().0, p);
        let mut temp = chat();
        temp["temperature"] = json!(1.0);
        assert_ne!(k(temp, Some("a")).semantic.unwrap().0, p);
        assert_ne!(k(chat(), Some("b")).semantic.unwrap().0, p);
        // Text parts count as text; an image does not.
        let mut parts = chat();
        parts["messages"][1]["content"] = json!([{"type": "text", "text": "What is the capital"}, {"type": "text", "text": "of France?"}]);
        assert_eq!(
            k(parts, Some("a")).semantic.unwrap().1,
            "What is the capital\nof France?"
        );
        let mut image = chat();
        image["messages"][1]["content"] =
            json!([{"type": "image_url", "image_url": {"url": "data:"}}]);
        assert!(k(image, Some("a")).semantic.is_none());
    }

    #[test]
    fn multi_turn_is_eligible_only_when_asked() {
        let conv = json!({"model": "m", "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "What is the capital of France?"}
        ]});
        assert!(k(conv.clone(), None).semantic.is_none());
        let multi = RouteSemantic {
            threshold: 0.9,
            multi_turn: true,
        };
        let a = keys(conv.to_string().as_bytes(), "p", "m", None, Some(&multi)).unwrap();
        let mut other = conv.clone();
        other["messages"][1]["content"] = json!("Hey there");
        let b = keys(other.to_string().as_bytes(), "p", "m", None, Some(&multi)).unwrap();
        // Earlier turns must match exactly.
        assert_ne!(a.semantic.unwrap().0, b.semantic.unwrap().0);
        // An assistant message last is not a question.
        let mut last = conv;
        last["messages"]
            .as_array_mut()
            .unwrap()
            .push(json!({"role": "assistant", "content": "x"}));
        assert!(
            keys(last.to_string().as_bytes(), "p", "m", None, Some(&multi))
                .unwrap()
                .semantic
                .is_none()
        );
        assert!(keys(b"[1]", "p", "m", None, None).is_none());
        assert!(keys(b"not json", "p", "m", None, None).is_none());
    }

    #[test]
    fn directives() {
        assert_eq!(Directives::parse(None), Directives::default());
        let nc = Directives::parse(Some("max-age=0, No-Cache"));
        assert!(nc.no_cache && !nc.no_store);
        let ns = Directives::parse(Some("no-store"));
        assert!(ns.no_cache && ns.no_store);
    }

    fn key(i: u8) -> Key {
        Sha256::digest([i]).into()
    }

    fn entries(max_entries: u32, max_bytes: u64) -> Entries {
        Entries::new(
            "t.",
            &CacheConfig {
                max_entries,
                max_bytes,
                ..CacheConfig::default()
            },
        )
    }

    #[test]
    fn entries_expire_and_are_bounded_by_size_oldest_first() {
        let s = MemStore::default();
        let e = entries(64, 3 * (ENTRY_HEADER as u64 + 100));
        let body = [b'x'; 100];
        assert!(e.put(&s, &key(1), &body, 1000, 0).stored);
        assert_eq!(e.get(&s, &key(1), 999).as_deref(), Some(&body[..]));
        assert_eq!(e.get(&s, &key(1), 1000), None, "expired");
        assert_eq!(e.get(&s, &key(2), 0), None);
        for i in 2..=4 {
            assert!(e.put(&s, &key(i), &body, 10_000, 1).stored);
        }
        // Key 1 (expired) left without counting as an eviction; 2, 3, 4 fit.
        assert!(e.total_bytes(&s) <= 3 * (ENTRY_HEADER as u64 + 100));
        let r = e.put(&s, &key(5), &body, 10_000, 2);
        assert_eq!(r.evicted, 1);
        assert_eq!(e.get(&s, &key(2), 3), None, "the oldest was evicted");
        for i in 3..=5 {
            assert!(e.get(&s, &key(i), 3).is_some(), "{i}");
        }
        // Too large for the whole cache: not stored.
        assert!(!e.put(&s, &key(6), &[0; 1000], 10_000, 2).stored);
    }

    #[test]
    fn every_slot_is_used_before_the_oldest_is_evicted() {
        let s = MemStore::default();
        let e = entries(16, 1 << 20);
        let mut evicted = 0;
        for i in 0..16 {
            evicted += e.put(&s, &key(i), b"v", 10_000, 0).evicted;
        }
        assert_eq!(evicted, 0);
        for i in 0..16 {
            assert!(e.get(&s, &key(i), 1).is_some(), "{i}");
        }
        assert_eq!(e.put(&s, &key(16), b"v", 10_000, 0).evicted, 1);
        assert!(e.get(&s, &key(0), 1).is_none(), "the oldest went");
        for i in 1..=16 {
            assert!(e.get(&s, &key(i), 1).is_some(), "{i}");
        }
    }

    #[test]
    fn a_replaced_answer_is_served_and_slots_bound_the_count() {
        let s = MemStore::default();
        let e = entries(4, 1 << 20);
        e.put(&s, &key(1), b"old", 10_000, 0);
        e.put(&s, &key(1), b"new", 10_000, 1);
        assert_eq!(e.get(&s, &key(1), 2).as_deref(), Some(&b"new"[..]));
        for i in 2..50 {
            e.put(&s, &key(i), b"v", 10_000, 3);
        }
        let idx = Index::decode(&s.get("t.index").unwrap().0);
        assert!(idx.records.len() <= 4);
        // Every record's slot holds exactly that entry, and nothing else is stored.
        let live: Vec<u32> = idx.records.iter().map(|r| r.slot).collect();
        for slot in 0..4 {
            let (v, _) = s.get(&format!("t.e.{slot}")).unwrap_or_default();
            assert_eq!(!v.is_empty(), live.contains(&slot), "slot {slot}");
        }
    }

    #[test]
    fn concurrent_writers_keep_the_bound() {
        let s = MemStore::default();
        let e = entries(32, 10 * (ENTRY_HEADER as u64 + 50));
        std::thread::scope(|t| {
            for w in 0..4u8 {
                let (s, e) = (s.clone(), e.clone());
                t.spawn(move || {
                    for i in 0..50u8 {
                        e.put(&s, &key(w * 50 + i), &[w; 50], 10_000, 0);
                    }
                });
            }
        });
        let stored: u64 = (0..32)
            .filter_map(|i| s.get(&format!("t.e.{i}")))
            .map(|(v, _)| v.len() as u64)
            .sum();
        assert!(stored <= 10 * (ENTRY_HEADER as u64 + 50), "{stored}");
        assert_eq!(stored, e.total_bytes(&s));
    }

    fn unit(v: &[f32]) -> Vec<f32> {
        let mut v = v.to_vec();
        assert!(normalise(&mut v));
        v
    }

    #[test]
    fn vectors_nearest_within_partition_and_mirrors_follow_writers() {
        let s = MemStore::default();
        let mut writer = VectorIndex::new("v.", 130);
        let mut reader = VectorIndex::new("v.", 130);
        let (p, q) = (key(100), key(101));
        assert!(reader.nearest(&s, &p, &unit(&[1.0, 0.0]), 0).is_none());
        writer.insert(&s, &p, &key(1), 1000, &unit(&[1.0, 0.1]));
        writer.insert(&s, &p, &key(2), 1000, &unit(&[0.0, 1.0]));
        writer.insert(&s, &q, &key(3), 1000, &unit(&[1.0, 0.0]));
        let n = reader.nearest(&s, &p, &unit(&[1.0, 0.0]), 0).unwrap();
        assert_eq!(n.key, key(1));
        assert!(n.similarity > 0.99 && n.similarity <= 1.0001);
        // A new vector written after the reader mirrored the segment is seen.
        writer.insert(&s, &p, &key(4), 1000, &unit(&[1.0, 0.0]));
        assert_eq!(
            reader.nearest(&s, &p, &unit(&[1.0, 0.0]), 0).unwrap().key,
            key(4)
        );
        // Expired vectors are not neighbours.
        assert!(reader.nearest(&s, &p, &unit(&[1.0, 0.0]), 1000).is_none());
        // A ring of exactly max_vectors: the third vector of a ring of two overwrites the first.
        let mut two = VectorIndex::new("w.", 2);
        for (i, v) in [[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]].iter().enumerate() {
            two.insert(&s, &p, &key(10 + i as u8), 1000, &unit(v));
        }
        assert_ne!(
            two.nearest(&s, &p, &unit(&[1.0, 0.0]), 0).unwrap().key,
            key(10)
        );
        // The ring overwrites the oldest.
        for i in 0..200u32 {
            writer.insert(&s, &q, &key((i % 250) as u8), 5000, &unit(&[0.5, 0.5]));
        }
        assert!(reader.nearest(&s, &p, &unit(&[1.0, 0.0]), 0).is_none());
        assert!(!normalise(&mut []));
        assert!(!normalise(&mut [0.0, 0.0]));
        assert!(!normalise(&mut [f32::NAN]));
    }

    #[test]
    fn the_ring_position_stays_inside_the_ring() {
        let s = MemStore::default();
        let mut ring = VectorIndex::new("r.", 130);
        let (p, v) = (key(1), unit(&[1.0, 0.0]));
        // Another writer left the largest position: the next insert goes where it points
        // (u64::MAX % 130 = 15) and the stored position is kept inside the ring.
        s.set("r.meta", &VectorIndex::encode_meta(u64::MAX, &[0, 0, 0]), 0)
            .unwrap();
        assert!(ring.insert(&s, &p, &key(2), 1000, &v));
        let (next, versions) = ring.decode_meta(&s.get("r.meta").unwrap().0);
        assert_eq!(next, u64::MAX % 130 + 1);
        assert_eq!(versions, [1, 0, 0], "position 15 is in the first segment");
        for _ in 0..200 {
            assert!(ring.insert(&s, &p, &key(3), 1000, &v));
        }
        let (next, _) = ring.decode_meta(&s.get("r.meta").unwrap().0);
        assert!(next < 130);
        // Versions at the largest value wrap (past 0, "never written") rather than overflow.
        s.set(
            "r.meta",
            &VectorIndex::encode_meta(129, &[0, 0, u32::MAX]),
            0,
        )
        .unwrap();
        assert!(ring.insert(&s, &p, &key(4), 1000, &v));
        let (next, versions) = ring.decode_meta(&s.get("r.meta").unwrap().0);
        assert_eq!((next, versions[2]), (0, 1));
        assert_eq!(ring.nearest(&s, &p, &v, 0).unwrap().similarity.round(), 1.0);
    }

    #[test]
    fn the_largest_tables_work_with_a_few_entries() {
        let s = MemStore::default();
        let e = entries(MAX_ENTRIES, MAX_BYTES);
        for i in 0..5 {
            assert!(e.put(&s, &key(i), &[i; 10], 10_000, 0).stored);
        }
        for i in 0..5 {
            assert_eq!(e.get(&s, &key(i), 1).as_deref(), Some(&[i; 10][..]));
        }
        // Only what was stored exists: no per-slot records.
        assert!(s.len() <= 1 + 5 + 5, "{}", s.len());
        // The free slot search wraps round the table from where the sequence points.
        let small = entries(4, 1 << 20);
        let idx = Index {
            next_seq: 2,
            records: [3u32, 0]
                .iter()
                .map(|&slot| IndexRecord {
                    slot,
                    size: 61,
                    seq: u64::from(slot) + 1,
                    expires_ms: u64::MAX,
                    key: u64::from(slot) + 100,
                })
                .collect(),
        };
        s.set("t.index", &idx.encode(), 0).unwrap();
        assert!(small.put(&s, &key(9), b"x", 10_000, 0).stored);
        let after = Index::decode(&s.get("t.index").unwrap().0);
        assert_eq!(
            after.records.last().map(|r| r.slot),
            Some(1),
            "seq 3 points at 3, taken"
        );
        let mut ring = VectorIndex::new("big.", MAX_VECTORS);
        assert_eq!(ring.mirror.len(), MAX_VECTORS.div_ceil(SEGMENT) as usize);
        let v = unit(&[1.0, 2.0]);
        assert!(ring.insert(&s, &key(1), &key(2), 100, &v));
        assert_eq!(ring.nearest(&s, &key(1), &v, 0).unwrap().key, key(2));
        // Embeddings longer than the largest kept are neither normalised nor stored.
        let mut long = vec![1.0; MAX_DIMENSIONS as usize + 1];
        assert!(!normalise(&mut long));
        assert!(!ring.insert(&s, &key(1), &key(3), 100, &long));
        let mut longest = vec![1.0; MAX_DIMENSIONS as usize];
        assert!(normalise(&mut longest));
        assert!(ring.insert(&s, &key(1), &key(3), 100, &longest));
    }

    #[test]
    fn garbage_in_shared_data_is_not_a_panic() {
        let s = MemStore::default();
        for k in ["t.index", "t.e.0", "t.e.1", "v.meta", "v.s.0"] {
            s.set(k, &[0xff; 37], 0).unwrap();
        }
        let e = entries(2, 1 << 20);
        assert!(e.get(&s, &key(1), 0).is_none());
        assert!(e.put(&s, &key(1), b"x", 10, 0).stored);
        let mut v = VectorIndex::new("v.", 64);
        assert!(v.nearest(&s, &key(1), &[1.0], 0).is_none());
        assert!(decode_segment(&[5, 0, 0, 0, 3, 0, 0, 0]).is_empty());
    }

    #[test]
    fn a_short_entry_is_absent_at_every_length_of_its_header() {
        // The issue's case: a slot whose magic, key and sequence match but whose header stops
        // anywhere short of its end (52-59 bytes split at 60 used to panic).
        let s = MemStore::default();
        let e = entries(4, 1 << 20);
        assert!(e.put(&s, &key(1), b"answer", 10_000, 0).stored);
        let slot = (0..4)
            .map(|i| format!("t.e.{i}"))
            .find(|k| s.get(k).is_some_and(|(v, _)| !v.is_empty()))
            .unwrap();
        let (full, _) = s.get(&slot).unwrap();
        assert_eq!(full.len(), ENTRY_HEADER + 6);
        for len in 0..ENTRY_HEADER {
            s.set(&slot, &full[..len], 0).unwrap();
            assert_eq!(e.get(&s, &key(1), 1), None, "{len} bytes");
            assert!(entry_header(&full[..len]).is_none(), "{len} bytes");
        }
        s.set(&slot, &full[..ENTRY_HEADER], 0).unwrap();
        assert_eq!(
            e.get(&s, &key(1), 1),
            Some(Vec::new()),
            "a header and no answer"
        );
        s.set(&slot, &full, 0).unwrap();
        assert_eq!(e.get(&s, &key(1), 1).as_deref(), Some(&b"answer"[..]));
        // A store over a short record of the same slot still works.
        s.set(&slot, &full[..55], 0).unwrap();
        assert!(e.put(&s, &key(1), b"again", 10_000, 2).stored);
        assert_eq!(e.get(&s, &key(1), 3).as_deref(), Some(&b"again"[..]));
    }

    #[test]
    fn short_and_corrupt_index_and_directory_records_decode_without_panic() {
        let idx = Index {
            next_seq: 9,
            records: (0..3)
                .map(|i| IndexRecord {
                    slot: i,
                    size: 100 + i,
                    seq: u64::from(i) + 1,
                    expires_ms: u64::MAX,
                    key: u64::MAX - u64::from(i),
                })
                .collect(),
        };
        let b = idx.encode();
        assert_eq!(Index::decode(&b), idx);
        for len in 0..=b.len() {
            let d = Index::decode(&b[..len]);
            assert_eq!(
                d.records.len(),
                len.saturating_sub(8) / INDEX_RECORD,
                "{len}"
            );
            assert_eq!(d.records[..], idx.records[..d.records.len()]);
        }
        let refs = [
            DirRef {
                key: 1,
                slot: u32::MAX,
                seq: u64::MAX,
            },
            DirRef {
                key: u64::MAX,
                slot: 0,
                seq: 0,
            },
        ];
        let b = encode_dir(&refs);
        for len in 0..=b.len() {
            assert_eq!(decode_dir(&b[..len])[..], refs[..len / DIR_RECORD], "{len}");
        }
        // Sizes that overflow a sum, slots beyond the table: the store reads past them.
        let s = MemStore::default();
        let mut bad = Index {
            next_seq: u64::MAX,
            records: Vec::new(),
        };
        for slot in [0, 7, u32::MAX] {
            bad.records.push(IndexRecord {
                slot,
                size: u32::MAX,
                seq: u64::MAX,
                expires_ms: u64::MAX,
                key: 5,
            });
        }
        s.set("t.index", &bad.encode(), 0).unwrap();
        s.set("t.d.0", &encode_dir(&refs), 0).unwrap();
        let e = entries(4, 1 << 20);
        assert!(bad.total() >= u64::from(u32::MAX));
        assert!(e.put(&s, &key(3), b"x", 10, 0).stored);
        assert_eq!(e.get(&s, &key(3), 1).as_deref(), Some(&b"x"[..]));
    }

    #[test]
    fn short_and_corrupt_vector_segments_decode_without_panic() {
        let v = |i: u8| VecEntry {
            partition: key(i),
            key: key(i + 1),
            expires_ms: 7,
            vector: vec![0.5, -0.25, 1.0],
        };
        let entries = vec![Some(v(1)), None, Some(v(2))];
        let b = encode_segment(&entries);
        assert_eq!(decode_segment(&b), entries);
        for len in 0..b.len() {
            let d = decode_segment(&b[..len]);
            assert!(d.len() < entries.len(), "{len}");
            assert_eq!(d[..], entries[..d.len()]);
        }
        // Lengths that would run past the record or wrap a 32-bit size.
        for dim in [u32::MAX, 0x4000_0001, 0x4000_0000, 4] {
            let mut b = 1u32.to_le_bytes().to_vec();
            b.extend_from_slice(&dim.to_le_bytes());
            b.extend_from_slice(&[0; 72 + 8]);
            assert!(decode_segment(&b).is_empty(), "{dim:#x}");
        }
        // A count beyond a segment, and meta of any length.
        let mut many = u32::MAX.to_le_bytes().to_vec();
        many.extend(std::iter::repeat_n(0, 400));
        assert_eq!(decode_segment(&many).len(), SEGMENT as usize);
        let index = VectorIndex::new("m.", 130);
        for len in 0..24 {
            let (next, versions) = index.decode_meta(&vec![0xff; len][..]);
            assert_eq!(versions.len(), 3);
            assert_eq!(next, if len >= 8 { u64::MAX } else { 0 });
        }
    }

    #[test]
    fn config_validation_names_the_field() {
        let parse = |v: Value| {
            let raw: RawCache = serde_json::from_value(v).unwrap();
            CacheConfig::parse(raw, &|n| match n {
                "openai" => Some((0, true)),
                "claude" => Some((1, false)),
                _ => None,
            })
        };
        let ok = parse(
            json!({"semantic": {"embeddings": {"provider": "openai", "model": "e"},
            "store": {"chroma": {"cluster": "chroma"}}}}),
        )
        .unwrap();
        let s = ok.semantic.unwrap();
        assert_eq!(s.max_vectors, DEFAULT_MAX_VECTORS);
        assert!(
            matches!(s.store, VectorStore::Chroma(ref c) if c.collection == "llm-gateway-cache" && c.authority == "chroma")
        );
        let e = parse(json!({"semantic": {"embeddings": {"provider": "claude", "model": "e"}}}))
            .unwrap_err();
        assert_eq!(e.field, "cache.semantic.embeddings.provider");
        let e = parse(json!({"semantic": {"embeddings": {"provider": "x", "model": "e"}}}))
            .unwrap_err();
        assert!(e.message.contains("unknown provider"));
        let e = parse(json!({"max_bytes": 0})).unwrap_err();
        assert_eq!(e.field, "cache.max_bytes");
        let e = parse(
            json!({"semantic": {"embeddings": {"provider": "openai", "model": "e"}, "store": "redis"}}),
        )
        .unwrap_err();
        assert_eq!(e.field, "cache.semantic.store");
        let route = |v: Value, sem: bool| {
            let raw: RawRouteCache = serde_json::from_value(v).unwrap();
            RouteCache::parse("routes[0].cache", raw, sem)
        };
        let r = route(json!({}), false).unwrap();
        assert_eq!(r.ttl_ms, DEFAULT_TTL_S * 1000);
        assert_eq!(r.scope, Scope::Consumer);
        let e = route(json!({"semantic": {"threshold": 0.9}}), false).unwrap_err();
        assert_eq!(e.field, "routes[0].cache.semantic");
        let e = route(json!({"semantic": {"threshold": 1.5}}), true).unwrap_err();
        assert_eq!(e.field, "routes[0].cache.semantic.threshold");
        let e = route(json!({"ttl_s": 0}), true).unwrap_err();
        assert_eq!(e.field, "routes[0].cache.ttl_s");
    }
}
