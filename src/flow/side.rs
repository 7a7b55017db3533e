//! Requests beside the model calls, which the gateway answers or forwards without metering:
//! the Responses API's stored responses (`GET`/`DELETE /v1/responses/{id}`, its
//! `input_items`, `cancel`), its input-token count (answered here, from the gateway's own
//! tokenizer, for the models it can count exactly), and Anthropic's `count_tokens` (forwarded to
//! an Anthropic provider: Claude's tokenizer is not public). Each is identified like any
//! request, routed by the routes, and reaches the provider with the provider's credential only.

use super::{set_request_header, ClientApi, Exchange, LocalReply, RequestHeaders, Step};
use crate::config::{Format, ResponsesApi};
use crate::cooldown::Cooling;
use crate::error::HttpError;
use crate::host::{Buffer, Host};
use crate::names;
use crate::request::{responses_path, Endpoint, Request, ResponsesPath};
use crate::route::{self, Decision};
use crate::tokens;
use crate::translate::{self, anthropic_to_openai};
use crate::wire;

/// A side request waiting for its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `POST /v1/responses/input_tokens`: counted here.
    InputTokens,
    /// `POST /v1/messages/count_tokens`: forwarded to the Anthropic provider of the model.
    CountTokens,
}

/// Whether a request is Anthropic's `count_tokens`.
fn is_count_tokens(method: &str, path: &str) -> bool {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    method == "POST"
        && path
            .trim_end_matches('/')
            .strip_suffix("/count_tokens")
            .is_some_and(|p| p.ends_with(translate::MESSAGES_PATH))
}

impl Exchange {
    /// The headers of a side request: the step, or the headers back when it is not one.
    pub(super) fn side_headers(
        &mut self,
        h: &mut impl Host,
        method: &str,
        headers: RequestHeaders,
        end_of_stream: bool,
    ) -> Result<Step, RequestHeaders> {
        let side = if is_count_tokens(method, &self.inbound.path) {
            self.inbound.client = ClientApi::Anthropic;
            Side::CountTokens
        } else {
            match responses_path(method, &self.inbound.path) {
                None | Some(ResponsesPath::Create) => return Err(headers),
                Some(ResponsesPath::InputTokens) => Side::InputTokens,
                Some(stored) => return Ok(self.stored_response(h, &stored, &headers)),
            }
        };
        let cfg = self.config();
        let refusal = match route::identify(&cfg, &|n| headers.get(n)) {
            Err(e) => Some(e),
            Ok(_) if !cfg.body_routing => Some(HttpError::invalid_param(
                "model",
                "This gateway counts tokens only with body_routing on.",
            )),
            Ok(_) if end_of_stream => Some(HttpError::invalid_json("the body is empty")),
            Ok(_) => None,
        };
        if let Some(e) = refusal {
            return Ok(Step::Reply(self.reject(e)));
        }
        self.inbound.side = Some(side);
        self.inbound.headers = RequestHeaders(
            headers
                .0
                .into_iter()
                .filter(|(k, _)| *k != cfg.cluster_header)
                .collect(),
        );
        Ok(Step::Pause)
    }

    /// A stored response's endpoint: routed without a model (header and path rules, then the
    /// default target) to a provider that stores responses.
    fn stored_response(
        &mut self,
        h: &mut impl Host,
        stored: &ResponsesPath,
        headers: &RequestHeaders,
    ) -> Step {
        let cfg = self.config();
        let get = |n: &str| headers.get(n);
        let decision = route::identify(&cfg, &get).and_then(|_| {
            let cooling = self.cooling(h);
            route::route(&cfg, "", &self.inbound.path, &get, &cooling, &mut |t| {
                h.random(t)
            })
        });
        let decision = match decision {
            Ok(d) if stores_responses(&d) => d,
            Ok(_) => {
                return Step::Reply(self.reject(HttpError::invalid_param(
                    "response_id",
                    "Stored responses are served only by a provider with the Responses API; route this path to one.",
                )))
            }
            Err(e) => return Step::Reply(self.reject(e)),
        };
        if decision.provider.format == Format::Azure {
            if let Some(path) = azure_path(stored, &self.inbound.path) {
                set_request_header(h, names::PATH, Some(&path));
            }
        }
        self.forward(h, &decision, headers, None);
        Step::Continue
    }

    /// The body of a side request arrived (or a piece of it).
    pub(super) fn side_body(
        &mut self,
        h: &mut impl Host,
        side: Side,
        size: usize,
        end: bool,
    ) -> Step {
        let cfg = self.config();
        if self.record.local_outcome.is_some() {
            return Step::Pause;
        }
        if size > cfg.max_request_body_bytes {
            return Step::Reply(self.reject(HttpError::too_large(cfg.max_request_body_bytes)));
        }
        if !end {
            return Step::Pause;
        }
        let body = h.body(Buffer::RequestBody, size);
        let done = match side {
            Side::InputTokens => self.count_input_tokens(h, &body).map(Step::Reply),
            Side::CountTokens => self.forward_count_tokens(h, &body).map(|()| Step::Continue),
        };
        done.unwrap_or_else(|e| Step::Reply(self.reject(e)))
    }

    /// `POST /v1/responses/input_tokens`, answered as OpenAI does, for a model the gateway can
    /// count exactly (an OpenAI encoding it knows, not a guess) and an input it counts exactly
    /// (`Request::exact_input_tokens_answer`).
    fn count_input_tokens(
        &mut self,
        h: &mut impl Host,
        body: &[u8],
    ) -> Result<LocalReply, HttpError> {
        let cfg = self.config();
        let req = Request::parse(Endpoint::Responses, body)?;
        let headers = std::mem::take(&mut self.inbound.headers);
        // Counting sends nothing: no provider's cool-down matters.
        let decision = route::route(
            &cfg,
            &req.model,
            &self.inbound.path,
            &|n| headers.get(n),
            &Cooling::default(),
            &mut |t| h.random(t),
        )?;
        let exact = tokens::encoding_for_model(&decision.upstream_model, &cfg.tokenizer)
            .filter(|(_, guessed)| !guessed);
        let Some((enc, _)) = exact else {
            return Err(HttpError::invalid_param(
                "model",
                "The gateway cannot count this model's tokens exactly.",
            ));
        };
        let answer = req.exact_input_tokens_answer(enc, cfg.tokenizer.max_exact_bytes)?;
        Ok(LocalReply {
            status: 200,
            headers: vec![(names::CONTENT_TYPE, "application/json".to_string())],
            body: answer,
        })
    }

    /// `POST /v1/messages/count_tokens`: to the model's Anthropic provider, model mapped.
    fn forward_count_tokens(&mut self, h: &mut impl Host, body: &[u8]) -> Result<(), HttpError> {
        let cfg = self.config();
        let model = anthropic_to_openai::model_of(body)?;
        let headers = std::mem::take(&mut self.inbound.headers);
        let cooling = self.cooling(h);
        let decision = route::route(
            &cfg,
            &model,
            &self.inbound.path,
            &|n| headers.get(n),
            &cooling,
            &mut |t| h.random(t),
        )?;
        if decision.failover.is_some() || decision.provider.format != Format::Anthropic {
            return Err(HttpError::invalid_param(
                "model",
                "Token counting for this model needs an Anthropic provider.",
            ));
        }
        let new_body = wire::with_model(body, &decision.upstream_model)?;
        h.set_body(Buffer::RequestBody, body.len(), &new_body);
        let len = new_body.len().to_string();
        set_request_header(h, names::CONTENT_LENGTH, Some(&len));
        let path = format!("{}/count_tokens", translate::MESSAGES_PATH);
        set_request_header(h, names::PATH, Some(&path));
        if !headers.has(names::ANTHROPIC_VERSION) {
            set_request_header(h, names::ANTHROPIC_VERSION, Some(translate::API_VERSION));
        }
        self.forward(h, &decision, &headers, None);
        Ok(())
    }
}

/// A stored response's path on Azure's v1 surface, the client's query kept.
fn azure_path(stored: &ResponsesPath, client_path: &str) -> Option<String> {
    let query = client_path
        .find('?')
        .map_or("", |i| client_path.get(i..).unwrap_or(""));
    let tail = match stored {
        ResponsesPath::Retrieve(id) | ResponsesPath::Delete(id) => id.clone(),
        ResponsesPath::InputItems(id) => format!("{id}/input_items"),
        ResponsesPath::Cancel(id) => format!("{id}/cancel"),
        ResponsesPath::Create | ResponsesPath::InputTokens => return None,
    };
    Some(format!("/openai/v1/responses/{tail}{query}"))
}

/// Whether the routed provider stores Responses (OpenAI's API, served natively, no chain).
fn stores_responses(d: &Decision) -> bool {
    d.failover.is_none()
        && d.provider.format != Format::Anthropic
        && d.provider.responses == ResponsesApi::Native
}
