//! The proxy-wasm shell: the root context, the gateway's HTTP context and the failover
//! attempt's. Each callback reads sizes, calls the flow through the one host implementation
//! and maps its [`Step`] to an Envoy action.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel};

use crate::flow::attempt::AttemptFilter;
use crate::flow::vm::{Role, Vm};
use crate::flow::{self, Exchange, Step};

mod host;

use host::WasmHost;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        let mut root = Root::default();
        root.host.context_id = context_id;
        Box::new(root)
    });
}}

/// An HTTP callback's answer: send the reply (then hold the request), or go on, or wait.
fn act(h: &mut WasmHost, step: Step) -> Action {
    match step {
        Step::Continue => Action::Continue,
        Step::Pause => Action::Pause,
        Step::Reply(r) => {
            r.send(h);
            Action::Pause
        }
    }
}

#[derive(Default)]
struct Root {
    host: WasmHost,
    vm: Option<Vm>,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        size: usize,
        _trailers: usize,
    ) {
        if let Some(vm) = self.vm.as_mut() {
            vm.on_call_answer(&mut self.host, token, size);
        }
    }

    fn on_grpc_call_response(&mut self, _token: u32, status_code: u32, _size: usize) {
        if let Some(vm) = self.vm.as_mut() {
            vm.on_grpc_answer(&mut self.host, status_code);
        }
    }

    fn on_done(&mut self) -> bool {
        self.vm.as_mut().is_none_or(|vm| vm.on_done(&mut self.host))
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        match Vm::configure(&self.host, &bytes) {
            Ok((vm, tick)) => {
                self.vm = Some(vm);
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
        let Some(vm) = self.vm.as_mut() else {
            return;
        };
        if let Some(tick) = vm.on_tick(&mut self.host) {
            let _ = hostcalls::set_tick_period(tick);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let vm = self.vm.as_ref()?;
        let mut host = self.host.clone();
        host.context_id = context_id;
        match vm.role {
            Role::Upstream => Some(Box::new(Attempt {
                host,
                attempt: AttemptFilter::default(),
            })),
            Role::Gateway(_) => Some(Box::new(Gateway {
                host,
                exchange: vm.exchange(context_id)?,
            })),
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// The gateway filter's context for one request.
struct Gateway {
    host: WasmHost,
    exchange: Exchange,
}

impl Context for Gateway {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        size: usize,
        _trailers: usize,
    ) {
        let step = self.exchange.on_call_answer(&mut self.host, token, size);
        flow::resume(&mut self.host, step);
    }

    fn on_grpc_call_response(&mut self, token: u32, status_code: u32, size: usize) {
        let step = self
            .exchange
            .on_global_answer(&mut self.host, token, status_code, size);
        flow::resume(&mut self.host, step);
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.exchange.abandon(&self.host);
    }
}

impl HttpContext for Gateway {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let step = self
            .exchange
            .on_request_headers(&mut self.host, end_of_stream);
        act(&mut self.host, step)
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        let step = self
            .exchange
            .on_request_body(&mut self.host, size, end_of_stream);
        act(&mut self.host, step)
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let step = self.exchange.on_response_headers(&mut self.host);
        act(&mut self.host, step)
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        let step = self
            .exchange
            .on_response_body(&mut self.host, size, end_of_stream);
        act(&mut self.host, step)
    }

    fn on_log(&mut self) {
        self.exchange.finish(&mut self.host);
    }
}

/// The upstream filter's context for one attempt of a failover chain.
struct Attempt {
    host: WasmHost,
    attempt: AttemptFilter,
}

impl Context for Attempt {
    fn on_done(&mut self) -> bool {
        self.attempt.on_done(&mut self.host);
        true
    }
}

impl HttpContext for Attempt {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let step = self.attempt.on_request_headers(&mut self.host);
        act(&mut self.host, step)
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        let step = self
            .attempt
            .on_request_body(&mut self.host, size, end_of_stream);
        act(&mut self.host, step)
    }

    fn on_http_response_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let step = self
            .attempt
            .on_response_headers(&mut self.host, end_of_stream);
        act(&mut self.host, step)
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        let step = self
            .attempt
            .on_response_body(&mut self.host, size, end_of_stream);
        act(&mut self.host, step)
    }
}
