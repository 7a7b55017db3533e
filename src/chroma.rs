//! The Chroma vector store's HTTP API (v2), as the semantic cache uses it: request builders and
//! answer parsers, no host calls.
//!
//! The filter reaches Chroma with `dispatch_http_call`, so every call here is one plain HTTP/1.1
//! `POST` with a JSON body; Chroma refuses a body without `content-type: application/json`
//! (415), which the filter's calls always carry. A cache collection is made (or found) once
//! with [`collection_request`] and cosine distance, and its id read with [`collection`]; entries
//! are written with [`upsert_request`] (not Chroma's `add`, which answers 201 but silently
//! ignores an id it already has, so a re-stored key would keep its old, maybe expired, record)
//! carrying the metadata [`PARTITION`] and [`EXPIRES_MS`]; a lookup is [`query_request`], the
//! nearest vector in the same partition that has not expired, and [`nearest`] reads its answer.
//! Chroma's cosine distance is `1 - cosine similarity` (0 for the same direction, 2 for the
//! opposite), so [`Nearest::similarity`] is comparable with the local index's dot products of
//! normalised vectors. A local Chroma (`chroma run`) answers a query with a record added just
//! before, through any connection. Errors are `{"error": kind, "message": text}` ([`error`]):
//! 404 `NotFoundError` for an unknown collection id (re-resolve it), 400 `InvalidArgumentError`
//! for an embedding whose dimension differs from the collection's, 422 for a body Chroma cannot
//! deserialize.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The tenant and database a fresh Chroma server has.
pub const DEFAULT_TENANT: &str = "default_tenant";
pub const DEFAULT_DATABASE: &str = "default_database";
/// A `GET` here answers 200 once the server is ready.
pub const HEARTBEAT_PATH: &str = "/api/v2/heartbeat";
/// The metadata fields [`query_request`] filters on: the entry's semantic partition (string)
/// and when it expires (integer, milliseconds since the epoch).
pub const PARTITION: &str = "partition";
pub const EXPIRES_MS: &str = "expires_ms";
/// The distance the cache collection is made with.
pub const SPACE: &str = "cosine";

/// One call to make: `POST` `path` with the JSON `body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub path: String,
    pub body: Vec<u8>,
}

/// A metadata value Chroma stores: a string, an integer (i64), a float or a boolean.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetaValue<'a> {
    Str(&'a str),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl<'a> From<&'a str> for MetaValue<'a> {
    fn from(s: &'a str) -> Self {
        MetaValue::Str(s)
    }
}

impl From<u64> for MetaValue<'_> {
    /// Saturates at `i64::MAX` (Chroma's integers are signed 64-bit).
    fn from(n: u64) -> Self {
        MetaValue::Int(clamp_i64(n))
    }
}

impl Serialize for MetaValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            MetaValue::Str(v) => s.serialize_str(v),
            MetaValue::Int(v) => s.serialize_i64(v),
            MetaValue::Float(v) => s.serialize_f64(v),
            MetaValue::Bool(v) => s.serialize_bool(v),
        }
    }
}

/// Metadata pairs as one JSON object.
struct Metadata<'a>(&'a [(&'a str, MetaValue<'a>)]);

impl Serialize for Metadata<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

// ---------------------------------------------------------------------------------------------
// Collection
// ---------------------------------------------------------------------------------------------

#[derive(serde::Serialize)]
struct CreateCollection<'a> {
    name: &'a str,
    get_or_create: bool,
    configuration: Configuration,
}

#[derive(serde::Serialize)]
struct Configuration {
    hnsw: Hnsw,
}

#[derive(serde::Serialize)]
struct Hnsw {
    space: &'static str,
}

/// Get or create the collection `name` with cosine distance. Chroma answers 200 with the
/// collection either way; an existing collection keeps the distance it was made with (check
/// [`Collection::is_cosine`]).
pub fn collection_request(tenant: &str, database: &str, name: &str) -> Request {
    let body = CreateCollection {
        name,
        get_or_create: true,
        configuration: Configuration {
            hnsw: Hnsw { space: SPACE },
        },
    };
    Request {
        path: collections_path(tenant, database),
        body: to_json(&body),
    }
}

/// A collection as Chroma describes it, the parts the cache needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collection {
    /// A UUID: what record calls name the collection by.
    pub id: String,
    pub name: String,
    /// `cosine`, `l2` or `ip`, when the answer says.
    pub space: Option<String>,
    /// The embedding dimension, once a record was added.
    pub dimension: Option<u32>,
}

impl Collection {
    pub fn is_cosine(&self) -> bool {
        self.space.as_deref() == Some(SPACE)
    }
}

#[derive(Deserialize)]
struct CollectionWire {
    id: String,
    name: String,
    #[serde(default)]
    configuration_json: Option<ConfigurationWire>,
    #[serde(default)]
    dimension: Option<u32>,
}

#[derive(Deserialize)]
struct ConfigurationWire {
    #[serde(default)]
    hnsw: Option<SpaceWire>,
    /// Distributed Chroma's index.
    #[serde(default)]
    spann: Option<SpaceWire>,
}

#[derive(Deserialize)]
struct SpaceWire {
    #[serde(default)]
    space: Option<String>,
}

/// The collection in an answer to [`collection_request`]; `None` for an error body.
pub fn collection(body: &[u8]) -> Option<Collection> {
    let w: CollectionWire = serde_json::from_slice(body).ok()?;
    if w.id.is_empty() {
        return None;
    }
    let space = w.configuration_json.and_then(|c| {
        c.hnsw
            .and_then(|h| h.space)
            .or_else(|| c.spann.and_then(|s| s.space))
    });
    Some(Collection {
        id: w.id,
        name: w.name,
        space,
        dimension: w.dimension,
    })
}

/// Just the collection id of an answer to [`collection_request`].
pub fn collection_id(body: &[u8]) -> Option<String> {
    collection(body).map(|c| c.id)
}

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

#[derive(serde::Serialize)]
struct Records<'a> {
    ids: [&'a str; 1],
    embeddings: [&'a [f32]; 1],
    metadatas: [Metadata<'a>; 1],
    documents: [&'a str; 1],
}

fn record_request(
    path: String,
    id: &str,
    embedding: &[f32],
    metadata: &[(&str, MetaValue)],
    document: &str,
) -> Option<Request> {
    let finite_meta = metadata
        .iter()
        .all(|(_, v)| !matches!(v, MetaValue::Float(f) if !f.is_finite()));
    if !finite(embedding) || !finite_meta {
        return None;
    }
    let body = Records {
        ids: [id],
        embeddings: [embedding],
        metadatas: [Metadata(metadata)],
        documents: [document],
    };
    Some(Request {
        path,
        body: to_json(&body),
    })
}

/// Add one record or replace the one with this `id` (Chroma answers 200 `{}`): the embedding
/// and document are replaced, the metadata merged (fields not given keep their old values).
/// `None` when the embedding is empty or not finite, or a float in `metadata` is not finite
/// (Chroma refuses those).
pub fn upsert_request(
    tenant: &str,
    database: &str,
    collection_id: &str,
    id: &str,
    embedding: &[f32],
    metadata: &[(&str, MetaValue)],
    document: &str,
) -> Option<Request> {
    record_request(
        record_path(tenant, database, collection_id, "upsert"),
        id,
        embedding,
        metadata,
        document,
    )
}

// ---------------------------------------------------------------------------------------------
// Query
// ---------------------------------------------------------------------------------------------

#[derive(serde::Serialize)]
struct Query<'a> {
    query_embeddings: [&'a [f32]; 1],
    n_results: u32,
    #[serde(rename = "where")]
    filter: Where<'a>,
    include: [&'static str; 3],
}

/// `{"$and": [{"partition": {"$eq": p}}, {"expires_ms": {"$gt": now}}]}`
#[derive(serde::Serialize)]
struct Where<'a> {
    #[serde(rename = "$and")]
    and: (PartitionIs<'a>, ExpiresAfter),
}

#[derive(serde::Serialize)]
struct PartitionIs<'a> {
    partition: Eq<'a>,
}

#[derive(serde::Serialize)]
struct Eq<'a> {
    #[serde(rename = "$eq")]
    eq: &'a str,
}

#[derive(serde::Serialize)]
struct ExpiresAfter {
    expires_ms: Gt,
}

#[derive(serde::Serialize)]
struct Gt {
    #[serde(rename = "$gt")]
    gt: i64,
}

/// The `n` nearest records to `embedding` whose [`PARTITION`] is `partition` and whose
/// [`EXPIRES_MS`] is after `now_ms`, with their distances, metadata and documents. `None`
/// when the embedding is empty or not finite.
pub fn query_request(
    tenant: &str,
    database: &str,
    collection_id: &str,
    embedding: &[f32],
    n: usize,
    partition: &str,
    now_ms: u64,
) -> Option<Request> {
    if !finite(embedding) {
        return None;
    }
    let body = Query {
        query_embeddings: [embedding],
        n_results: u32::try_from(n).unwrap_or(u32::MAX),
        filter: Where {
            and: (
                PartitionIs {
                    partition: Eq { eq: partition },
                },
                ExpiresAfter {
                    expires_ms: Gt {
                        gt: clamp_i64(now_ms),
                    },
                },
            ),
        },
        include: ["distances", "metadatas", "documents"],
    };
    Some(Request {
        path: record_path(tenant, database, collection_id, "query"),
        body: to_json(&body),
    })
}

/// The nearest record a query found.
#[derive(Debug, Clone, PartialEq)]
pub struct Nearest {
    pub id: String,
    /// Chroma's distance: for cosine, `1 - cosine similarity`, in `[0, 2]`.
    pub distance: f32,
    /// `1 - distance`: the cosine similarity, in `[-1, 1]`.
    pub similarity: f32,
    pub document: Option<String>,
    /// The record's metadata (empty when the query did not include it).
    pub metadata: Map<String, Value>,
}

/// Per query embedding, one value per result, nearest first.
type PerQuery<T> = Option<Vec<Vec<Option<T>>>>;

/// The query answer: one list per query embedding, nearest first.
#[derive(Deserialize)]
struct QueryWire {
    ids: Vec<Vec<String>>,
    #[serde(default)]
    distances: PerQuery<f32>,
    #[serde(default)]
    documents: PerQuery<String>,
    #[serde(default)]
    metadatas: PerQuery<Map<String, Value>>,
}

fn first<T>(lists: Option<Vec<Vec<T>>>) -> Option<T> {
    lists?.into_iter().next()?.into_iter().next()
}

/// The nearest record in an answer to [`query_request`]; `None` when nothing matched, for an
/// error body, or when the answer has no distance.
pub fn nearest(body: &[u8]) -> Option<Nearest> {
    let w: QueryWire = serde_json::from_slice(body).ok()?;
    let id = first(Some(w.ids))?;
    let distance = first(w.distances).flatten()?;
    if !distance.is_finite() {
        return None;
    }
    Some(Nearest {
        id,
        distance,
        similarity: 1.0 - distance,
        document: first(w.documents).flatten(),
        metadata: first(w.metadatas).flatten().unwrap_or_default(),
    })
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Chroma's error body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ApiError {
    /// `NotFoundError`, `InvalidArgumentError`, `ChromaError`, ...
    pub error: String,
    pub message: String,
}

/// The error in an answer, when it is one.
pub fn error(body: &[u8]) -> Option<ApiError> {
    serde_json::from_slice(body).ok()
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn finite(v: &[f32]) -> bool {
    !v.is_empty() && v.iter().all(|x| x.is_finite())
}

fn clamp_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Strings, integers, finite floats and booleans only: serialization cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

fn collections_path(tenant: &str, database: &str) -> String {
    format!(
        "/api/v2/tenants/{}/databases/{}/collections",
        segment(tenant),
        segment(database)
    )
}

fn record_path(tenant: &str, database: &str, collection_id: &str, op: &str) -> String {
    format!(
        "{}/{}/{op}",
        collections_path(tenant, database),
        segment(collection_id)
    )
}

/// A path segment, percent-encoding all but RFC 3986's unreserved characters.
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Answers captured from chromadb 1.5.9 (`chroma run`).
    const CREATED: &str = r##"{"id":"9a714e30-206d-4cbf-912e-1803cc7c6a5c","name":"gw_cache","configuration_json":{"hnsw":{"space":"cosine","ef_construction":100,"ef_search":100,"max_neighbors":16,"resize_factor":1.2,"sync_threshold":1000},"spann":null,"embedding_function":null},"schema":{"defaults":{"string":{"fts_index":{"enabled":false,"config":{}},"string_inverted_index":{"enabled":true,"config":{}}},"float_list":{"vector_index":{"enabled":false,"config":{"space":"cosine","hnsw":{"ef_construction":100,"max_neighbors":16,"ef_search":100,"num_threads":2,"batch_size":100,"sync_threshold":1000,"resize_factor":1.2}}}},"sparse_vector":{"sparse_vector_index":{"enabled":false,"config":{"embedding_function":{"type":"unknown"},"bm25":false}}},"int":{"int_inverted_index":{"enabled":true,"config":{}}},"float":{"float_inverted_index":{"enabled":true,"config":{}}},"bool":{"bool_inverted_index":{"enabled":true,"config":{}}}},"keys":{"#embedding":{"float_list":{"vector_index":{"enabled":true,"config":{"space":"cosine","source_key":"#document","hnsw":{"ef_construction":100,"max_neighbors":16,"ef_search":100,"num_threads":2,"batch_size":100,"sync_threshold":1000,"resize_factor":1.2}}}}},"#document":{"string":{"fts_index":{"enabled":true,"config":{}},"string_inverted_index":{"enabled":false,"config":{}}}}}},"metadata":null,"dimension":null,"tenant":"default_tenant","database":"default_database","log_position":0,"version":0}"##;
    /// An existing collection made without a distance: get_or_create answers it as it is.
    const EXISTING_L2: &str = r##"{"id":"8aa44e34-63de-428e-b047-ffb8af7a678b","name":"plain","configuration_json":{"hnsw":{"space":"l2","ef_construction":100,"ef_search":100,"max_neighbors":16,"resize_factor":1.2,"sync_threshold":1000},"spann":null,"embedding_function":null},"schema":{"defaults":{"float_list":{"vector_index":{"enabled":false,"config":{"space":"l2"}}}},"keys":{}},"metadata":null,"dimension":3,"tenant":"default_tenant","database":"default_database","log_position":0,"version":0}"##;
    const QUERY_HIT: &str = r#"{"ids":[["k1"]],"embeddings":null,"documents":[["{\"answer\":\"one\"}"]],"uris":null,"metadatas":[[{"expires_ms":2000000000000,"partition":"abc","created_ms":1700000000000,"model":"gpt-4o"}]],"distances":[[0.0]],"include":["distances","metadatas","documents"]}"#;
    const QUERY_TWO: &str = r#"{"ids":[["x","k1"]],"embeddings":null,"documents":[["d","{\"answer\":\"one\"}"]],"uris":null,"metadatas":[[{"partition":"p","expires_ms":10},{"expires_ms":2000000000000,"partition":"abc"}]],"distances":[[0.29289323,0.39999998]],"include":["distances","metadatas","documents"]}"#;
    const QUERY_NONE: &str = r#"{"ids":[[]],"embeddings":null,"documents":[[]],"uris":null,"metadatas":[[]],"distances":[[]],"include":["distances","metadatas","documents"]}"#;
    const QUERY_NONE_DISTANCES_ONLY: &str = r#"{"ids":[[]],"embeddings":null,"documents":null,"uris":null,"metadatas":null,"distances":[[]],"include":["distances"]}"#;
    const QUERY_DISTANCES_ONLY: &str = r#"{"ids":[["k1"],["k4"]],"embeddings":null,"documents":null,"uris":null,"metadatas":null,"distances":[[0.0],[0.0]],"include":["distances"]}"#;
    const NOT_FOUND: &str = r#"{"error":"NotFoundError","message":"Collection [00000000-0000-4000-8000-000000000000] does not exist."}"#;
    const DIMENSION: &str = r#"{"error":"InvalidArgumentError","message":"Collection expecting embedding with dimension of 3, got 2"}"#;
    const EXISTS: &str = r#"{"error":"ChromaError","message":"Collection [plain] already exists"}"#;

    const ID: &str = "9a714e30-206d-4cbf-912e-1803cc7c6a5c";

    fn body(r: &Request) -> Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn collection_request_gets_or_creates_with_cosine() {
        let r = collection_request(DEFAULT_TENANT, DEFAULT_DATABASE, "gw_cache");
        assert_eq!(
            r.path,
            "/api/v2/tenants/default_tenant/databases/default_database/collections"
        );
        assert_eq!(
            body(&r),
            json!({"name": "gw_cache", "get_or_create": true,
                   "configuration": {"hnsw": {"space": "cosine"}}})
        );
    }

    #[test]
    fn collection_answer() {
        let c = collection(CREATED.as_bytes()).unwrap();
        assert_eq!(c.id, ID);
        assert_eq!(c.name, "gw_cache");
        assert!(c.is_cosine());
        assert_eq!(c.dimension, None);
        assert_eq!(collection_id(CREATED.as_bytes()).as_deref(), Some(ID));

        let l2 = collection(EXISTING_L2.as_bytes()).unwrap();
        assert_eq!(l2.space.as_deref(), Some("l2"));
        assert!(!l2.is_cosine());
        assert_eq!(l2.dimension, Some(3));

        let spann = br#"{"id":"x","name":"c","configuration_json":{"hnsw":null,"spann":{"space":"cosine"}}}"#;
        assert!(collection(spann).unwrap().is_cosine());

        for bad in [
            EXISTS,
            NOT_FOUND,
            "",
            "{}",
            r#"{"id":"","name":"c"}"#,
            "[1]",
        ] {
            assert_eq!(collection(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn upsert_one_record() {
        let meta = [
            (PARTITION, MetaValue::Str("abc")),
            (EXPIRES_MS, MetaValue::from(2_000_000_000_000u64)),
            ("ratio", MetaValue::Float(1.5)),
            ("tool_calls", MetaValue::Bool(false)),
        ];
        let r = upsert_request(
            DEFAULT_TENANT,
            DEFAULT_DATABASE,
            ID,
            "k1",
            &[1.0, 0.0, -0.5],
            &meta,
            "{\"answer\":\"one\"}",
        )
        .unwrap();
        assert_eq!(
            r.path,
            format!(
                "/api/v2/tenants/default_tenant/databases/default_database/collections/{ID}/upsert"
            )
        );
        assert_eq!(
            body(&r),
            json!({
                "ids": ["k1"],
                "embeddings": [[1.0, 0.0, -0.5]],
                "metadatas": [{"partition": "abc", "expires_ms": 2_000_000_000_000u64,
                               "ratio": 1.5, "tool_calls": false}],
                "documents": ["{\"answer\":\"one\"}"]
            })
        );
        // Metadata keeps its order (no map in between).
        let text = String::from_utf8(r.body).unwrap();
        assert!(text.contains(r#""metadatas":[{"partition":"abc","expires_ms":2000000000000,"#));

        let u = upsert_request("t", "d", ID, "k1", &[1.0], &meta, "doc").unwrap();
        assert_eq!(
            u.path,
            format!("/api/v2/tenants/t/databases/d/collections/{ID}/upsert")
        );
        assert_eq!(body(&u)["ids"], json!(["k1"]));
    }

    #[test]
    fn f32_embeddings_are_written_shortest() {
        let r = upsert_request("t", "d", ID, "k", &[0.1, 1e-30, 0.12345679], &[], "").unwrap();
        let text = String::from_utf8(r.body).unwrap();
        assert!(
            text.contains(r#""embeddings":[[0.1,1e-30,0.12345679]]"#),
            "{text}"
        );
        assert!(text.contains(r#""metadatas":[{}]"#), "{text}");
    }

    #[test]
    fn refuses_what_chroma_refuses() {
        let ok = [(PARTITION, MetaValue::Str("p"))];
        assert!(upsert_request("t", "d", ID, "k", &[], &ok, "").is_none());
        assert!(upsert_request("t", "d", ID, "k", &[f32::NAN, 1.0], &ok, "").is_none());
        assert!(upsert_request("t", "d", ID, "k", &[f32::INFINITY], &ok, "").is_none());
        let nan = [("f", MetaValue::Float(f64::NAN))];
        assert!(upsert_request("t", "d", ID, "k", &[1.0], &nan, "").is_none());
        assert!(query_request("t", "d", ID, &[], 1, "p", 0).is_none());
        assert!(query_request("t", "d", ID, &[f32::NEG_INFINITY], 1, "p", 0).is_none());
    }

    #[test]
    fn query_filters_partition_and_expiry() {
        let r = query_request(
            DEFAULT_TENANT,
            DEFAULT_DATABASE,
            ID,
            &[0.6, 0.8, 0.0],
            1,
            "abc",
            1_800_000_000_000,
        )
        .unwrap();
        assert_eq!(
            r.path,
            format!(
                "/api/v2/tenants/default_tenant/databases/default_database/collections/{ID}/query"
            )
        );
        assert_eq!(
            body(&r),
            json!({
                "query_embeddings": [[0.6, 0.8, 0.0]],
                "n_results": 1,
                "where": {"$and": [{"partition": {"$eq": "abc"}},
                                   {"expires_ms": {"$gt": 1_800_000_000_000u64}}]},
                "include": ["distances", "metadatas", "documents"]
            })
        );
        // Past what Chroma takes (i64), saturated rather than refused.
        let big = query_request("t", "d", ID, &[1.0], usize::MAX, "p", u64::MAX).unwrap();
        let b = body(&big);
        assert_eq!(b["where"]["$and"][1]["expires_ms"]["$gt"], json!(i64::MAX));
        assert_eq!(b["n_results"], json!(u32::MAX));
    }

    #[test]
    fn nearest_of_an_answer() {
        let n = nearest(QUERY_HIT.as_bytes()).unwrap();
        assert_eq!(n.id, "k1");
        assert_eq!(n.distance, 0.0);
        assert_eq!(n.similarity, 1.0);
        assert_eq!(n.document.as_deref(), Some("{\"answer\":\"one\"}"));
        assert_eq!(n.metadata.get(PARTITION), Some(&json!("abc")));
        assert_eq!(
            n.metadata.get(EXPIRES_MS).and_then(Value::as_u64),
            Some(2_000_000_000_000)
        );

        // The first is the nearest: [1, 0, 0] against [1, 1, 0] is 1 - 1/sqrt(2).
        let n = nearest(QUERY_TWO.as_bytes()).unwrap();
        assert_eq!(n.id, "x");
        assert!((n.similarity - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert_eq!(n.document.as_deref(), Some("d"));

        // Distances only: no document, no metadata.
        let n = nearest(QUERY_DISTANCES_ONLY.as_bytes()).unwrap();
        assert_eq!(
            (n.id.as_str(), n.document, n.metadata.len()),
            ("k1", None, 0)
        );
    }

    #[test]
    fn no_nearest() {
        for body in [
            QUERY_NONE,
            QUERY_NONE_DISTANCES_ONLY,
            NOT_FOUND,
            DIMENSION,
            "",
            "null",
            r#"{"ids":[]}"#,
            r#"{"ids":[["k"]]}"#,
            r#"{"ids":[["k"]],"distances":[[null]]}"#,
            r#"{"ids":[["k"]],"distances":[]}"#,
        ] {
            assert_eq!(nearest(body.as_bytes()), None, "{body}");
        }
    }

    #[test]
    fn errors() {
        let e = error(NOT_FOUND.as_bytes()).unwrap();
        assert_eq!(e.error, "NotFoundError");
        let e = error(DIMENSION.as_bytes()).unwrap();
        assert_eq!(e.error, "InvalidArgumentError");
        assert!(e.message.contains("dimension of 3, got 2"));
        assert_eq!(error(QUERY_HIT.as_bytes()), None);
        assert_eq!(error(b"{}"), None);
    }

    #[test]
    fn path_segments_are_escaped() {
        let r = collection_request("a b", "x/y", "c");
        assert_eq!(r.path, "/api/v2/tenants/a%20b/databases/x%2Fy/collections");
        assert_eq!(segment("Aa0-._~é"), "Aa0-._~%C3%A9");
    }
}
