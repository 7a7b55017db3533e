//! Stage 2: the complete request body. Parse, route, count, look the cache up, reserve in the
//! limits, and make the upstream request (provider, path, credential, body, cluster).

use super::{set_request_header, ClientApi, Exchange, RequestHeaders, Step};
use crate::config::{AuthStyle, ResponsesApi, Wire, DEFAULT_MAX_TOKENS};
use crate::error::HttpError;
use crate::failover::Plan;
use crate::host::{Buffer, Host};
use crate::limits::Cost;
use crate::names;
use crate::request::{Endpoint, Request};
use crate::route::{self, Decision};
use crate::tokens;
use crate::translate::{
    self, anthropic_to_openai, openai_to_anthropic, responses_to_chat, Direction, Target,
};
use crate::wire;

/// The OpenAI chat path for a Messages or Responses path (`/x/v1/messages?beta=true` becomes
/// `/x/v1/chat/completions`).
pub fn openai_path_for(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let path = path.trim_end_matches('/');
    let prefix = path
        .strip_suffix(translate::MESSAGES_PATH)
        .or_else(|| path.strip_suffix(translate::RESPONSES_PATH))
        .unwrap_or(path);
    format!("{prefix}/v1/chat/completions")
}

/// The request as the provider will get it.
struct Outgoing<'a> {
    body: Option<Vec<u8>>,
    /// The failover cluster, when the request goes down a chain.
    chain: Option<&'a str>,
}

impl Exchange {
    /// Everything between a complete request body and forwarding it: `Continue` to forward
    /// now, `Pause` to wait (for the global rate limit service or the semantic cache's
    /// lookup), `Reply` for a cached answer. `resumed`: again after a semantic cache miss,
    /// when the request was already counted, limited and looked up.
    pub fn admit(
        &mut self,
        h: &mut impl Host,
        endpoint: Endpoint,
        raw: &[u8],
        resumed: bool,
    ) -> Result<Step, HttpError> {
        let cfg = self.config();
        // An Anthropic client's request is read (and counted, limited, routed) as the OpenAI
        // chat request it translates to; `raw` is what the client sent.
        let translated;
        let body = match self.inbound.client {
            ClientApi::Anthropic => {
                let model = anthropic_to_openai::model_of(raw)?;
                let target = Target {
                    model: &model,
                    default_max_tokens: DEFAULT_MAX_TOKENS,
                };
                translated = anthropic_to_openai::translate_request(raw, &target)?.body;
                &translated[..]
            }
            ClientApi::OpenAi | ClientApi::Responses => raw,
        };
        let req = Request::parse(endpoint, body)?;
        self.record.request_model = Some(req.model.to_string());
        self.record.stream = req.stream;

        let headers = std::mem::take(&mut self.inbound.headers);
        let decision = self.route(h, &cfg, &req, &headers)?;
        if !resumed {
            self.trace_request(&req, body, decision.route);
        }
        let consumer = self.record.consumer.as_deref().unwrap_or_default();
        if !cfg
            .access
            .allows(consumer, self.record.team.as_deref(), &req.model)
        {
            // Refused as a model that does not exist; counted under the route's label.
            return Err(HttpError::model_denied(&req.model));
        }
        if !resumed {
            self.count(h, &req, &decision.upstream_model);
            if !decision.provider.format.is_openai() {
                // Claude's and Gemini's tokenizers are not public: the gateway's count is an
                // estimate (the provider's usage is what is charged).
                if let Some(c) = self.record.counted_prompt.as_mut() {
                    c.estimated = true;
                }
            }
        }

        let prompt = self.record.counted_prompt.map(|c| c.tokens).unwrap_or(0);
        // The cache first: a hit is admitted as what it costs (one request, and no tokens
        // unless the route charges hits), not as a provider call.
        if let Some(rc) = decision.cache.filter(|_| !resumed) {
            match self.cache_lookup(h, rc, endpoint, body, &req, &decision, &headers) {
                Step::Continue => {}
                Step::Pause => {
                    self.inbound.headers = headers;
                    return Ok(Step::Pause);
                }
                reply => return Ok(reply),
            }
        }
        // Priced before anything is reserved: an unpriced model may be refused.
        let budget = self.global_budget_charge(h, &decision, &req.model, prompt)?;
        if let Some(l) = &cfg.limits {
            let tokens = l.reservation(prompt, req.max_output_tokens(), req.choices());
            let pico_usd = if l.budgets {
                self.budget_reservation(&cfg, l, &req.model, &decision, prompt, tokens)?
            } else {
                0
            };
            let cost = Cost {
                requests: 1,
                tokens,
                pico_usd,
            };
            self.limit_locally(h, Some(&req.model), cost)?;
        }
        let translate = self.inbound.client == ClientApi::Responses
            && (decision.failover.is_some()
                || decision.provider.responses == ResponsesApi::Translate);
        let out = if translate {
            self.responses_as_chat(h, raw, &req, &decision, &headers)?
        } else {
            self.upstream_request(h, endpoint, raw, body, &req, &decision, &headers)?
        };
        if let Some(new_body) = out.body {
            replace_request_body(h, raw.len(), &new_body);
        }
        self.forward(h, &decision, &headers, out.chain);
        // The global service is charged the prompt now and the rest when the request ends
        // (its protocol cannot give back an unused reservation).
        // The model descriptor is the request's label, never the client's own string.
        let waiting = self.limit_globally(h, Some(&decision.model_label), prompt.max(1), budget)?;
        Ok(if waiting {
            Step::Pause
        } else {
            self.await_credential(h)
        })
    }

    /// What a request reserves in its dollar budgets: its prompt and output cap (`tokens` in
    /// all) at the dearest price of any provider that may serve it. A model without a price is
    /// refused or let through uncharged, as `limits.budgets.unpriced` says, when a budget
    /// applies to the caller.
    fn budget_reservation(
        &mut self,
        cfg: &crate::config::Config,
        l: &crate::config::Limits,
        model: &str,
        decision: &Decision,
        prompt: u64,
        tokens: u64,
    ) -> Result<u64, HttpError> {
        let consumer = self.record.consumer.as_deref().unwrap_or_default();
        let scopes = l.scopes(consumer, self.record.team.as_deref(), Some(model));
        if scopes.iter().all(|s| s.spec.budget.is_unlimited()) {
            return Ok(0);
        }
        let output = tokens.saturating_sub(prompt);
        let one = [route::Hop {
            provider: decision.provider,
            model: decision.upstream_model.clone(),
            key: decision.key,
        }];
        let dests = match &decision.failover {
            Some((_, chain)) => &chain[..],
            None => &one[..],
        };
        let mut most = 0u64;
        for hop in dests {
            if let Some(p) = self.budget_price(cfg, hop.provider, &hop.model, model)? {
                most = most.max(p.max_cost(prompt, output));
            }
        }
        Ok(most)
    }

    /// The price a budget charges `model` at on `provider` (sent as `upstream`). Without one:
    /// refused, or `None` (through uncharged, and flagged) when `limits.budgets.unpriced` lets
    /// it.
    pub(super) fn budget_price(
        &mut self,
        cfg: &crate::config::Config,
        provider: &crate::config::Provider,
        upstream: &str,
        model: &str,
    ) -> Result<Option<crate::cost::Price>, HttpError> {
        let name = Some(provider.name.as_str());
        let price = cfg
            .prices
            .lookup(name, upstream)
            .or_else(|| cfg.prices.lookup(name, model));
        if price.is_some() {
            return Ok(price);
        }
        let allow = cfg
            .limits
            .as_ref()
            .is_some_and(|l| l.unpriced == crate::config::Unpriced::Allow);
        if !allow {
            return Err(HttpError::model_not_priced(model));
        }
        self.record.budget_unpriced = true;
        Ok(None)
    }

    /// A Responses request to a provider without the Responses API (or down a failover
    /// chain, whose attempts speak chat): it goes on as the chat request it translates to, and
    /// its answer is translated back (`outbound`).
    fn responses_as_chat<'d>(
        &mut self,
        h: &mut impl Host,
        raw: &[u8],
        req: &Request,
        decision: &'d Decision,
        headers: &RequestHeaders,
    ) -> Result<Outgoing<'d>, HttpError> {
        let target = Target {
            model: &req.model,
            default_max_tokens: DEFAULT_MAX_TOKENS,
        };
        let chat = responses_to_chat::translate_request(raw, &target)?;
        let chat_req = Request::parse(Endpoint::ChatCompletions, &chat.body)?;
        self.upstream.responses_translated = true;
        self.upstream.responses_echo = chat.echo.clone();
        let endpoint = Endpoint::ChatCompletions;
        let out = self.upstream_request(
            h, endpoint, &chat.body, &chat.body, &chat_req, decision, headers,
        )?;
        Ok(Outgoing {
            body: out.body.or_else(|| Some(chat.body.clone())),
            chain: out.chain,
        })
    }

    /// Route the request; routing again after a semantic miss makes the same (random) choices.
    fn route<'c>(
        &mut self,
        h: &mut impl Host,
        cfg: &'c crate::config::Config,
        req: &Request,
        headers: &RequestHeaders,
    ) -> Result<Decision<'c>, HttpError> {
        let mut replay = std::mem::take(&mut self.inbound.draws).into_iter();
        let mut drawn = Vec::new();
        let cooling = self.cooling(h);
        let decision = route::route(
            cfg,
            &req.model,
            &self.inbound.path,
            &|n| headers.get(n),
            &cooling,
            &mut |t| {
                let x = replay
                    .next()
                    .filter(|x| *x < t)
                    .unwrap_or_else(|| h.random(t));
                drawn.push(x);
                x
            },
        )?;
        self.inbound.draws = drawn;
        self.record.upstream_model = Some(decision.upstream_model.clone());
        self.record.model_label = Some(decision.model_label.clone());
        Ok(decision)
    }

    /// The body, path and headers the provider gets: a failover chain's request (adapted per
    /// attempt by the upstream filter), an Anthropic provider's, or an OpenAI one's.
    #[allow(clippy::too_many_arguments)]
    fn upstream_request<'d>(
        &mut self,
        h: &mut impl Host,
        endpoint: Endpoint,
        raw: &[u8],
        body: &[u8],
        req: &Request,
        decision: &'d Decision,
        headers: &RequestHeaders,
    ) -> Result<Outgoing<'d>, HttpError> {
        let cfg = self.config();
        let anthropic_client = self.inbound.client == ClientApi::Anthropic;
        // A translated answer needs the usage chunk (an Anthropic client's message_delta and a
        // Responses client's response.completed carry it): only an OpenAI client's is removed.
        self.upstream.strip_usage =
            req.stream && !req.include_usage && self.inbound.client == ClientApi::OpenAi;
        let client_path = match (self.inbound.client, endpoint) {
            (ClientApi::OpenAi, _) | (_, Endpoint::Responses) => self.inbound.path.clone(),
            _ => openai_path_for(&self.inbound.path),
        };
        // What the client sent when the provider does not take it as is.
        let as_sent = || anthropic_client.then(|| body.to_vec());
        let max = cfg
            .limits
            .as_ref()
            .map_or(DEFAULT_MAX_TOKENS, |l| l.default_max_tokens);
        let out = match &decision.failover {
            Some((cluster, chain)) => {
                // Each attempt is adapted to its provider by the upstream filter; the request
                // leaves here in OpenAI's format, naming the client's model.
                let mut plan =
                    Plan::new(chain, &client_path, endpoint.path_suffix(), req.stream, max);
                plan.first_event_check = decision.first_event_check;
                if let Some(t) = self.trace.as_mut() {
                    plan.trace = Some(t.ctx.encode());
                    t.chain_models = chain.iter().map(|hop| hop.model.clone()).collect();
                }
                h.set_property(names::prop::PLAN, &plan.encode());
                self.upstream.chain_len = chain.len();
                self.upstream.chain_keys = chain
                    .iter()
                    .map(|hop| (hop.provider.keys() > 1).then_some(hop.key))
                    .collect();
                // Exactly one attempt per provider of the chain.
                let retries = chain.len().saturating_sub(1).to_string();
                set_request_header(h, names::ENVOY_MAX_RETRIES, Some(&retries));
                // A streamed attempt's headers are held until its first event, so the per-try
                // timeout bounds the wait for it.
                let per_try = decision
                    .first_event_timeout_ms
                    .filter(|_| req.stream)
                    .map(|ms| ms.to_string());
                set_request_header(h, names::ENVOY_PER_TRY_TIMEOUT, per_try.as_deref());
                let body = req
                    .rewrite(None, self.upstream.strip_usage)
                    .or_else(as_sent);
                return Ok(Outgoing {
                    body,
                    chain: Some(cluster),
                });
            }
            None => {
                let wire = decision.provider.wire(&decision.upstream_model);
                let body = match wire {
                    Wire::Openai => {
                        if anthropic_client {
                            set_request_header(h, names::ANTHROPIC_VERSION, None);
                        }
                        req.rewrite(Some(&decision.upstream_model), self.upstream.strip_usage)
                            .or_else(as_sent)
                    }
                    Wire::Anthropic { vertex } => {
                        let b =
                            self.anthropic_body(h, endpoint, raw, body, decision, headers, max)?;
                        Some(if vertex {
                            set_request_header(h, names::ANTHROPIC_VERSION, None);
                            openai_to_anthropic::for_vertex(&b)?
                        } else {
                            b
                        })
                    }
                    Wire::Bedrock | Wire::Gemini { .. } => {
                        if anthropic_client {
                            set_request_header(h, names::ANTHROPIC_VERSION, None);
                        }
                        match wire.direction() {
                            Some(d) => {
                                Some(self.translated_body(endpoint, body, decision, d, max)?)
                            }
                            None => None,
                        }
                    }
                };
                Outgoing { body, chain: None }
            }
        };
        let path = decision
            .provider
            .path(endpoint.path_suffix(), &decision.upstream_model, req.stream)
            .or_else(|| (client_path != self.inbound.path).then(|| client_path.clone()));
        if let Some(path) = path {
            set_request_header(h, names::PATH, Some(&path));
        }
        Ok(out)
    }

    /// The Messages request an Anthropic provider gets, with its version header.
    #[allow(clippy::too_many_arguments)]
    fn anthropic_body(
        &mut self,
        h: &mut impl Host,
        endpoint: Endpoint,
        raw: &[u8],
        body: &[u8],
        decision: &Decision,
        headers: &RequestHeaders,
        default_max_tokens: u64,
    ) -> Result<Vec<u8>, HttpError> {
        if endpoint != Endpoint::ChatCompletions {
            return Err(HttpError::invalid_param(
                "model",
                "This model's provider serves chat completions only.",
            ));
        }
        let anthropic_client = self.inbound.client == ClientApi::Anthropic;
        if !(anthropic_client && headers.has(names::ANTHROPIC_VERSION)) {
            set_request_header(h, names::ANTHROPIC_VERSION, Some(translate::API_VERSION));
        }
        self.upstream.provider_wire = Some(Direction::OpenaiToAnthropic);
        if anthropic_client {
            // Anthropic to Anthropic: the client's own request, the model mapped; the answer
            // is read (translated on the side) for accounting only.
            wire::with_model(raw, &decision.upstream_model)
        } else {
            let target = Target {
                model: &decision.upstream_model,
                default_max_tokens,
            };
            Ok(openai_to_anthropic::translate_request(body, &target)?.body)
        }
    }

    /// The chat request `body` in the API of a provider that is reached through `direction`
    /// (Bedrock's Converse, Gemini's generateContent); its answer is translated back.
    fn translated_body(
        &mut self,
        endpoint: Endpoint,
        body: &[u8],
        decision: &Decision,
        direction: Direction,
        default_max_tokens: u64,
    ) -> Result<Vec<u8>, HttpError> {
        if endpoint != Endpoint::ChatCompletions {
            return Err(HttpError::invalid_param(
                "model",
                "This model's provider serves chat completions only.",
            ));
        }
        let target = Target {
            model: &decision.upstream_model,
            default_max_tokens,
        };
        self.upstream.provider_wire = Some(direction);
        Ok(direction.translate_request(body, &target)?.body)
    }

    /// Count the prompt for `model` into the record.
    pub(super) fn count(&mut self, h: &impl Host, req: &Request, model: &str) {
        let cfg = self.config();
        if let Some((enc, guessed)) = tokens::encoding_for_model(model, &cfg.tokenizer) {
            let t0 = h.now_us();
            let mut count = req.count_prompt_within(enc, cfg.tokenizer.max_exact_bytes);
            self.record.tokenize_us = Some(h.now_us().saturating_sub(t0));
            count.estimated |= guessed;
            self.record.counted_prompt = Some(count);
            self.upstream.encoding = Some(enc);
        }
    }

    /// Point the request at the chosen provider: its credential instead of the client's, and
    /// the cluster header the route reads. With a failover `chain` cluster, the request goes
    /// there and the upstream filter sets each attempt's credential.
    pub(super) fn forward(
        &mut self,
        h: &mut impl Host,
        decision: &Decision,
        headers: &RequestHeaders,
        chain: Option<&str>,
    ) {
        let cfg = self.config();
        self.record.provider = Some(decision.provider.name.clone());
        if chain.is_none() {
            self.record.provider_key = (decision.provider.keys() > 1).then_some(decision.key);
            let c = decision.provider.cooldown;
            self.upstream.cooldown =
                (!c.max.is_zero()).then(|| (decision.provider.name.clone(), decision.key, c));
        }
        // The client's credentials are already gone (`on_request_headers`).
        // The response must be readable as it passes: ask the provider not to compress it.
        if headers.has(names::ACCEPT_ENCODING) {
            set_request_header(h, names::ACCEPT_ENCODING, None);
        }
        if chain.is_none() {
            if decision.provider.auth == AuthStyle::GcpMetadata {
                // Set once the VM has a token (`await_credential`).
                self.upstream.token_provider = Some(decision.provider.name.clone());
            } else if let Some((name, value)) = decision.provider.credential_header(decision.key) {
                set_request_header(h, name, Some(&value));
            }
        }
        let cluster = chain.unwrap_or(&decision.provider.cluster);
        set_request_header(h, &cfg.cluster_header, Some(cluster));
        self.trace_upstream(h, chain.is_some());
    }
}

fn replace_request_body(h: &mut impl Host, old_len: usize, new_body: &[u8]) {
    h.set_body(Buffer::RequestBody, old_len, new_body);
    let len = new_body.len().to_string();
    set_request_header(h, names::CONTENT_LENGTH, Some(&len));
}
