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

use crate::config::Config;
use crate::error::HttpError;
use crate::names;
use crate::report::{Kind, MetricUpdate, Record};
use crate::request::{Endpoint, Request};
use crate::response::{Accountant, ChunkAction};
use crate::route;
use crate::tokens::{self, Encoding};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Distinct metric series one VM defines before folding new model/consumer labels into `other`.
const MAX_SERIES: usize = 4096;

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

    pub fn set_property(name: &str, value: &str) {
        let _ = hostcalls::set_property(vec![name], Some(value.as_bytes()));
    }
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

    fn apply(&mut self, u: &MetricUpdate) {
        let id = match self.ids.get(&u.name) {
            Some(id) => *id,
            None => {
                let ty = match u.kind {
                    Kind::Counter => MetricType::Counter,
                    Kind::Gauge => MetricType::Gauge,
                    Kind::Histogram => MetricType::Histogram,
                };
                match hostcalls::define_metric(ty, &u.name) {
                    Ok(id) => {
                        self.ids.insert(u.name.clone(), id);
                        id
                    }
                    Err(e) => {
                        log::warn!("llm-gateway: cannot define metric {}: {e:?}", u.name);
                        return;
                    }
                }
            }
        };
        let _ = match u.kind {
            Kind::Counter => {
                hostcalls::increment_metric(id, i64::try_from(u.value).unwrap_or(i64::MAX))
            }
            Kind::Histogram | Kind::Gauge => hostcalls::record_metric(id, u.value),
        };
    }
}

#[derive(Default)]
struct Root {
    config: Option<Rc<Config>>,
    metrics: Rc<RefCell<Metrics>>,
    preload: Vec<Encoding>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        match Config::parse(&bytes, &|k| std::env::var(k).ok()) {
            Ok(c) => {
                log::info!(
                    "llm-gateway: configured {} providers, {} routes, {} consumers",
                    c.providers.len(),
                    c.routes.len(),
                    c.consumers.len()
                );
                self.preload = c.tokenizer.preload.clone();
                self.config = Some(Rc::new(c));
                if !self.preload.is_empty() {
                    // Load encodings off the configure path, one per tick, before traffic needs them.
                    let _ = hostcalls::set_tick_period(Duration::from_millis(1));
                }
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
                let _ = hostcalls::set_tick_period(Duration::ZERO);
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
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
    accountant: Option<Accountant>,
    /// Without body routing: the body seen so far (bounded), read for accounting.
    body_copy: Option<Vec<u8>>,
}

impl Context for Gateway {}

impl Gateway {
    fn reject(&mut self, e: HttpError) -> Action {
        self.record.local_outcome = Some(e.outcome);
        self.record.status = e.status;
        let body = e.body();
        if let Err(err) = hostcalls::send_http_response(
            e.status,
            vec![(names::CONTENT_TYPE, "application/json")],
            Some(&body),
        ) {
            log::warn!("llm-gateway: could not send local reply: {err:?}");
        }
        Action::Pause
    }

    /// Everything between a complete request body and forwarding it.
    fn admit(&mut self, endpoint: Endpoint, body: &[u8]) -> Result<(), HttpError> {
        let cfg = self.config.clone();
        let req = Request::parse(endpoint, body)?;
        self.record.request_model = Some(req.model.to_string());
        self.record.stream = req.stream;

        let headers = std::mem::take(&mut self.headers);
        let decision = route::route(
            &cfg,
            &req.model,
            &self.path,
            &|n| headers.get(n),
            &mut |t| fastrand::u32(0..t),
        )?;
        self.record.upstream_model = Some(decision.upstream_model.clone());
        self.count(&req, &decision.upstream_model);

        self.strip_usage = req.stream && !req.include_usage;
        if let Some(new_body) = req.rewrite(Some(&decision.upstream_model), self.strip_usage) {
            host::set_body(BufferType::HttpRequestBody, body.len(), &new_body);
            host::set_header(
                MapType::HttpRequestHeaders,
                names::CONTENT_LENGTH,
                Some(&new_body.len().to_string()),
            );
        }
        self.forward(&decision, &headers);
        Ok(())
    }

    /// Count the prompt for `model` into the record.
    fn count(&mut self, req: &Request, model: &str) {
        if let Some((enc, guessed)) = tokens::encoding_for_model(model, &self.config.tokenizer) {
            let t0 = host::now_us();
            let mut count = req.count_prompt(enc);
            self.record.tokenize_us = Some(host::now_us().saturating_sub(t0));
            count.estimated |= guessed;
            self.record.counted_prompt = Some(count);
            self.encoding = Some(enc);
        }
    }

    /// Point the request at the chosen provider: its credential instead of the client's, and
    /// the cluster header the route reads.
    fn forward(&mut self, decision: &route::Decision, headers: &RequestHeaders) {
        let cfg = &self.config;
        self.record.provider = Some(decision.provider.name.clone());
        let h = MapType::HttpRequestHeaders;
        let client_only = names::CLIENT_CREDENTIAL_HEADERS
            .iter()
            .copied()
            .chain(cfg.consumer_header.as_deref());
        for name in client_only.filter(|n| headers.has(n)) {
            host::set_header(h, name, None);
        }
        // The response must be readable as it passes: ask the provider not to compress it.
        if headers.has(names::ACCEPT_ENCODING) {
            host::set_header(h, names::ACCEPT_ENCODING, None);
        }
        if let Some((name, value)) = decision.provider.credential_header() {
            host::set_header(h, name, Some(&value));
        }
        host::set_header(h, &cfg.cluster_header, Some(&decision.provider.cluster));
    }

    /// Without body routing: route on the headers now and let the request go; the body is
    /// read as it passes (see `observe_body`).
    fn route_on_headers(&mut self, headers: &RequestHeaders) -> Action {
        let cfg = self.config.clone();
        // Config validation guarantees no rule depends on the model here.
        match route::route(&cfg, "", &self.path, &|n| headers.get(n), &mut |t| {
            fastrand::u32(0..t)
        }) {
            Ok(decision) => {
                self.forward(&decision, headers);
                self.body_copy = Some(Vec::new());
                Action::Continue
            }
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
        }
    }
}

impl HttpContext for Gateway {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.start_ms = host::now_ms();
        let h = MapType::HttpRequestHeaders;
        let headers = RequestHeaders::read();
        // A client never chooses the cluster, whatever the request is.
        if headers.has(&self.config.cluster_header) {
            host::set_header(h, &self.config.cluster_header, None);
        }
        let method = headers.get(names::METHOD).unwrap_or_default();
        self.path = headers.get(names::PATH).unwrap_or_default();
        let Some(endpoint) = Endpoint::from_request(&method, &self.path) else {
            return Action::Continue;
        };
        self.endpoint = Some(endpoint);
        self.record.endpoint = Some(endpoint.as_str());
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
            return Action::Continue;
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
        let result = self.admit(endpoint, &body);
        self.record.gateway_us = Some(host::now_us().saturating_sub(t0));
        match result {
            Ok(()) => Action::Continue,
            Err(e) => self.reject(e),
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let h = MapType::HttpResponseHeaders;
        self.record.status = host::header(h, names::STATUS)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if self.endpoint.is_none() || self.record.local_outcome.is_some() {
            return Action::Continue;
        }
        let ct = host::header(h, names::CONTENT_TYPE).unwrap_or_default();
        let ce = host::header(h, names::CONTENT_ENCODING);
        let acc = Accountant::new(
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
        self.accountant = Some(acc);
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(acc) = self.accountant.as_mut().filter(|a| a.wants_body()) else {
            return Action::Continue;
        };
        let chunk = host::body(BufferType::HttpResponseBody, body_size);
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
        self.record.duration_ms = now.saturating_sub(self.start_ms);
        self.record.ttft_ms = self
            .record
            .learned
            .first_token_ms
            .map(|t| t.saturating_sub(self.start_ms));

        for (name, value) in self.record.properties() {
            host::set_property(name, &value);
        }

        let model = self
            .record
            .request_model
            .clone()
            .unwrap_or_else(|| "none".into());
        let consumer = self
            .record
            .consumer
            .clone()
            .unwrap_or_else(|| "none".into());
        let mut metrics = self.metrics.borrow_mut();
        let mut updates = self.record.metrics(&model, &consumer);
        if updates.iter().any(|u| !metrics.has_room(&u.name)) {
            updates = self.record.metrics("other", "other");
        }
        updates.push(MetricUpdate {
            kind: Kind::Gauge,
            name: names::metric::VM_MEMORY.to_string(),
            value: (core::arch::wasm32::memory_size(0) as u64) << 16,
        });
        for u in &updates {
            metrics.apply(u);
        }
    }
}
