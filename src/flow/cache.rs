//! The response cache's part of the journey: look a request up before it is forwarded (the
//! semantic lookup's callouts are in `semantic`), serve hits as local replies, and offer
//! complete answers to the cache as they pass.

use std::cell::RefCell;

use super::{Exchange, LocalReply, RequestHeaders, Step};
use crate::cache::{self, Directives, Entries, Keys, RouteCache, VectorIndex, VectorStore};
use crate::chroma::{self, MetaValue};
use crate::completion::{self, Assembler};
use crate::host::{Host, Map};
use crate::limits::Cost;
use crate::names;
use crate::request::{Endpoint, Request};
use crate::route;

/// Chroma records queued for the VM to add, at most.
const MAX_QUEUED_ADDS: usize = 1000;

/// What every request of a VM shares: the stores, and the Chroma collection once known.
pub struct Stores {
    pub entries: Entries,
    pub vectors: RefCell<VectorIndex>,
    pub collection: RefCell<Option<String>>,
    /// (path, body) of Chroma records to add, posted from the VM's tick (a call made by a
    /// request's context would be cancelled when the request ends).
    pub adds: RefCell<Vec<(String, Vec<u8>)>>,
}

impl Stores {
    pub fn new(cfg: &cache::CacheConfig) -> Stores {
        let max_vectors = cfg.semantic.as_ref().map_or(1, |s| s.max_vectors);
        Stores {
            entries: Entries::new(names::CACHE_SHARED_PREFIX, cfg),
            vectors: RefCell::new(VectorIndex::new(names::VECTORS_SHARED_PREFIX, max_vectors)),
            collection: RefCell::new(None),
            adds: RefCell::new(Vec::new()),
        }
    }
}

/// The call a request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Idle,
    Embedding(u32),
    Collection(u32),
    Query(u32),
}

/// The answer as it passes, for the cache.
pub enum Capture {
    Json(Vec<u8>),
    Sse(Box<Assembler>),
    /// Not captured: no answer yet, or one that cannot be stored (too large, not 200, ...).
    Off,
}

/// The cache's state for one request.
pub struct State {
    pub route: RouteCache,
    pub keys: Keys,
    pub directives: Directives,
    pub provider: String,
    pub include_usage: bool,
    pub phase: Phase,
    /// The normalised embedding of the question, once known.
    pub vector: Option<Vec<f32>>,
    pub capture: Capture,
    /// The request body as the client sent it, kept while a semantic lookup is pending.
    pub body: Vec<u8>,
}

impl State {
    /// Whether the answer is being captured for the cache.
    pub fn capturing(&self) -> bool {
        matches!(self.capture, Capture::Json(_) | Capture::Sse(_))
    }
}

impl Exchange {
    /// Look the request up before it is forwarded. `body` is the OpenAI chat request.
    /// `Continue`: forward it; `Pause`: waiting for the semantic lookup; `Reply`: a hit (or
    /// the limits' refusal of one).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn cache_lookup(
        &mut self,
        h: &mut impl Host,
        rc: &RouteCache,
        endpoint: Endpoint,
        body: &[u8],
        req: &Request,
        decision: &route::Decision,
        headers: &RequestHeaders,
    ) -> Step {
        let Some(stores) = self.shared.caches.clone() else {
            return Step::Continue;
        };
        if endpoint != Endpoint::ChatCompletions || self.inbound.client != super::ClientApi::OpenAi
        {
            self.record.cache = Some("bypass");
            return Step::Continue;
        }
        let scope = match rc.scope {
            cache::Scope::Consumer => self.record.consumer.as_deref(),
            cache::Scope::Shared => None,
        };
        let Some(keys) = cache::keys(
            body,
            &decision.provider.name,
            &decision.upstream_model,
            scope,
            rc.semantic.as_ref(),
        ) else {
            self.record.cache = Some("bypass");
            return Step::Continue;
        };
        let directives = Directives::parse(headers.get(names::CACHE_CONTROL).as_deref());
        let exact = keys.exact;
        self.cache = Some(Box::new(State {
            route: rc.clone(),
            keys,
            directives,
            provider: decision.provider.name.clone(),
            include_usage: req.include_usage,
            phase: Phase::Idle,
            vector: None,
            capture: Capture::Off,
            body: Vec::new(),
        }));
        if directives.no_cache {
            self.record.cache = Some("bypass");
            return Step::Continue;
        }
        self.record.cache = Some("miss");
        let t0 = h.now_us();
        let found = stores.entries.get(&*h, &exact, h.now_ms());
        self.add_lookup_time(h, t0);
        if let Some(reply) = found.and_then(|answer| self.serve_hit(h, &answer, "hit")) {
            return Step::Reply(reply);
        }
        match self.embed(h) {
            Some(()) => {
                if let Some(c) = self.cache.as_mut() {
                    c.body = body.to_vec();
                }
                Step::Pause
            }
            None => Step::Continue,
        }
    }

    pub(super) fn add_lookup_time(&mut self, h: &impl Host, since_us: u64) {
        let spent = h.now_us().saturating_sub(since_us);
        let total = self
            .record
            .cache_lookup_us
            .unwrap_or(0)
            .saturating_add(spent);
        self.record.cache_lookup_us = Some(total);
    }

    /// A stored answer as the client asked for it (JSON or SSE), once the consumer's limits
    /// admit it (or refuse it: then the refusal is the reply); `None` when it cannot be served
    /// (then the request goes on as a miss).
    pub(super) fn serve_hit(
        &mut self,
        h: &impl Host,
        answer: &[u8],
        kind: &'static str,
    ) -> Option<LocalReply> {
        let c = self.cache.as_ref()?;
        let summary = completion::summary(answer)?;
        let (body, content_type) = if self.record.stream {
            (
                completion::to_sse(answer, c.include_usage)?,
                "text/event-stream",
            )
        } else {
            (answer.to_vec(), "application/json")
        };
        let saved = summary.usage.and_then(|u| u.total_tokens).unwrap_or(0);
        let charge = c.route.charge_hits;
        let provider = c.provider.clone();
        let model = self.record.request_model.clone();
        let tokens = if charge { saved } else { 0 };
        let cost = Cost {
            requests: 1,
            tokens,
            pico_usd: 0,
        };
        if let Err(e) = self.limit_locally(h, model.as_deref(), cost) {
            return Some(self.reject(e));
        }
        self.record.cache = Some(kind);
        self.record.cache_saved = saved;
        self.record.cache_charge = charge;
        self.record.provider = Some(provider);
        self.record.status = 200;
        self.record.ttft_ms = None;
        let mut headers: Vec<(&'static str, String)> = vec![
            (names::CONTENT_TYPE, content_type.to_string()),
            (names::CACHE_STATUS, "hit".to_string()),
        ];
        if let Some(id) = &self.record.request_id {
            headers.push((names::RESPONSE_REQUEST_ID, id.clone()));
        }
        if self.record.stream {
            headers.push((names::CACHE_CONTROL, "no-cache".to_string()));
        }
        headers.extend(self.limit_headers());
        Some(LocalReply {
            status: 200,
            headers,
            body,
        })
    }

    /// Response headers: say what the cache did and decide whether the answer is captured.
    pub(super) fn cache_response_headers(
        &mut self,
        h: &mut impl Host,
        status: u32,
        content_type: &str,
    ) {
        let max = self.shared.config.max_entry_bytes();
        let Some(c) = self.cache.as_mut() else {
            if let Some(r) = self.record.cache {
                h.set_header(Map::ResponseHeaders, names::CACHE_STATUS, Some(r));
            }
            return;
        };
        let said = if self.record.cache == Some("bypass") {
            "bypass"
        } else {
            "miss"
        };
        h.set_header(Map::ResponseHeaders, names::CACHE_STATUS, Some(said));
        c.capture = if c.directives.no_store || status != 200 {
            Capture::Off
        } else if content_type.starts_with("text/event-stream") {
            Capture::Sse(Box::new(Assembler::new(max)))
        } else if content_type.starts_with("application/json") {
            Capture::Json(Vec::new())
        } else {
            Capture::Off
        };
    }

    /// The next piece of the answer, as the client receives it (before the filter removes a
    /// usage chunk the client did not ask for).
    pub(super) fn cache_capture(&mut self, chunk: &[u8]) {
        let max = self.shared.config.max_entry_bytes();
        let Some(capture) = self.cache.as_mut().map(|c| &mut c.capture) else {
            return;
        };
        match capture {
            Capture::Json(b) => {
                if b.len().saturating_add(chunk.len()) > max {
                    self.record.cache_store = Some("too_large");
                    *capture = Capture::Off;
                } else {
                    b.extend_from_slice(chunk);
                }
            }
            Capture::Sse(a) => {
                a.feed(chunk);
                if a.gave_up() {
                    *capture = Capture::Off;
                }
            }
            Capture::Off => {}
        }
    }

    /// The request is over: store a complete answer (and its vector).
    pub(super) fn cache_store(&mut self, h: &impl Host) {
        let Some(mut c) = self.cache.take() else {
            return;
        };
        let Some(answer) = self.storable(&mut c) else {
            return;
        };
        let Some(stores) = self.shared.caches.clone() else {
            return;
        };
        let now = h.now_ms();
        let expires = now.saturating_add(c.route.ttl_ms);
        let stored = stores.entries.put(h, &c.keys.exact, &answer, expires, now);
        self.record.cache_evictions = stored.evicted;
        self.record.cache_store = Some(if stored.stored { "stored" } else { "too_large" });
        if stored.stored {
            self.store_vector(h, &stores, &c, answer, expires);
        }
    }

    /// The complete answer to store, or `None` with the reason in the record.
    fn storable(&mut self, c: &mut State) -> Option<Vec<u8>> {
        if self.record.cache_hit() || self.record.local_outcome.is_some() {
            return None;
        }
        let why = if c.directives.no_store {
            "no_store"
        } else if self.record.status != 200 {
            "error"
        } else {
            ""
        };
        if !why.is_empty() {
            self.record.cache_store = Some(why);
            return None;
        }
        let answer = match std::mem::replace(&mut c.capture, Capture::Off) {
            Capture::Json(b) => Some(b),
            Capture::Sse(a) => a.finish(),
            Capture::Off => None,
        };
        let Some(answer) = answer else {
            self.record.cache_store.get_or_insert("incomplete");
            return None;
        };
        let Some(summary) = completion::summary(&answer) else {
            self.record.cache_store = Some("error");
            return None;
        };
        if !summary.complete || (self.record.stream && !self.record.learned.complete) {
            self.record.cache_store = Some("incomplete");
            return None;
        }
        if summary.tool_calls && !c.route.tool_calls {
            self.record.cache_store = Some("tool_calls");
            return None;
        }
        Some(answer)
    }

    /// A stored answer's vector: into the local index, or queued for Chroma.
    fn store_vector(
        &mut self,
        h: &impl Host,
        stores: &Stores,
        c: &State,
        answer: Vec<u8>,
        expires: u64,
    ) {
        let (Some((partition, _)), Some(vector)) = (c.keys.semantic.as_ref(), c.vector.as_ref())
        else {
            return;
        };
        let cfg = self.config();
        match cfg.semantic().map(|s| &s.store) {
            Some(VectorStore::Local) => {
                stores
                    .vectors
                    .borrow_mut()
                    .insert(h, partition, &c.keys.exact, expires, vector);
            }
            Some(VectorStore::Chroma(ch)) => {
                let Some(collection) = stores.collection.borrow().clone() else {
                    return;
                };
                let Ok(document) = String::from_utf8(answer) else {
                    return;
                };
                let partition = hex::encode(partition);
                let Some(add) = chroma::upsert_request(
                    &ch.tenant,
                    &ch.database,
                    &collection,
                    &hex::encode(c.keys.exact),
                    vector,
                    &[
                        (chroma::PARTITION, MetaValue::Str(&partition)),
                        (
                            chroma::EXPIRES_MS,
                            MetaValue::Int(i64::try_from(expires).unwrap_or(i64::MAX)),
                        ),
                    ],
                    &document,
                ) else {
                    return;
                };
                let mut q = stores.adds.borrow_mut();
                if q.len() < MAX_QUEUED_ADDS {
                    q.push((add.path, add.body));
                } else {
                    self.record.semantic_failure = Some("store_queue_full");
                }
            }
            None => {}
        }
    }
}
