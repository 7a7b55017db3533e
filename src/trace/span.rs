//! The spans of a finished request, encoded as OTLP/JSON `Span`s:
//! - the request's span (kind SERVER: the gateway serves the caller), named and attributed
//!   after the GenAI semantic conventions (`{gen_ai.operation.name} {gen_ai.request.model}`,
//!   `gen_ai.*`), plus the gateway's own (`llm_gateway.*`: consumer, team, cost, cache
//!   result, outcome, time to first token), and span events for the semantic cache's lookup
//!   and the global rate limit call;
//! - a child span per upstream attempt (kind CLIENT), with its provider and outcome: the one
//!   attempt of a direct route, or each provider a failover chain tried.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use super::{Context, SpanId, TraceId};
use crate::otlp::{Decimal, KeyValue, Seq, Val};
use crate::record::Record;

/// OTLP `SpanKind`s.
const KIND_SERVER: u8 = 2;
const KIND_CLIENT: u8 = 3;
/// OTLP `StatusCode` of an error.
const STATUS_ERROR: u8 = 2;

/// Attributes: (key, value).
pub type Attrs = Vec<(&'static str, Val)>;

/// Span events of the callouts a request waits for.
pub const SEMANTIC_LOOKUP: &str = "llm_gateway.semantic_cache.lookup";
pub const GLOBAL_LIMIT: &str = "llm_gateway.rate_limit.global";

/// A span event: a callout the request waited for.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: &'static str,
    pub time_ns: u64,
    pub attrs: Attrs,
}

/// One upstream attempt, as the spans show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first.
    pub n: u64,
    pub provider: String,
    /// The model the provider got.
    pub model: Option<String>,
    /// How it ended: an HTTP status, or why there was none (`crate::failover::Outcome`).
    pub outcome: String,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// What the gateway filter knows of a request's trace while it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub ctx: Context,
    pub start_ns: u64,
    /// `gen_ai.request.*` parameters from the body.
    pub params: Attrs,
    /// The route opted in to content: at most this many bytes of prompt and of completion.
    pub content_max: Option<usize>,
    /// `gen_ai.input.messages`, when content is on.
    pub input: Option<String>,
    pub events: Vec<Event>,
    /// A direct route's attempt: when it left (ns).
    pub sent_ns: Option<u64>,
    /// A failover chain: the model each of its providers gets, in order.
    pub chain_models: Vec<String>,
    /// A callout's start (ns), until its event is written.
    pub semantic_start_ns: Option<u64>,
    pub global_start_ns: Option<u64>,
}

impl State {
    pub fn new(ctx: Context, start_ns: u64) -> State {
        State {
            ctx,
            start_ns,
            params: Vec::new(),
            content_max: None,
            input: None,
            events: Vec::new(),
            sent_ns: None,
            chain_models: Vec::new(),
            semantic_start_ns: None,
            global_start_ns: None,
        }
    }

    /// When the callout of span event `event` started (the semantic lookup's, else the
    /// global rate limit call's).
    pub fn callout_start(&mut self, event: &str) -> &mut Option<u64> {
        if event == SEMANTIC_LOOKUP {
            &mut self.semantic_start_ns
        } else {
            &mut self.global_start_ns
        }
    }

    /// A callout that started at `start_ns` ended now (`now_ns`): its event.
    pub fn event(&mut self, name: &'static str, start_ns: u64, now_ns: u64, mut attrs: Attrs) {
        let us = now_ns.saturating_sub(start_ns) / 1000;
        attrs.push(("llm_gateway.duration_us", Val::Int(us)));
        if self.events.len() < MAX_EVENTS {
            self.events.push(Event {
                name,
                time_ns: start_ns,
                attrs,
            });
        }
    }
}

/// A string attribute from the wire (a model name) is cut to this many bytes; the content
/// attributes have their own bound (`tracing.content.max_bytes`).
pub const MAX_ATTR_BYTES: usize = 256;

/// Events a span carries at most.
pub const MAX_EVENTS: usize = 8;

/// One OTLP span.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent: Option<SpanId>,
    pub tracestate: Option<String>,
    pub name: String,
    pub kind: u8,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attrs: Attrs,
    pub events: Vec<Event>,
    /// The status message of a failed span.
    pub error: Option<String>,
}

/// The GenAI operation name of an endpoint.
pub fn operation(endpoint: &str) -> &'static str {
    match endpoint {
        "embeddings" => "embeddings",
        "completions" => "text_completion",
        _ => "chat",
    }
}

/// `error.type` of a request: its outcome when it is not a success, else `None`.
fn error_type(r: &Record) -> Option<String> {
    match r.outcome() {
        "ok" | "cache_hit" => None,
        "upstream_error" => Some(r.status.to_string()),
        o => Some(o.to_string()),
    }
}

/// The spans of finished request `r` (ended at `end_ns`): its own, then one per attempt.
/// `output`: the completion, when the route opted in to content.
pub fn spans(
    st: &State,
    r: &Record,
    end_ns: u64,
    attempts: &[Attempt],
    output: Option<String>,
) -> Vec<Span> {
    let op = operation(r.endpoint.unwrap_or_default());
    let model = cut_to(
        r.request_model.as_deref().unwrap_or_default(),
        MAX_ATTR_BYTES,
    );
    let mut attrs = request_attrs(st, r, op);
    if let Some(i) = &st.input {
        attrs.push(("gen_ai.input.messages", Val::Str(i.clone())));
    }
    if let Some(o) = output {
        attrs.push(("gen_ai.output.messages", Val::Str(o)));
    }
    let error = error_type(r);
    if let Some(e) = &error {
        attrs.push(("error.type", Val::Str(e.clone())));
    }
    let mut out = Vec::with_capacity(1 + attempts.len());
    out.push(Span {
        trace_id: st.ctx.trace_id,
        span_id: st.ctx.span_id,
        parent: st.ctx.parent,
        tracestate: st.ctx.tracestate.clone(),
        name: if model.is_empty() {
            op.to_string()
        } else {
            format!("{op} {model}")
        },
        kind: KIND_SERVER,
        start_ns: st.start_ns,
        end_ns: end_ns.max(st.start_ns),
        attrs,
        events: st.events.clone(),
        error,
    });
    for a in attempts {
        out.push(attempt_span(st, a, op));
    }
    out
}

/// The attributes of a request's span.
fn request_attrs(st: &State, r: &Record, op: &'static str) -> Attrs {
    let mut a: Attrs = Vec::with_capacity(32);
    let s = |v: &str| Val::Str(v.to_string());
    a.push(("gen_ai.operation.name", s(op)));
    let strs = [
        ("gen_ai.provider.name", &r.provider),
        ("gen_ai.request.model", &r.request_model),
        ("gen_ai.response.model", &r.learned.model),
        ("gen_ai.response.id", &r.learned.id),
        ("llm_gateway.upstream_model", &r.upstream_model),
        ("llm_gateway.consumer", &r.consumer),
        ("llm_gateway.team", &r.team),
        ("llm_gateway.request_id", &r.request_id),
    ];
    for (k, v) in strs {
        if let Some(v) = v {
            a.push((k, s(cut_to(v, MAX_ATTR_BYTES))));
        }
    }
    a.extend(st.params.iter().cloned());
    if !r.learned.finish_reasons.is_empty() {
        let reasons = r.learned.finish_reasons.iter().map(|x| x.to_string());
        a.push((
            "gen_ai.response.finish_reasons",
            Val::Strs(reasons.collect()),
        ));
    }
    let t = r.tokens();
    if r.local_outcome.is_none() && !r.cache_hit() {
        a.push(("gen_ai.usage.input_tokens", Val::Int(t.prompt)));
        a.push(("gen_ai.usage.output_tokens", Val::Int(t.completion)));
        if t.cached > 0 {
            a.push(("gen_ai.usage.cache_read.input_tokens", Val::Int(t.cached)));
        }
        if t.cache_write > 0 {
            a.push((
                "gen_ai.usage.cache_creation.input_tokens",
                Val::Int(t.cache_write),
            ));
        }
        if t.reasoning > 0 {
            a.push((
                "gen_ai.usage.reasoning.output_tokens",
                Val::Int(t.reasoning),
            ));
        }
        a.push(("llm_gateway.usage.estimated", Val::Bool(t.estimated)));
    }
    if let Some(e) = r.endpoint {
        a.push(("llm_gateway.endpoint", s(e)));
    }
    a.push(("llm_gateway.stream", Val::Bool(r.stream)));
    a.push(("llm_gateway.outcome", s(r.outcome())));
    if r.status > 0 {
        a.push(("http.response.status_code", Val::Int(r.status.into())));
    }
    if let Some(c) = r.cost {
        a.push(("llm_gateway.cost_usd", Val::Double(crate::cost::dollars(c))));
    }
    if let Some(c) = r.cache {
        a.push(("llm_gateway.cache", s(c)));
    }
    if let Some(l) = r.limited {
        a.push(("llm_gateway.limited", s(l)));
    }
    if let Some(ms) = r.ttft_ms {
        a.push(("llm_gateway.ttft_ms", Val::Int(ms)));
    }
    if let Some(c) = r.counted_prompt {
        a.push((
            "llm_gateway.usage.counted_prompt_tokens",
            Val::Int(c.tokens),
        ));
    }
    a
}

/// An attempt's span: a child of the request's.
fn attempt_span(st: &State, a: &Attempt, op: &'static str) -> Span {
    let mut attrs: Attrs = vec![
        ("gen_ai.operation.name", Val::Str(op.to_string())),
        ("gen_ai.provider.name", Val::Str(a.provider.clone())),
        ("llm_gateway.attempt", Val::Int(a.n)),
        ("llm_gateway.outcome", Val::Str(a.outcome.clone())),
    ];
    let model = a.model.as_deref().map(|m| cut_to(m, MAX_ATTR_BYTES));
    if let Some(m) = model {
        attrs.push(("gen_ai.request.model", Val::Str(m.to_string())));
    }
    let status = a.outcome.parse::<u64>().ok();
    if let Some(code) = status {
        attrs.push(("http.response.status_code", Val::Int(code)));
    }
    let failed = status.is_none_or(|c| c >= 400);
    if failed {
        attrs.push(("error.type", Val::Str(a.outcome.clone())));
    }
    Span {
        trace_id: st.ctx.trace_id,
        span_id: st.ctx.attempt_span(a.n),
        parent: Some(st.ctx.span_id),
        tracestate: st.ctx.tracestate.clone(),
        name: match model {
            Some(m) => format!("{op} {m}"),
            None => op.to_string(),
        },
        kind: KIND_CLIENT,
        start_ns: a.start_ns,
        end_ns: a.end_ns.max(a.start_ns),
        attrs,
        events: Vec::new(),
        error: failed.then(|| a.outcome.clone()),
    }
}

impl Span {
    /// This span as an element of a post's `spans` array.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        // OTLP/JSON writes ids as hex, not base64.
        m.serialize_entry("traceId", &hex::encode(self.trace_id))?;
        m.serialize_entry("spanId", &hex::encode(self.span_id))?;
        if let Some(p) = &self.parent {
            m.serialize_entry("parentSpanId", &hex::encode(p))?;
        }
        if let Some(t) = &self.tracestate {
            m.serialize_entry("traceState", t)?;
        }
        m.serialize_entry("name", &self.name)?;
        m.serialize_entry("kind", &self.kind)?;
        m.serialize_entry("startTimeUnixNano", &Decimal(self.start_ns))?;
        m.serialize_entry("endTimeUnixNano", &Decimal(self.end_ns))?;
        m.serialize_entry(
            "attributes",
            &Seq(|| self.attrs.iter().map(|(k, v)| KeyValue(k, v))),
        )?;
        if !self.events.is_empty() {
            m.serialize_entry("events", &Seq(|| self.events.iter().map(SpanEvent)))?;
        }
        if let Some(msg) = &self.error {
            m.serialize_entry("status", &Status(msg))?;
        }
        m.end()
    }
}

struct SpanEvent<'a>(&'a Event);

impl Serialize for SpanEvent<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.0;
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("timeUnixNano", &Decimal(e.time_ns))?;
        m.serialize_entry("name", e.name)?;
        m.serialize_entry(
            "attributes",
            &Seq(|| e.attrs.iter().map(|(k, v)| KeyValue(k, v))),
        )?;
        m.end()
    }
}

struct Status<'a>(&'a str);

impl Serialize for Status<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("code", &STATUS_ERROR)?;
        m.serialize_entry("message", self.0)?;
        m.end()
    }
}

/// When each attempt of a chain ran, as the upstream filter records it in filter state
/// (`[[n, start_us, end_us], ...]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Timings(pub Vec<(u64, u64, u64)>);

/// Attempts a chain records at most (`crate::config::MAX_CHAIN` and then some).
const MAX_TIMINGS: usize = 16;

impl Timings {
    pub fn decode(s: &[u8]) -> Timings {
        serde_json::from_slice(s).unwrap_or_default()
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Attempt `n` ran from `start_us` until `end_us` (a later record replaces it).
    pub fn record(&mut self, n: u64, start_us: u64, end_us: u64) {
        if let Some(t) = self.0.iter_mut().find(|t| t.0 == n) {
            *t = (n, start_us, end_us);
        } else if self.0.len() < MAX_TIMINGS {
            self.0.push((n, start_us, end_us));
        }
    }

    /// When attempt `n` ran (ns).
    pub fn of(&self, n: u64) -> Option<(u64, u64)> {
        let t = self.0.iter().find(|t| t.0 == n)?;
        Some((t.1.saturating_mul(1000), t.2.saturating_mul(1000)))
    }
}

/// The prompt as `gen_ai.input.messages` (`[{"role", "parts": [{"type": "text", "content"}]}]`),
/// the text of each message cut so all of it fits in `max` bytes; `None` when the body has no
/// messages, prompt or input to show.
pub fn input_messages(body: &[u8], max: usize) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let mut msgs: Vec<(String, String)> = Vec::new();
    let text_of = |c: &serde_json::Value| -> String {
        match c {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(|t| t.as_str()))
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        }
    };
    if let Some(list) = v.get("messages").and_then(|m| m.as_array()) {
        for m in list {
            let role = m.get("role").and_then(|r| r.as_str()).unwrap_or("user");
            let text = m.get("content").map(text_of).unwrap_or_default();
            msgs.push((role.to_string(), text));
        }
    } else if let Some(p) = v.get("prompt").or_else(|| v.get("input")) {
        msgs.push(("user".to_string(), text_of(p)));
    } else {
        return None;
    }
    Some(messages_json(msgs, max, None))
}

/// The completion as `gen_ai.output.messages`, cut to `max` bytes of text.
pub fn output_messages(text: &str, max: usize, finish_reason: Option<&str>) -> String {
    messages_json(
        vec![("assistant".to_string(), text.to_string())],
        max,
        finish_reason,
    )
}

/// Messages in the GenAI conventions' shape, their texts together at most `max` bytes.
fn messages_json(msgs: Vec<(String, String)>, max: usize, finish: Option<&str>) -> String {
    let mut left = max;
    let out: Vec<serde_json::Value> = msgs
        .into_iter()
        .map(|(role, text)| {
            let cut = cut_to(&text, left);
            left = left.saturating_sub(cut.len());
            let mut m = serde_json::json!({
                "role": role,
                "parts": [{"type": "text", "content": cut}],
            });
            if let (Some(f), Some(o)) = (finish, m.as_object_mut()) {
                o.insert("finish_reason".to_string(), f.into());
            }
            m
        })
        .collect();
    serde_json::to_string(&out).unwrap_or_default()
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn cut_to(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}
