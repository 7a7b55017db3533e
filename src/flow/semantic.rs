//! The semantic cache's callouts: the question's embedding, then the nearest stored answer
//! (in the VM's own index or in Chroma); a miss or a failure lets the request go on.

use super::cache::Phase;
use super::{Exchange, Step};
use crate::cache::{self, ChromaConfig, VectorStore};
use crate::chroma;
use crate::cooldown::Cooling;
use crate::host::{Buffer, Host, Map, Post};
use crate::names;
use crate::request::Endpoint;

/// The status of the callout being answered.
pub fn status_of_call(h: &impl Host) -> Option<u16> {
    h.header(Map::CallResponseHeaders, names::STATUS)
        .and_then(|s| s.parse().ok())
}

/// Why a call to a service failed: `unavailable` when Envoy answered for it (503 when the
/// cluster cannot be reached, 504 when the call timed out) or nothing answered, else `error`.
pub fn failure(
    status: Option<u16>,
    unavailable: &'static str,
    error: &'static str,
) -> &'static str {
    if matches!(status, None | Some(502..=504)) {
        unavailable
    } else {
        error
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

impl Exchange {
    /// Ask the embeddings service for the question's vector; `None` when there is nothing to
    /// ask (not semantic, not eligible) or the call could not be made (counted).
    pub(super) fn embed(&mut self, h: &mut impl Host) -> Option<()> {
        let cfg = self.config();
        let sem = cfg.semantic()?;
        let ctx = self.cache.as_mut()?;
        ctx.route.semantic?;
        let (_, text) = ctx.keys.semantic.as_ref()?;
        let e = &sem.embeddings;
        let provider = cfg.providers.get(e.provider)?;
        let path = provider
            .path(Endpoint::Embeddings.path_suffix(), &e.model, false)
            .unwrap_or_else(|| "/v1/embeddings".to_string());
        let mut req =
            serde_json::json!({"model": e.model, "input": text, "encoding_format": "float"});
        if let (Some(d), Some(o)) = (e.dimensions, req.as_object_mut()) {
            o.insert("dimensions".to_string(), d.into());
        }
        // Spread over the provider's keys that are not cooling down, like its requests.
        let cooling = Cooling::read(h, h.now_ms());
        let key = crate::route::key(provider, &cooling, &mut |n| h.random(n));
        let credential = provider.credential_header(key);
        let extra: Vec<(&str, &str)> = credential.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let body = req.to_string();
        let post = Post {
            method: "POST",
            cluster: &provider.cluster,
            authority: e.authority.as_deref().unwrap_or(&provider.cluster),
            path: &path,
            headers: &extra,
            body: body.as_bytes(),
            timeout_ms: e.timeout_ms,
        };
        match h.post(&post) {
            Ok(token) => {
                ctx.phase = Phase::Embedding(token);
                self.trace_callout(h, super::trace::SEMANTIC_LOOKUP);
                Some(())
            }
            Err(err) => {
                log::warn!("llm-gateway: cannot call the embeddings service: {err:?}");
                self.record.semantic_failure = Some("embedding_unavailable");
                None
            }
        }
    }

    /// A callout of the semantic lookup answered (or failed).
    pub fn on_call_answer(&mut self, h: &mut impl Host, token: u32, size: usize) -> Step {
        let Some(phase) = self.cache.as_ref().map(|c| c.phase) else {
            return Step::Pause;
        };
        match phase {
            Phase::Embedding(t) if t == token => self.embedded(h, size),
            Phase::Collection(t) if t == token => self.collection_known(h, size),
            Phase::Query(t) if t == token => self.queried(h, size),
            _ => Step::Pause,
        }
    }

    fn embedded(&mut self, h: &mut impl Host, size: usize) -> Step {
        let status = status_of_call(h);
        let vector = (status == Some(200))
            .then(|| h.body(Buffer::CallResponseBody, size))
            .and_then(|b| embedding_of(&b));
        let Some(vector) = vector else {
            log::warn!(
                "llm-gateway: semantic cache bypassed: the embeddings service answered {status:?}"
            );
            let why = failure(status, "embedding_unavailable", "embedding_error");
            return self.semantic_failed(h, why);
        };
        let cfg = self.config();
        let (Some(stores), Some(sem)) = (self.shared.caches.clone(), cfg.semantic()) else {
            return self.proceed(h);
        };
        if let Some(c) = self.cache.as_mut() {
            c.vector = Some(vector);
            c.phase = Phase::Idle;
        }
        match &sem.store {
            VectorStore::Local => {
                let t0 = h.now_us();
                let found = self.cache.as_ref().and_then(|c| {
                    let (partition, _) = c.keys.semantic.as_ref()?;
                    let threshold = c.route.semantic?.threshold;
                    let v = c.vector.as_ref()?;
                    let n = stores
                        .vectors
                        .borrow_mut()
                        .nearest(&*h, partition, v, h.now_ms())?;
                    (n.similarity >= threshold).then_some(n.key)
                });
                let answer = found.and_then(|k| stores.entries.get(&*h, &k, h.now_ms()));
                self.add_lookup_time(h, t0);
                let result = if answer.is_some() {
                    "semantic_hit"
                } else {
                    "miss"
                };
                self.trace_callout_done(h, super::trace::SEMANTIC_LOOKUP, result);
                match answer.and_then(|a| self.serve_hit(h, &a, "semantic_hit")) {
                    Some(reply) => Step::Reply(reply),
                    None => self.proceed(h),
                }
            }
            VectorStore::Chroma(ch) => {
                let known = stores.collection.borrow().clone();
                match known {
                    Some(id) => self.query_chroma(h, ch, &id),
                    None => {
                        let r =
                            chroma::collection_request(&ch.tenant, &ch.database, &ch.collection);
                        self.call_store(h, ch, &r, Phase::Collection)
                    }
                }
            }
        }
    }

    fn collection_known(&mut self, h: &mut impl Host, size: usize) -> Step {
        let status = status_of_call(h);
        let collection = (status == Some(200))
            .then(|| h.body(Buffer::CallResponseBody, size))
            .and_then(|b| chroma::collection(&b));
        if collection.as_ref().is_some_and(|c| !c.is_cosine()) {
            // A collection of that name made with another distance: similarities would lie.
            log::warn!("llm-gateway: semantic cache bypassed: the Chroma collection does not use cosine distance");
            return self.semantic_failed(h, "store_error");
        }
        let id = collection.map(|c| c.id);
        let (Some(id), Some(stores)) = (id, self.shared.caches.clone()) else {
            log::warn!("llm-gateway: semantic cache bypassed: the vector store answered {status:?} to the collection request");
            let why = failure(status, "store_unavailable", "store_error");
            return self.semantic_failed(h, why);
        };
        *stores.collection.borrow_mut() = Some(id.clone());
        let cfg = self.config();
        match cfg.chroma() {
            Some(ch) => self.query_chroma(h, ch, &id),
            None => self.proceed(h),
        }
    }

    fn query_chroma(&mut self, h: &mut impl Host, ch: &ChromaConfig, collection: &str) -> Step {
        let Some(c) = self.cache.as_ref() else {
            return self.proceed(h);
        };
        let (Some((partition, _)), Some(v)) = (c.keys.semantic.as_ref(), c.vector.as_ref()) else {
            return self.proceed(h);
        };
        let Some(r) = chroma::query_request(
            &ch.tenant,
            &ch.database,
            collection,
            v,
            1,
            &hex::encode(partition),
            h.now_ms(),
        ) else {
            return self.semantic_failed(h, "embedding_error");
        };
        self.call_store(h, ch, &r, Phase::Query)
    }

    /// Make a call to the vector store and wait for it in `phase`.
    fn call_store(
        &mut self,
        h: &mut impl Host,
        ch: &ChromaConfig,
        r: &chroma::Request,
        phase: fn(u32) -> Phase,
    ) -> Step {
        let post = Post {
            method: "POST",
            cluster: &ch.cluster,
            authority: &ch.authority,
            path: &r.path,
            headers: &[],
            body: &r.body,
            timeout_ms: ch.timeout_ms,
        };
        match h.post(&post) {
            Ok(t) => {
                if let Some(c) = self.cache.as_mut() {
                    c.phase = phase(t);
                }
                Step::Pause
            }
            Err(e) => {
                log::warn!("llm-gateway: cannot call the vector store: {e:?}");
                self.semantic_failed(h, "store_unavailable")
            }
        }
    }

    fn queried(&mut self, h: &mut impl Host, size: usize) -> Step {
        let status = status_of_call(h);
        if status != Some(200) {
            log::warn!(
                "llm-gateway: semantic cache bypassed: the vector store answered {status:?}"
            );
            if status == Some(404) {
                // The collection is gone (deleted, store reset): look it up again next time.
                if let Some(s) = self.shared.caches.as_ref() {
                    *s.collection.borrow_mut() = None;
                }
            }
            let why = failure(status, "store_unavailable", "store_error");
            return self.semantic_failed(h, why);
        }
        let threshold = self
            .cache
            .as_ref()
            .and_then(|c| c.route.semantic)
            .map_or(1.0, |s| s.threshold);
        let body = h.body(Buffer::CallResponseBody, size);
        let answer = chroma::nearest(&body)
            .filter(|n| n.similarity >= threshold)
            .and_then(|n| n.document);
        if let Some(c) = self.cache.as_mut() {
            c.phase = Phase::Idle;
        }
        let result = if answer.is_some() {
            "semantic_hit"
        } else {
            "miss"
        };
        self.trace_callout_done(h, super::trace::SEMANTIC_LOOKUP, result);
        match answer.and_then(|a| self.serve_hit(h, a.as_bytes(), "semantic_hit")) {
            Some(reply) => Step::Reply(reply),
            None => self.proceed(h),
        }
    }

    /// The semantic lookup could not be made: the request goes on to the provider.
    fn semantic_failed(&mut self, h: &mut impl Host, reason: &'static str) -> Step {
        self.record.semantic_failure = Some(reason);
        self.trace_callout_done(h, super::trace::SEMANTIC_LOOKUP, reason);
        if let Some(c) = self.cache.as_mut() {
            c.phase = Phase::Idle;
            c.vector = None;
        }
        self.proceed(h)
    }

    /// Admit the request after a semantic miss (or failure): `Continue` forwards it.
    fn proceed(&mut self, h: &mut impl Host) -> Step {
        let Some(endpoint) = self.inbound.endpoint else {
            return Step::Pause;
        };
        let body = self
            .cache
            .as_mut()
            .map(|c| std::mem::take(&mut c.body))
            .unwrap_or_default();
        let t0 = h.now_us();
        let result = self.admit(h, endpoint, &body, true);
        let spent = h.now_us().saturating_sub(t0);
        self.record.gateway_us = Some(self.record.gateway_us.unwrap_or(0).saturating_add(spent));
        match result {
            Ok(step) => step,
            Err(e) => Step::Reply(self.reject(e)),
        }
    }
}
