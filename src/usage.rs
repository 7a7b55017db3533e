//! Usage events: one per finished request, batched in the VM and posted to a collector as
//! OTLP/HTTP JSON logs (`ExportLogsServiceRequest`) or as a plain JSON array.
//!
//! The `Exporter` is the pure queue; the shell pushes events from `on_log` (never blocking,
//! never failing the request), takes due batches from `on_tick`, posts them with
//! `dispatch_http_call` and reports each post's outcome back. The buffer is bounded: events
//! beyond `max_buffered_events` are dropped, and a batch whose post failed is retried with
//! back-off at most `max_retries` times and then dropped. Everything dropped is counted by the
//! shell.

use hashbrown::HashMap;
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

use crate::config::check::{at_most, bounded, err, ConfigError, MAX_TIMEOUT_MS};
use crate::report::{Record, Tokens};

/// Posts a VM has in flight at most; further batches wait in the buffer.
pub const MAX_IN_FLIGHT: usize = 4;
/// Longest wait before a failed batch is retried.
pub const MAX_BACKOFF_MS: u64 = 30_000;
/// The OTLP log record's `eventName`.
pub const EVENT_NAME: &str = "llm_gateway.usage";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// OTLP/HTTP JSON logs, for an OpenTelemetry Collector.
    Otlp,
    /// A JSON array of flat event objects.
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExport {
    pub cluster: String,
    #[serde(default)]
    pub format: Option<Format>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub batch_size: Option<usize>,
    #[serde(default)]
    pub flush_interval_ms: Option<u64>,
    #[serde(default)]
    pub max_buffered_events: Option<usize>,
    #[serde(default)]
    pub max_retries: Option<u32>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub service_name: Option<String>,
}

/// Where and how usage events are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub cluster: String,
    pub format: Format,
    pub path: String,
    pub authority: String,
    pub headers: Vec<(String, String)>,
    /// Events per post at most.
    pub batch_size: usize,
    /// Age of the oldest buffered event that triggers a post.
    pub flush_interval_ms: u64,
    /// Events a VM holds at most (buffered, waiting for a retry, or in flight).
    pub max_buffered_events: usize,
    /// Retries of a failed post before its events are dropped.
    pub max_retries: u32,
    pub timeout_ms: u64,
    pub service_name: String,
}

pub const DEFAULT_BATCH_SIZE: usize = 100;
pub const DEFAULT_FLUSH_INTERVAL_MS: u64 = 1000;
pub const DEFAULT_MAX_BUFFERED_EVENTS: usize = 5000;
pub const DEFAULT_MAX_RETRIES: u32 = 3;
pub const DEFAULT_TIMEOUT_MS: u64 = 5000;
/// Largest `batch_size`: a post holds one batch (about 1 KB an event).
pub const MAX_BATCH_SIZE: usize = 1000;
/// Largest `max_buffered_events`: what a VM holds while the collector is slow or down.
pub const MAX_BUFFERED_EVENTS: usize = 20_000;
/// Largest `flush_interval_ms` (10 minutes).
pub const MAX_FLUSH_INTERVAL_MS: u64 = 600_000;
/// Largest `max_retries` (the back-off reaches `MAX_BACKOFF_MS` after 6).
pub const MAX_RETRIES: u32 = 10;

impl Export {
    pub fn parse(raw: RawExport) -> Result<Export, ConfigError> {
        const F: &str = "usage_export";
        if raw.cluster.trim().is_empty() {
            return Err(err(format!("{F}.cluster"), "must not be empty"));
        }
        let format = raw.format.unwrap_or(Format::Otlp);
        let path = match raw.path {
            Some(p) if p.starts_with('/') && !p.bytes().any(|b| b.is_ascii_control()) => p,
            Some(_) => return Err(err(format!("{F}.path"), "must be a path starting with /")),
            None if format == Format::Otlp => "/v1/logs".to_string(),
            None => "/".to_string(),
        };
        let mut headers = Vec::with_capacity(raw.headers.len());
        for (name, value) in raw.headers {
            let n = name.to_ascii_lowercase();
            let valid = !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                && !matches!(n.as_str(), "content-type" | "content-length" | "host");
            if !valid || value.bytes().any(|b| b.is_ascii_control()) {
                return Err(err(
                    format!("{F}.headers.{name}"),
                    "is not a header the gateway can set",
                ));
            }
            headers.push((n, value));
        }
        let batch_size = bounded(
            &format!("{F}.batch_size"),
            raw.batch_size,
            DEFAULT_BATCH_SIZE,
            MAX_BATCH_SIZE,
        )?;
        let max_buffered_events = bounded(
            &format!("{F}.max_buffered_events"),
            raw.max_buffered_events,
            DEFAULT_MAX_BUFFERED_EVENTS,
            MAX_BUFFERED_EVENTS,
        )?;
        if max_buffered_events < batch_size {
            return Err(err(
                format!("{F}.max_buffered_events"),
                "must be at least batch_size",
            ));
        }
        let authority = match raw.authority {
            Some(a) if a.trim().is_empty() => {
                return Err(err(format!("{F}.authority"), "must not be empty"))
            }
            Some(a) => a,
            None => raw.cluster.clone(),
        };
        Ok(Export {
            format,
            path,
            authority,
            headers,
            batch_size,
            flush_interval_ms: bounded(
                &format!("{F}.flush_interval_ms"),
                raw.flush_interval_ms,
                DEFAULT_FLUSH_INTERVAL_MS,
                MAX_FLUSH_INTERVAL_MS,
            )?,
            max_buffered_events,
            max_retries: at_most(
                &format!("{F}.max_retries"),
                raw.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
                MAX_RETRIES,
            )?,
            timeout_ms: bounded(
                &format!("{F}.timeout_ms"),
                raw.timeout_ms,
                DEFAULT_TIMEOUT_MS,
                MAX_TIMEOUT_MS,
            )?,
            service_name: match raw.service_name {
                Some(s) if s.trim().is_empty() => {
                    return Err(err(format!("{F}.service_name"), "must not be empty"))
                }
                Some(s) => s,
                None => "llm-gateway".to_string(),
            },
            cluster: raw.cluster,
        })
    }
}

/// One attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Str(String),
    Int(u64),
    Bool(bool),
    Double(f64),
}

/// One finished request, as exported.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// When the request started (ns since the epoch).
    pub time_ns: u64,
    /// When the event was made (ns since the epoch).
    pub observed_ns: u64,
    /// (OTLP attribute key, JSON key, value); absent values are left out.
    pub fields: Vec<(&'static str, &'static str, Val)>,
}

impl Event {
    /// The event of a finished request. `cost` is in picodollars.
    pub fn new(r: &Record, request_id: Option<String>, start_ns: u64, now_ns: u64) -> Event {
        let mut f: Vec<(&'static str, &'static str, Val)> = Vec::with_capacity(26);
        let mut s = |k, j, v: &Option<String>| {
            if let Some(v) = v {
                f.push((k, j, Val::Str(v.clone())));
            }
        };
        s("llm_gateway.request_id", "request_id", &request_id);
        s("llm_gateway.consumer", "consumer", &r.consumer);
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
        }
        if let Some(c) = r.cost {
            f.push((
                "llm_gateway.cost_usd",
                "cost_usd",
                Val::Double(crate::cost::dollars(c)),
            ));
        }
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
        Event {
            time_ns: start_ns,
            observed_ns: now_ns,
            fields: f,
        }
    }
}

/// An event as a flat JSON object (the `json` format).
struct Flat<'a>(&'a Event);

impl Serialize for Flat<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.fields.len() + 1))?;
        m.serialize_entry("time_unix_ms", &(self.0.time_ns / 1_000_000))?;
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
        m.serialize_entry("eventName", EVENT_NAME)?;
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

/// Events encoded for one post.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub body: Vec<u8>,
    pub events: usize,
    /// Posts of this batch that failed so far.
    pub failures: u32,
    not_before_ms: u64,
}

/// What became of a post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// The collector took this many events.
    Delivered(usize),
    /// Failed; the batch waits for another try.
    Retrying,
    /// Failed for the last time: this many events are dropped.
    Dropped(usize),
}

/// A VM's bounded buffer of usage events.
#[derive(Debug)]
pub struct Exporter {
    pub cfg: Export,
    /// What every post starts and ends with: for OTLP, the `ExportLogsServiceRequest` with its
    /// resource (`service.name`, …) and scope up to the `logRecords` array; for JSON, `[`.
    prefix: Vec<u8>,
    suffix: &'static [u8],
    /// Events encoded as they come (in `on_log`, after the response), so a post only joins
    /// them: the tick that posts a batch does not stall the worker.
    queue: VecDeque<Vec<u8>>,
    /// When the oldest queued event was queued (ms).
    oldest_ms: u64,
    retrying: VecDeque<Batch>,
    in_flight: HashMap<u32, Batch>,
    held: usize,
}

impl Exporter {
    /// `instance`: this Envoy's node id, when it has one.
    pub fn new(cfg: Export, instance: Option<String>) -> Exporter {
        let mut resource = vec![
            ("service.name", Val::Str(cfg.service_name.clone())),
            (
                "service.version",
                Val::Str(env!("CARGO_PKG_VERSION").to_string()),
            ),
        ];
        if let Some(i) = instance.filter(|i| !i.is_empty()) {
            resource.push(("service.instance.id", Val::Str(i)));
        }
        let (prefix, suffix): (Vec<u8>, &'static [u8]) = match cfg.format {
            Format::Json => (b"[".to_vec(), b"]"),
            Format::Otlp => {
                let attrs =
                    serde_json::to_string(&Seq(|| resource.iter().map(|(k, v)| KeyValue(k, v))))
                        .unwrap_or_else(|_| "[]".into());
                let scope = serde_json::to_string(&Scope).unwrap_or_else(|_| "{}".into());
                (
                    format!(
                        r#"{{"resourceLogs":[{{"resource":{{"attributes":{attrs}}},"scopeLogs":[{{"scope":{scope},"logRecords":["#
                    )
                    .into_bytes(),
                    b"]}]}]}",
                )
            }
        };
        Exporter {
            cfg,
            prefix,
            suffix,
            queue: VecDeque::new(),
            oldest_ms: 0,
            retrying: VecDeque::new(),
            in_flight: HashMap::new(),
            held: 0,
        }
    }

    /// Events held: queued, waiting for a retry, or in flight.
    pub fn held(&self) -> usize {
        self.held
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Queue an event; `false` when the buffer is full and the event is dropped.
    pub fn push(&mut self, e: Event, now_ms: u64) -> bool {
        if self.held >= self.cfg.max_buffered_events {
            return false;
        }
        if self.queue.is_empty() {
            self.oldest_ms = now_ms;
        }
        let encoded = self.record(&e);
        self.queue.push_back(encoded);
        self.held += 1;
        true
    }

    /// Batches to post now: failed batches whose back-off is over, then full batches, then
    /// everything queued once the oldest event is `flush_interval_ms` old, as long as fewer
    /// than `MAX_IN_FLIGHT` posts are out. `drain` takes everything at once (the VM is
    /// stopping).
    pub fn take_due(&mut self, now_ms: u64, drain: bool) -> Vec<Batch> {
        let mut out = Vec::new();
        let room =
            |out: &Vec<Batch>, in_flight: usize| drain || in_flight + out.len() < MAX_IN_FLIGHT;
        while room(&out, self.in_flight.len()) {
            match self.retrying.front() {
                Some(b) if drain || b.not_before_ms <= now_ms => {
                    if let Some(b) = self.retrying.pop_front() {
                        out.push(b);
                    }
                }
                _ => break,
            }
        }
        let aged = !self.queue.is_empty()
            && now_ms.saturating_sub(self.oldest_ms) >= self.cfg.flush_interval_ms;
        while room(&out, self.in_flight.len())
            && (self.queue.len() >= self.cfg.batch_size
                || (!self.queue.is_empty() && (aged || drain)))
        {
            let n = self.queue.len().min(self.cfg.batch_size);
            let records: Vec<Vec<u8>> = self.queue.drain(..n).collect();
            out.push(Batch {
                body: self.body(records.iter().map(Vec::as_slice)),
                events: n,
                failures: 0,
                not_before_ms: 0,
            });
        }
        if !self.queue.is_empty() && aged {
            // What is left waits for a free slot; it is still overdue.
            self.oldest_ms = self.oldest_ms.min(now_ms);
        }
        out
    }

    /// A batch was posted and awaits its answer under `token`.
    pub fn sent(&mut self, token: u32, batch: Batch) {
        self.in_flight.insert(token, batch);
    }

    /// The answer to post `token`: `ok` when the collector accepted it.
    pub fn answered(&mut self, token: u32, ok: bool, now_ms: u64) -> Option<Done> {
        let b = self.in_flight.remove(&token)?;
        Some(if ok {
            self.held = self.held.saturating_sub(b.events);
            Done::Delivered(b.events)
        } else {
            self.failed(b, now_ms)
        })
    }

    /// A post failed (or could not be made): retry it later, or drop it.
    pub fn failed(&mut self, mut b: Batch, now_ms: u64) -> Done {
        b.failures += 1;
        if b.failures > self.cfg.max_retries {
            self.held = self.held.saturating_sub(b.events);
            return Done::Dropped(b.events);
        }
        let backoff = self
            .cfg
            .flush_interval_ms
            .saturating_mul(1 << (b.failures - 1).min(16))
            .min(MAX_BACKOFF_MS);
        b.not_before_ms = now_ms.saturating_add(backoff);
        self.retrying.push_back(b);
        Done::Retrying
    }

    /// One event, encoded as an element of the post's array.
    pub fn record(&self, e: &Event) -> Vec<u8> {
        let out = match self.cfg.format {
            Format::Json => serde_json::to_vec(&Flat(e)),
            Format::Otlp => serde_json::to_vec(&LogRecord(e)),
        };
        out.unwrap_or_default()
    }

    /// A post's body from encoded events, sized by what they hold (not by `batch_size`).
    fn body<'a>(&self, records: impl Iterator<Item = &'a [u8]> + Clone) -> Vec<u8> {
        // The records, a comma between each two, and the frame.
        let records_len = records
            .clone()
            .map(|r| r.len() + 1)
            .sum::<usize>()
            .saturating_sub(1);
        let mut out = Vec::with_capacity(self.prefix.len() + records_len + self.suffix.len());
        out.extend_from_slice(&self.prefix);
        for (i, r) in records.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(r);
        }
        out.extend_from_slice(self.suffix);
        out
    }

    /// Encode events for one post (what `push` and `take_due` do in two steps).
    pub fn encode(&self, events: &[Event]) -> Vec<u8> {
        let records: Vec<Vec<u8>> = events.iter().map(|e| self.record(e)).collect();
        self.body(records.iter().map(Vec::as_slice))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::{Learned, Usage};
    use serde_json::{json, Value};

    fn export(extra: Value) -> Export {
        let mut v = json!({"cluster": "sink", "batch_size": 3, "flush_interval_ms": 100,
                           "max_buffered_events": 7, "max_retries": 2});
        if let (Some(m), Value::Object(e)) = (v.as_object_mut(), extra) {
            m.extend(e);
        }
        Export::parse(serde_json::from_value(v).expect("shape")).expect("valid")
    }

    fn record(n: u64) -> Record {
        Record {
            consumer: Some("team-a".into()),
            request_model: Some("gpt-4o".into()),
            upstream_model: Some("gpt-4o".into()),
            provider: Some("openai".into()),
            endpoint: Some("chat.completions"),
            status: 200,
            duration_ms: 12,
            cost: Some(45_000_000),
            learned: Learned {
                usage: Some(Usage {
                    prompt_tokens: Some(n),
                    completion_tokens: Some(5),
                    total_tokens: Some(n.saturating_add(5)),
                    ..Default::default()
                }),
                model: Some("gpt-4o-2024-08-06".into()),
                complete: true,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn event(n: u64) -> Event {
        Event::new(&record(n), Some(format!("req-{n}")), 1_000_000_000 * n, 1)
    }

    #[test]
    fn config_defaults_and_refusals() {
        let e = Export::parse(serde_json::from_value(json!({"cluster": "otel"})).expect("shape"))
            .expect("valid");
        assert_eq!(
            (e.format, e.path.as_str(), e.authority.as_str()),
            (Format::Otlp, "/v1/logs", "otel")
        );
        assert_eq!(
            (e.batch_size, e.flush_interval_ms, e.max_retries),
            (100, 1000, 3)
        );
        let j = export(json!({"format": "json", "headers": {"Authorization": "Bearer x"}}));
        assert_eq!(j.path, "/");
        assert_eq!(j.headers, vec![("authorization".into(), "Bearer x".into())]);
        for (bad, field) in [
            (json!({"cluster": " "}), "usage_export.cluster"),
            (
                json!({"cluster": "c", "batch_size": 0}),
                "usage_export.batch_size",
            ),
            (
                json!({"cluster": "c", "batch_size": 10, "max_buffered_events": 5}),
                "usage_export.max_buffered_events",
            ),
            (
                json!({"cluster": "c", "path": "v1/logs"}),
                "usage_export.path",
            ),
            (
                json!({"cluster": "c", "headers": {"content-type": "x"}}),
                "usage_export.headers.content-type",
            ),
            (
                json!({"cluster": "c", "timeout_ms": 0}),
                "usage_export.timeout_ms",
            ),
        ] {
            let e = Export::parse(serde_json::from_value(bad).expect("shape")).expect_err("bad");
            assert_eq!(e.field, field);
        }
        assert!(
            serde_json::from_value::<RawExport>(json!({"cluster": "c", "format": "xml"})).is_err()
        );
    }

    #[test]
    fn events_carry_everything_in_both_encodings() {
        let mut r = record(8);
        r.stream = true;
        r.ttft_ms = Some(3);
        r.journal = Some(crate::failover::Journal(vec![
            ("primary".into(), "503".into()),
            ("backup".into(), "200".into()),
        ]));
        let e = Event::new(
            &r,
            Some("abc".into()),
            1_700_000_000_123_456_789,
            1_700_000_001_000_000_000,
        );
        let x = Exporter::new(export(json!({"format": "json"})), None);
        let v: Value = serde_json::from_slice(&x.encode(std::slice::from_ref(&e))).expect("json");
        assert_eq!(
            v,
            json!([{"time_unix_ms": 1_700_000_000_123u64, "request_id": "abc", "consumer": "team-a",
                    "request_model": "gpt-4o", "upstream_model": "gpt-4o",
                    "response_model": "gpt-4o-2024-08-06", "provider": "openai",
                    "endpoint": "chat.completions", "operation": "chat", "stream": true,
                    "status": 200, "outcome": "ok", "prompt_tokens": 8, "completion_tokens": 5,
                    "total_tokens": 13, "cached_tokens": 0, "cache_write_tokens": 0,
                    "reasoning_tokens": 0, "usage_estimated": false, "cost_usd": 0.000045,
                    "duration_ms": 12, "ttft_ms": 3, "attempts": 2, "failover": "primary:503"}])
        );
        let x = Exporter::new(export(json!({})), Some("node-1".into()));
        let v: Value = serde_json::from_slice(&x.encode(&[e])).expect("json");
        let rl = &v["resourceLogs"][0];
        assert_eq!(
            rl["resource"]["attributes"][2],
            json!({"key": "service.instance.id", "value": {"stringValue": "node-1"}})
        );
        let rec = &rl["scopeLogs"][0]["logRecords"][0];
        assert_eq!(rec["timeUnixNano"], "1700000000123456789");
        assert_eq!(rec["eventName"], EVENT_NAME);
        let attr = |k: &str| {
            rec["attributes"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["key"] == k))
                .map(|x| x["value"].clone())
        };
        assert_eq!(
            attr("gen_ai.usage.input_tokens"),
            Some(json!({"intValue": "8"}))
        );
        assert_eq!(
            attr("llm_gateway.cost_usd"),
            Some(json!({"doubleValue": 0.000045}))
        );
        assert_eq!(attr("llm_gateway.stream"), Some(json!({"boolValue": true})));
        assert_eq!(
            attr("llm_gateway.failover"),
            Some(json!({"stringValue": "primary:503"}))
        );
        // A request the gateway refused has no tokens and no cost.
        let refused = Record {
            local_outcome: Some("rate_limited"),
            status: 429,
            endpoint: Some("chat.completions"),
            ..Default::default()
        };
        let e = Event::new(&refused, None, 0, 0);
        assert!(e
            .fields
            .iter()
            .any(|(k, _, v)| *k == "gen_ai.usage.input_tokens" && *v == Val::Int(0)));
        assert!(!e
            .fields
            .iter()
            .any(|(k, _, _)| *k == "llm_gateway.cost_usd"));
    }

    #[test]
    fn batches_by_size_and_age() {
        let mut x = Exporter::new(export(json!({"format": "json"})), None);
        for n in 0..2 {
            assert!(x.push(event(n), 1000));
        }
        assert!(x.take_due(1050, false).is_empty(), "neither full nor old");
        let due = x.take_due(1100, false);
        assert_eq!(due.iter().map(|b| b.events).collect::<Vec<_>>(), [2]);
        // The 2 taken are held until their post is answered: 5 more fill the bound of 7.
        for n in 0..5 {
            assert!(x.push(event(n), 2000));
        }
        assert_eq!(x.held(), 7);
        assert!(!x.push(event(9), 2000), "the buffer is bounded");
        let due2 = x.take_due(2000, false);
        assert_eq!(due2.iter().map(|b| b.events).collect::<Vec<_>>(), [3]);
        let rest = x.take_due(2100, false);
        assert_eq!(rest.iter().map(|b| b.events).collect::<Vec<_>>(), [2]);
        let v: Value = serde_json::from_slice(&rest[0].body).expect("json");
        assert_eq!(v[1]["request_id"], "req-4");
    }

    #[test]
    fn failed_posts_retry_with_backoff_then_drop() {
        let mut x = Exporter::new(export(json!({})), None);
        for n in 0..3 {
            x.push(event(n), 0);
        }
        let mut b = x.take_due(0, false);
        assert_eq!(b.len(), 1);
        x.sent(7, b.remove(0));
        assert_eq!(x.answered(8, true, 0), None, "unknown token");
        assert_eq!(x.answered(7, false, 10), Some(Done::Retrying));
        assert!(
            x.take_due(100, false).is_empty(),
            "back-off: 100 ms after 10"
        );
        let mut b = x.take_due(110, false);
        assert_eq!(b.len(), 1);
        x.sent(9, b.remove(0));
        assert_eq!(x.answered(9, false, 110), Some(Done::Retrying));
        assert!(x.take_due(309, false).is_empty(), "back-off doubles");
        let b = x.take_due(310, false).remove(0);
        assert_eq!(b.failures, 2);
        assert_eq!(x.failed(b, 310), Done::Dropped(3), "after max_retries (2)");
        assert_eq!(x.held(), 0);
        // A delivered batch frees its events.
        x.push(event(1), 400);
        let b = x.take_due(400, true).remove(0);
        x.sent(1, b);
        assert_eq!(x.answered(1, true, 401), Some(Done::Delivered(1)));
        assert_eq!(x.held(), 0);
    }

    #[test]
    fn in_flight_posts_are_bounded() {
        let mut x = Exporter::new(export(json!({"max_buffered_events": 100})), None);
        for n in 0..30 {
            x.push(event(n), 0);
        }
        let due = x.take_due(0, false);
        assert_eq!(due.len(), MAX_IN_FLIGHT);
        for (i, b) in due.into_iter().enumerate() {
            x.sent(i as u32, b);
        }
        assert!(x.take_due(1000, false).is_empty());
        assert_eq!(x.answered(0, true, 1000), Some(Done::Delivered(3)));
        assert_eq!(x.take_due(1000, false).len(), 1);
        // Draining ignores the bound.
        assert_eq!(x.take_due(1000, true).len(), 5);
    }

    #[test]
    fn the_largest_figures_are_exported_in_range() {
        let mut r = record(u64::MAX);
        r.learned.usage = Some(Usage {
            prompt_tokens: Some(u64::MAX),
            completion_tokens: Some(u64::MAX),
            total_tokens: None,
            ..Default::default()
        });
        r.cost = Some(u64::MAX);
        let e = Event::new(&r, None, u64::MAX, u64::MAX);
        let x = Exporter::new(export(json!({"format": "json"})), None);
        let v: Value = serde_json::from_slice(&x.encode(std::slice::from_ref(&e))).expect("json");
        assert_eq!(v[0]["prompt_tokens"], u64::MAX);
        assert_eq!(v[0]["total_tokens"], u64::MAX);
        // OTLP's intValue is an int64: the largest it holds, never a value the collector
        // refuses (which would drop the whole batch).
        let x = Exporter::new(export(json!({})), None);
        let v: Value = serde_json::from_slice(&x.encode(&[e])).expect("json");
        let rec = &v["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
        assert_eq!(rec["timeUnixNano"], u64::MAX.to_string(), "fixed64");
        let attr = |k: &str| {
            rec["attributes"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["key"] == k))
                .map(|x| x["value"].clone())
        };
        for k in [
            "gen_ai.usage.input_tokens",
            "llm_gateway.usage.total_tokens",
        ] {
            assert_eq!(
                attr(k),
                Some(json!({"intValue": i64::MAX.to_string()})),
                "{k}"
            );
        }
        assert_eq!(
            attr("llm_gateway.cost_usd"),
            Some(json!({"doubleValue": crate::cost::dollars(u64::MAX)}))
        );
    }

    #[test]
    fn a_post_is_sized_by_its_events_not_by_batch_size() {
        let cfg = export(json!({"batch_size": MAX_BATCH_SIZE,
                                "max_buffered_events": MAX_BUFFERED_EVENTS}));
        let mut x = Exporter::new(cfg, None);
        assert!(x.push(event(1), 0));
        let b = x.take_due(10_000, false).remove(0);
        assert_eq!(b.events, 1);
        // Once 2048 × batch_size bytes up front (2 GB at a batch_size of 1000000).
        assert_eq!(b.body.capacity(), b.body.len());
        let v: Value = serde_json::from_slice(&b.body).expect("json");
        assert_eq!(
            v["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["eventName"],
            EVENT_NAME
        );
        for n in 0..MAX_BATCH_SIZE as u64 {
            x.push(event(n), 20_000);
        }
        let full = x.take_due(20_000, false).remove(0);
        assert_eq!(full.events, MAX_BATCH_SIZE);
        assert_eq!(full.body.capacity(), full.body.len());
    }
}
