//! Traces: a span per LLM request after the OpenTelemetry GenAI semantic conventions, joined to
//! the caller's W3C trace context, with a child span per upstream attempt, exported as OTLP/HTTP
//! JSON through the shared [`crate::export`] queue.
//!
//! - [`Context`]: the request's trace: the caller's (`traceparent`, `tracestate`) when it sent
//!   a valid one, honouring its sampled flag, else a new one sampled at
//!   `tracing.sampling_ratio` (decided from the trace id, like OpenTelemetry's
//!   `TraceIdRatioBased`). Its attempt spans' ids derive from the request span's id and the
//!   attempt number, so the upstream filter (which sends the provider its `traceparent`) and
//!   the gateway filter (which writes the spans) name the same span without talking.
//! - [`span`]: the spans of a finished request, encoded as OTLP `Span`s.
//! - [`config`]: the `tracing` section.

pub mod config;
pub mod span;

pub use config::{RawTracing, Tracing};

/// A trace id (16 bytes) and a span id (8 bytes).
pub type TraceId = [u8; 16];
pub type SpanId = [u8; 8];

/// The longest `tracestate` passed on and recorded (W3C asks that at least 512 bytes be
/// propagated; a longer one is dropped, not cut, since a cut member would be corrupt).
pub const MAX_TRACESTATE_BYTES: usize = 512;

/// A request's trace and span ids in hex, as the access log and the usage events show them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub trace_id: String,
    pub span_id: String,
    pub sampled: bool,
}

/// A request's trace context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub trace_id: TraceId,
    /// The caller's span, when it sent a `traceparent`.
    pub parent: Option<SpanId>,
    /// The gateway's span for this request.
    pub span_id: SpanId,
    /// Whether the trace is recorded (and exported).
    pub sampled: bool,
    /// The caller's `tracestate`, when valid.
    pub tracestate: Option<String>,
}

/// A `traceparent` header's fields: trace id, parent span id, flags.
pub fn parse_traceparent(v: &str) -> Option<(TraceId, SpanId, u8)> {
    let v = v.trim_matches([' ', '\t']);
    let b = v.as_bytes();
    // version "-" trace-id "-" parent-id "-" flags; a later version may add "-..." fields.
    if b.len() < 55 || b.get(2) != Some(&b'-') || b.get(35) != Some(&b'-') {
        return None;
    }
    if b.get(52) != Some(&b'-') {
        return None;
    }
    let [version] = lower_hex::<1>(v.get(0..2)?)?;
    match version {
        0xff => return None,
        0 if b.len() != 55 => return None,
        _ if b.len() > 55 && b.get(55) != Some(&b'-') => return None,
        _ => {}
    }
    let trace_id = lower_hex::<16>(v.get(3..35)?)?;
    let parent = lower_hex::<8>(v.get(36..52)?)?;
    let [flags] = lower_hex::<1>(v.get(53..55)?)?;
    if trace_id == [0; 16] || parent == [0; 8] {
        return None;
    }
    Some((trace_id, parent, flags))
}

/// `N` bytes from exactly `2N` lowercase hex digits.
fn lower_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// A `tracestate` worth passing on: printable ASCII, at most `MAX_TRACESTATE_BYTES`.
fn valid_tracestate(v: &str) -> bool {
    !v.is_empty() && v.len() <= MAX_TRACESTATE_BYTES && v.bytes().all(|c| (0x20..0x7f).contains(&c))
}

/// A 64-bit mix (splitmix64's finaliser).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A span id from 64 random bits (never all zeros).
fn span_id(bits: u64) -> SpanId {
    (if bits == 0 { 1 } else { bits }).to_be_bytes()
}

impl Context {
    /// The context of a request whose headers carry `traceparent` and `tracestate` (if any);
    /// `ratio`: the sampling ratio of a trace started here; `random`: 64 random bits a call.
    pub fn start(
        traceparent: Option<&str>,
        tracestate: Option<&str>,
        ratio: f64,
        random: &mut dyn FnMut() -> u64,
    ) -> Context {
        let span_id = span_id(random());
        if let Some((trace_id, parent, flags)) = traceparent.and_then(parse_traceparent) {
            return Context {
                trace_id,
                parent: Some(parent),
                span_id,
                sampled: flags & 1 == 1,
                tracestate: tracestate
                    .map(|s| s.trim_matches([' ', '\t']))
                    .filter(|s| valid_tracestate(s))
                    .map(str::to_string),
            };
        }
        let (hi, lo) = (random(), random());
        let trace_id = ((u128::from(hi) << 64) | u128::from(lo))
            .max(1)
            .to_be_bytes();
        Context {
            trace_id,
            parent: None,
            span_id,
            sampled: sampled_at(&trace_id, ratio),
            tracestate: None,
        }
    }

    /// The request's ids, for the access log and the usage event.
    pub fn ids(&self) -> Ids {
        Ids {
            trace_id: self.trace_hex(),
            span_id: hex::encode(self.span_id),
            sampled: self.sampled,
        }
    }

    /// The trace id in hex.
    pub fn trace_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    /// The id of attempt `n`'s span (1 for the first), a child of the request's span.
    pub fn attempt_span(&self, n: u64) -> SpanId {
        span_id(mix(
            u64::from_be_bytes(self.span_id) ^ n.wrapping_mul(0xd6e8_feb8_6659_fd93)
        ))
    }

    /// The `traceparent` sent upstream from span `span`.
    pub fn traceparent(&self, span: &SpanId) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.trace_hex(),
            hex::encode(span),
            u8::from(self.sampled)
        )
    }

    /// The context as the gateway filter hands it to the upstream filter (filter state):
    /// `traceparent` with the request span as parent.
    pub fn encode(&self) -> String {
        self.traceparent(&self.span_id)
    }

    /// The context the gateway filter handed over (the caller's parent and tracestate are not
    /// needed upstream).
    pub fn decode(s: &[u8]) -> Option<Context> {
        let (trace_id, span_id, flags) = parse_traceparent(std::str::from_utf8(s).ok()?)?;
        Some(Context {
            trace_id,
            parent: None,
            span_id,
            sampled: flags & 1 == 1,
            tracestate: None,
        })
    }
}

/// Whether a new trace is sampled at `ratio`: its id's last 8 bytes, read as a number, fall
/// below `ratio` of the range (OpenTelemetry's `TraceIdRatioBased`).
fn sampled_at(trace_id: &TraceId, ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 || ratio.is_nan() {
        return false;
    }
    // The low 64 bits (the cast keeps them).
    let x = (u128::from_be_bytes(*trace_id) as u64) >> 11;
    // 53 bits compare exactly with a double.
    (x as f64) < ratio * (1u64 << 53) as f64
}

#[cfg(test)]
pub(crate) mod tests;
