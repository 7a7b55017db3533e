//! A usage event, and its two encodings: a flat JSON object, or an OTLP `LogRecord`.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use super::config::Format;
use crate::record::{Record, Tokens};

/// The OTLP log record's `eventName`.
pub const EVENT_NAME: &str = "llm_gateway.usage";
/// The `eventName` of a budget alert (a JSON event says `"event": "budget_alert"`).
pub const ALERT_EVENT_NAME: &str = "llm_gateway.budget_alert";

/// One attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Str(String),
    Int(u64),
    Bool(bool),
    Double(f64),
}

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
        }
    }

    /// This event as an element of a post's array in `format`.
    pub(super) fn encode(&self, format: Format) -> Vec<u8> {
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
            Val::Str(operation(e).to_string()),
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
        for (_, k, v) in &self.0.fields {
            match v {
                Val::Str(x) => m.serialize_entry(k, x)?,
                Val::Int(x) => m.serialize_entry(k, x)?,
                Val::Bool(x) => m.serialize_entry(k, x)?,
                Val::Double(x) => m.serialize_entry(k, x)?,
            }
        }
        m.end()
    }
}

/// An OTLP `KeyValue` in the OTLP/JSON encoding (64-bit integers as strings).
struct KeyValue<'a>(&'a str, &'a Val);

impl Serialize for KeyValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct AnyValue<'a>(&'a Val);
        impl Serialize for AnyValue<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(1))?;
                match self.0 {
                    Val::Str(x) => m.serialize_entry("stringValue", x)?,
                    // OTLP's intValue is an int64: a larger figure is sent as the largest.
                    Val::Int(x) => {
                        m.serialize_entry("intValue", &Decimal((*x).min(i64::MAX as u64)))?
                    }
                    Val::Bool(x) => m.serialize_entry("boolValue", x)?,
                    Val::Double(x) => m.serialize_entry("doubleValue", x)?,
                }
                m.end()
            }
        }
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("key", self.0)?;
        m.serialize_entry("value", &AnyValue(self.1))?;
        m.end()
    }
}

/// A 64-bit integer as a JSON string, as OTLP/JSON writes them.
struct Decimal(u64);

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
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
        m.serialize_entry(
            "attributes",
            &Seq(|| e.fields.iter().map(|(k, _, v)| KeyValue(k, v))),
        )?;
        m.end()
    }
}

/// A sequence serialized straight from an iterator.
struct Seq<F>(F);

impl<F, I> Serialize for Seq<F>
where
    F: Fn() -> I,
    I: Iterator,
    I::Item: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq((self.0)())
    }
}

/// The OTLP instrumentation scope.
struct Scope;

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("name", "llm-gateway")?;
        m.serialize_entry("version", env!("CARGO_PKG_VERSION"))?;
        m.end()
    }
}

/// The GenAI semantic conventions' operation name of an endpoint.
fn operation(endpoint: &str) -> &'static str {
    match endpoint {
        "embeddings" => "embeddings",
        "completions" => "text_completion",
        _ => "chat",
    }
}

/// What every post of `format` starts and ends with: for OTLP, the `ExportLogsServiceRequest`
/// with its resource (`service.name` and the version, and `instance`, this Envoy's node id, when
/// it has one) and scope up to the `logRecords` array; for JSON, `[`.
pub(super) fn frame(
    format: Format,
    service_name: &str,
    instance: Option<String>,
) -> (Vec<u8>, &'static [u8]) {
    let mut resource = vec![
        ("service.name", Val::Str(service_name.to_string())),
        (
            "service.version",
            Val::Str(env!("CARGO_PKG_VERSION").to_string()),
        ),
    ];
    if let Some(i) = instance.filter(|i| !i.is_empty()) {
        resource.push(("service.instance.id", Val::Str(i)));
    }
    match format {
        Format::Json => (b"[".to_vec(), b"]"),
        Format::Otlp => {
            let attrs =
                serde_json::to_string(&Seq(|| resource.iter().map(|(k, v)| KeyValue(k, v))))
                    .unwrap_or_else(|_| "[]".into());
            let scope = serde_json::to_string(&Scope).unwrap_or_else(|_| "{}".into());
            let prefix = [OTLP_RESOURCE, &attrs, OTLP_SCOPE, &scope, OTLP_RECORDS].concat();
            (prefix.into_bytes(), OTLP_END)
        }
    }
}

// The OTLP frame around the log records, in pieces: the resource's attributes go after the
// first, the scope after the second, the records after the third; the last closes it all.
const OTLP_RESOURCE: &str = r#"{"resourceLogs":[{"resource":{"attributes":"#;
const OTLP_SCOPE: &str = r#"},"scopeLogs":[{"scope":"#;
const OTLP_RECORDS: &str = r#","logRecords":["#;
const OTLP_END: &[u8] = b"]}]}]}";
