//! The response cache's part of the shell: look a request up before it is forwarded (and, for
//! the semantic cache, ask the embeddings service and the vector store first), serve hits as
//! local replies, and offer complete answers to the cache as they pass.

use super::*;

use crate::cache::{self, Directives, Entries, Keys, RouteCache, VectorIndex, VectorStore};
use crate::chroma::MetaValue;
use crate::completion::{self, Assembler};

/// Chroma records queued for the root context to add, at most.
const MAX_QUEUED_ADDS: usize = 1000;

/// What every request of a VM shares: the stores, and the Chroma collection once known.
pub struct Shared {
    pub entries: Entries,
    pub vectors: RefCell<VectorIndex>,
    pub collection: RefCell<Option<String>>,
    /// (path, body) of Chroma records to add, posted from the root context's tick (a call
    /// made by a request's context would be cancelled when the request ends).
    pub adds: RefCell<Vec<(String, Vec<u8>)>>,
}

impl Shared {
    pub fn new(cfg: &cache::CacheConfig) -> Shared {
        let max_vectors = cfg.semantic.as_ref().map_or(1, |s| s.max_vectors);
        Shared {
            entries: Entries::new(names::CACHE_SHARED_PREFIX, cfg),
            vectors: RefCell::new(VectorIndex::new(names::VECTORS_SHARED_PREFIX, max_vectors)),
            collection: RefCell::new(None),
            adds: RefCell::new(Vec::new()),
        }
    }
}

/// The call a request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Embedding(u32),
    Collection(u32),
    Query(u32),
}

/// The answer as it passes, for the cache.
enum Capture {
    Json(Vec<u8>),
    Sse(Box<Assembler>),
    /// Not captured: no answer yet, or one that cannot be stored (too large, not 200, ...).
    Off,
}

/// The cache's state for one request.
pub struct Ctx {
    route: RouteCache,
    keys: Keys,
    directives: Directives,
    provider: String,
    include_usage: bool,
    phase: Phase,
    /// The normalised embedding of the question, once known.
    vector: Option<Vec<f32>>,
    capture: Capture,
    /// The request body as the client sent it, kept while a semantic lookup is pending.
    pub body: Vec<u8>,
}

impl Ctx {
    /// Whether the answer is being captured for the cache.
    pub fn capturing(&self) -> bool {
        matches!(self.capture, Capture::Json(_) | Capture::Sse(_))
    }
}

/// What the lookup decided.
pub enum Lookup {
    /// Forward the request to the provider.
    Go,
    /// A hit was served.
    Served,
    /// Waiting for the embeddings service or the vector store.
    Waiting,
}

fn status_of_call() -> Option<u16> {
    host::header(MapType::HttpCallResponseHeaders, names::STATUS).and_then(|s| s.parse().ok())
}

fn call_body(size: usize) -> Vec<u8> {
    hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Why a call to a service failed: `unavailable` when Envoy answered for it (503 when the
/// cluster cannot be reached, 504 when the call timed out) or nothing answered, else `error`.
fn failure(status: Option<u16>, unavailable: &'static str, error: &'static str) -> &'static str {
    if matches!(status, None | Some(502..=504)) {
        unavailable
    } else {
        error
    }
}

impl Gateway {
    /// Look the request up before it is forwarded. `body` is the OpenAI chat request.
    pub(super) fn cache_lookup(
        &mut self,
        rc: &RouteCache,
        endpoint: Endpoint,
        body: &[u8],
        req: &Request,
        decision: &route::Decision,
        headers: &RequestHeaders,
    ) -> Lookup {
        let Some(shared) = self.caches.clone() else {
            return Lookup::Go;
        };
        if endpoint != Endpoint::ChatCompletions || self.client_anthropic {
            self.record.cache = Some("bypass");
            return Lookup::Go;
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
            return Lookup::Go;
        };
        let directives = Directives::parse(headers.get(names::CACHE_CONTROL).as_deref());
        let exact = keys.exact;
        self.cache = Some(Box::new(Ctx {
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
            return Lookup::Go;
        }
        self.record.cache = Some("miss");
        let t0 = host::now_us();
        let found = shared
            .entries
            .get(&host::SharedData, &exact, host::now_ms());
        self.add_lookup_time(t0);
        if let Some(answer) = found {
            if self.serve_hit(&answer, "hit") {
                return Lookup::Served;
            }
        }
        match self.embed() {
            Some(()) => {
                if let Some(c) = self.cache.as_mut() {
                    c.body = body.to_vec();
                }
                Lookup::Waiting
            }
            None => Lookup::Go,
        }
    }

    fn add_lookup_time(&mut self, since_us: u64) {
        let spent = host::now_us().saturating_sub(since_us);
        self.record.cache_lookup_us = Some(self.record.cache_lookup_us.unwrap_or(0) + spent);
    }

    /// Ask the embeddings service for the question's vector; `None` when there is nothing to
    /// ask (not semantic, not eligible) or the call could not be made (counted).
    fn embed(&mut self) -> Option<()> {
        let cfg = self.config.clone();
        let sem = cfg.semantic()?;
        let ctx = self.cache.as_mut()?;
        ctx.route.semantic?;
        let (_, text) = ctx.keys.semantic.as_ref()?;
        let e = &sem.embeddings;
        let provider = cfg.providers.get(e.provider)?;
        let path = provider
            .path(Endpoint::Embeddings.path_suffix(), &e.model)
            .unwrap_or_else(|| "/v1/embeddings".to_string());
        let mut req =
            serde_json::json!({"model": e.model, "input": text, "encoding_format": "float"});
        if let Some(d) = e.dimensions {
            req["dimensions"] = d.into();
        }
        let credential = provider.credential_header();
        let extra: Vec<(&str, &str)> = credential.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let authority = e.authority.as_deref().unwrap_or(&provider.cluster);
        match host::post_json(
            &provider.cluster,
            authority,
            &path,
            &extra,
            req.to_string().as_bytes(),
            e.timeout_ms,
        ) {
            Ok(token) => {
                ctx.phase = Phase::Embedding(token);
                Some(())
            }
            Err(err) => {
                log::warn!("llm-gateway: cannot call the embeddings service: {err:?}");
                self.record.semantic_failure = Some("embedding_unavailable");
                None
            }
        }
    }

    /// A call of the semantic lookup answered (or failed).
    pub(super) fn on_cache_call(&mut self, token: u32, body_size: usize) {
        let Some(phase) = self.cache.as_ref().map(|c| c.phase) else {
            return;
        };
        match phase {
            Phase::Embedding(t) if t == token => self.embedded(body_size),
            Phase::Collection(t) if t == token => self.collection_known(body_size),
            Phase::Query(t) if t == token => self.queried(body_size),
            _ => {}
        }
    }

    fn embedded(&mut self, body_size: usize) {
        let status = status_of_call();
        let vector = (status == Some(200))
            .then(|| call_body(body_size))
            .and_then(|b| embedding_of(&b));
        let Some(vector) = vector else {
            log::warn!(
                "llm-gateway: semantic cache bypassed: the embeddings service answered {status:?}"
            );
            return self.semantic_failed(failure(
                status,
                "embedding_unavailable",
                "embedding_error",
            ));
        };
        let Some(shared) = self.caches.clone() else {
            return self.proceed();
        };
        let cfg = self.config.clone();
        let Some(sem) = cfg.semantic() else {
            return self.proceed();
        };
        if let Some(c) = self.cache.as_mut() {
            c.vector = Some(vector);
            c.phase = Phase::Idle;
        }
        match &sem.store {
            VectorStore::Local => {
                let t0 = host::now_us();
                let found = self.cache.as_ref().and_then(|c| {
                    let (partition, _) = c.keys.semantic.as_ref()?;
                    let threshold = c.route.semantic?.threshold;
                    let v = c.vector.as_ref()?;
                    let n = shared.vectors.borrow_mut().nearest(
                        &host::SharedData,
                        partition,
                        v,
                        host::now_ms(),
                    )?;
                    (n.similarity >= threshold).then_some(n.key)
                });
                let answer =
                    found.and_then(|k| shared.entries.get(&host::SharedData, &k, host::now_ms()));
                self.add_lookup_time(t0);
                match answer {
                    Some(a) if self.serve_hit(&a, "semantic_hit") => {}
                    _ => self.proceed(),
                }
            }
            VectorStore::Chroma(ch) => {
                let known = shared.collection.borrow().clone();
                match known {
                    Some(id) => self.query_chroma(ch, &id),
                    None => {
                        let r = crate::chroma::collection_request(
                            &ch.tenant,
                            &ch.database,
                            &ch.collection,
                        );
                        self.call_store(ch, &r, Phase::Collection);
                    }
                }
            }
        }
    }

    fn collection_known(&mut self, body_size: usize) {
        let status = status_of_call();
        let collection = (status == Some(200))
            .then(|| call_body(body_size))
            .and_then(|b| crate::chroma::collection(&b));
        if collection.as_ref().is_some_and(|c| !c.is_cosine()) {
            // A collection of that name made with another distance: similarities would lie.
            log::warn!("llm-gateway: semantic cache bypassed: the Chroma collection does not use cosine distance");
            return self.semantic_failed("store_error");
        }
        let id = collection.map(|c| c.id);
        let (Some(id), Some(shared)) = (id, self.caches.clone()) else {
            log::warn!("llm-gateway: semantic cache bypassed: the vector store answered {status:?} to the collection request");
            return self.semantic_failed(failure(status, "store_unavailable", "store_error"));
        };
        *shared.collection.borrow_mut() = Some(id.clone());
        let cfg = self.config.clone();
        match cfg.chroma() {
            Some(ch) => self.query_chroma(ch, &id),
            None => self.proceed(),
        }
    }

    fn query_chroma(&mut self, ch: &cache::ChromaConfig, collection: &str) {
        let Some(c) = self.cache.as_ref() else {
            return self.proceed();
        };
        let (Some((partition, _)), Some(v)) = (c.keys.semantic.as_ref(), c.vector.as_ref()) else {
            return self.proceed();
        };
        let Some(r) = crate::chroma::query_request(
            &ch.tenant,
            &ch.database,
            collection,
            v,
            1,
            &hex::encode(partition),
            host::now_ms(),
        ) else {
            return self.semantic_failed("embedding_error");
        };
        self.call_store(ch, &r, Phase::Query);
    }

    /// Make a call to the vector store and wait for it in `phase`.
    fn call_store(
        &mut self,
        ch: &cache::ChromaConfig,
        r: &crate::chroma::Request,
        phase: fn(u32) -> Phase,
    ) {
        match host::post_json(
            &ch.cluster,
            &ch.authority,
            &r.path,
            &[],
            &r.body,
            ch.timeout_ms,
        ) {
            Ok(t) => {
                if let Some(c) = self.cache.as_mut() {
                    c.phase = phase(t);
                }
            }
            Err(e) => {
                log::warn!("llm-gateway: cannot call the vector store: {e:?}");
                self.semantic_failed("store_unavailable");
            }
        }
    }

    fn queried(&mut self, body_size: usize) {
        let status = status_of_call();
        if status != Some(200) {
            log::warn!(
                "llm-gateway: semantic cache bypassed: the vector store answered {status:?}"
            );
            if status == Some(404) {
                // The collection is gone (deleted, store reset): look it up again next time.
                if let Some(s) = self.caches.as_ref() {
                    *s.collection.borrow_mut() = None;
                }
            }
            return self.semantic_failed(failure(status, "store_unavailable", "store_error"));
        }
        let threshold = self
            .cache
            .as_ref()
            .and_then(|c| c.route.semantic)
            .map_or(1.0, |s| s.threshold);
        let body = call_body(body_size);
        let answer = crate::chroma::nearest(&body)
            .filter(|n| n.similarity >= threshold)
            .and_then(|n| n.document);
        if let Some(c) = self.cache.as_mut() {
            c.phase = Phase::Idle;
        }
        match answer {
            Some(a) if self.serve_hit(a.as_bytes(), "semantic_hit") => {}
            _ => self.proceed(),
        }
    }

    /// The semantic lookup could not be made: the request goes on to the provider.
    fn semantic_failed(&mut self, reason: &'static str) {
        self.record.semantic_failure = Some(reason);
        if let Some(c) = self.cache.as_mut() {
            c.phase = Phase::Idle;
            c.vector = None;
        }
        self.proceed();
    }

    /// Forward the request after a semantic miss (or failure).
    fn proceed(&mut self) {
        let Some(endpoint) = self.endpoint else {
            return;
        };
        let body = self
            .cache
            .as_mut()
            .map(|c| std::mem::take(&mut c.body))
            .unwrap_or_default();
        let t0 = host::now_us();
        let result = self.admit(endpoint, &body, true);
        let spent = host::now_us().saturating_sub(t0);
        self.record.gateway_us = Some(self.record.gateway_us.unwrap_or(0) + spent);
        match result {
            Ok(true) => host::resume_request(),
            Ok(false) => {}
            Err(e) => {
                self.reject(e);
            }
        }
    }

    /// Serve a stored answer as the client asked for it (JSON or SSE), once the consumer's
    /// limits admit it (or refuse it: then the refusal is what is served); `false` when it
    /// cannot be served (then the request goes on as a miss).
    fn serve_hit(&mut self, answer: &[u8], kind: &'static str) -> bool {
        let Some(c) = self.cache.as_ref() else {
            return false;
        };
        let Some(summary) = completion::summary(answer) else {
            return false;
        };
        let (body, content_type) = if self.record.stream {
            match completion::to_sse(answer, c.include_usage) {
                Some(sse) => (sse, "text/event-stream"),
                None => return false,
            }
        } else {
            (answer.to_vec(), "application/json")
        };
        let saved = summary.usage.and_then(|u| u.total_tokens).unwrap_or(0);
        let charge = c.route.charge_hits;
        let provider = c.provider.clone();
        let model = self.record.request_model.clone();
        let tokens = if charge { saved } else { 0 };
        if let Err(e) = self.limit_locally(
            model.as_deref(),
            Cost {
                requests: 1,
                tokens,
            },
        ) {
            self.reject(e);
            return true;
        }
        self.record.cache = Some(kind);
        self.record.cache_saved = saved;
        self.record.cache_charge = charge;
        self.record.provider = Some(provider);
        self.record.status = 200;
        self.record.ttft_ms = None;
        let mut headers: Vec<(&str, String)> = vec![
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
        let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if let Err(e) = hostcalls::send_http_response(200, refs, Some(&body)) {
            log::warn!("llm-gateway: could not send a cached answer: {e:?}");
        }
        true
    }

    /// Response headers: say what the cache did and decide whether the answer is captured.
    pub(super) fn cache_response_headers(&mut self, status: u32, content_type: &str) {
        let Some(c) = self.cache.as_mut() else {
            if let Some(r) = self.record.cache {
                host::set_header(MapType::HttpResponseHeaders, names::CACHE_STATUS, Some(r));
            }
            return;
        };
        let said = if self.record.cache == Some("bypass") {
            "bypass"
        } else {
            "miss"
        };
        host::set_header(
            MapType::HttpResponseHeaders,
            names::CACHE_STATUS,
            Some(said),
        );
        let max = self.config.max_entry_bytes();
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
        let max = self.config.max_entry_bytes();
        let Some(capture) = self.cache.as_mut().map(|c| &mut c.capture) else {
            return;
        };
        match capture {
            Capture::Json(b) => {
                if b.len() + chunk.len() > max {
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
    pub(super) fn cache_store(&mut self) {
        let Some(c) = self.cache.take() else {
            return;
        };
        if self.record.cache_hit() || self.record.local_outcome.is_some() {
            return;
        }
        if c.directives.no_store {
            self.record.cache_store = Some("no_store");
            return;
        }
        if self.record.status != 200 {
            self.record.cache_store = Some("error");
            return;
        }
        let answer = match c.capture {
            Capture::Json(b) => Some(b),
            Capture::Sse(a) => a.finish(),
            Capture::Off => None,
        };
        let Some(answer) = answer else {
            self.record.cache_store.get_or_insert("incomplete");
            return;
        };
        let Some(summary) = completion::summary(&answer) else {
            self.record.cache_store = Some("error");
            return;
        };
        if !summary.complete || (self.record.stream && !self.record.learned.complete) {
            self.record.cache_store = Some("incomplete");
            return;
        }
        if summary.tool_calls && !c.route.tool_calls {
            self.record.cache_store = Some("tool_calls");
            return;
        }
        let Some(shared) = self.caches.clone() else {
            return;
        };
        let now = host::now_ms();
        let expires = now.saturating_add(c.route.ttl_ms);
        let stored = shared
            .entries
            .put(&host::SharedData, &c.keys.exact, &answer, expires, now);
        self.record.cache_evictions = stored.evicted;
        self.record.cache_store = Some(if stored.stored { "stored" } else { "too_large" });
        if !stored.stored {
            return;
        }
        let (Some((partition, _)), Some(vector)) = (c.keys.semantic.as_ref(), c.vector.as_ref())
        else {
            return;
        };
        let cfg = self.config.clone();
        match cfg.semantic().map(|s| &s.store) {
            Some(VectorStore::Local) => {
                shared.vectors.borrow_mut().insert(
                    &host::SharedData,
                    partition,
                    &c.keys.exact,
                    expires,
                    vector,
                );
            }
            Some(VectorStore::Chroma(ch)) => {
                let Some(collection) = shared.collection.borrow().clone() else {
                    return;
                };
                let Ok(document) = String::from_utf8(answer) else {
                    return;
                };
                let partition = hex::encode(partition);
                let Some(add) = crate::chroma::upsert_request(
                    &ch.tenant,
                    &ch.database,
                    &collection,
                    &hex::encode(c.keys.exact),
                    vector,
                    &[
                        (crate::chroma::PARTITION, MetaValue::Str(&partition)),
                        (
                            crate::chroma::EXPIRES_MS,
                            MetaValue::Int(i64::try_from(expires).unwrap_or(i64::MAX)),
                        ),
                    ],
                    &document,
                ) else {
                    return;
                };
                let mut q = shared.adds.borrow_mut();
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

/// The first embedding of an OpenAI embeddings response, normalised.
fn embedding_of(body: &[u8]) -> Option<Vec<f32>> {
    #[derive(serde::Deserialize)]
    struct Item {
        embedding: Vec<f32>,
    }
    #[derive(serde::Deserialize)]
    struct Resp {
        data: Vec<Item>,
    }
    let r: Resp = serde_json::from_slice(body).ok()?;
    let mut v = r.data.into_iter().next()?.embedding;
    cache::normalise(&mut v).then_some(v)
}

impl Root {
    /// Post the queued Chroma records.
    pub(super) fn flush_vector_adds(&mut self) {
        let Some(shared) = self.caches.clone() else {
            return;
        };
        let Some(ch) = self.config.as_ref().and_then(|c| c.chroma()).cloned() else {
            return;
        };
        let adds = std::mem::take(&mut *shared.adds.borrow_mut());
        for (path, body) in adds {
            match host::post_json(&ch.cluster, &ch.authority, &path, &[], &body, ch.timeout_ms) {
                Ok(t) => {
                    self.vector_adds.insert(t);
                }
                Err(e) => {
                    log::warn!("llm-gateway: cannot add to the vector store: {e:?}");
                    self.count_semantic_failure("store_unavailable");
                }
            }
        }
    }

    /// A Chroma add answered; `false` when `token` is not one.
    pub(super) fn vector_add_answered(&mut self, token: u32) -> bool {
        if !self.vector_adds.remove(&token) {
            return false;
        }
        let status = status_of_call();
        if status != Some(200) && status != Some(201) {
            log::warn!("llm-gateway: the vector store refused a record: {status:?}");
            self.count_semantic_failure(failure(status, "store_unavailable", "store_error"));
        }
        true
    }

    fn count_semantic_failure(&self, reason: &str) {
        self.count(&metrics::stat_name(
            names::metric::CACHE_SEMANTIC_FAILURES,
            &[(names::metric::TAG_REASON, reason)],
        ));
    }
}
