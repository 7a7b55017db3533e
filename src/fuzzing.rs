//! The bodies of the fuzz targets (`fuzz/`, cargo-fuzz and libFuzzer on nightly), here so the
//! stable test suite can replay every input the fuzzers ever crashed on
//! (`fuzz/regressions/<target>/`, run by `tests/fuzz_replay.rs`).
//!
//! Each target takes bytes from the wire, from shared data or from the configuration and runs
//! them through the parsers and decoders the filter uses on them. A target must never panic:
//! any panic is a finding (so the few properties checked here panic on purpose when they do not
//! hold). Inputs that need more than one value (a body and the sizes of the chunks it arrives
//! in, a sequence of operations on shared data) are read from the front of the input with
//! [`Input`]; what is left is the body.

use std::cell::RefCell;
use std::collections::BTreeSet;

use crate::limits::test_store::MemStore;
use crate::limits::{Conflict, Store};
use crate::tokens::Encoding;

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/fuzz_targets/<name>.rs` calls it and the replay test finds
/// its regressions under `fuzz/regressions/<name>/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("request", request),
    ("cache_keys", cache_keys),
    ("sse", sse),
    ("accountant", accountant),
    ("anthropic_request", anthropic_request),
    ("anthropic_translation", anthropic_translation),
    ("anthropic_reverse", anthropic_reverse),
    ("completion", completion),
    ("config", config),
    ("chroma", chroma),
    ("rls", rls),
    ("failover", failover),
    ("cache_store", cache_store),
    ("limits_store", limits_store),
];

/// Reads structured values from the front of a fuzz input; past its end, zeros.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }

    /// A number that is often a boundary (0, 1, small, the type's maximum) and otherwise any.
    pub fn number(&mut self) -> u64 {
        match self.byte() % 8 {
            0 => 0,
            1 => 1,
            2 => u64::from(self.byte()),
            3 => u64::from(self.u16()),
            4 => u64::MAX,
            5 => u64::MAX - u64::from(self.byte()),
            6 => u64::from(u32::MAX),
            _ => self.u64(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// `body` cut into consecutive pieces whose lengths come from a generator seeded by `seed`
/// (1 to `max` bytes each; some pieces are empty, as a proxy may deliver them).
pub fn chunks(body: &[u8], seed: u64, max: usize) -> Vec<&[u8]> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let n = if rng.u8(..) < 16 {
            0
        } else {
            rng.usize(1..=max.max(1))
        };
        let (head, tail) = rest.split_at(n.min(rest.len()));
        out.push(head);
        rest = tail;
    }
    out
}

fn encoding(b: u8) -> Option<Encoding> {
    match b % 3 {
        0 => None,
        1 => Some(Encoding::O200kBase),
        _ => Some(Encoding::Cl100kBase),
    }
}

// ---------------------------------------------------------------------------------------------
// From the wire: requests
// ---------------------------------------------------------------------------------------------

/// `Request::parse` on each endpoint, the counts, and the rewrite, whose output must parse
/// again with the new model and `include_usage`.
pub fn request(data: &[u8]) {
    use crate::request::{Endpoint, Request};
    let mut input = Input::new(data);
    let flags = input.byte();
    let body = input.rest();
    let endpoint = match flags % 3 {
        0 => Endpoint::ChatCompletions,
        1 => Endpoint::Completions,
        _ => Endpoint::Embeddings,
    };
    let path = String::from_utf8_lossy(body);
    let _ = Endpoint::from_request("POST", &path);
    let _ = crate::wire::with_model(body, "fuzz-model");
    let Ok(req) = Request::parse(endpoint, body) else {
        return;
    };
    let _ = req.max_output_tokens();
    if let Some(enc) = encoding(flags >> 2) {
        let _ = req.count_prompt(enc);
    }
    let new_model = match (flags >> 4) % 3 {
        0 => None,
        1 => Some("fuzz-model"),
        _ => Some("m\"\\\u{1}é"),
    };
    let add_include_usage = flags & 0x40 != 0 && req.stream;
    let Some(out) = req.rewrite(new_model, add_include_usage) else {
        return;
    };
    let again = match Request::parse(endpoint, &out) {
        Ok(r) => r,
        Err(e) => panic!(
            "the rewrite of an accepted body is refused ({}): {}",
            e.message,
            String::from_utf8_lossy(&out)
        ),
    };
    if let Some(m) = new_model {
        assert_eq!(again.model, m, "the rewrite lost the new model");
    }
    if add_include_usage {
        assert!(again.include_usage, "the rewrite lost include_usage");
    }
    assert_eq!(again.stream, req.stream, "the rewrite changed stream");
}

/// The response cache's keys of a request body and the client's `Cache-Control`.
pub fn cache_keys(data: &[u8]) {
    use crate::cache::{keys, Directives, RouteSemantic};
    let mut input = Input::new(data);
    let flags = input.byte();
    let body = input.rest();
    let semantic = RouteSemantic {
        threshold: 0.9,
        multi_turn: flags & 1 != 0,
    };
    let consumer = (flags & 2 != 0).then_some("team-a");
    let first = keys(body, "openai", "gpt-4o-mini", consumer, Some(&semantic));
    // The same body gives the same keys.
    assert_eq!(
        first,
        keys(body, "openai", "gpt-4o-mini", consumer, Some(&semantic))
    );
    let _ = keys(body, "openai", "gpt-4o-mini", consumer, None);
    let _ = Directives::parse(Some(&String::from_utf8_lossy(body)));
}

// ---------------------------------------------------------------------------------------------
// From the wire: responses
// ---------------------------------------------------------------------------------------------

type Seen = (usize, Vec<u8>, Vec<u8>, bool);

fn sse_events(chunks: &[&[u8]], max: usize) -> Vec<Seen> {
    let mut p = crate::sse::Parser::new(max);
    let mut seen = Vec::new();
    for c in chunks {
        p.feed(c, |end, e| {
            assert!(end <= c.len(), "an event ends past its chunk");
            seen.push((end, e.data.to_vec(), e.name.to_vec(), e.truncated));
        });
        assert!(
            p.buffered() <= 2 * max.max(16) + 256,
            "the parser holds {} bytes, more than its bound {max}",
            p.buffered()
        );
    }
    seen
}

/// The SSE parser: any split of a stream into chunks gives the same events as the whole
/// stream in one chunk, and what it holds stays bounded.
pub fn sse(data: &[u8]) {
    let mut input = Input::new(data);
    let seed = u64::from(input.u16());
    let max = usize::from(input.byte());
    let body = input.rest();
    let whole: Vec<(Vec<u8>, Vec<u8>, bool)> = sse_events(&[body], max)
        .into_iter()
        .map(|(_, d, n, t)| (d, n, t))
        .collect();
    let split: Vec<(Vec<u8>, Vec<u8>, bool)> = sse_events(&chunks(body, seed, 64), max)
        .into_iter()
        .map(|(_, d, n, t)| (d, n, t))
        .collect();
    assert_eq!(whole, split, "the split stream gave other events");
}

/// The response accountant (usage, estimates, usage-chunk stripping) on a body cut into
/// chunks. Without stripping every chunk passes unchanged.
pub fn accountant(data: &[u8]) {
    use crate::response::{Accountant, ChunkAction};
    let mut input = Input::new(data);
    let flags = input.byte();
    let seed = u64::from(input.u16());
    let body = input.rest();
    let content_type = match flags % 4 {
        0 => "text/event-stream",
        1 => "application/json",
        2 => "application/problem+json; charset=utf-8",
        _ => "text/plain",
    };
    let content_encoding = (flags & 0x80 != 0).then_some("gzip");
    let strip = flags & 4 != 0;
    let cap = if flags & 8 != 0 { 64 } else { 1 << 20 };
    let mut acc = Accountant::new(
        content_type,
        content_encoding,
        strip,
        encoding(flags >> 4),
        cap,
    );
    let _ = acc.wants_body();
    let pieces = chunks(body, seed, 256);
    let last = pieces.len().saturating_sub(1);
    for (i, c) in pieces.iter().enumerate() {
        let action = acc.on_chunk(c, i == last, i as u64);
        if !strip {
            assert_eq!(
                action,
                ChunkAction::Pass,
                "a chunk changed without stripping"
            );
        }
    }
    let _ = acc.finish();
}

/// Both directions of the Anthropic request translation, and the model lookup.
pub fn anthropic_request(data: &[u8]) {
    use crate::translate::{anthropic_to_openai, openai_to_anthropic, Target};
    let mut input = Input::new(data);
    let default_max = input.number();
    let body = input.rest();
    let target = |model| Target {
        model,
        default_max_tokens: default_max,
    };
    if let Ok(out) = openai_to_anthropic::translate_request(body, &target("claude-fuzz")) {
        let _ = anthropic_to_openai::model_of(&out.body);
    }
    let _ = anthropic_to_openai::model_of(body);
    if let Ok(out) = anthropic_to_openai::translate_request(body, &target("gpt-fuzz")) {
        // What the reverse translation produces is an OpenAI request the filter goes on with.
        let _ =
            crate::request::Request::parse(crate::request::Endpoint::ChatCompletions, &out.body);
    }
}

/// An Anthropic answer (a JSON body with any status, or an SSE stream cut into chunks)
/// translated to OpenAI's format, then read by the accountant as the filter does.
pub fn anthropic_translation(data: &[u8]) {
    use crate::response::Accountant;
    use crate::translate::openai_to_anthropic::{self, Stream};
    use crate::translate::{Direction, ResponseContext, ResponseTranslator, StreamTranslate};
    let mut input = Input::new(data);
    let flags = input.byte();
    let seed = u64::from(input.u16());
    let status = [200, 201, 400, 429, 500, 529, 0, 99_999][usize::from(flags % 8)];
    if flags & 64 != 0 {
        anthropic_usage(&mut input);
    }
    let body = input.rest();
    let ct = if flags & 8 != 0 {
        "text/event-stream; charset=utf-8"
    } else {
        "application/json"
    };
    let context = ResponseContext {
        status,
        created: u64::from(flags),
        counted_input: 0,
    };
    let mut t = ResponseTranslator::new(Direction::OpenaiToAnthropic, ct, context);
    let mut acc = Accountant::new(ct, None, flags & 16 != 0, None, 1 << 20);
    if t.buffers() {
        let out = t.chunk(body);
        let _ = acc.on_chunk(&out, true, 0);
    } else {
        let pieces = chunks(body, seed, 256);
        let last = pieces.len().saturating_sub(1);
        for (i, c) in pieces.iter().enumerate() {
            let out = t.chunk(c);
            let _ = acc.on_chunk(&out, i == last, i as u64);
        }
    }
    let _ = acc.finish();
    let answered = ResponseContext {
        status: 200,
        created: 0,
        counted_input: 0,
    };
    let _ = openai_to_anthropic::translate_response(body, &answered);
    if let Ok(v) = serde_json::from_slice(body) {
        let _ = openai_to_anthropic::translate_error(&v).body();
        let _ = crate::translate::usage_to_openai(&v);
    }
    // The stream translator on the body as one event, under every name.
    let mut st = Stream::new(0, flags & 32 != 0);
    for name in [
        "message_start",
        "content_block_delta",
        "message_delta",
        "message_stop",
    ] {
        let _ = st.event(name, body);
    }
    let _ = st.finished();
}

/// Anthropic usage figures (any numbers a provider may send) through the JSON and the stream
/// translation: OpenAI's figures are the sums, never wrapped.
fn anthropic_usage(input: &mut Input<'_>) {
    use crate::translate::openai_to_anthropic::Stream;
    use crate::translate::{usage_to_openai, StreamTranslate};
    use serde_json::{json, Map, Value};
    let mut u = Map::new();
    for k in [
        "input_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "output_tokens",
    ] {
        if input.byte() & 1 != 0 {
            u.insert(k.into(), input.number().into());
        }
    }
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let least_prompt = n("input_tokens")
        .max(n("cache_read_input_tokens"))
        .max(n("cache_creation_input_tokens"));
    let check = |o: &Value, output: u64| {
        let get = |k: &str| o.get(k).and_then(Value::as_u64).unwrap_or(0);
        assert!(
            get("prompt_tokens") >= least_prompt,
            "prompt_tokens wrapped: {o}"
        );
        assert!(get("completion_tokens") == output, "completion_tokens: {o}");
        assert!(
            get("total_tokens") >= get("prompt_tokens").max(output),
            "total_tokens wrapped: {o}"
        );
    };
    check(
        &usage_to_openai(&Value::Object(u.clone())),
        n("output_tokens"),
    );
    let mut st = Stream::new(0, true);
    let start = json!({"type": "message_start", "message": {"id": "m", "usage": u}});
    let _ = st.event("message_start", start.to_string().as_bytes());
    let delta = json!({"type": "message_delta", "usage": {"output_tokens": n("output_tokens")}});
    let _ = st.event("message_delta", delta.to_string().as_bytes());
    let stop = st.event("message_stop", br#"{"type":"message_stop"}"#);
    let chunk = stop
        .strip_prefix("data: ")
        .and_then(|s| s.split("\n\n").next())
        .and_then(|s| serde_json::from_str::<Value>(s).ok());
    let Some(chunk) = chunk else {
        panic!("no usage chunk at message_stop: {stop}");
    };
    check(&chunk["usage"], n("output_tokens"));
}

/// An OpenAI answer (a JSON body, or an SSE stream cut into chunks) translated for an
/// Anthropic client.
pub fn anthropic_reverse(data: &[u8]) {
    use crate::translate::anthropic_to_openai::{self, Stream};
    use crate::translate::{Direction, ResponseContext, ResponseTranslator, StreamTranslate};
    let mut input = Input::new(data);
    let flags = input.byte();
    let seed = u64::from(input.u16());
    let body = input.rest();
    let ct = if flags & 1 != 0 {
        "text/event-stream"
    } else {
        "application/json"
    };
    let context = ResponseContext {
        status: 200,
        created: 0,
        counted_input: seed,
    };
    let mut r = ResponseTranslator::new(Direction::AnthropicToOpenai, ct, context);
    if r.buffers() {
        let _ = r.chunk(body);
    } else {
        for c in chunks(body, seed, 256) {
            let _ = r.chunk(c);
        }
    }
    let _ = anthropic_to_openai::translate_response(body, &context);
    if let Ok(v) = serde_json::from_slice(body) {
        let _ = anthropic_to_openai::translate_error(&v);
        let _ = crate::translate::usage_to_anthropic(&v);
    }
    let mut s = Stream::new(u64::MAX);
    let _ = s.data(body);
    let _ = s.data(b"[DONE]");
    assert!(s.finished(), "[DONE] did not finish the stream");
}

/// The cache's stream assembler on a stream cut into chunks, the replay of what it assembled,
/// and the replay and summary of a stored completion.
pub fn completion(data: &[u8]) {
    use crate::completion::{self, Assembler};
    let mut input = Input::new(data);
    let flags = input.byte();
    let seed = u64::from(input.u16());
    let max = usize::from(input.u16());
    let body = input.rest();
    let mut a = Assembler::new(max);
    for c in chunks(body, seed, 256) {
        a.feed(c);
        if a.gave_up() {
            break;
        }
    }
    if let Some(assembled) = a.finish() {
        assert!(
            completion::summary(&assembled).is_some(),
            "an assembled completion does not read back: {}",
            String::from_utf8_lossy(&assembled)
        );
        let _ = completion::to_sse(&assembled, flags & 1 != 0);
    }
    let complete = completion::summary(body).is_some_and(|s| s.complete);
    if let Some(sse) = completion::to_sse(body, flags & 2 != 0).filter(|_| complete) {
        // The replay of a complete answer is a stream the assembler reads back whole.
        let mut again = Assembler::new(usize::MAX / 2);
        again.feed(&sse);
        assert!(
            again.finish().is_some(),
            "a replayed completion does not assemble: {}",
            String::from_utf8_lossy(&sse)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// From the configuration
// ---------------------------------------------------------------------------------------------

/// `Config::parse` and validation (with every environment variable set to a key), then the
/// lookups the filter makes with a valid configuration on every request.
pub fn config(data: &[u8]) {
    use crate::config::Config;
    let env = |k: &str| (!k.is_empty()).then(|| format!("sk-{k}"));
    let Ok(cfg) = Config::parse(data, &env) else {
        return;
    };
    let headers = |h: &str| match h {
        "authorization" => Some("Bearer sk-gateway".to_string()),
        "x-llm-provider" | "x-team" => Some("a".to_string()),
        _ => None,
    };
    let mut models: BTreeSet<String> = ["gpt-4o", "claude-sonnet-4-5", "", "*"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    models.extend(cfg.providers.iter().flat_map(|p| p.models.keys().cloned()));
    let identity = crate::route::identify(&cfg, &headers);
    let mut n = 0u32;
    for model in &models {
        let mut draw = |total: u32| {
            n = n.wrapping_add(7);
            n % total.max(1)
        };
        if let Ok(d) = crate::route::route(&cfg, model, "/v1/chat/completions", &headers, &mut draw)
        {
            if let Some((_, chain)) = &d.failover {
                let plan = crate::failover::Plan::new(
                    chain,
                    "/v1/chat/completions",
                    "chat/completions",
                    16,
                );
                assert_eq!(
                    crate::failover::Plan::decode(plan.encode().as_bytes()),
                    Some(plan)
                );
            }
            let _ = d.provider.path("chat/completions", &d.upstream_model);
            let _ = d.provider.credential_header();
        }
        if let (Some(l), Ok(id)) = (&cfg.limits, &identity) {
            let _ = l.scopes(&id.name, Some(model));
            let _ = l.reservation(u64::MAX, None, u64::MAX);
        }
        let _ = cfg.prices.lookup(None, model);
    }
    let _ = cfg.max_entry_bytes();
}

// ---------------------------------------------------------------------------------------------
// From other services
// ---------------------------------------------------------------------------------------------

/// Chroma's answers: a collection, a query's nearest record, an error.
pub fn chroma(data: &[u8]) {
    use crate::chroma;
    if let Some(c) = chroma::collection(data) {
        let _ = c.is_cosine();
    }
    let _ = chroma::collection_id(data);
    if let Some(n) = chroma::nearest(data) {
        assert!(n.distance.is_finite() && n.similarity.is_finite());
    }
    let _ = chroma::error(data);
}

/// The rate limit service's gRPC answer, read against up to four descriptors.
pub fn rls(data: &[u8]) {
    use crate::rls::{verdict, Described};
    let mut input = Input::new(data);
    let shape = input.byte();
    let described: Vec<Described> = (0..shape % 5)
        .map(|i| Described {
            tokens: shape & (8 << i) != 0,
            model: (i % 2 == 1).then(|| "gpt-4o".to_string()),
        })
        .collect();
    if let Some(v) = verdict(input.rest(), &described) {
        if let Some(o) = v.over_limit {
            let e = o.error("team-a");
            let _ = e.body();
        }
    }
}

/// The failover plan and journal as read back from the request's filter state, and each
/// attempt's adaptation of a request body (the input's part after the first `\n\n`).
pub fn failover(data: &[u8]) {
    use crate::failover::{Journal, Outcome, Plan};
    let split = data.windows(2).position(|w| w == b"\n\n");
    let (state, body) = match split {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (
            data,
            &br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#[..],
        ),
    };
    if let Some(plan) = Plan::decode(state) {
        let len = plan.attempts.len() as u64;
        for n in [0, 1, 2, len, len + 1, u64::MAX] {
            if let Some(a) = plan.attempt(n) {
                let _ = a.credential_header("sk-key");
                let _ = a.body(body, plan.default_max_tokens);
            }
        }
        assert_eq!(Plan::decode(plan.encode().as_bytes()).as_ref(), Some(&plan));
    }
    let mut j = Journal::decode(state);
    let _ = (j.served(), j.failovers(), j.summary());
    let _ = j.all_failed(j.0.len());
    let _ = j.all_failed(0);
    j.record(u64::MAX, "p", &Outcome::Status(503));
    j.record(0, "p", &Outcome::Timeout);
    let back = Journal::decode(j.encode().as_bytes());
    assert_eq!(back, j, "the journal does not read back");
}

// ---------------------------------------------------------------------------------------------
// From shared data
// ---------------------------------------------------------------------------------------------

/// A `Store` in memory that remembers every key written, so the fuzzer can overwrite or
/// corrupt records without knowing their names.
#[derive(Default)]
struct Recording {
    inner: MemStore,
    keys: RefCell<Vec<String>>,
}

impl Recording {
    fn key(&self, b: u8) -> Option<String> {
        let keys = self.keys.borrow();
        keys.get(usize::from(b) % keys.len().max(1)).cloned()
    }

    /// Overwrite a recorded key with other bytes: random ones, a cut, a flipped byte, an
    /// extension, or a zero-length record, as a dead worker or another version may leave them.
    fn corrupt(&self, input: &mut Input<'_>) {
        let Some(key) = self.key(input.byte()) else {
            return;
        };
        let mut value = self.inner.get(&key).map(|(v, _)| v).unwrap_or_default();
        match input.byte() % 5 {
            0 => {
                let n = usize::from(input.byte());
                value = input.bytes(n).to_vec();
            }
            1 => value.truncate(usize::from(input.u16()) % (value.len() + 1)),
            2 => {
                let at = usize::from(input.u16());
                let x = input.byte();
                let len = value.len().max(1);
                if let Some(b) = value.get_mut(at % len) {
                    *b ^= x.max(1);
                }
            }
            3 => {
                let n = usize::from(input.byte());
                value.extend_from_slice(input.bytes(n));
            }
            _ => value.clear(),
        }
        let _ = self.inner.set(&key, &value, 0);
    }
}

impl Store for Recording {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.inner.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), Conflict> {
        let r = self.inner.set(key, value, cas);
        let mut keys = self.keys.borrow_mut();
        if r.is_ok() && !keys.iter().any(|k| k == key) {
            keys.push(key.to_string());
        }
        r
    }
}

fn cache_key(b: u8) -> crate::cache::Key {
    // Few distinct prefixes and buckets, so keys collide in a bucket and on a prefix.
    let mut k = [0u8; 32];
    k[0] = b & 3;
    k[8] = (b >> 2) & 3;
    k[31] = b >> 4;
    k
}

fn vector(input: &mut Input<'_>) -> Vec<f32> {
    let dim = usize::from(input.byte() % 5);
    (0..dim)
        .map(|_| match input.byte() % 4 {
            0 => 1.0,
            1 => -0.5,
            2 => f32::from_bits(input.u32()),
            _ => 0.0,
        })
        .collect()
}

/// The response cache's shared records (index, directory buckets, entries, vector segments and
/// their versions) written by the cache itself, then overwritten or corrupted, then read and
/// updated again, by two VMs' worth of vector mirrors.
pub fn cache_store(data: &[u8]) {
    use crate::cache::{CacheConfig, Entries, VectorIndex};
    let mut input = Input::new(data);
    let store = Recording::default();
    let cfg = CacheConfig {
        max_entries: u32::from(input.byte() % 16) + 1,
        max_bytes: (u64::from(input.byte()) + 1) * 32,
        ..CacheConfig::default()
    };
    let max_vectors = u32::from(input.byte()) + 1;
    let entries = Entries::new("c.", &cfg);
    let mut vms = [
        VectorIndex::new("v.", max_vectors),
        VectorIndex::new("v.", max_vectors),
    ];
    let mut now = 1_000u64;
    let mut ops = 0;
    while !input.is_empty() && ops < 256 {
        ops += 1;
        now = now.saturating_add(u64::from(input.byte()));
        match input.byte() % 8 {
            0 => {
                let key = cache_key(input.byte());
                let n = usize::from(input.byte());
                let body = input.bytes(n).to_vec();
                let expires = match input.byte() % 3 {
                    0 => now,
                    1 => u64::MAX,
                    _ => now.saturating_add(u64::from(input.byte())),
                };
                let _ = entries.put(&store, &key, &body, expires, now);
            }
            1 => {
                let key = cache_key(input.byte());
                let _ = entries.get(&store, &key, now);
            }
            2 => store.corrupt(&mut input),
            3 => {
                let vm = usize::from(input.byte() % 2);
                let partition = cache_key(input.byte());
                let key = cache_key(input.byte());
                let v = vector(&mut input);
                let expires = now.saturating_add(u64::from(input.byte()));
                let _ = vms[vm].insert(&store, &partition, &key, expires, &v);
            }
            4 => {
                let vm = usize::from(input.byte() % 2);
                let partition = cache_key(input.byte());
                let v = vector(&mut input);
                let _ = vms[vm].nearest(&store, &partition, &v, now);
            }
            5 => {
                let _ = entries.total_bytes(&store);
            }
            6 => {
                // A record under a name the cache did not write (another version's layout).
                let name = match input.byte() % 4 {
                    0 => "c.index".to_string(),
                    1 => "v.meta".to_string(),
                    2 => format!("c.e.{}", input.byte() % 17),
                    _ => format!("v.s.{}", input.byte() % 5),
                };
                let n = usize::from(input.byte());
                let _ = store.inner.set(&name, input.bytes(n), 0);
                store.keys.borrow_mut().push(name);
            }
            _ => now = now.saturating_add(input.number()),
        }
    }
}

/// The limiter's shared slots and claim lock: admissions, settlements and cancellations by
/// two VMs, with slots and the lock overwritten or corrupted in between.
pub fn limits_store(data: &[u8]) {
    use crate::limits::{Cost, Held, Limiter, Scope, Spec};
    let mut input = Input::new(data);
    let store = Recording::default();
    let slots = u32::from(input.byte() % 8) + 1;
    let limit = |input: &mut Input<'_>| {
        let b = input.byte();
        (b & 1 != 0).then(|| input.number())
    };
    let scopes: Vec<Scope> = ["team-a", "team-b", "team-a / gpt-4o*"]
        .iter()
        .map(|name| Scope {
            name: name.to_string(),
            spec: Spec {
                rpm: limit(&mut input),
                tpm: limit(&mut input),
                tpd: limit(&mut input),
                concurrent: {
                    let b = input.byte();
                    (b & 1 != 0).then_some(u32::from(b >> 1))
                },
            },
        })
        .collect();
    let mut vms = [Limiter::new("l.", slots), Limiter::new("l.", slots)];
    vms[0].init(&store);
    let mut held: Vec<(usize, Held)> = Vec::new();
    let mut now = 1_700_000_000_000_000_000u64;
    let mut ops = 0;
    while !input.is_empty() && ops < 256 {
        ops += 1;
        let op = input.byte();
        let vm = usize::from(op >> 7);
        match op % 8 {
            0 | 1 => {
                let from = usize::from(input.byte()) % scopes.len();
                let cost = Cost {
                    requests: input.number(),
                    tokens: input.number(),
                };
                if let Ok(Ok(h)) = vms[vm].admit(&store, &scopes[from..], cost, now) {
                    held.push((vm, h));
                }
            }
            2 => {
                if !held.is_empty() {
                    let (vm, h) = held.remove(usize::from(input.byte()) % held.len());
                    let _ = vms[vm].settle(&store, &h, input.number(), now);
                }
            }
            3 => {
                if !held.is_empty() {
                    let (vm, h) = held.remove(usize::from(input.byte()) % held.len());
                    let _ = vms[vm].cancel(&store, &h, now);
                }
            }
            4 => {
                if let Some((vm, h)) = held.last_mut() {
                    let _ = vms[*vm].add_tokens(&store, h, input.number(), now);
                }
            }
            5 => store.corrupt(&mut input),
            6 => now = now.wrapping_add(input.number()),
            _ => {
                // A fresh VM (a reload) initialising over whatever is there.
                vms[vm] = Limiter::new("l.", slots);
                vms[vm].init(&store);
            }
        }
    }
}
