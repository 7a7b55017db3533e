//! One attempt of a failover chain, run by Envoy as an upstream HTTP filter of the composite
//! cluster (see `crate::failover`).
//!
//! It reads the chain the gateway filter put in the request's filter state, finds the provider
//! this attempt reaches from Envoy's attempt number, and adapts the request to it: path,
//! credential (read here from the VM environment, by the variable name in the plan), version
//! header, model name and body format. An answer that is not in OpenAI's format (Anthropic,
//! Bedrock, Gemini) is translated back to it here, so the gateway filter sees the same API
//! whichever provider answered.
//! Every attempt writes its outcome to the journal the gateway filter reads at the end.
//!
//! Header changes made by one attempt persist into the next (Envoy reuses the request header
//! map), so every attempt sets or removes every provider-specific header itself.

use std::time::Duration;

use super::outbound::{cool_after, journal};
use super::Step;
use crate::config::{AuthStyle, Cooldown, Wire};
use crate::failover::first_event::{FirstEvent, Verdict};
use crate::failover::{Attempt, Outcome, Plan};
use crate::gcp_token;
use crate::host::{self, Buffer, Host, Map};
use crate::names;
use crate::translate::{self, ResponseContext, ResponseTranslator};

/// Headers one provider or another reads: reset on every attempt (every credential header a
/// client could send, though the gateway filter removed those already, the version, and what
/// Envoy's SigV4 signer left on a Bedrock attempt: its date and body hash; its session token
/// is among the credential headers).
fn provider_headers() -> impl Iterator<Item = &'static str> {
    names::CLIENT_CREDENTIAL_HEADERS.into_iter().chain([
        names::ANTHROPIC_VERSION,
        names::X_AMZ_DATE,
        names::X_AMZ_CONTENT_SHA256,
    ])
}

/// Envoy's header telling the upstream how long this attempt may take.
const EXPECTED_TIMEOUT: &str = "x-envoy-expected-rq-timeout-ms";

/// The attempt's state.
#[derive(Default)]
pub struct AttemptFilter {
    /// Set once the request is known to belong to a chain: (attempt number, plan, provider).
    active: Option<(u64, Plan, Attempt)>,
    started_ms: u64,
    expected_ms: Option<u64>,
    answered: bool,
    translation: Option<ResponseTranslator>,
    /// The answer held until its first event (every attempt but the last; see
    /// [`crate::failover::first_event`]).
    first_event: Option<FirstEvent>,
    /// The request is traced: when the attempt started (µs), for its span.
    traced_since_us: Option<u64>,
}

fn record(h: &mut impl Host, n: u64, provider: &str, outcome: &Outcome) {
    let mut journal = journal(h);
    journal.record(n, provider, outcome);
    h.set_property(names::prop::JOURNAL, &journal.encode());
}

impl AttemptFilter {
    /// The attempt's request headers: adapt them to its provider.
    pub fn on_request_headers(&mut self, h: &mut impl Host) -> Step {
        let Some(plan) = h
            .property(&[names::prop::PLAN])
            .and_then(|b| Plan::decode(&b))
        else {
            // Not a request the gateway filter sent down a chain: leave it alone.
            return Step::Continue;
        };
        let n = host::property_u64(h, &names::host::ATTEMPT).unwrap_or(1);
        let Some(attempt) = plan.attempt(n).cloned() else {
            log::warn!(
                "llm-gateway: attempt {n} but the chain has {} providers; check that the composite cluster lists them in order",
                plan.attempts.len()
            );
            return Step::Continue;
        };
        self.started_ms = h.now_ms();
        let r = Map::RequestHeaders;
        self.expected_ms = h
            .header(r, EXPECTED_TIMEOUT)
            .and_then(|v| v.trim().parse::<u64>().ok());
        for name in provider_headers() {
            h.set_header(r, name, None);
        }
        // The signer rewrites the host of a Bedrock attempt: every attempt starts from the
        // request's own.
        match h.property(&[names::prop::AUTHORITY]) {
            Some(a) => {
                let a = String::from_utf8_lossy(&a).into_owned();
                h.set_header(r, names::AUTHORITY, Some(&a));
            }
            None => {
                let a = h.header(r, names::AUTHORITY).unwrap_or_default();
                h.set_property(names::prop::AUTHORITY, &a);
            }
        }
        h.set_header(r, names::PATH, Some(&attempt.path));
        h.set_header(r, names::ATTEMPT_PROVIDER, Some(&attempt.provider));
        let key = attempt.key_env.as_deref().and_then(|v| h.env(v));
        if attempt.key_env.is_some() && key.is_none() {
            log::error!(
                "llm-gateway: the upstream filter cannot read {:?} for provider {}: list it in this filter's vm_config host_env_keys",
                attempt.key_env,
                attempt.provider
            );
        }
        if let Some((name, value)) = key.and_then(|k| attempt.credential_header(&k)) {
            h.set_header(r, name, Some(&value));
        }
        if attempt.auth == AuthStyle::GcpMetadata {
            // The token the gateway VMs keep fresh in shared data; without one (the first
            // moments after start) the attempt fails and the chain moves on.
            let now = h.now_ms();
            if let Some(t) = gcp_token::read(h, &attempt.provider).filter(|t| t.usable(now)) {
                h.set_header(
                    r,
                    names::AUTHORIZATION,
                    Some(&format!("Bearer {}", t.value)),
                );
            }
        }
        if attempt.wire() == (Wire::Anthropic { vertex: false }) {
            h.set_header(r, names::ANTHROPIC_VERSION, Some(translate::API_VERSION));
        }
        // The body is rewritten below; its length is not known yet.
        h.set_header(r, names::CONTENT_LENGTH, None);
        if super::trace::attempt_headers(h, n, plan.trace.as_deref()) {
            self.traced_since_us = Some(h.now_us());
        }
        self.active = Some((n, plan, attempt));
        Step::Continue
    }

    /// The attempt's request body: in its provider's format once complete.
    pub fn on_request_body(&mut self, h: &mut impl Host, size: usize, end_of_stream: bool) -> Step {
        let Some((_, plan, attempt)) = self.active.as_ref() else {
            return Step::Continue;
        };
        if !end_of_stream {
            return Step::Pause;
        }
        let body = h.body(Buffer::RequestBody, size);
        match attempt.body(&body, plan.default_max_tokens) {
            Ok(b) => h.set_body(Buffer::RequestBody, size, &b),
            Err(e) => log::warn!(
                "llm-gateway: could not adapt the request for {}: {}",
                attempt.provider,
                e.message
            ),
        }
        Step::Continue
    }

    /// The provider answered: journal it, translate an answer that is not in OpenAI's format,
    /// and hold a `200` that a later provider could replace until its first event.
    pub fn on_response_headers(&mut self, h: &mut impl Host, end_of_stream: bool) -> Step {
        let Some((n, plan, attempt)) = self.active.as_ref() else {
            return Step::Continue;
        };
        let held =
            plan.first_event_check && usize::try_from(*n).is_ok_and(|n| n < plan.attempts.len());
        let (n, provider, direction) = (*n, attempt.provider.clone(), attempt.wire().direction());
        let attempt_model = attempt.model.clone();
        let (key, cooldown) = (attempt.key, attempt.cooldown);
        let r = Map::ResponseHeaders;
        let provider_status = h
            .header(r, names::STATUS)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        // Envoy's retry policy reads the status as it leaves here.
        let status = direction.map_or(provider_status, |d| d.client_status(provider_status));
        if status != provider_status {
            h.set_header(r, names::STATUS, Some(&status.to_string()));
        }
        self.answered = true;
        record(h, n, &provider, &Outcome::Status(status));
        if let Some(start) = self.traced_since_us {
            super::trace::attempt_ran(h, n, start);
        }
        if let Some((default_ms, max_ms)) = cooldown {
            let c = Cooldown {
                default: Duration::from_millis(default_ms),
                max: Duration::from_millis(max_ms),
            };
            cool_after(h, &provider, key, status, c);
        }
        let direction = direction.filter(|_| h.header(r, names::CONTENT_ENCODING).is_none());
        if let Some(direction) = direction {
            let ct = h.header(r, names::CONTENT_TYPE).unwrap_or_default();
            let context = ResponseContext {
                status,
                created: h.now_ms() / 1000,
                counted_input: 0,
                nonce: h.now_ns(),
                model: attempt_model.clone(),
            };
            let t = ResponseTranslator::new(direction, &ct, context);
            for (name, value) in t.headers() {
                h.set_header(r, name, value.as_deref());
            }
            self.translation = Some(t);
        }
        if status == 200 && held && !end_of_stream {
            let emitted = self
                .translation
                .as_ref()
                .and_then(ResponseTranslator::output_content_type)
                .map(str::to_string)
                .or_else(|| h.header(r, names::CONTENT_TYPE))
                .unwrap_or_default();
            self.first_event = Some(FirstEvent::new(&emitted));
            return Step::Pause;
        }
        Step::Continue
    }

    /// A piece of a held answer: keep holding, let it through, or fail the attempt over (as a
    /// 503, which the route's retry policy retries; nothing of it reaches the client).
    fn hold(&mut self, h: &mut impl Host, size: usize, end_of_stream: bool) -> Step {
        let chunk = h.body(Buffer::ResponseBody, size);
        // A stream is judged as it leaves here, a JSON answer as the provider sent it.
        let piece = match self.translation.as_mut() {
            Some(t) if !t.buffers() => t.chunk(&chunk),
            _ => chunk,
        };
        let Some(check) = self.first_event.as_mut() else {
            return Step::Continue;
        };
        let verdict = check.feed(&piece, end_of_stream);
        if verdict == Verdict::Wait {
            h.set_body(Buffer::ResponseBody, size, &[]);
            return Step::Pause;
        }
        let held = check.take();
        self.first_event = None;
        if verdict == Verdict::Fail {
            self.record_outcome(h, &Outcome::InBandError);
            h.set_header(Map::ResponseHeaders, names::STATUS, Some("503"));
            h.set_body(Buffer::ResponseBody, size, &held);
            return Step::Continue;
        }
        match self.translation.as_mut() {
            Some(t) if t.buffers() && end_of_stream => {
                let out = t.chunk(&held);
                h.set_body(Buffer::ResponseBody, size, &out);
            }
            Some(t) if t.buffers() => {
                // The rest is buffered by Envoy and translated whole at its end.
                h.set_body(Buffer::ResponseBody, size, &held);
                return Step::Pause;
            }
            _ => h.set_body(Buffer::ResponseBody, size, &held),
        }
        Step::Continue
    }

    /// A piece of a translated answer.
    pub fn on_response_body(
        &mut self,
        h: &mut impl Host,
        size: usize,
        end_of_stream: bool,
    ) -> Step {
        if self.first_event.is_some() {
            return self.hold(h, size, end_of_stream);
        }
        let Some(t) = self.translation.as_mut() else {
            return Step::Continue;
        };
        if t.buffers() && !end_of_stream {
            return Step::Pause;
        }
        let chunk = h.body(Buffer::ResponseBody, size);
        let out = t.chunk(&chunk);
        h.set_body(Buffer::ResponseBody, size, &out);
        Step::Continue
    }

    /// The attempt is over: one that never got an answer, or whose first event never came,
    /// journals why.
    pub fn on_done(&mut self, h: &mut impl Host) {
        if let (Some((n, _, _)), Some(start)) = (self.active.as_ref(), self.traced_since_us) {
            super::trace::attempt_ran(h, *n, start);
        }
        let held = self.first_event.is_some();
        if self.active.is_none() || (self.answered && !held) {
            return;
        }
        let failed = !held
            && h.property(&names::host::TRANSPORT_FAILURE)
                .is_some_and(|r| !r.is_empty());
        let waited = h.now_ms().saturating_sub(self.started_ms);
        let outcome = match Outcome::without_answer(failed, waited, self.expected_ms) {
            Outcome::Timeout if held => Outcome::NoFirstEvent,
            o => o,
        };
        self.record_outcome(h, &outcome);
    }

    /// Journal how this attempt ended.
    fn record_outcome(&self, h: &mut impl Host, outcome: &Outcome) {
        if let Some((n, _, attempt)) = self.active.as_ref() {
            record(h, *n, &attempt.provider, outcome);
        }
    }
}
