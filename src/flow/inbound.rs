//! Stage 1: the request headers (and, without body routing, the body as it passes).

use super::{set_request_header, ClientApi, Exchange, RequestHeaders, Step};
use crate::error::HttpError;
use crate::host::{Buffer, Host};
use crate::limits::Cost;
use crate::models;
use crate::names;
use crate::request::{Endpoint, Request};
use crate::route;
use crate::translate;

/// Whether a request is an Anthropic client's call to the Messages API.
pub fn is_messages(method: &str, path: &str) -> bool {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    method == "POST"
        && path
            .trim_end_matches('/')
            .ends_with(translate::MESSAGES_PATH)
}

impl Exchange {
    /// The request headers arrived.
    pub fn on_request_headers(&mut self, h: &mut impl Host, end_of_stream: bool) -> Step {
        self.inbound.start_ms = h.now_ms();
        let headers = RequestHeaders(h.request_headers());
        let cfg = self.config();
        // Whatever the request is, a client never chooses the cluster or which signer an
        // attempt gets, and its credentials (read from the copy above) go nowhere: a provider
        // gets only its own.
        let client_only = names::CLIENT_CREDENTIAL_HEADERS
            .iter()
            .copied()
            .chain(cfg.consumer_header.as_deref())
            .chain([cfg.cluster_header.as_str(), names::ATTEMPT_PROVIDER]);
        for name in client_only.filter(|n| headers.has(n)) {
            set_request_header(h, name, None);
        }
        let method = headers.get(names::METHOD).unwrap_or_default();
        self.inbound.path = headers.get(names::PATH).unwrap_or_default();
        if let Some(q) = models::Query::from_request(&method, &self.inbound.path) {
            return self.answer_models(&q, &headers);
        }
        let headers = match self.side_headers(h, &method, headers, end_of_stream) {
            Ok(step) => return step,
            Err(headers) => headers,
        };
        let anthropic = is_messages(&method, &self.inbound.path);
        let endpoint = if anthropic {
            self.inbound.client = ClientApi::Anthropic;
            Endpoint::ChatCompletions
        } else {
            let Some(endpoint) = Endpoint::from_request(&method, &self.inbound.path) else {
                return Step::Continue;
            };
            endpoint
        };
        if endpoint == Endpoint::Responses {
            self.inbound.client = ClientApi::Responses;
        }
        self.inbound.endpoint = Some(endpoint);
        self.record.request_id = headers
            .get(names::REQUEST_ID)
            .map(|id| crate::meter::bounded_id(&id));
        self.record.endpoint = Some(if anthropic {
            "messages"
        } else {
            endpoint.as_str()
        });
        self.trace_start(h, &headers);
        match self.check_headers(&headers, end_of_stream) {
            Err(e) => Step::Reply(self.reject(e)),
            Ok(()) if !cfg.body_routing => self.route_on_headers(h, &headers),
            Ok(()) => {
                // Kept for routing; the cluster header the client may have sent is not among them.
                self.inbound.headers = RequestHeaders(
                    headers
                        .0
                        .into_iter()
                        .filter(|(k, _)| *k != cfg.cluster_header)
                        .collect(),
                );
                Step::Pause
            }
        }
    }

    /// Who is calling and what the headers say of the body: strangers and oversized bodies
    /// are refused before the body arrives.
    fn check_headers(
        &mut self,
        headers: &RequestHeaders,
        end_of_stream: bool,
    ) -> Result<(), HttpError> {
        let cfg = self.config();
        let who = route::identify(&cfg, &|name| headers.get(name))?;
        self.record.team = cfg.team_of(&who.name).map(str::to_string);
        self.record.consumer = Some(who.name);
        if end_of_stream {
            return Err(HttpError::invalid_json("the body is empty"));
        }
        let declared = headers
            .get(names::CONTENT_LENGTH)
            .and_then(|v| v.trim().parse::<usize>().ok());
        if declared.is_some_and(|n| n > cfg.max_request_body_bytes) {
            return Err(HttpError::too_large(cfg.max_request_body_bytes));
        }
        if !cfg.body_routing && self.inbound.client == ClientApi::Anthropic {
            return Err(HttpError::invalid_param(
                "model",
                "This gateway serves the Messages API only with body_routing on.",
            ));
        }
        Ok(())
    }

    /// A piece of the request body arrived.
    pub fn on_request_body(&mut self, h: &mut impl Host, size: usize, end_of_stream: bool) -> Step {
        if let Some(side) = self.inbound.side {
            return self.side_body(h, side, size, end_of_stream);
        }
        let Some(endpoint) = self.inbound.endpoint else {
            return Step::Continue;
        };
        let cfg = self.config();
        if !cfg.body_routing {
            self.observe_body(h, size, end_of_stream);
            // Held while the global rate limit service has not answered.
            return if self.holding.global_call.is_some() {
                Step::Pause
            } else {
                Step::Continue
            };
        }
        if self.record.local_outcome.is_some() {
            return Step::Pause;
        }
        if size > cfg.max_request_body_bytes {
            return Step::Reply(self.reject(HttpError::too_large(cfg.max_request_body_bytes)));
        }
        if !end_of_stream {
            return Step::Pause;
        }
        let t0 = h.now_us();
        let body = h.body(Buffer::RequestBody, size);
        let result = self.admit(h, endpoint, &body, false);
        self.record.gateway_us = Some(h.now_us().saturating_sub(t0));
        match result {
            Ok(step) => step,
            Err(e) => Step::Reply(self.reject(e)),
        }
    }

    /// `GET /v1/models` and `/v1/models/{id}`: the caller is identified (401 as for any
    /// request), then answered from the routes, in Anthropic's shape when it sends
    /// `anthropic-version`. Nothing goes upstream.
    fn answer_models(&mut self, q: &models::Query, headers: &RequestHeaders) -> Step {
        if headers.has(names::ANTHROPIC_VERSION) {
            self.inbound.client = ClientApi::Anthropic;
        }
        let cfg = self.config();
        let get = |name: &str| headers.get(name);
        let anthropic = self.inbound.client == ClientApi::Anthropic;
        let answer = route::identify(&cfg, &get).and_then(|who| {
            let team = cfg.team_of(&who.name);
            let allowed = |m: &str| cfg.access.allows(&who.name, team, m);
            models::answer(&cfg, q, anthropic, &get, &allowed)
        });
        match answer {
            Ok(body) => Step::Reply(super::LocalReply {
                status: 200,
                headers: vec![(names::CONTENT_TYPE, "application/json".to_string())],
                body,
            }),
            Err(e) => Step::Reply(self.reject(e)),
        }
    }

    /// Without body routing: route on the headers now and let the request go; the body is
    /// read as it passes (see `observe_body`).
    fn route_on_headers(&mut self, h: &mut impl Host, headers: &RequestHeaders) -> Step {
        let cfg = self.config();
        // Config validation guarantees no rule depends on the model here.
        let cooling = self.cooling(h);
        let decision = match route::route(
            &cfg,
            "",
            &self.inbound.path,
            &|n| headers.get(n),
            &cooling,
            &mut |t| h.random(t),
        ) {
            Ok(d) => d,
            Err(e) => return Step::Reply(self.reject(e)),
        };
        self.record.model_label = Some(decision.model_label.clone());
        // The prompt is not known yet: admit on one request and one token left, and charge
        // the reservation once the body has passed (`observe_body`).
        let one = Cost {
            requests: 1,
            tokens: 1,
            pico_usd: 0,
        };
        if let Err(e) = self.limit_locally(h, None, one) {
            return Step::Reply(self.reject(e));
        }
        self.forward(h, &decision, headers, None);
        self.outbound.body_copy = Some(Vec::new());
        match self.limit_globally(h, None, 1, None) {
            Ok(true) => Step::Pause,
            Ok(false) => Step::Continue,
            Err(e) => Step::Reply(self.reject(e)),
        }
    }

    /// Without body routing: keep a bounded copy of the body as it passes; at its end, learn
    /// the model and count the prompt. A body the filter cannot read is the provider's to refuse.
    fn observe_body(&mut self, h: &mut impl Host, size: usize, end_of_stream: bool) {
        let max = self.shared.config.max_request_body_bytes;
        let Some(copy) = self.outbound.body_copy.as_mut() else {
            return;
        };
        if copy.len().saturating_add(size) > max {
            self.outbound.body_copy = None;
            return;
        }
        copy.extend_from_slice(&h.body(Buffer::RequestBody, size));
        if !end_of_stream {
            return;
        }
        let (Some(body), Some(endpoint)) = (self.outbound.body_copy.take(), self.inbound.endpoint)
        else {
            return;
        };
        let Ok(req) = Request::parse(endpoint, &body) else {
            return;
        };
        self.record.request_model = Some(req.model.to_string());
        self.record.upstream_model = Some(req.model.to_string());
        self.record.stream = req.stream;
        self.count(h, &req, &req.model);
        let prompt = self.record.counted_prompt.map(|c| c.tokens).unwrap_or(0);
        let cfg = self.config();
        if let (Some(l), Some(limiter), Some(held)) = (
            cfg.limits.as_ref(),
            self.shared.limiter.as_ref(),
            self.holding.held.as_mut(),
        ) {
            let more = l
                .reservation(prompt, req.max_output_tokens(), req.choices())
                .saturating_sub(held.reserved_tokens);
            let _ = limiter.borrow_mut().add_tokens(&*h, held, more, h.now_ns());
        }
    }
}
