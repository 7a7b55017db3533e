//! The proxy-wasm shell: root and HTTP contexts. Each callback reads from the host, calls the
//! pure core and applies its decision. Host calls go through the `host` helpers, which never
//! panic on what a client sent (header values that are not UTF-8 read as absent).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use hashbrown::HashMap;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

use crate::anthropic::{self, Translation};
use crate::config::{Config, FailureMode, Format, Global, DEFAULT_MAX_TOKENS};
use crate::error::HttpError;
use crate::failover::{Journal, Plan};
use crate::limits::{self, Conflict, Cost, Held, Limiter, Snapshot, Store, TableError};
use crate::meter::{ChunkAction, Meter};
use crate::metrics::{self, Kind, MetricUpdate};
use crate::models;
use crate::names;
use crate::record::Record;
use crate::request::{Endpoint, Request};
use crate::rls;
use crate::route;
use crate::tokens::{self, Encoding};
use crate::usage::{self, Done, Exporter};
use crate::wire;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Distinct metric series one VM defines before folding new model/consumer labels into `other`.
const MAX_SERIES: usize = 4096;
/// How often a VM sends its queued end-of-request reports to the global rate limit service and
/// looks for usage events to post.
const REPORT_PERIOD: Duration = Duration::from_millis(100);
/// Queued reports a VM keeps at most; beyond it new ones are dropped and counted.
const MAX_QUEUED_REPORTS: usize = 10_000;

mod caching;
mod upstream;

mod host {
    use super::*;

    pub fn now_us() -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0)
    }

    pub fn now_ms() -> u64 {
        now_us() / 1000
    }

    pub fn now_ns() -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    /// Call the global rate limit service's `ShouldRateLimit` with an encoded request.
    pub fn call_rls(g: &Global, request: &[u8]) -> Result<u32, proxy_wasm::types::Status> {
        hostcalls::dispatch_grpc_call(
            &g.cluster,
            rls::SERVICE,
            rls::METHOD,
            Vec::new(),
            Some(request),
            Duration::from_millis(g.timeout_ms),
        )
    }

    /// Envoy's shared data, seen by every worker VM of this plugin.
    pub struct SharedData;

    impl Store for SharedData {
        fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            match hostcalls::get_shared_data(key) {
                Ok((Some(v), cas)) => Some((v, cas.unwrap_or(0))),
                _ => None,
            }
        }

        fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), Conflict> {
            hostcalls::set_shared_data(key, Some(value), (cas != 0).then_some(cas))
                .map_err(|_| Conflict)
        }
    }

    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_continue_stream(stream_type: u32) -> u32;
    }

    /// Let a paused request go on. Unlike the SDK's `resume_http_request`, a stream that is
    /// already gone is not a panic.
    pub fn resume_request() {
        // SAFETY: a host call with no pointers; 0 is the request stream.
        let status = unsafe { proxy_continue_stream(0) };
        if status != 0 {
            log::debug!("llm-gateway: could not resume the request (status {status})");
        }
    }

    pub fn header(map: MapType, name: &str) -> Option<String> {
        let bytes = hostcalls::get_map_value_bytes(map, name).ok().flatten()?;
        String::from_utf8(bytes).ok()
    }

    pub fn set_header(map: MapType, name: &str, value: Option<&str>) {
        if let Err(e) = hostcalls::set_map_value(map, name, value) {
            log::warn!("llm-gateway: could not set header {name}: {e:?}");
        }
    }

    pub fn body(buffer: BufferType, size: usize) -> Vec<u8> {
        hostcalls::get_buffer(buffer, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    pub fn set_body(buffer: BufferType, size: usize, value: &[u8]) {
        if let Err(e) = hostcalls::set_buffer(buffer, 0, size, value) {
            log::warn!("llm-gateway: could not replace body: {e:?}");
        }
    }

    pub fn property_u64(path: Vec<&str>) -> Option<u64> {
        let b = hostcalls::get_property(path).ok().flatten()?;
        let arr: [u8; 8] = b.get(..8)?.try_into().ok()?;
        Some(u64::from_le_bytes(arr))
    }

    pub fn property_string(path: Vec<&str>) -> Option<String> {
        let b = hostcalls::get_property(path).ok().flatten()?;
        String::from_utf8(b).ok()
    }

    pub fn set_property(name: &str, value: &str) {
        let _ = hostcalls::set_property(vec![name], Some(value.as_bytes()));
    }

    /// POST a JSON `body` to `cluster` at `path`, with `extra` headers; the token of the call.
    pub fn post_json(
        cluster: &str,
        authority: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u32, proxy_wasm::types::Status> {
        let mut headers = vec![
            (":method", "POST"),
            (":path", path),
            (":authority", authority),
            (names::CONTENT_TYPE, "application/json"),
        ];
        headers.extend_from_slice(extra);
        hostcalls::dispatch_http_call(
            cluster,
            headers,
            Some(body),
            Vec::new(),
            Duration::from_millis(timeout_ms),
        )
    }

    /// What the attempts of the request's failover chain recorded so far.
    pub fn journal() -> Journal {
        hostcalls::get_property(vec![names::prop::JOURNAL])
            .ok()
            .flatten()
            .map(|b| Journal::decode(&b))
            .unwrap_or_default()
    }
}

/// The OpenAI chat path for an Anthropic client's Messages path (`/x/v1/messages?beta=true`
/// becomes `/x/v1/chat/completions`).
fn openai_path_for(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let prefix = path
        .trim_end_matches('/')
        .trim_end_matches(anthropic::MESSAGES_PATH);
    format!("{prefix}/v1/chat/completions")
}

/// Whether a request is an Anthropic client's call to the Messages API.
fn is_messages(method: &str, path: &str) -> bool {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    method == "POST"
        && path
            .trim_end_matches('/')
            .ends_with(anthropic::MESSAGES_PATH)
}

/// The request headers, read from the host once (one host call instead of one per lookup).
#[derive(Default)]
struct RequestHeaders(Vec<(String, Vec<u8>)>);

impl RequestHeaders {
    fn read() -> RequestHeaders {
        RequestHeaders(hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default())
    }

    /// The first value of `name`, if it is UTF-8 (a value that is not reads as absent).
    fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .map(str::to_string)
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}

/// Metric ids defined in this VM, by full stat name.
#[derive(Default)]
struct Metrics {
    ids: HashMap<String, u32>,
}

impl Metrics {
    /// Whether one more series may be defined.
    fn has_room(&self, name: &str) -> bool {
        self.ids.len() < MAX_SERIES || self.ids.contains_key(name)
    }

    fn id(&mut self, name: &str, ty: MetricType) -> Option<u32> {
        if let Some(id) = self.ids.get(name) {
            return Some(*id);
        }
        match hostcalls::define_metric(ty, name) {
            Ok(id) => {
                self.ids.insert(name.to_string(), id);
                Some(id)
            }
            Err(e) => {
                log::warn!("llm-gateway: cannot define metric {name}: {e:?}");
                None
            }
        }
    }

    /// Add `delta` to a gauge every VM shares (the sum over the workers).
    fn add_gauge(&mut self, name: &str, delta: i64) {
        if delta != 0 {
            if let Some(id) = self.id(name, MetricType::Gauge) {
                let _ = hostcalls::increment_metric(id, delta);
            }
        }
    }

    fn apply(&mut self, u: &MetricUpdate) {
        let ty = match u.kind {
            Kind::Counter => MetricType::Counter,
            Kind::Gauge => MetricType::Gauge,
            Kind::Histogram => MetricType::Histogram,
        };
        let Some(id) = self.id(&u.name, ty) else {
            return;
        };
        let _ = match u.kind {
            Kind::Counter => {
                hostcalls::increment_metric(id, i64::try_from(u.value).unwrap_or(i64::MAX))
            }
            Kind::Histogram | Kind::Gauge => hostcalls::record_metric(id, u.value),
        };
    }
}

/// What a finished request still owes the global rate limit service: the tokens it used beyond
/// those charged at admission.
struct Report {
    consumer: String,
    model: Option<String>,
    tokens: u64,
}

#[derive(Default)]
struct Root {
    /// Configured as the upstream filter of a failover cluster (`{"role": "upstream"}`).
    upstream: bool,
    config: Option<Rc<Config>>,
    metrics: Rc<RefCell<Metrics>>,
    preload: Vec<Encoding>,
    limiter: Option<Rc<RefCell<Limiter>>>,
    reports: Rc<RefCell<Vec<Report>>>,
    exporter: Option<Rc<RefCell<Exporter>>>,
    /// The VM is stopping and waits for its last usage posts (`on_done` returned false).
    draining: bool,
    /// The response cache's stores, when a route caches.
    caches: Option<Rc<caching::Shared>>,
    /// Pending posts of records to the external vector store.
    vector_adds: hashbrown::HashSet<u32>,
}

/// Queue a finished request's usage event; a full buffer drops it (counted).
fn export_event(exporter: &RefCell<Exporter>, metrics: &RefCell<Metrics>, e: usage::Event) {
    let queued = exporter.borrow_mut().push(e, host::now_ms());
    let mut m = metrics.borrow_mut();
    if queued {
        m.add_gauge(names::metric::USAGE_BUFFERED, 1);
    } else {
        m.apply(&MetricUpdate {
            kind: Kind::Counter,
            name: metrics::stat_name(
                names::metric::USAGE_DROPPED,
                &[(names::metric::TAG_REASON, "buffer_full")],
            ),
            value: 1,
        });
    }
}

impl Root {
    /// Post the usage batches that are due (all of them when `drain`).
    fn flush_usage(&mut self, drain: bool) {
        let Some(x) = self.exporter.clone() else {
            return;
        };
        let now = host::now_ms();
        let batches = x.borrow_mut().take_due(now, drain);
        if batches.is_empty() {
            return;
        }
        let cfg = x.borrow().cfg.clone();
        let extra: Vec<(&str, &str)> = cfg
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        for b in batches {
            match host::post_json(
                &cfg.cluster,
                &cfg.authority,
                &cfg.path,
                &extra,
                &b.body,
                cfg.timeout_ms,
            ) {
                Ok(token) => x.borrow_mut().sent(token, b),
                Err(e) => {
                    log::warn!(
                        "llm-gateway: cannot post usage events to cluster {}: {e:?}",
                        cfg.cluster
                    );
                    let done = x.borrow_mut().failed(b, now);
                    self.usage_done(done, "dispatch");
                }
            }
        }
    }

    /// Count what became of a usage post.
    fn usage_done(&mut self, done: Done, failure: &str) {
        use names::metric::{TAG_REASON, USAGE_BUFFERED, USAGE_DROPPED, USAGE_POST_FAILURES};
        let mut m = self.metrics.borrow_mut();
        let counter = |name: String, value: usize| MetricUpdate {
            kind: Kind::Counter,
            name,
            value: value as u64,
        };
        match done {
            Done::Delivered(n) => {
                m.apply(&counter(names::metric::USAGE_SENT.to_string(), n));
                m.add_gauge(USAGE_BUFFERED, -(n as i64));
            }
            Done::Retrying | Done::Dropped(_) => {
                m.apply(&counter(
                    metrics::stat_name(USAGE_POST_FAILURES, &[(TAG_REASON, failure)]),
                    1,
                ));
                if let Done::Dropped(n) = done {
                    log::warn!("llm-gateway: dropped {n} usage events after repeated failures to post them");
                    m.apply(&counter(
                        metrics::stat_name(USAGE_DROPPED, &[(TAG_REASON, "retries_exhausted")]),
                        n,
                    ));
                    m.add_gauge(USAGE_BUFFERED, -(n as i64));
                }
            }
        }
    }

    fn global(&self) -> Option<&Global> {
        self.config.as_ref()?.global()
    }

    /// Send the queued reports, one call per consumer and model.
    fn flush_reports(&mut self) {
        let Some(g) = self.global().cloned() else {
            return;
        };
        let queued = std::mem::take(&mut *self.reports.borrow_mut());
        let mut merged: HashMap<(String, Option<String>), u64> = HashMap::new();
        for r in queued {
            *merged.entry((r.consumer, r.model)).or_default() += r.tokens;
        }
        for ((consumer, model), tokens) in merged {
            let (bytes, _) = rls::request(&g.domain, &consumer, model.as_deref(), 0, tokens);
            if let Err(e) = host::call_rls(&g, &bytes) {
                log::warn!("llm-gateway: could not report usage to the rate limit service: {e:?}");
                self.count(names::metric::GLOBAL_REPORT_FAILURES);
            }
        }
    }

    fn count(&self, name: &str) {
        self.metrics.borrow_mut().apply(&MetricUpdate {
            kind: Kind::Counter,
            name: name.to_string(),
            value: 1,
        });
    }

    fn idle_tick(&self) -> Duration {
        let chroma = self.config.as_ref().is_some_and(|c| c.chroma().is_some());
        if self.global().is_some() || self.exporter.is_some() || chroma {
            REPORT_PERIOD
        } else {
            Duration::ZERO
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        _body_size: usize,
        _num_trailers: usize,
    ) {
        if self.vector_add_answered(token_id) {
            return;
        }
        let Some(x) = self.exporter.clone() else {
            return;
        };
        let status = host::header(MapType::HttpCallResponseHeaders, names::STATUS);
        let ok = status
            .as_deref()
            .and_then(|s| s.parse::<u16>().ok())
            .is_some_and(|s| (200..300).contains(&s));
        let done = x.borrow_mut().answered(token_id, ok, host::now_ms());
        if let Some(done) = done {
            if !ok {
                log::warn!(
                    "llm-gateway: the usage collector answered {}",
                    status.as_deref().unwrap_or("nothing")
                );
            }
            self.usage_done(done, status.as_deref().unwrap_or("no_response"));
        }
        if self.draining && x.borrow().in_flight() == 0 {
            let _ = hostcalls::done();
        }
    }

    fn on_done(&mut self) -> bool {
        // The VM is going away (new configuration, shutdown): post what is left.
        self.flush_usage(true);
        let waiting = self
            .exporter
            .as_ref()
            .is_some_and(|x| x.borrow().in_flight() > 0);
        self.draining = waiting;
        !waiting
    }

    fn on_grpc_call_response(&mut self, _token_id: u32, status_code: u32, _size: usize) {
        if status_code != 0 {
            log::warn!("llm-gateway: usage report to the rate limit service failed (gRPC status {status_code})");
            self.count(names::metric::GLOBAL_REPORT_FAILURES);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        if let Ok(serde_json::Value::Object(o)) = serde_json::from_slice(&bytes) {
            if let Some(role) = o.get("role") {
                if role == "upstream" && o.len() == 1 {
                    log::info!(
                        "llm-gateway: configured as the upstream filter of a failover cluster"
                    );
                    self.upstream = true;
                    return true;
                }
                log::error!("llm-gateway: invalid configuration: the upstream filter's configuration is exactly {{\"role\": \"upstream\"}}");
                return false;
            }
        }
        match Config::parse(&bytes, &|k| std::env::var(k).ok()) {
            Ok(c) => {
                log::info!(
                    "llm-gateway: configured {} providers, {} routes, {} consumers",
                    c.providers.len(),
                    c.routes.len(),
                    c.consumers.len()
                );
                self.preload = c.tokenizer.preload.clone();
                self.limiter = c.limits.as_ref().map(|l| {
                    let limiter = Limiter::new(names::LIMITS_SHARED_PREFIX, l.max_tracked);
                    limiter.init(&host::SharedData);
                    Rc::new(RefCell::new(limiter))
                });
                self.exporter = c.usage_export.clone().map(|e| {
                    let node = hostcalls::get_property(vec!["node", "id"])
                        .ok()
                        .flatten()
                        .and_then(|b| String::from_utf8(b).ok());
                    Rc::new(RefCell::new(Exporter::new(e, node)))
                });
                self.caches = c.cache.as_ref().map(|cc| Rc::new(caching::Shared::new(cc)));
                self.config = Some(Rc::new(c));
                let tick = if self.preload.is_empty() {
                    self.idle_tick()
                } else {
                    // Load encodings off the configure path, one per tick, before traffic needs them.
                    Duration::from_millis(1)
                };
                let _ = hostcalls::set_tick_period(tick);
                true
            }
            Err(e) => {
                log::error!("llm-gateway: invalid configuration: {e}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        match self.preload.pop() {
            Some(e) => {
                let t0 = host::now_ms();
                e.preload();
                log::info!(
                    "llm-gateway: loaded {} in {} ms",
                    e.name(),
                    host::now_ms().saturating_sub(t0)
                );
            }
            None => {
                self.flush_reports();
                self.flush_usage(false);
                self.flush_vector_adds();
                let _ = hostcalls::set_tick_period(self.idle_tick());
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        if self.upstream {
            return Some(Box::<upstream::AttemptFilter>::default());
        }
        let config = self.config.clone()?;
        Some(Box::new(Gateway {
            config,
            metrics: self.metrics.clone(),
            start_ms: 0,
            endpoint: None,
            path: String::new(),
            headers: RequestHeaders::default(),
            record: Record::default(),
            strip_usage: false,
            encoding: None,
            accountant: None,
            body_copy: None,
            limiter: self.limiter.clone(),
            reports: self.reports.clone(),
            exporter: self.exporter.clone(),
            held: None,
            snapshot: None,
            retry_after: None,
            global_call: None,
            global_tokens: 0,
            global_sent_ms: 0,
            anthropic: false,
            translation: None,
            chain_len: 0,
            replacement: None,
            client_anthropic: false,
            reverse: None,
            caches: self.caches.clone(),
            cache: None,
            draws: Vec::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Gateway {
    config: Rc<Config>,
    metrics: Rc<RefCell<Metrics>>,
    start_ms: u64,
    endpoint: Option<Endpoint>,
    path: String,
    headers: RequestHeaders,
    record: Record,
    strip_usage: bool,
    encoding: Option<Encoding>,
    accountant: Option<Meter>,
    /// Without body routing: the body seen so far (bounded), read for accounting.
    body_copy: Option<Vec<u8>>,
    limiter: Option<Rc<RefCell<Limiter>>>,
    reports: Rc<RefCell<Vec<Report>>>,
    exporter: Option<Rc<RefCell<Exporter>>>,
    /// What the request holds in the local limits until it ends.
    held: Option<Held>,
    /// Rate limit figures for the `x-ratelimit-*` response headers.
    snapshot: Option<Snapshot>,
    retry_after: Option<Duration>,
    /// The pending call to the global service and what its descriptors stand for.
    global_call: Option<(u32, Vec<rls::Described>)>,
    /// Tokens charged to the global service at admission.
    global_tokens: u64,
    /// When the call to the global service left (ms).
    global_sent_ms: u64,
    /// The provider speaks Anthropic's Messages API: its response is translated.
    anthropic: bool,
    translation: Option<Translation>,
    /// The client speaks Anthropic's Messages API (`/v1/messages`).
    client_anthropic: bool,
    /// OpenAI answer to an Anthropic client: translated back.
    reverse: Option<anthropic::Reverse>,
    /// Providers in the request's failover chain (0: no chain).
    chain_len: usize,
    /// The body that replaces a failed chain's last answer (every provider failed).
    replacement: Option<Vec<u8>>,
    caches: Option<Rc<caching::Shared>>,
    /// The response cache's part in this request, on a caching route.
    cache: Option<Box<caching::Ctx>>,
    /// The draws routing made (weighted splits), replayed when routing runs again after a
    /// semantic cache miss.
    draws: Vec<u32>,
}

impl Context for Gateway {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        self.on_cache_call(token_id, body_size);
    }

    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, size: usize) {
        let Some((token, described)) = self.global_call.take() else {
            return;
        };
        if token != token_id {
            return;
        }
        if status_code != 0 {
            // Envoy reports its own deadline as UNAVAILABLE, like a refused connection: tell
            // them apart by the time the answer took. (Envoy arms the deadline on the event
            // loop's cached time, so a callback that ran long before dispatching, such as the
            // first load of a tokenizer without `preload`, sees it fire early.)
            let timeout = self.config.global().map_or(u64::MAX, |g| g.timeout_ms);
            let waited = host::now_ms().saturating_sub(self.global_sent_ms);
            let reason = match status_code {
                4 => "timeout",
                _ if waited.saturating_mul(10) >= timeout.saturating_mul(9) => "timeout",
                14 => "unavailable",
                _ => "error",
            };
            return self.global_failed(reason);
        }
        let body = hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let Some(verdict) = rls::verdict(&body, &described) else {
            return self.global_failed("error");
        };
        self.snapshot
            .get_or_insert_with(Snapshot::default)
            .merge(&verdict.snapshot);
        match verdict.over_limit {
            None => host::resume_request(),
            Some(o) => {
                self.release_local();
                self.record.limited = Some("global");
                self.retry_after = o.retry_after;
                let consumer = self.record.consumer.clone().unwrap_or_default();
                self.reject(o.error(&consumer));
            }
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // on_log settles; this is the backstop should a stream end without it.
        if let (Some(held), Some(limiter)) = (self.held.take(), self.limiter.as_ref()) {
            let _ = limiter
                .borrow_mut()
                .settle(&host::SharedData, &held, 0, host::now_ns());
        }
    }
}

impl Gateway {
    fn reject(&mut self, e: HttpError) -> Action {
        self.record.local_outcome = Some(e.outcome);
        self.record.status = e.status;
        let body = self.error_body(&e);
        let mut headers = self.limit_headers();
        if let Some(d) = self.retry_after.filter(|_| e.status == 429) {
            headers.push((
                names::RETRY_AFTER,
                d.as_secs_f64().ceil().max(1.0).to_string(),
            ));
        }
        let mut all = vec![(names::CONTENT_TYPE, "application/json")];
        if let Some(id) = &self.record.request_id {
            all.push((names::RESPONSE_REQUEST_ID, id.as_str()));
        }
        all.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
        if let Err(err) = hostcalls::send_http_response(e.status, all, Some(&body)) {
            log::warn!("llm-gateway: could not send local reply: {err:?}");
        }
        Action::Pause
    }

    /// `x-ratelimit-*` headers for the tightest request and token windows known.
    fn limit_headers(&self) -> Vec<(&'static str, String)> {
        let mut h = Vec::new();
        let Some(s) = self.snapshot else {
            return h;
        };
        if let Some(r) = s.requests {
            h.push((names::RATELIMIT_LIMIT_REQUESTS, r.limit.to_string()));
            h.push((names::RATELIMIT_REMAINING_REQUESTS, r.remaining.to_string()));
            h.push((
                names::RATELIMIT_RESET_REQUESTS,
                limits::format_reset(r.reset),
            ));
        }
        if let Some(t) = s.tokens {
            h.push((names::RATELIMIT_LIMIT_TOKENS, t.limit.to_string()));
            h.push((names::RATELIMIT_REMAINING_TOKENS, t.remaining.to_string()));
            h.push((names::RATELIMIT_RESET_TOKENS, limits::format_reset(t.reset)));
        }
        h
    }

    /// Reserve `cost` in the local limits of this consumer (and model, when known).
    fn limit_locally(&mut self, model: Option<&str>, cost: Cost) -> Result<(), HttpError> {
        let (Some(limiter), Some(l)) = (self.limiter.clone(), self.config.limits.as_ref()) else {
            return Ok(());
        };
        let consumer = self.record.consumer.clone().unwrap_or_default();
        let scopes = l.scopes(&consumer, model);
        if scopes.is_empty() {
            return Ok(());
        }
        let decision = limiter
            .borrow_mut()
            .admit(&host::SharedData, &scopes, cost, host::now_ns());
        match decision {
            Ok(Ok(held)) => {
                self.record.untracked = held.untracked;
                self.snapshot = Some(held.snapshot);
                self.held = Some(held);
                Ok(())
            }
            Ok(Err(rejection)) => {
                self.snapshot = Some(rejection.snapshot);
                self.retry_after = rejection.retry_after;
                self.record.limited = Some(rejection.reason.label());
                Err(rejection.error())
            }
            Err(TableError::Contended) => {
                log::warn!("llm-gateway: the limit table is contended; request admitted");
                Ok(())
            }
        }
    }

    /// Give back what the request holds locally (it is refused after all).
    fn release_local(&mut self) {
        if let (Some(held), Some(limiter)) = (self.held.take(), self.limiter.as_ref()) {
            let _ = limiter
                .borrow_mut()
                .cancel(&host::SharedData, &held, host::now_ns());
        }
    }

    /// Ask the global service; `true` while its answer is awaited (the request stays paused).
    fn limit_globally(&mut self, model: Option<&str>, tokens: u64) -> Result<bool, HttpError> {
        let Some(g) = self.config.global().cloned() else {
            return Ok(false);
        };
        let consumer = self.record.consumer.clone().unwrap_or_default();
        let (bytes, described) = rls::request(&g.domain, &consumer, model, 1, tokens);
        self.global_tokens = tokens;
        self.global_sent_ms = host::now_ms();
        match host::call_rls(&g, &bytes) {
            Ok(token) => {
                self.global_call = Some((token, described));
                Ok(true)
            }
            Err(e) => {
                log::warn!("llm-gateway: could not call the rate limit service: {e:?}");
                match self.without_global("unavailable") {
                    Some(refusal) => Err(refusal),
                    None => Ok(false),
                }
            }
        }
    }

    /// The global service could not answer, for `reason`: `None` to go on (failure mode
    /// open), or the refusal (closed), with what the request held locally given back.
    fn without_global(&mut self, reason: &'static str) -> Option<HttpError> {
        self.record.global_failure = Some(reason);
        let closed = self
            .config
            .global()
            .is_some_and(|g| g.failure_mode == FailureMode::Closed);
        if !closed {
            return None;
        }
        self.release_local();
        self.global_tokens = 0;
        Some(HttpError::limiter_unavailable())
    }

    /// The global service did not answer the pending call: go on or refuse, as configured.
    fn global_failed(&mut self, reason: &'static str) {
        match self.without_global(reason) {
            Some(refusal) => {
                self.reject(refusal);
            }
            None => host::resume_request(),
        }
    }

    /// Everything between a complete request body and forwarding it. `Ok(true)`: forward now;
    /// `Ok(false)`: wait (for the global rate limit service or the semantic cache's lookup),
    /// or a cached answer was served. `resumed`: again after a semantic cache miss, when the
    /// request was already counted, limited and looked up.
    fn admit(&mut self, endpoint: Endpoint, raw: &[u8], resumed: bool) -> Result<bool, HttpError> {
        let cfg = self.config.clone();
        // An Anthropic client's request is read (and counted, limited, routed) as the OpenAI
        // chat request it translates to; `raw` is what the client sent.
        let translated;
        let body = if self.client_anthropic {
            translated = anthropic::request_to_openai(raw, &anthropic::model_of(raw)?)?;
            &translated[..]
        } else {
            raw
        };
        let req = Request::parse(endpoint, body)?;
        self.record.request_model = Some(req.model.to_string());
        self.record.stream = req.stream;

        let headers = std::mem::take(&mut self.headers);
        // Routing again after a semantic miss makes the same (random) choices.
        let mut replay = std::mem::take(&mut self.draws).into_iter();
        let mut drawn = Vec::new();
        let decision = route::route(
            &cfg,
            &req.model,
            &self.path,
            &|n| headers.get(n),
            &mut |t| {
                let x = replay
                    .next()
                    .filter(|x| *x < t)
                    .unwrap_or_else(|| fastrand::u32(0..t));
                drawn.push(x);
                x
            },
        )?;
        self.draws = drawn;
        self.record.upstream_model = Some(decision.upstream_model.clone());
        self.record.model_label = Some(decision.model_label.clone());
        if !resumed {
            self.count(&req, &decision.upstream_model);
        }

        let prompt = self.record.counted_prompt.map(|c| c.tokens).unwrap_or(0);
        // The cache first: a hit is admitted as what it costs (one request, and no tokens
        // unless the route charges hits), not as a provider call.
        if let Some(rc) = decision.cache.filter(|_| !resumed) {
            match self.cache_lookup(rc, endpoint, body, &req, &decision, &headers) {
                caching::Lookup::Go => {}
                caching::Lookup::Served => return Ok(false),
                caching::Lookup::Waiting => {
                    self.headers = headers;
                    return Ok(false);
                }
            }
        }
        if let Some(l) = &cfg.limits {
            let tokens = l.reservation(prompt, req.max_output_tokens(), req.choices());
            self.limit_locally(
                Some(&req.model),
                Cost {
                    requests: 1,
                    tokens,
                },
            )?;
        }

        // An Anthropic client's stream needs the usage chunk (its message_delta carries it).
        self.strip_usage = req.stream && !req.include_usage && !self.client_anthropic;
        let client_path = if self.client_anthropic {
            openai_path_for(&self.path)
        } else {
            self.path.clone()
        };
        // What the client sent when the provider does not take it as is.
        let as_sent = || self.client_anthropic.then(|| body.to_vec());
        let max = cfg
            .limits
            .as_ref()
            .map_or(DEFAULT_MAX_TOKENS, |l| l.default_max_tokens);
        let (new_body, chain) = match &decision.failover {
            Some((cluster, chain)) => {
                // Each attempt is adapted to its provider by the upstream filter; the request
                // leaves here in OpenAI's format, naming the client's model.
                let plan = Plan::new(chain, &client_path, endpoint.path_suffix(), max);
                host::set_property(names::prop::PLAN, &plan.encode());
                self.chain_len = chain.len();
                // Exactly one attempt per provider of the chain.
                host::set_header(
                    MapType::HttpRequestHeaders,
                    names::ENVOY_MAX_RETRIES,
                    Some(&chain.len().saturating_sub(1).to_string()),
                );
                let new_body = req.rewrite(None, self.strip_usage).or_else(as_sent);
                (new_body, Some(*cluster))
            }
            None if decision.provider.format == Format::Anthropic => {
                if endpoint != Endpoint::ChatCompletions {
                    return Err(HttpError::invalid_param(
                        "model",
                        "This model's provider serves chat completions only.",
                    ));
                }
                if !(self.client_anthropic && headers.has(names::ANTHROPIC_VERSION)) {
                    host::set_header(
                        MapType::HttpRequestHeaders,
                        names::ANTHROPIC_VERSION,
                        Some(anthropic::API_VERSION),
                    );
                }
                self.anthropic = true;
                let new_body = if self.client_anthropic {
                    // Anthropic to Anthropic: the client's own request, the model mapped; the
                    // answer is read (translated on the side) for accounting only.
                    wire::with_model(raw, &decision.upstream_model)?
                } else {
                    anthropic::request(body, &decision.upstream_model, max)?
                };
                (Some(new_body), None)
            }
            None => {
                if self.client_anthropic {
                    host::set_header(MapType::HttpRequestHeaders, names::ANTHROPIC_VERSION, None);
                }
                let new_body = req
                    .rewrite(Some(&decision.upstream_model), self.strip_usage)
                    .or_else(as_sent);
                (new_body, None)
            }
        };
        if chain.is_none() {
            let path = decision
                .provider
                .path(endpoint.path_suffix(), &decision.upstream_model)
                .or_else(|| (client_path != self.path).then(|| client_path.clone()));
            if let Some(path) = path {
                host::set_header(MapType::HttpRequestHeaders, names::PATH, Some(&path));
            }
        }
        if let Some(new_body) = new_body {
            self.replace_request_body(raw.len(), &new_body);
        }
        self.forward(&decision, &headers, chain);
        // The global service is charged the prompt now and the rest when the request ends
        // (its protocol cannot give back an unused reservation).
        // The model descriptor is the request's label, never the client's own string.
        let waiting = self.limit_globally(Some(&decision.model_label), prompt.max(1))?;
        Ok(!waiting)
    }

    fn replace_request_body(&self, old_len: usize, new_body: &[u8]) {
        host::set_body(BufferType::HttpRequestBody, old_len, new_body);
        host::set_header(
            MapType::HttpRequestHeaders,
            names::CONTENT_LENGTH,
            Some(&new_body.len().to_string()),
        );
    }

    /// Count the prompt for `model` into the record.
    fn count(&mut self, req: &Request, model: &str) {
        if let Some((enc, guessed)) = tokens::encoding_for_model(model, &self.config.tokenizer) {
            let t0 = host::now_us();
            let mut count = req.count_prompt_within(enc, self.config.tokenizer.max_exact_bytes);
            self.record.tokenize_us = Some(host::now_us().saturating_sub(t0));
            count.estimated |= guessed;
            self.record.counted_prompt = Some(count);
            self.encoding = Some(enc);
        }
    }

    /// `GET /v1/models` and `/v1/models/{id}`: the caller is identified (401 as for any
    /// request), then answered from the routes, in Anthropic's shape when it sends
    /// `anthropic-version`. Nothing goes upstream.
    fn answer_models(&mut self, q: &models::Query, headers: &RequestHeaders) -> Action {
        self.client_anthropic = headers.has(names::ANTHROPIC_VERSION);
        let get = |name: &str| headers.get(name);
        if let Err(e) = route::identify(&self.config, &get) {
            return self.reject(e);
        }
        match models::answer(&self.config, q, self.client_anthropic, &get) {
            Ok(body) => {
                let h = vec![(names::CONTENT_TYPE, "application/json")];
                if let Err(err) = hostcalls::send_http_response(200, h, Some(&body)) {
                    log::warn!("llm-gateway: could not send local reply: {err:?}");
                }
                Action::Pause
            }
            Err(e) => self.reject(e),
        }
    }

    /// Point the request at the chosen provider: its credential instead of the client's, and
    /// the cluster header the route reads. With a failover `chain` cluster, the request goes
    /// there and the upstream filter sets each attempt's credential.
    fn forward(
        &mut self,
        decision: &route::Decision,
        headers: &RequestHeaders,
        chain: Option<&str>,
    ) {
        let cfg = &self.config;
        self.record.provider = Some(decision.provider.name.clone());
        let h = MapType::HttpRequestHeaders;
        // The client's credentials are already gone (`on_http_request_headers`).
        // The response must be readable as it passes: ask the provider not to compress it.
        if headers.has(names::ACCEPT_ENCODING) {
            host::set_header(h, names::ACCEPT_ENCODING, None);
        }
        if chain.is_none() {
            if let Some((name, value)) = decision.provider.credential_header() {
                host::set_header(h, name, Some(&value));
            }
        }
        let cluster = chain.unwrap_or(&decision.provider.cluster);
        host::set_header(h, &cfg.cluster_header, Some(cluster));
    }

    /// Without body routing: route on the headers now and let the request go; the body is
    /// read as it passes (see `observe_body`).
    fn route_on_headers(&mut self, headers: &RequestHeaders) -> Action {
        let cfg = self.config.clone();
        // Config validation guarantees no rule depends on the model here.
        let decision = match route::route(&cfg, "", &self.path, &|n| headers.get(n), &mut |t| {
            fastrand::u32(0..t)
        }) {
            Ok(d) => d,
            Err(e) => return self.reject(e),
        };
        self.record.model_label = Some(decision.model_label.clone());
        // The prompt is not known yet: admit on one request and one token left, and charge
        // the reservation once the body has passed (`observe_body`).
        if let Err(e) = self.limit_locally(
            None,
            Cost {
                requests: 1,
                tokens: 1,
            },
        ) {
            return self.reject(e);
        }
        self.forward(&decision, headers, None);
        self.body_copy = Some(Vec::new());
        match self.limit_globally(None, 1) {
            Ok(true) => Action::Pause,
            Ok(false) => Action::Continue,
            Err(e) => self.reject(e),
        }
    }

    /// Without body routing: keep a bounded copy of the body as it passes; at its end, learn
    /// the model and count the prompt. A body the filter cannot read is the provider's to refuse.
    fn observe_body(&mut self, chunk_size: usize, end_of_stream: bool) {
        let Some(copy) = self.body_copy.as_mut() else {
            return;
        };
        if copy.len() + chunk_size > self.config.max_request_body_bytes {
            self.body_copy = None;
            return;
        }
        copy.extend_from_slice(&host::body(BufferType::HttpRequestBody, chunk_size));
        if !end_of_stream {
            return;
        }
        let (Some(body), Some(endpoint)) = (self.body_copy.take(), self.endpoint) else {
            return;
        };
        if let Ok(req) = Request::parse(endpoint, &body) {
            self.record.request_model = Some(req.model.to_string());
            self.record.upstream_model = Some(req.model.to_string());
            self.record.stream = req.stream;
            self.count(&req, &req.model);
            let prompt = self.record.counted_prompt.map(|c| c.tokens).unwrap_or(0);
            if let (Some(l), Some(limiter), Some(held)) = (
                self.config.limits.as_ref(),
                self.limiter.as_ref(),
                self.held.as_mut(),
            ) {
                let more = l
                    .reservation(prompt, req.max_output_tokens(), req.choices())
                    .saturating_sub(held.reserved_tokens);
                let _ =
                    limiter
                        .borrow_mut()
                        .add_tokens(&host::SharedData, held, more, host::now_ns());
            }
        }
    }
}

impl Gateway {
    /// The request is over: correct the local reservation to what was used, release its
    /// in-flight slot, and queue what the global service has not been charged yet.
    fn settle_limits(&mut self) {
        let actual = self.record.billable_tokens();
        if let (Some(held), Some(limiter)) = (self.held.take(), self.limiter.as_ref()) {
            let _ = limiter
                .borrow_mut()
                .settle(&host::SharedData, &held, actual, host::now_ns());
            self.record.reservation = Some((held.reserved_tokens, actual));
        }
        let owed = actual.saturating_sub(self.global_tokens);
        if self.config.global().is_some() && owed > 0 && self.record.local_outcome.is_none() {
            let mut q = self.reports.borrow_mut();
            if q.len() < MAX_QUEUED_REPORTS {
                q.push(Report {
                    consumer: self.record.consumer.clone().unwrap_or_default(),
                    model: self.record.model_label.clone(),
                    tokens: owed,
                });
            } else {
                self.record.global_failure = Some("report_queue_full");
            }
        }
    }
}

impl Gateway {
    /// Anthropic client and provider: the answer passes unchanged (translated on the side
    /// for accounting).
    fn passthrough(&self) -> bool {
        self.client_anthropic && self.anthropic
    }

    /// A local error in the client's API's shape.
    fn error_body(&self, e: &HttpError) -> Vec<u8> {
        if self.client_anthropic {
            anthropic::local_error_body(e)
        } else {
            e.body()
        }
    }
}

impl HttpContext for Gateway {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.start_ms = host::now_ms();
        let h = MapType::HttpRequestHeaders;
        let headers = RequestHeaders::read();
        // Whatever the request is, a client never chooses the cluster, and its credentials
        // (read from the copy above) go nowhere: a provider gets only its own.
        let cfg = self.config.clone();
        let client_only = names::CLIENT_CREDENTIAL_HEADERS
            .iter()
            .copied()
            .chain(cfg.consumer_header.as_deref())
            .chain([cfg.cluster_header.as_str()]);
        for name in client_only.filter(|n| headers.has(n)) {
            host::set_header(h, name, None);
        }
        let method = headers.get(names::METHOD).unwrap_or_default();
        self.path = headers.get(names::PATH).unwrap_or_default();
        if let Some(q) = models::Query::from_request(&method, &self.path) {
            return self.answer_models(&q, &headers);
        }
        self.client_anthropic = is_messages(&method, &self.path);
        let endpoint = if self.client_anthropic {
            Endpoint::ChatCompletions
        } else {
            let Some(endpoint) = Endpoint::from_request(&method, &self.path) else {
                return Action::Continue;
            };
            endpoint
        };
        self.endpoint = Some(endpoint);
        self.record.request_id = headers
            .get(names::REQUEST_ID)
            .map(|id| crate::meter::bounded_id(&id));
        self.record.endpoint = Some(if self.client_anthropic {
            "messages"
        } else {
            endpoint.as_str()
        });
        // Who is calling is known from the headers: refuse strangers before their body arrives.
        match route::identify(&self.config, &|name| headers.get(name)) {
            Ok(who) => self.record.consumer = Some(who.name),
            Err(e) => return self.reject(e),
        }
        if end_of_stream {
            return self.reject(HttpError::invalid_json("the body is empty"));
        }
        let declared = headers
            .get(names::CONTENT_LENGTH)
            .and_then(|v| v.trim().parse::<usize>().ok());
        if declared.is_some_and(|n| n > self.config.max_request_body_bytes) {
            return self.reject(HttpError::too_large(self.config.max_request_body_bytes));
        }
        if !self.config.body_routing {
            if self.client_anthropic {
                return self.reject(HttpError::invalid_param(
                    "model",
                    "This gateway serves the Messages API only with body_routing on.",
                ));
            }
            return self.route_on_headers(&headers);
        }
        // Kept for routing; the cluster header the client may have sent is not among them.
        let cluster_header = &self.config.cluster_header;
        self.headers = RequestHeaders(
            headers
                .0
                .into_iter()
                .filter(|(k, _)| k != cluster_header)
                .collect(),
        );
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(endpoint) = self.endpoint else {
            return Action::Continue;
        };
        if !self.config.body_routing {
            self.observe_body(body_size, end_of_stream);
            // Held while the global rate limit service has not answered.
            return if self.global_call.is_some() {
                Action::Pause
            } else {
                Action::Continue
            };
        }
        if self.record.local_outcome.is_some() {
            return Action::Pause;
        }
        if body_size > self.config.max_request_body_bytes {
            return self.reject(HttpError::too_large(self.config.max_request_body_bytes));
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let t0 = host::now_us();
        let body = host::body(BufferType::HttpRequestBody, body_size);
        let result = self.admit(endpoint, &body, false);
        self.record.gateway_us = Some(host::now_us().saturating_sub(t0));
        match result {
            Ok(true) => Action::Continue,
            Ok(false) => Action::Pause,
            Err(e) => self.reject(e),
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let h = MapType::HttpResponseHeaders;
        self.record.status = host::header(h, names::STATUS)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if self.endpoint.is_none() {
            return Action::Continue;
        }
        if let Some(id) = &self.record.request_id {
            host::set_header(h, names::RESPONSE_REQUEST_ID, Some(id));
        }
        if self.record.local_outcome.is_some() || self.record.cache_hit() {
            return Action::Continue;
        }
        self.record.provider_request_id = names::PROVIDER_REQUEST_IDS
            .iter()
            .find_map(|name| host::header(h, name))
            .map(|id| crate::meter::bounded_id(&id));
        // Envoy's own answers (no provider reached, reset, timeout) are plain text: read who
        // made an error only when there is one, to keep the fast path cheap.
        let envoy_made = (self.record.status >= 400)
            .then(|| host::property_string(names::host::CODE_DETAILS.to_vec()))
            .flatten()
            .filter(|d| d != "via_upstream");
        let failure = if self.chain_len > 0 && self.record.status >= 500 {
            // Every provider the chain tried failed: one clear error instead of the last
            // provider's (or Envoy's plain-text) answer.
            Some(host::journal().all_failed(self.chain_len))
        } else {
            envoy_made.map(|d| HttpError::from_envoy(self.record.status, &d))
        };
        if let Some(e) = failure {
            self.record.local_outcome = Some(e.outcome);
            host::set_header(h, names::STATUS, Some(&e.status.to_string()));
            host::set_header(h, names::CONTENT_TYPE, Some("application/json"));
            host::set_header(h, names::CONTENT_LENGTH, None);
            host::set_header(h, names::CONTENT_ENCODING, None);
            self.record.status = e.status;
            self.replacement = Some(self.error_body(&e));
            return Action::Continue;
        }
        let ct = host::header(h, names::CONTENT_TYPE).unwrap_or_default();
        let ce = host::header(h, names::CONTENT_ENCODING);
        if self.record.cache.is_some() {
            // A compressed answer cannot be read: not stored.
            let ct = if ce.is_some() { "" } else { ct.as_str() };
            self.cache_response_headers(self.record.status, ct);
        }
        if self.client_anthropic && !self.passthrough() && ce.is_none() {
            // An OpenAI answer for an Anthropic client: translated back as it passes.
            host::set_header(h, names::CONTENT_LENGTH, None);
            let counted = self.record.counted_prompt.map_or(0, |c| c.tokens);
            self.reverse = Some(anthropic::Reverse::new(&ct, counted));
        }
        if self.anthropic && ce.is_none() {
            // Translated: the length changes.
            if !self.passthrough() {
                host::set_header(h, names::CONTENT_LENGTH, None);
            }
            self.translation = Some(Translation::new(
                &ct,
                self.record.status,
                host::now_ms() / 1000,
            ));
        }
        let acc = Meter::new(
            &ct,
            ce.as_deref(),
            self.strip_usage,
            self.encoding,
            self.config.max_response_body_bytes,
        );
        if self.strip_usage && acc.wants_body() {
            // The body may shrink: a stated length would be wrong.
            host::set_header(h, names::CONTENT_LENGTH, None);
        }
        for (name, value) in self.limit_headers() {
            host::set_header(h, name, Some(&value));
        }
        self.accountant = Some(acc);
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if let Some(r) = self.replacement.as_ref() {
            let out: &[u8] = if end_of_stream { r } else { &[] };
            host::set_body(BufferType::HttpResponseBody, body_size, out);
            return Action::Continue;
        }
        let passthrough = self.passthrough();
        if let Some(t) = self.translation.as_mut() {
            if t.buffers() && !end_of_stream {
                return Action::Pause;
            }
            let chunk = host::body(BufferType::HttpResponseBody, body_size);
            let mut out = t.chunk(&chunk);
            self.cache_capture(&out);
            if let Some(acc) = self.accountant.as_mut().filter(|a| a.wants_body()) {
                if let ChunkAction::Replace(o) = acc.on_chunk(&out, end_of_stream, host::now_ms()) {
                    out = o;
                }
            }
            if !passthrough {
                host::set_body(BufferType::HttpResponseBody, body_size, &out);
            }
            return Action::Continue;
        }
        if let Some(r) = self.reverse.as_mut() {
            if r.buffers() && !end_of_stream {
                return Action::Pause;
            }
            let chunk = host::body(BufferType::HttpResponseBody, body_size);
            if let Some(acc) = self.accountant.as_mut().filter(|a| a.wants_body()) {
                // Nothing is stripped for an Anthropic client: the answer is only read.
                let _ = acc.on_chunk(&chunk, end_of_stream, host::now_ms());
            }
            let out = r.chunk(&chunk);
            host::set_body(BufferType::HttpResponseBody, body_size, &out);
            return Action::Continue;
        }
        let capturing = self.cache.as_ref().is_some_and(|c| c.capturing());
        let wants = self.accountant.as_ref().is_some_and(|a| a.wants_body());
        if !capturing && !wants {
            return Action::Continue;
        }
        let chunk = host::body(BufferType::HttpResponseBody, body_size);
        if capturing {
            self.cache_capture(&chunk);
        }
        let Some(acc) = self.accountant.as_mut().filter(|a| a.wants_body()) else {
            return Action::Continue;
        };
        if let ChunkAction::Replace(out) = acc.on_chunk(&chunk, end_of_stream, host::now_ms()) {
            host::set_body(BufferType::HttpResponseBody, body_size, &out);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let now = host::now_ms();
        if self.endpoint.is_none() {
            return;
        }
        if let Some(acc) = self.accountant.take() {
            self.record.learned = acc.finish();
        }
        if self.record.status == 0 {
            self.record.status = host::property_u64(vec!["response", "code"]).unwrap_or(0) as u32;
        }
        if self.chain_len > 0 {
            let journal = host::journal();
            if let Some(p) = journal.served() {
                self.record.provider = Some(p.to_string());
            }
            self.record.journal = Some(journal);
        }
        self.cache_store();
        self.record.duration_ms = now.saturating_sub(self.start_ms);
        self.record.ttft_ms = self
            .record
            .learned
            .first_token_ms
            .map(|t| t.saturating_sub(self.start_ms));
        self.settle_limits();
        self.record.price(&self.config.prices);

        for (name, value) in self.record.properties() {
            host::set_property(name, &value);
        }

        // Label values come from the configuration only (see `route::Decision::model_label`
        // and `Config::consumer_label`): a client's string never names a series.
        let model = self
            .record
            .model_label
            .as_deref()
            .unwrap_or(names::metric::NONE);
        let consumer = self
            .record
            .consumer
            .as_deref()
            .map_or(names::metric::NONE, |c| self.config.consumer_label(c));
        let mut metrics = self.metrics.borrow_mut();
        let mut updates = self.record.metrics(model, consumer);
        if updates.iter().any(|u| !metrics.has_room(&u.name)) {
            let other = names::metric::OTHER;
            updates = self.record.metrics(other, other);
        }
        updates.push(MetricUpdate {
            kind: Kind::Gauge,
            name: names::metric::VM_MEMORY.to_string(),
            value: (core::arch::wasm32::memory_size(0) as u64) << 16,
        });
        for u in &updates {
            metrics.apply(u);
        }
        drop(metrics);
        if let Some(x) = &self.exporter {
            let id = self.record.request_id.clone().or_else(|| {
                hostcalls::get_property(names::host::REQUEST_ID.to_vec())
                    .ok()
                    .flatten()
                    .and_then(|b| String::from_utf8(b).ok())
            });
            let event = usage::Event::new(
                &self.record,
                id,
                self.start_ms.saturating_mul(1_000_000),
                host::now_ns(),
            );
            export_event(x, &self.metrics, event);
        }
    }
}
