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

mod config;
mod entries;
mod keys;
mod shared;
mod vectors;

pub use config::{
    CacheConfig, ChromaConfig, Embeddings, RawCache, RawRouteCache, RouteCache, RouteSemantic,
    Scope, SemanticConfig, VectorStore, DEFAULT_EMBEDDING_TIMEOUT_MS, DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ENTRIES, DEFAULT_MAX_ENTRY_BYTES, DEFAULT_MAX_VECTORS, DEFAULT_STORE_TIMEOUT_MS,
    DEFAULT_TTL_S, MAX_BYTES, MAX_DIMENSIONS, MAX_ENTRIES, MAX_ENTRY_BYTES, MAX_TTL_S, MAX_VECTORS,
};
pub use entries::{Entries, Stored};
pub use keys::{keys, Directives, Key, Keys};
pub use vectors::{normalise, Neighbour, VectorIndex, SEGMENT};

#[cfg(test)]
mod tests;
