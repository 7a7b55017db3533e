//! The filter's upstream role: one context per attempt of a failover chain, run by Envoy as an
//! upstream HTTP filter of the composite cluster (see `crate::failover`).
//!
//! It reads the chain the gateway filter put in the request's filter state, finds the provider
//! this attempt reaches from Envoy's attempt number, and adapts the request to it: path,
//! credential (read here from the VM environment, by the variable name in the plan), version
//! header, model name and body format. An Anthropic provider's answer is translated back to
//! OpenAI's format here, so the gateway filter sees the same API whichever provider answered.
//! Every attempt writes its outcome to the journal the gateway filter reads at the end.
//!
//! Header changes made by one attempt persist into the next (Envoy reuses the request header
//! map), so every attempt sets or removes every provider-specific header itself.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

use super::host;
use crate::anthropic::{self, Translation};
use crate::config::Format;
use crate::failover::{Attempt, Outcome, Plan};
use crate::names;

/// Headers one provider or another reads: reset on every attempt (every credential header a
/// client could send, though the gateway filter removed those already, and the version).
fn provider_headers() -> impl Iterator<Item = &'static str> {
    names::CLIENT_CREDENTIAL_HEADERS
        .into_iter()
        .chain([names::ANTHROPIC_VERSION])
}

/// Envoy's header telling the upstream how long this attempt may take.
const EXPECTED_TIMEOUT: &str = "x-envoy-expected-rq-timeout-ms";

#[derive(Default)]
pub struct AttemptFilter {
    /// Set once the request is known to belong to a chain.
    active: Option<(u64, Plan, Attempt)>,
    started_ms: u64,
    expected_ms: Option<u64>,
    answered: bool,
    translation: Option<Translation>,
}

fn record(n: u64, provider: &str, outcome: &Outcome) {
    let mut journal = host::journal();
    journal.record(n, provider, outcome);
    host::set_property(names::prop::JOURNAL, &journal.encode());
}

impl Context for AttemptFilter {
    fn on_done(&mut self) -> bool {
        if let (Some((n, _, attempt)), false) = (self.active.as_ref(), self.answered) {
            let failed = hostcalls::get_property(names::host::TRANSPORT_FAILURE.to_vec())
                .ok()
                .flatten()
                .is_some_and(|r| !r.is_empty());
            let waited = host::now_ms().saturating_sub(self.started_ms);
            let outcome = Outcome::without_answer(failed, waited, self.expected_ms);
            record(*n, &attempt.provider, &outcome);
        }
        true
    }
}

impl HttpContext for AttemptFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(plan) = hostcalls::get_property(vec![names::prop::PLAN])
            .ok()
            .flatten()
            .and_then(|b| Plan::decode(&b))
        else {
            // Not a request the gateway filter sent down a chain: leave it alone.
            return Action::Continue;
        };
        let n = host::property_u64(names::host::ATTEMPT.to_vec()).unwrap_or(1);
        let Some(attempt) = plan.attempt(n).cloned() else {
            log::warn!(
                "llm-gateway: attempt {n} but the chain has {} providers; check that the composite cluster lists them in order",
                plan.attempts.len()
            );
            return Action::Continue;
        };
        self.started_ms = host::now_ms();
        let h = MapType::HttpRequestHeaders;
        self.expected_ms =
            host::header(h, EXPECTED_TIMEOUT).and_then(|v| v.trim().parse::<u64>().ok());
        for name in provider_headers() {
            host::set_header(h, name, None);
        }
        host::set_header(h, names::PATH, Some(&attempt.path));
        let key = attempt
            .key_env
            .as_deref()
            .and_then(|v| std::env::var(v).ok());
        if attempt.key_env.is_some() && key.is_none() {
            log::error!(
                "llm-gateway: the upstream filter cannot read {:?} for provider {}: list it in this filter's vm_config host_env_keys",
                attempt.key_env,
                attempt.provider
            );
        }
        if let Some((name, value)) = key.and_then(|k| attempt.credential_header(&k)) {
            host::set_header(h, name, Some(&value));
        }
        if attempt.format == Format::Anthropic {
            host::set_header(h, names::ANTHROPIC_VERSION, Some(anthropic::API_VERSION));
        }
        // The body is rewritten below; its length is not known yet.
        host::set_header(h, names::CONTENT_LENGTH, None);
        self.active = Some((n, plan, attempt));
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some((_, plan, attempt)) = self.active.as_ref() else {
            return Action::Continue;
        };
        if !end_of_stream {
            return Action::Pause;
        }
        let body = host::body(BufferType::HttpRequestBody, body_size);
        match attempt.body(&body, plan.default_max_tokens) {
            Ok(b) => host::set_body(BufferType::HttpRequestBody, body_size, &b),
            Err(e) => log::warn!(
                "llm-gateway: could not adapt the request for {}: {}",
                attempt.provider,
                e.message
            ),
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some((n, _, attempt)) = self.active.as_ref() else {
            return Action::Continue;
        };
        let h = MapType::HttpResponseHeaders;
        let status = host::header(h, names::STATUS)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        self.answered = true;
        record(*n, &attempt.provider, &Outcome::Status(status));
        if attempt.format == Format::Anthropic && host::header(h, names::CONTENT_ENCODING).is_none()
        {
            host::set_header(h, names::CONTENT_LENGTH, None);
            let ct = host::header(h, names::CONTENT_TYPE).unwrap_or_default();
            self.translation = Some(Translation::new(&ct, status, host::now_ms() / 1000));
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(t) = self.translation.as_mut() else {
            return Action::Continue;
        };
        if t.buffers() && !end_of_stream {
            return Action::Pause;
        }
        let chunk = host::body(BufferType::HttpResponseBody, body_size);
        let out = t.chunk(&chunk);
        host::set_body(BufferType::HttpResponseBody, body_size, &out);
        Action::Continue
    }
}
