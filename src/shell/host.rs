//! The one [`Host`] over proxy-wasm. Nothing here panics on what a client sent: a header value
//! that is not UTF-8 reads as absent, a failed host call is logged and skipped.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use hashbrown::HashMap;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, MetricType};

use crate::host::{Buffer, CallError, Grpc, Host, Map, Post};
use crate::limits::{Conflict, Store};
use crate::metrics::{Kind, MetricUpdate};
use crate::names;

/// Distinct metric series one VM defines before folding new model/consumer labels into `other`.
const MAX_SERIES: usize = 4096;

/// Metric ids defined in this VM, by full stat name.
#[derive(Default)]
pub struct MetricIds {
    ids: HashMap<String, u32>,
}

impl MetricIds {
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
}

/// Envoy, as the flow sees it. Cheap to make: one per callback.
#[derive(Clone, Default)]
pub struct WasmHost {
    pub metrics: Rc<RefCell<MetricIds>>,
    /// The context whose callback this host serves (the root context's, for `switch_context`).
    pub context_id: u32,
}

fn map(m: Map) -> MapType {
    match m {
        Map::RequestHeaders => MapType::HttpRequestHeaders,
        Map::ResponseHeaders => MapType::HttpResponseHeaders,
        Map::CallResponseHeaders => MapType::HttpCallResponseHeaders,
    }
}

fn buffer(b: Buffer) -> BufferType {
    match b {
        Buffer::RequestBody => BufferType::HttpRequestBody,
        Buffer::ResponseBody => BufferType::HttpResponseBody,
        Buffer::CallResponseBody => BufferType::HttpCallResponseBody,
        Buffer::GrpcResponse => BufferType::GrpcReceiveBuffer,
    }
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
}

impl Store for WasmHost {
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

impl Host for WasmHost {
    fn now_ns(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    fn request_headers(&self) -> Vec<(String, Vec<u8>)> {
        hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default()
    }

    fn header(&self, m: Map, name: &str) -> Option<String> {
        let bytes = hostcalls::get_map_value_bytes(map(m), name)
            .ok()
            .flatten()?;
        String::from_utf8(bytes).ok()
    }

    fn set_header(&mut self, m: Map, name: &str, value: Option<&str>) {
        if let Err(e) = hostcalls::set_map_value(map(m), name, value) {
            log::warn!("llm-gateway: could not set header {name}: {e:?}");
        }
    }

    fn body(&self, b: Buffer, size: usize) -> Vec<u8> {
        hostcalls::get_buffer(buffer(b), 0, size)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn set_body(&mut self, b: Buffer, size: usize, value: &[u8]) {
        if let Err(e) = hostcalls::set_buffer(buffer(b), 0, size, value) {
            log::warn!("llm-gateway: could not replace body: {e:?}");
        }
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }

    fn set_property(&mut self, name: &str, value: &str) {
        let _ = hostcalls::set_property(vec![name], Some(value.as_bytes()));
    }

    fn post(&mut self, p: &Post<'_>) -> Result<u32, CallError> {
        let mut headers = vec![
            (":method", p.method),
            (":path", p.path),
            (":authority", p.authority),
        ];
        if p.method == "POST" {
            headers.push((names::CONTENT_TYPE, "application/json"));
        }
        headers.extend_from_slice(p.headers);
        hostcalls::dispatch_http_call(
            p.cluster,
            headers,
            (p.method == "POST").then_some(p.body),
            Vec::new(),
            Duration::from_millis(p.timeout_ms),
        )
        .map_err(|e| CallError(format!("{e:?}")))
    }

    fn grpc(&mut self, c: &Grpc<'_>) -> Result<u32, CallError> {
        hostcalls::dispatch_grpc_call(
            c.cluster,
            c.service,
            c.method,
            Vec::new(),
            Some(c.message),
            Duration::from_millis(c.timeout_ms),
        )
        .map_err(|e| CallError(format!("{e:?}")))
    }

    fn send_reply(&mut self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        if let Err(e) = hostcalls::send_http_response(status, headers.to_vec(), Some(body)) {
            log::warn!("llm-gateway: could not send local reply: {e:?}");
        }
    }

    fn resume_request(&mut self) {
        // Unlike the SDK's `resume_http_request`, a stream that is already gone is not a panic.
        // SAFETY: a host call with no pointers; 0 is the request stream.
        let status = unsafe { proxy_continue_stream(0) };
        if status != 0 {
            log::debug!("llm-gateway: could not resume the request (status {status})");
        }
    }

    fn switch_context(&mut self, context_id: Option<u32>) -> bool {
        // The SDK's `set_effective_context` panics on a status other than BadArgument; a
        // request gone meanwhile must not.
        // SAFETY: a host call with no pointers.
        let status = unsafe { proxy_set_effective_context(context_id.unwrap_or(self.context_id)) };
        status == 0
    }

    fn metric_room(&self, name: &str) -> bool {
        self.metrics.borrow().has_room(name)
    }

    fn metric(&mut self, u: &MetricUpdate) {
        let ty = match u.kind {
            Kind::Counter => MetricType::Counter,
            Kind::Gauge => MetricType::Gauge,
            Kind::Histogram => MetricType::Histogram,
        };
        let Some(id) = self.metrics.borrow_mut().id(&u.name, ty) else {
            return;
        };
        let _ = match u.kind {
            Kind::Counter => {
                hostcalls::increment_metric(id, i64::try_from(u.value).unwrap_or(i64::MAX))
            }
            Kind::Histogram | Kind::Gauge => hostcalls::record_metric(id, u.value),
        };
    }

    fn add_gauge(&mut self, name: &str, delta: i64) {
        if delta == 0 {
            return;
        }
        if let Some(id) = self.metrics.borrow_mut().id(name, MetricType::Gauge) {
            let _ = hostcalls::increment_metric(id, delta);
        }
    }

    fn memory_bytes(&self) -> u64 {
        (core::arch::wasm32::memory_size(0) as u64) << 16
    }

    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn random(&mut self, bound: u32) -> u32 {
        fastrand::u32(0..bound.max(1))
    }

    fn random_u64(&mut self) -> u64 {
        fastrand::u64(..)
    }

    fn done(&mut self) {
        let _ = hostcalls::done();
    }
}
