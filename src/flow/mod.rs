//! The request's journey, as stages driven through the [`Host`] trait:
//!
//! 1. [`inbound`]: request headers — strip client credentials and the cluster header, find the
//!    endpoint and the consumer, check the size; without body routing, route on the headers.
//! 2. [`admit`]: the complete body — parse, route, count, the [`cache`] lookup, local and global
//!    [`limits`], the upstream request (provider, path, credential, body).
//! 3. [`outbound`]: response headers and body — translators, the usage meter, the cache's
//!    capture, the chain-failed reply.
//! 4. [`finish`]: the end — settle, price, properties, metrics, the usage event, the spans.
//!
//! [`trace`] follows the request through all four when `tracing` is configured.
//!
//! [`attempt`] is the failover chain's upstream filter, and [`vm`] what a VM does between
//! requests (configuration, ticks, posting usage events and reports). Each stage returns a
//! [`Step`] the shell turns into an Envoy action.

use std::cell::RefCell;
use std::rc::Rc;

use crate::config::Config;
use crate::cooldown::Cooling;
use crate::error::HttpError;
use crate::host::{Host, Map};
use crate::limits::{Held, Limiter, Snapshot};
use crate::meter::Meter;
use crate::names;
use crate::record::Record;
use crate::request::Endpoint;
use crate::rls;
use crate::tokens::Encoding;
use crate::translate::{anthropic_to_openai, Direction, ResponseTranslator};
use crate::usage::Exporter;

pub mod admit;
pub mod attempt;
pub mod cache;
pub mod credentials;
pub mod finish;
pub mod inbound;
pub mod limits;
pub mod outbound;
pub mod semantic;
pub mod side;
#[cfg(test)]
mod tests;
pub mod trace;
pub mod vm;

/// What the shell does next with the request.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Let it go on (forward the request, pass the response on).
    Continue,
    /// Hold it (waiting for the rest of the body or a callout).
    Pause,
    /// Answer the client from here; nothing (more) goes upstream.
    Reply(LocalReply),
}

/// An answer made by the filter: an error in the client's API's shape, a cached answer, the
/// model list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl LocalReply {
    pub fn send(&self, h: &mut impl Host) {
        let headers: Vec<(&str, &str)> =
            self.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        h.send_reply(self.status, &headers, &self.body);
    }
}

/// Carry out a step decided in a callout's callback, where there is no action to return:
/// resume the request, send the reply, or keep waiting.
pub fn resume(h: &mut impl Host, step: Step) {
    match step {
        Step::Continue => h.resume_request(),
        Step::Pause => {}
        Step::Reply(r) => r.send(h),
    }
}

/// The client API a request speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientApi {
    /// OpenAI's chat completions, completions and embeddings.
    #[default]
    OpenAi,
    /// Anthropic's Messages API (`/v1/messages`), read as the chat request it translates to.
    Anthropic,
    /// OpenAI's Responses API (`/v1/responses`): passed through to a provider that serves it,
    /// else sent on as the chat request it translates to.
    Responses,
}

/// The request headers, read from the host once.
#[derive(Default)]
pub struct RequestHeaders(pub Vec<(String, Vec<u8>)>);

impl RequestHeaders {
    /// The first value of `name`, if it is UTF-8 (a value that is not reads as absent).
    pub fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .map(str::to_string)
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}

/// What every request of a VM shares.
#[derive(Clone)]
pub struct Shared {
    pub config: Rc<Config>,
    pub limiter: Option<Rc<RefCell<Limiter>>>,
    /// What finished requests still owe the global rate limit service.
    pub reports: Rc<RefCell<Vec<limits::Report>>>,
    pub exporter: Option<Rc<RefCell<Exporter>>>,
    /// Where the spans go, with `tracing`.
    pub tracer: Option<Rc<RefCell<Exporter>>>,
    /// The response cache's stores, when a route caches.
    pub caches: Option<Rc<cache::Stores>>,
    /// The access tokens the VM fetches, and the requests waiting for them.
    pub tokens: Option<Rc<RefCell<credentials::Tokens>>>,
}

impl Shared {
    pub fn new(config: Config) -> Shared {
        let limiter = config.limits.as_ref().map(|l| {
            Rc::new(RefCell::new(Limiter::new(
                names::LIMITS_SHARED_PREFIX,
                l.max_tracked,
            )))
        });
        let caches = config
            .cache
            .as_ref()
            .map(|c| Rc::new(cache::Stores::new(c)));
        let tokens = credentials::Tokens::new(&config).map(|t| Rc::new(RefCell::new(t)));
        Shared {
            config: Rc::new(config),
            limiter,
            reports: Rc::default(),
            exporter: None,
            tracer: None,
            caches,
            tokens,
        }
    }
}

/// What the request is, from its headers.
#[derive(Default)]
pub struct Inbound {
    pub start_ms: u64,
    /// `None`: not a request for the gateway (passed through untouched).
    pub endpoint: Option<Endpoint>,
    pub path: String,
    pub client: ClientApi,
    /// Kept for routing on the body, without the cluster header.
    pub headers: RequestHeaders,
    /// The draws routing made (weighted splits), replayed when routing runs again after a
    /// semantic cache miss.
    pub draws: Vec<u32>,
    /// A request beside the model calls, waiting for its body (see `side`).
    pub side: Option<side::Side>,
}

/// Where the request went.
#[derive(Default)]
pub struct Upstream {
    /// How the request was translated into its provider's API from OpenAI chat (a direct
    /// route, not a chain; `None`: the provider speaks OpenAI's); its answer is translated
    /// back the same way.
    pub provider_wire: Option<Direction>,
    /// The provider takes an access token the VM fetches (`auth: gcp-metadata`): the request
    /// waits for it when there is none yet.
    pub token_provider: Option<String>,
    /// Set by the root context when it refused the request waiting for that token.
    pub credential_refused: Option<Rc<std::cell::Cell<Option<&'static str>>>>,
    /// Providers in the request's failover chain (0: no chain).
    pub chain_len: usize,
    /// Per attempt of the chain, the key it uses, for providers with several.
    pub chain_keys: Vec<Option<usize>>,
    /// Without a chain: the provider and key the request went to, and how long that key
    /// cools down after a `429` (the upstream filter sees to a chain's attempts).
    pub cooldown: Option<(String, usize, crate::config::Cooldown)>,
    /// The client did not ask for the stream's usage chunk: it is removed from the answer.
    pub strip_usage: bool,
    /// The encoding the prompt was counted with (the meter counts the answer with it).
    pub encoding: Option<Encoding>,
    /// A Responses request went on as a chat request: the answer is translated back.
    pub responses_translated: bool,
    /// The request settings a translated Responses answer repeats.
    pub responses_echo: Option<crate::translate::responses_to_chat::ResponsesEcho>,
}

/// What the request holds in the limits.
#[derive(Default)]
pub struct Holding {
    /// Reserved in the local limits until the request ends.
    pub held: Option<Held>,
    /// Rate limit figures for the `x-ratelimit-*` response headers.
    pub snapshot: Option<Snapshot>,
    pub retry_after: Option<std::time::Duration>,
    /// The refusal cannot pass before a client's retries give up (`x-should-retry: false`).
    pub no_retry: bool,
    /// The pending call to the global service and what its descriptors stand for.
    pub global_call: Option<(u32, Vec<rls::Described>)>,
    /// Tokens charged to the global service at admission.
    pub global_tokens: u64,
    /// What the global dollar budgets were charged at admission.
    pub global_budget: Option<rls::BudgetCharge>,
    /// When the call to the global service left (ms).
    pub global_sent_ms: u64,
}

/// The answer as it passes.
#[derive(Default)]
pub struct Outbound {
    pub meter: Option<Meter>,
    /// The provider's answer translated to OpenAI chat's format (from Anthropic's Messages,
    /// Bedrock's Converse, Gemini's generateContent).
    pub from_provider: Option<ResponseTranslator>,
    /// An OpenAI chat answer translated to the client's API (Anthropic's, or the Responses
    /// API's).
    pub to_client: Option<ResponseTranslator>,
    /// The body that replaces the answer (an error the gateway makes of it).
    pub replacement: Option<Vec<u8>>,
    /// Without body routing: the request body seen so far (bounded), read for accounting.
    pub body_copy: Option<Vec<u8>>,
}

/// One request's way through the gateway.
pub struct Exchange {
    pub shared: Shared,
    pub inbound: Inbound,
    pub record: Record,
    pub upstream: Upstream,
    pub holding: Holding,
    pub outbound: Outbound,
    /// The response cache's part in this request, on a caching route.
    pub cache: Option<Box<cache::State>>,
    /// The request's trace, with `tracing`.
    pub trace: Option<Box<crate::trace::span::State>>,
    /// The request's context in its VM (the root context resumes it by this id).
    pub context_id: u32,
}

impl Exchange {
    pub fn new(shared: Shared) -> Exchange {
        Exchange {
            shared,
            inbound: Inbound::default(),
            record: Record::default(),
            upstream: Upstream::default(),
            holding: Holding::default(),
            outbound: Outbound::default(),
            cache: None,
            trace: None,
            context_id: 0,
        }
    }

    pub fn config(&self) -> Rc<Config> {
        self.shared.config.clone()
    }

    /// The providers' cool-downs now; nothing is read when no provider cools down.
    pub fn cooling(&self, h: &impl Host) -> Cooling {
        let now = h.now_ms();
        if self.shared.config.cools_down() {
            Cooling::read(h, now)
        } else {
            Cooling::empty(now)
        }
    }

    /// Anthropic client and provider: the answer passes unchanged (translated on the side for
    /// accounting).
    pub fn passthrough(&self) -> bool {
        self.inbound.client == ClientApi::Anthropic
            && self.upstream.provider_wire == Some(Direction::OpenaiToAnthropic)
    }

    /// A local error in the client's API's shape.
    pub fn error_body(&self, e: &HttpError) -> Vec<u8> {
        match self.inbound.client {
            ClientApi::Anthropic => anthropic_to_openai::local_error_body(e),
            ClientApi::OpenAi | ClientApi::Responses => e.body(),
        }
    }

    /// Refuse the request with `e`: the reply, recorded as the request's outcome.
    pub fn reject(&mut self, e: HttpError) -> LocalReply {
        self.record.local_outcome = Some(e.outcome);
        self.record.status = e.status;
        let body = self.error_body(&e);
        let mut headers = vec![(names::CONTENT_TYPE, "application/json".to_string())];
        if let Some(id) = &self.record.request_id {
            headers.push((names::RESPONSE_REQUEST_ID, id.clone()));
        }
        headers.extend(self.limit_headers());
        let retry_after = self
            .holding
            .retry_after
            .or(e.retry_after_ms.map(std::time::Duration::from_millis));
        if let Some(d) = retry_after.filter(|_| e.status == 429) {
            headers.push((
                names::RETRY_AFTER,
                d.as_secs_f64().ceil().max(1.0).to_string(),
            ));
        }
        if self.holding.no_retry && e.status == 429 {
            headers.push((names::SHOULD_RETRY, "false".to_string()));
        }
        LocalReply {
            status: e.status,
            headers,
            body,
        }
    }

    /// The request's context is going away: whatever it still holds in the local limits is
    /// given back (`finish` settles it normally; this is the backstop should a stream end
    /// without it).
    pub fn abandon(&mut self, h: &impl Host) {
        if let (Some(held), Some(limiter)) = (self.holding.held.take(), &self.shared.limiter) {
            let _ = limiter.borrow_mut().settle(h, &held, 0, 0, h.now_ns());
        }
    }
}

/// Set a request header.
fn set_request_header(h: &mut impl Host, name: &str, value: Option<&str>) {
    h.set_header(Map::RequestHeaders, name, value);
}
