//! What the flow asks of Envoy, as one trait: headers, bodies, properties, shared data,
//! callouts, local replies, metrics, time and the VM's environment. The shell implements it
//! once over proxy-wasm (`shell::host`); [`fake::FakeHost`] implements it natively, recording
//! what the flow did and playing back callout answers, so the whole flow runs in `cargo test`.

use crate::limits::Store;
use crate::metrics::MetricUpdate;

/// A header map the flow reads or changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Map {
    RequestHeaders,
    ResponseHeaders,
    /// The headers of the answer to an HTTP callout, while its callback runs.
    CallResponseHeaders,
}

/// A body the flow reads or replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Buffer {
    RequestBody,
    ResponseBody,
    /// The body of the answer to an HTTP callout, while its callback runs.
    CallResponseBody,
    /// The message of the answer to a gRPC callout, while its callback runs.
    GrpcResponse,
}

/// A callout Envoy refused to make (unknown cluster, bad arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError(pub String);

/// An HTTP callout: a JSON POST, or a GET (`method`, with an empty body).
#[derive(Debug, Clone, Copy)]
pub struct Post<'a> {
    /// `POST` (the body is JSON) or `GET` (no body, no content type).
    pub method: &'a str,
    pub cluster: &'a str,
    pub authority: &'a str,
    pub path: &'a str,
    /// Headers besides `:method`, `:path`, `:authority` and `content-type`.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    pub timeout_ms: u64,
}

/// A unary gRPC callout.
#[derive(Debug, Clone, Copy)]
pub struct Grpc<'a> {
    pub cluster: &'a str,
    pub service: &'a str,
    pub method: &'a str,
    pub message: &'a [u8],
    pub timeout_ms: u64,
}

/// Everything the flow asks of its host. Shared data is the [`Store`] the limiter and the
/// cache keep their tables in.
pub trait Host: Store {
    /// Wall-clock time, in nanoseconds since the Unix epoch (0 when unknown).
    fn now_ns(&self) -> u64;

    fn now_us(&self) -> u64 {
        self.now_ns() / 1_000
    }

    fn now_ms(&self) -> u64 {
        self.now_ns() / 1_000_000
    }

    /// Every request header, in order (one host call instead of one per lookup).
    fn request_headers(&self) -> Vec<(String, Vec<u8>)>;

    /// The first value of `name` in `map`, if it is UTF-8 (a value that is not reads as absent).
    fn header(&self, map: Map, name: &str) -> Option<String>;

    /// Set (`Some`) or remove (`None`) a header.
    fn set_header(&mut self, map: Map, name: &str, value: Option<&str>);

    /// The first `size` bytes of a body.
    fn body(&self, buffer: Buffer, size: usize) -> Vec<u8>;

    /// Replace the first `size` bytes of a body (the part this callback sees) with `value`.
    fn set_body(&mut self, buffer: Buffer, size: usize, value: &[u8]);

    /// A property of the stream or the node (`["response", "code"]`, `["llm.plan"]`).
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;

    /// Set a property in the stream's filter state (read by the access log and other filters).
    fn set_property(&mut self, name: &str, value: &str);

    /// POST JSON; the token its answer will carry.
    fn post(&mut self, post: &Post<'_>) -> Result<u32, CallError>;

    /// A unary gRPC call; the token its answer will carry.
    fn grpc(&mut self, call: &Grpc<'_>) -> Result<u32, CallError>;

    /// Answer the client from the filter; nothing goes upstream.
    fn send_reply(&mut self, status: u32, headers: &[(&str, &str)], body: &[u8]);

    /// Let a paused request go on (a stream already gone is not an error).
    fn resume_request(&mut self);

    /// From the VM's root context: act on another request of this VM (`Some(context id)`, a
    /// request paused waiting for the VM) until switched back (`None`). `false` when that
    /// request is gone.
    fn switch_context(&mut self, context_id: Option<u32>) -> bool;

    /// Whether one more metric series may be defined (the VM bounds how many it keeps).
    fn metric_room(&self, name: &str) -> bool;

    /// Add to a counter, or set a gauge or record a histogram value.
    fn metric(&mut self, update: &MetricUpdate);

    /// Add `delta` to a gauge every VM shares.
    fn add_gauge(&mut self, name: &str, delta: i64);

    /// Linear memory of this VM, in bytes.
    fn memory_bytes(&self) -> u64;

    /// A variable of the VM's environment (provider keys arrive this way).
    fn env(&self, name: &str) -> Option<String>;

    /// A uniformly random number below `bound` (`bound` > 0), for weighted splits.
    fn random(&mut self, bound: u32) -> u32;

    /// 64 random bits (trace and span ids).
    fn random_u64(&mut self) -> u64;

    /// Tell the host a stopping VM has finished its last work.
    fn done(&mut self);
}

/// A property read as a little-endian u64 (how Envoy encodes integer properties).
pub fn property_u64(h: &impl Host, path: &[&str]) -> Option<u64> {
    let b = h.property(path)?;
    let arr: [u8; 8] = b.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(arr))
}

/// A property read as UTF-8.
pub fn property_string(h: &impl Host, path: &[&str]) -> Option<String> {
    String::from_utf8(h.property(path)?).ok()
}

#[cfg(not(target_arch = "wasm32"))]
pub mod fake;
