//! A usage event, and its two encodings: a flat JSON object, or an OTLP `LogRecord`.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::export::Format;
use crate::otlp::{self, Decimal, KeyValue, Seq, Val};
use crate::record::{Record, Tokens};

/// The OTLP log record's `eventName`.
pub const EVENT_NAME: &str = "llm_gateway.usage";
/// The `eventName` of a budget alert (a JSON event says `"event": "budget_alert"`).
pub const ALERT_EVENT_NAME: &str = "llm_gateway.budget_alert";

/// (OTLP attribute key, JSON key, value).
type Fields = Vec<(&'static str, &'static str, Val)>;

/// One finished request, as exported.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `EVENT_NAME` or `ALERT_EVENT_NAME`.
    pub name: &'static str,
    /// When the request started (ns since the epoch).
    pub time_ns: u64,
    /// When the event was made (ns since the epoch).
    pub observed_ns: u64,
    /// (OTLP attribute key, JSON key, value); absent values are left out.
    pub fields: Fields,
    /// With `tracing`: the request's trace and span (the log record's `traceId`, `spanId`).
    pub trace: Option<crate::trace::Ids>,
}

impl Event {
    /// The event of a finished request. `cost` is in picodollars.
    pub fn new(r: &Record, request_id: Option<String>, start_ns: u64, now_ns: u64) -> Event {
        let mut f: Fields = Vec::with_capacity(26);
        what(&mut f, r, request_id);
        usage(&mut f, r);
        how(&mut f, r);
        Event {
            name: EVENT_NAME,
            time_ns: start_ns,
            observed_ns: now_ns,
            fields: f,
            trace: r.trace.clone(),
        }
    }

    /// A budget's spent fraction crossed an alert threshold, settling request `r`.
    pub fn budget_alert(c: &crate::limits::Crossing, r: &Record, now_ns: u64) -> Event {
        let mut f: Fields = Vec::with_capacity(10);
        let (kind, name) = match c.scope.strip_prefix(crate::limits::TEAM_SCOPE) {
            Some(team) => ("team", team.to_string()),
            None => ("consumer", c.scope.clone()),
        };
        let s = |v: &str| Val::Str(v.to_string());
        f.push(("llm_gateway.budget.scope", "budget_scope", s(&c.scope)));
        f.push((
            "llm_gateway.budget.scope_kind",
            "budget_scope_kind",
            s(kind),
        ));
        f.push((
            "llm_gateway.budget.scope_name",
            "budget_scope_name",
            s(&name),
        ));
        f.push((
            "llm_gateway.budget.window",
            "budget_window",
            s(c.window.name()),
        ));
        f.push((
            "llm_gateway.budget.threshold_percent",
            "threshold_percent",
            Val::Int(u64::from(c.threshold_ppm / 10_000)),
        ));
        f.push((
            "llm_gateway.budget.spent_usd",
            "spent_usd",
            Val::Double(crate::cost::dollars(c.spent)),
        ));
        f.push((
            "llm_gateway.budget.limit_usd",
            "limit_usd",
            Val::Double(crate::cost::dollars(c.limit)),
        ));
        f.push((
            "llm_gateway.budget.resets_unix_ms",
            "resets_unix_ms",
            Val::Int(c.resets_ns / 1_000_000),
        ));
        if let Some(v) = &r.consumer {
            f.push(("llm_gateway.consumer", "consumer", s(v)));
        }
        if let Some(v) = &r.team {
            f.push(("llm_gateway.team", "team", s(v)));
        }
        Event {
            name: ALERT_EVENT_NAME,
            time_ns: now_ns,
            observed_ns: now_ns,
            fields: f,
            trace: r.trace.clone(),
        }
    }

    /// This event as an element of a post's array in `format`.
    pub fn encode(&self, format: Format) -> Vec<u8> {
        let out = match format {
            Format::Json => serde_json::to_vec(&Flat(self)),
            Format::Otlp => serde_json::to_vec(&LogRecord(self)),
        };
        out.unwrap_or_default()
    }
}

/// What was asked of whom, and its outcome.
fn what(f: &mut Fields, r: &Record, request_id: Option<String>) {
    let mut s = |k, j, v: &Option<String>| {
        if let Some(v) = v {
            f.push((k, j, Val::Str(v.clone())));
        }
    };
    s("llm_gateway.request_id", "request_id", &request_id);
    s("llm_gateway.consumer", "consumer", &r.consumer);
    s("llm_gateway.team", "team", &r.team);
    s("gen_ai.request.model", "request_model", &r.request_model);
    s(
        "llm_gateway.upstream_model",
        "upstream_model",
        &r.upstream_model,
    );
    s("gen_ai.response.model", "response_model", &r.learned.model);
    s("gen_ai.provider.name", "provider", &r.provider);
    s(
        "llm_gateway.provider_request_id",
        "provider_request_id",
        &r.provider_request_id,
    );
    s("gen_ai.response.id", "response_id", &r.learned.id);
    if let Some(e) = r.endpoint {
        f.push(("llm_gateway.endpoint", "endpoint", Val::Str(e.to_string())));
        f.push((
            "gen_ai.operation.name",
            "operation",
            Val::Str(crate::trace::span::operation(e).to_string()),
        ));
    }
    f.push(("llm_gateway.stream", "stream", Val::Bool(r.stream)));
    f.push((
        "http.response.status_code",
        "status",
        Val::Int(r.status.into()),
    ));
    f.push((
        "llm_gateway.outcome",
        "outcome",
        Val::Str(r.outcome().to_string()),
    ));
}

/// The tokens billed (none for a request the gateway refused), the gateway's own count of the
/// prompt, and the cost.
fn usage(f: &mut Fields, r: &Record) {
    let t = if r.local_outcome.is_some() {
        Tokens::default()
    } else {
        r.tokens()
    };
    for (k, j, v) in [
        ("gen_ai.usage.input_tokens", "prompt_tokens", t.prompt),
        (
            "gen_ai.usage.output_tokens",
            "completion_tokens",
            t.completion,
        ),
        ("llm_gateway.usage.total_tokens", "total_tokens", t.total),
        (
            "llm_gateway.usage.cached_input_tokens",
            "cached_tokens",
            t.cached,
        ),
        (
            "llm_gateway.usage.cache_write_input_tokens",
            "cache_write_tokens",
            t.cache_write,
        ),
        (
            "llm_gateway.usage.reasoning_tokens",
            "reasoning_tokens",
            t.reasoning,
        ),
    ] {
        f.push((k, j, Val::Int(v)));
    }
    f.push((
        "llm_gateway.usage.estimated",
        "usage_estimated",
        Val::Bool(t.estimated),
    ));
    if let Some(c) = r.counted_prompt {
        // The gateway's own count of the prompt, apart from what is billed.
        f.push((
            "llm_gateway.usage.counted_prompt_tokens",
            "counted_prompt_tokens",
            Val::Int(c.tokens),
        ));
        f.push((
            "llm_gateway.usage.counted_prompt_estimated",
            "counted_prompt_estimated",
            Val::Bool(c.estimated),
        ));
    }
    if let Some(c) = r.cost {
        f.push((
            "llm_gateway.cost_usd",
            "cost_usd",
            Val::Double(crate::cost::dollars(c)),
        ));
    }
}

/// How the answer came: timings, the response cache, the providers tried.
fn how(f: &mut Fields, r: &Record) {
    f.push((
        "llm_gateway.duration_ms",
        "duration_ms",
        Val::Int(r.duration_ms),
    ));
    if let Some(ms) = r.ttft_ms {
        f.push(("llm_gateway.ttft_ms", "ttft_ms", Val::Int(ms)));
    }
    if let Some(c) = r.cache {
        f.push(("llm_gateway.cache", "cache", Val::Str(c.to_string())));
    }
    if r.cache_hit() {
        f.push((
            "llm_gateway.cache.saved_tokens",
            "cache_saved_tokens",
            Val::Int(r.cache_saved),
        ));
    }
    if let Some(j) = r.journal.as_ref().filter(|j| !j.0.is_empty()) {
        f.push((
            "llm_gateway.attempts",
            "attempts",
            Val::Int(j.0.len() as u64),
        ));
        let failed = crate::failover::Journal(j.failovers().to_vec());
        if !failed.0.is_empty() {
            f.push((
                "llm_gateway.failover",
                "failover",
                Val::Str(failed.summary()),
            ));
        }
    }
}

/// An event as a flat JSON object (the `json` format).
struct Flat<'a>(&'a Event);

impl Serialize for Flat<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.fields.len() + 1))?;
        m.serialize_entry("time_unix_ms", &(self.0.time_ns / 1_000_000))?;
        if self.0.name == ALERT_EVENT_NAME {
            m.serialize_entry("event", "budget_alert")?;
        }
        if let Some(t) = &self.0.trace {
            m.serialize_entry("trace_id", &t.trace_id)?;
            m.serialize_entry("span_id", &t.span_id)?;
        }
        for (_, k, v) in &self.0.fields {
            match v {
                Val::Str(x) => m.serialize_entry(k, x)?,
                Val::Int(x) => m.serialize_entry(k, x)?,
                Val::Bool(x) => m.serialize_entry(k, x)?,
                Val::Double(x) => m.serialize_entry(k, x)?,
                Val::Strs(x) => m.serialize_entry(k, x)?,
            }
        }
        m.end()
    }
}

/// An OTLP `LogRecord`.
struct LogRecord<'a>(&'a Event);

impl Serialize for LogRecord<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.0;
        let mut m = s.serialize_map(Some(6))?;
        m.serialize_entry("timeUnixNano", &Decimal(e.time_ns))?;
        m.serialize_entry("observedTimeUnixNano", &Decimal(e.observed_ns))?;
        m.serialize_entry("severityNumber", &9)?;
        m.serialize_entry("severityText", "INFO")?;
        m.serialize_entry("eventName", e.name)?;
        if let Some(t) = &e.trace {
            // The request's span: a trace backend links the record to it.
            m.serialize_entry("traceId", &t.trace_id)?;
            m.serialize_entry("spanId", &t.span_id)?;
            m.serialize_entry("flags", &u32::from(t.sampled))?;
        }
        m.serialize_entry(
            "attributes",
            &Seq(|| e.fields.iter().map(|(k, _, v)| KeyValue(k, v))),
        )?;
        m.end()
    }
}

/// What every post of `format` starts and ends with: for OTLP, the `ExportLogsServiceRequest`
/// with its resource and scope up to the `logRecords` array ([`otlp::frame`]); for JSON, `[`.
pub(super) fn frame(
    format: Format,
    service_name: &str,
    instance: Option<String>,
) -> (Vec<u8>, &'static [u8]) {
    match format {
        Format::Json => (b"[".to_vec(), b"]"),
        Format::Otlp => otlp::frame(otlp::Signal::Logs, service_name, instance),
    }
}
