//! A host for native tests and benches: headers, bodies and properties are plain maps the test
//! fills in; callouts, replies, resumes and metrics are recorded for the test to assert on;
//! shared data behaves as Envoy's (a CAS token per key); time only moves when the test says.

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};

use super::{Buffer, CallError, Grpc, Host, Map, Post};
use crate::limits::test_store::MemStore;
use crate::limits::{Conflict, Store};
use crate::metrics::{Kind, MetricUpdate};

/// A callout the flow made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callout {
    pub token: u32,
    /// `http` or `grpc`.
    pub kind: &'static str,
    pub cluster: String,
    /// The HTTP path, or `service/method` for gRPC.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
}

/// A local reply the flow sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Default)]
pub struct FakeHost {
    pub now_ns: Cell<u64>,
    pub request_headers: Vec<(String, String)>,
    pub response_headers: Vec<(String, String)>,
    pub call_headers: Vec<(String, String)>,
    pub request_body: Vec<u8>,
    pub response_body: Vec<u8>,
    pub call_body: Vec<u8>,
    pub grpc_message: Vec<u8>,
    /// Properties by their path joined with `.` (`response.code`, `llm.plan`).
    pub properties: BTreeMap<String, Vec<u8>>,
    /// Names of the properties the flow set, in order.
    pub set_properties: Vec<String>,
    pub shared: MemStore,
    pub env: BTreeMap<String, String>,
    /// Callouts made, in order.
    pub callouts: Vec<Callout>,
    /// Make every callout fail as Envoy does for an unknown cluster.
    pub refuse_callouts: bool,
    pub replies: Vec<Reply>,
    pub resumed: usize,
    /// The request a root-context callback acts on (`switch_context`), if any.
    pub effective: Option<u32>,
    /// Requests resumed from the root context, by context id.
    pub resumed_contexts: Vec<u32>,
    /// Context ids `switch_context` finds gone.
    pub gone_contexts: Vec<u32>,
    /// Replies sent from the root context, by context id.
    pub replied_contexts: Vec<u32>,
    /// Counters summed and gauges/histograms last value, by full stat name.
    pub metrics: BTreeMap<String, i64>,
    /// Every update, in order.
    pub updates: Vec<MetricUpdate>,
    /// How many metric series may exist (default: unbounded).
    pub max_series: Option<usize>,
    /// Values `random` returns, in order (then 0).
    pub draws: VecDeque<u32>,
    /// Values `random_u64` returns, in order; then a counter from 1.
    pub bits: VecDeque<u64>,
    bits_counter: u64,
    /// Body replacements the flow made: (buffer, replaced size, new bytes).
    pub bodies_set: Vec<(Buffer, usize, Vec<u8>)>,
    pub done_called: bool,
    next_token: u32,
}

fn get(list: &[(String, String)], name: &str) -> Option<String> {
    list.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

fn set(list: &mut Vec<(String, String)>, name: &str, value: Option<&str>) {
    list.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    if let Some(v) = value {
        list.push((name.to_string(), v.to_string()));
    }
}

impl FakeHost {
    /// A host at a fixed time (1 January 2026) with these request headers.
    pub fn new(headers: &[(&str, &str)]) -> FakeHost {
        let h = FakeHost {
            request_headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..FakeHost::default()
        };
        h.now_ns.set(1_767_225_600_000_000_000);
        h
    }

    /// A request header as the flow left it.
    pub fn request_header(&self, name: &str) -> Option<String> {
        get(&self.request_headers, name)
    }

    /// A response header as the flow left it.
    pub fn response_header(&self, name: &str) -> Option<String> {
        get(&self.response_headers, name)
    }

    /// A property the flow set (or the test put there), as UTF-8.
    pub fn prop(&self, name: &str) -> Option<String> {
        self.properties
            .get(name)
            .and_then(|b| String::from_utf8(b.clone()).ok())
    }

    /// A counter's sum or a gauge's value, 0 when never written.
    pub fn metric_value(&self, name: &str) -> i64 {
        self.metrics.get(name).copied().unwrap_or(0)
    }

    /// Move time on.
    pub fn advance_ms(&self, ms: u64) {
        self.now_ns.set(self.now_ns.get() + ms * 1_000_000);
    }

    /// The answer an HTTP callout gets, for the test to hand to the flow's callback next.
    pub fn answer_call(&mut self, status: u16, body: &[u8]) {
        self.call_headers = vec![(":status".to_string(), status.to_string())];
        self.call_body = body.to_vec();
    }

    /// Set the response the provider gave (headers and first body chunk).
    pub fn respond(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        self.response_headers = vec![(":status".to_string(), status.to_string())];
        self.response_headers
            .extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self.response_body = body.to_vec();
    }

    fn token(&mut self) -> u32 {
        self.next_token += 1;
        self.next_token
    }
}

impl Store for FakeHost {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.shared.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), Conflict> {
        self.shared.set(key, value, cas)
    }
}

impl Host for FakeHost {
    fn now_ns(&self) -> u64 {
        self.now_ns.get()
    }

    fn request_headers(&self) -> Vec<(String, Vec<u8>)> {
        self.request_headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
            .collect()
    }

    fn header(&self, map: Map, name: &str) -> Option<String> {
        match map {
            Map::RequestHeaders => get(&self.request_headers, name),
            Map::ResponseHeaders => get(&self.response_headers, name),
            Map::CallResponseHeaders => get(&self.call_headers, name),
        }
    }

    fn set_header(&mut self, map: Map, name: &str, value: Option<&str>) {
        match map {
            Map::RequestHeaders => set(&mut self.request_headers, name, value),
            Map::ResponseHeaders => set(&mut self.response_headers, name, value),
            Map::CallResponseHeaders => set(&mut self.call_headers, name, value),
        }
    }

    fn body(&self, buffer: Buffer, size: usize) -> Vec<u8> {
        let b = match buffer {
            Buffer::RequestBody => &self.request_body,
            Buffer::ResponseBody => &self.response_body,
            Buffer::CallResponseBody => &self.call_body,
            Buffer::GrpcResponse => &self.grpc_message,
        };
        b.iter().take(size).copied().collect()
    }

    fn set_body(&mut self, buffer: Buffer, size: usize, value: &[u8]) {
        self.bodies_set.push((buffer, size, value.to_vec()));
        let b = match buffer {
            Buffer::RequestBody => &mut self.request_body,
            Buffer::ResponseBody => &mut self.response_body,
            Buffer::CallResponseBody => &mut self.call_body,
            Buffer::GrpcResponse => &mut self.grpc_message,
        };
        let size = size.min(b.len());
        b.splice(..size, value.iter().copied());
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.properties.get(&path.join(".")).cloned()
    }

    fn set_property(&mut self, name: &str, value: &str) {
        self.set_properties.push(name.to_string());
        self.properties
            .insert(name.to_string(), value.as_bytes().to_vec());
    }

    fn post(&mut self, post: &Post<'_>) -> Result<u32, CallError> {
        if self.refuse_callouts {
            return Err(CallError("BadArgument".to_string()));
        }
        let token = self.token();
        let mut headers = vec![
            (":method".to_string(), post.method.to_string()),
            (":path".to_string(), post.path.to_string()),
            (":authority".to_string(), post.authority.to_string()),
        ];
        if post.method == "POST" {
            headers.push(("content-type".to_string(), "application/json".to_string()));
        }
        headers.extend(
            post.headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        self.callouts.push(Callout {
            token,
            kind: "http",
            cluster: post.cluster.to_string(),
            path: post.path.to_string(),
            headers,
            body: post.body.to_vec(),
            timeout_ms: post.timeout_ms,
        });
        Ok(token)
    }

    fn grpc(&mut self, call: &Grpc<'_>) -> Result<u32, CallError> {
        if self.refuse_callouts {
            return Err(CallError("BadArgument".to_string()));
        }
        let token = self.token();
        self.callouts.push(Callout {
            token,
            kind: "grpc",
            cluster: call.cluster.to_string(),
            path: format!("{}/{}", call.service, call.method),
            headers: Vec::new(),
            body: call.message.to_vec(),
            timeout_ms: call.timeout_ms,
        });
        Ok(token)
    }

    fn send_reply(&mut self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        self.replies.push(Reply {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        });
        if let Some(id) = self.effective {
            self.replied_contexts.push(id);
        }
    }

    fn resume_request(&mut self) {
        self.resumed += 1;
        if let Some(id) = self.effective {
            self.resumed_contexts.push(id);
        }
    }

    fn switch_context(&mut self, context_id: Option<u32>) -> bool {
        if context_id.is_some_and(|id| self.gone_contexts.contains(&id)) {
            return false;
        }
        self.effective = context_id;
        true
    }

    fn metric_room(&self, name: &str) -> bool {
        self.max_series
            .is_none_or(|max| self.metrics.len() < max || self.metrics.contains_key(name))
    }

    fn metric(&mut self, update: &MetricUpdate) {
        self.updates.push(update.clone());
        let v = i64::try_from(update.value).unwrap_or(i64::MAX);
        let e = self.metrics.entry(update.name.clone()).or_insert(0);
        match update.kind {
            Kind::Counter => *e += v,
            Kind::Gauge | Kind::Histogram => *e = v,
        }
    }

    fn add_gauge(&mut self, name: &str, delta: i64) {
        if delta != 0 {
            *self.metrics.entry(name.to_string()).or_insert(0) += delta;
        }
    }

    fn memory_bytes(&self) -> u64 {
        1 << 20
    }

    fn env(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }

    fn random(&mut self, bound: u32) -> u32 {
        self.draws.pop_front().unwrap_or(0) % bound.max(1)
    }

    fn random_u64(&mut self) -> u64 {
        self.bits.pop_front().unwrap_or_else(|| {
            self.bits_counter += 1;
            self.bits_counter
        })
    }

    fn done(&mut self) {
        self.done_called = true;
    }
}
