//! Stage 3: the response. Headers decide what happens to the body (an error the gateway makes
//! of it, translators, the meter, the cache's capture); the body passes through them chunk by
//! chunk, never held longer than a translator needs.

use super::{ClientApi, Exchange, Step};
use crate::cooldown::{self, Cooling};
use crate::error::HttpError;
use crate::failover::Journal;
use crate::host::{self, Buffer, Host, Map};
use crate::meter::{ChunkAction, Meter};
use crate::metrics::MetricUpdate;
use crate::names;
use crate::request::Endpoint;
use crate::translate::{
    openai_to_anthropic, openai_to_gemini, Direction, ResponseContext, ResponseTranslator,
};

/// What the attempts of the request's failover chain recorded so far.
pub fn journal(h: &impl Host) -> Journal {
    h.property(&[names::prop::JOURNAL])
        .map(|b| Journal::decode(&b))
        .unwrap_or_default()
}

/// The provider `provider` answered with `status` (as the client gets it) on its key `key`:
/// a `429`, or a `503` that said when to come back, cools that key down for every worker, and
/// is counted (`llm_gateway_provider_cooldowns_total`, the `llm_gateway_provider_cooling`
/// gauge).
pub fn cool_after(
    h: &mut impl Host,
    provider: &str,
    key: usize,
    status: u32,
    cooldown: crate::config::Cooldown,
) {
    if status != 429 && status != 503 {
        return;
    }
    let now = h.now_ms();
    let r = Map::ResponseHeaders;
    let asked = cooldown::requested_wait(&|n| h.header(r, n), now);
    let Some(d) = cooldown::duration_for(status, asked, cooldown.default, cooldown.max) else {
        return;
    };
    let until = now.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    if !Cooling::mark(h, provider, key, until) {
        log::warn!("llm-gateway: could not record the cool-down of provider {provider}");
        return;
    }
    let stat = |name| cooldown::key_stat(name, provider, key);
    h.metric(&MetricUpdate::counter(stat(names::metric::COOLDOWNS), 1));
    h.metric(&MetricUpdate::gauge(stat(names::metric::COOLING), 1));
}

impl Exchange {
    /// The response headers arrived.
    pub fn on_response_headers(&mut self, h: &mut impl Host) -> Step {
        let r = Map::ResponseHeaders;
        self.record.status = h
            .header(r, names::STATUS)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let Some(endpoint) = self.inbound.endpoint else {
            return Step::Continue;
        };
        if let Some(id) = &self.record.request_id {
            h.set_header(r, names::RESPONSE_REQUEST_ID, Some(id));
        }
        self.take_credential_refusal();
        if self.record.local_outcome.is_some() || self.record.cache_hit() {
            return Step::Continue;
        }
        self.record.provider_request_id = names::PROVIDER_REQUEST_IDS
            .iter()
            .find_map(|name| h.header(r, name))
            .map(|id| crate::meter::bounded_id(&id));
        if let Some(e) = self.gateway_error(h) {
            self.replace_with_error(h, &e);
            return Step::Continue;
        }
        if let Some(d) = self.upstream.provider_wire {
            let status = d.client_status(self.record.status);
            if status != self.record.status {
                h.set_header(r, names::STATUS, Some(&status.to_string()));
                self.record.status = status;
            }
        }
        if let Some((provider, key, c)) = self.upstream.cooldown.take() {
            cool_after(h, &provider, key, self.record.status, c);
        }
        let ct = h.header(r, names::CONTENT_TYPE).unwrap_or_default();
        let ce = h.header(r, names::CONTENT_ENCODING);
        // A translated answer is metered and cached in OpenAI chat's format (an event stream
        // becomes SSE).
        let mut read_ct = ct.clone();
        if ce.is_none() {
            if let Some(translated) = self.choose_translators(h, &ct) {
                read_ct = translated.to_string();
            }
        }
        if self.record.cache.is_some() {
            // A compressed answer cannot be read: not stored.
            let ct = if ce.is_some() { "" } else { read_ct.as_str() };
            self.cache_response_headers(h, self.record.status, ct);
        }
        let cfg = self.config();
        // A translated Responses answer is read in chat's format, before it is translated.
        let read_as = if self.upstream.responses_translated {
            Endpoint::ChatCompletions
        } else {
            endpoint
        };
        let mut meter = Meter::new(
            read_as,
            &read_ct,
            ce.as_deref(),
            self.upstream.strip_usage,
            self.upstream.encoding,
            cfg.max_response_body_bytes,
        );
        if let Some(max) = self.trace.as_ref().and_then(|t| t.content_max) {
            meter.capture_output(max);
        }
        if self.passthrough() && self.record.status >= 400 {
            // A passed-through error in Google's shape (Claude on Vertex AI) is rewritten in
            // Anthropic's (`translate_chunk`): its stated length would be wrong.
            h.set_header(r, names::CONTENT_LENGTH, None);
        }
        if self.upstream.strip_usage && meter.wants_body() {
            // The body may shrink: a stated length would be wrong.
            h.set_header(r, names::CONTENT_LENGTH, None);
        }
        for (name, value) in self.limit_headers() {
            h.set_header(r, name, Some(&value));
        }
        self.outbound.meter = Some(meter);
        Step::Continue
    }

    /// The error the gateway answers instead of the response: every provider of the chain
    /// failed (one clear error instead of the last provider's, or Envoy's plain-text, answer),
    /// or Envoy made the response itself (no provider reached, reset, timeout).
    fn gateway_error(&self, h: &impl Host) -> Option<HttpError> {
        let status = self.record.status;
        if self.upstream.chain_len > 0 && status >= 500 {
            return Some(journal(h).all_failed(self.upstream.chain_len));
        }
        // Envoy's own answers are plain text: read who made an error only when there is one,
        // to keep the fast path cheap.
        (status >= 400)
            .then(|| host::property_string(h, &names::host::CODE_DETAILS))
            .flatten()
            .filter(|d| d != "via_upstream")
            .map(|d| HttpError::from_envoy(status, &d))
    }

    /// Answer `e` in the client's API's shape instead of the response.
    fn replace_with_error(&mut self, h: &mut impl Host, e: &HttpError) {
        let r = Map::ResponseHeaders;
        self.record.local_outcome = Some(e.outcome);
        h.set_header(r, names::STATUS, Some(&e.status.to_string()));
        h.set_header(r, names::CONTENT_TYPE, Some("application/json"));
        h.set_header(r, names::CONTENT_LENGTH, None);
        h.set_header(r, names::CONTENT_ENCODING, None);
        self.record.status = e.status;
        self.outbound.replacement = Some(self.error_body(e));
    }

    /// The translators an uncompressed answer passes through: from a provider that does not
    /// speak OpenAI's API to OpenAI's chat format (what the meter and the cache read), and from
    /// that to the client's API when it is not chat (an Anthropic client, or a Responses client
    /// on a translated route). The content type the meter reads when translation changes it.
    fn choose_translators(
        &mut self,
        h: &mut impl Host,
        content_type: &str,
    ) -> Option<&'static str> {
        let r = Map::ResponseHeaders;
        let passthrough = self.passthrough();
        let nonce = answer_nonce(self.record.request_id.as_deref(), h.now_ns());
        let context = || ResponseContext {
            status: self.record.status,
            created: h.now_ms() / 1000,
            counted_input: self.record.counted_prompt.map_or(0, |c| c.tokens),
            nonce,
            model: self.record.upstream_model.clone().unwrap_or_default(),
        };
        let to_client = match self.inbound.client {
            ClientApi::Anthropic if !passthrough => Some(Direction::AnthropicToOpenai),
            ClientApi::Responses if self.upstream.responses_translated => {
                Some(Direction::ResponsesToChat)
            }
            _ => None,
        };
        let from_provider = self
            .upstream
            .provider_wire
            .map(|d| ResponseTranslator::new(d, content_type, context()));
        let read_as = from_provider
            .as_ref()
            .and_then(ResponseTranslator::output_content_type);
        let echo = self.upstream.responses_echo.take().unwrap_or_default();
        let chat_type = read_as.unwrap_or(content_type);
        let to_client =
            to_client.map(|d| ResponseTranslator::with_echo(d, chat_type, context(), echo));
        // Passed through, the answer keeps its headers.
        if !passthrough {
            let changes = to_client
                .iter()
                .chain(&from_provider)
                .flat_map(|t| t.headers());
            for (name, value) in changes {
                h.set_header(r, name, value.as_deref());
            }
        }
        self.outbound.to_client = to_client;
        self.outbound.from_provider = from_provider;
        read_as
    }

    /// A translated answer's next piece: into chat's format (captured for the cache and
    /// metered there), then into the client's API; `None` while a translator needs the whole
    /// body.
    fn translate_chunk(&mut self, h: &mut impl Host, size: usize, end: bool) -> Option<()> {
        let buffers = |t: &Option<ResponseTranslator>| t.as_ref().is_some_and(|t| t.buffers());
        // A passed-through error is read whole: it may be in Google's shape.
        let passed_error = self.passthrough() && self.record.status >= 400;
        if (buffers(&self.outbound.from_provider)
            || buffers(&self.outbound.to_client)
            || passed_error)
            && !end
        {
            return None;
        }
        let now = h.now_ms();
        let raw = h.body(Buffer::ResponseBody, size);
        let google_error = passed_error
            .then(|| serde_json::from_slice::<serde_json::Value>(&raw).ok())
            .flatten()
            .filter(openai_to_anthropic::is_google_error);
        let mut chat = match self.outbound.from_provider.as_mut() {
            Some(t) => t.chunk(&raw),
            None => raw,
        };
        if self.outbound.from_provider.is_some() {
            self.cache_capture(&chat);
        }
        if let Some(m) = self.outbound.meter.as_mut().filter(|m| m.wants_body()) {
            // Only an OpenAI client's stream has a usage chunk stripped (see `strip_usage`).
            if let ChunkAction::Replace(o) = m.on_chunk(&chat, end, now) {
                chat = o;
            }
        }
        if self.passthrough() {
            if let Some(v) = google_error {
                let e = openai_to_gemini::translate_error(&v, self.record.status);
                h.set_body(Buffer::ResponseBody, size, &self.error_body(&e));
            }
            return Some(());
        }
        let out = match self.outbound.to_client.as_mut() {
            Some(t) => t.chunk(&chat),
            None => chat,
        };
        h.set_body(Buffer::ResponseBody, size, &out);
        Some(())
    }

    /// A piece of the response body passed.
    pub fn on_response_body(
        &mut self,
        h: &mut impl Host,
        size: usize,
        end_of_stream: bool,
    ) -> Step {
        if let Some(r) = self.outbound.replacement.as_ref() {
            let out: &[u8] = if end_of_stream { r } else { &[] };
            h.set_body(Buffer::ResponseBody, size, out);
            return Step::Continue;
        }
        if self.outbound.from_provider.is_some() || self.outbound.to_client.is_some() {
            return match self.translate_chunk(h, size, end_of_stream) {
                Some(()) => Step::Continue,
                None => Step::Pause,
            };
        }
        let now = h.now_ms();
        let capturing = self.cache.as_ref().is_some_and(|c| c.capturing());
        let metering = self.outbound.meter.as_ref().is_some_and(|m| m.wants_body());
        if !capturing && !metering {
            return Step::Continue;
        }
        let chunk = h.body(Buffer::ResponseBody, size);
        if capturing {
            self.cache_capture(&chunk);
        }
        let Some(m) = self.outbound.meter.as_mut().filter(|m| m.wants_body()) else {
            return Step::Continue;
        };
        if let ChunkAction::Replace(out) = m.on_chunk(&chunk, end_of_stream, now) {
            h.set_body(Buffer::ResponseBody, size, &out);
        }
        Step::Continue
    }
}

/// A number for the ids a translated answer needs when its provider gives none: the request's
/// id hashed (Envoy's `x-request-id` is unique per request), else the time.
fn answer_nonce(request_id: Option<&str>, now_ns: u64) -> u64 {
    use std::hash::{Hash, Hasher};
    let Some(id) = request_id else {
        return now_ns;
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut hasher);
    hasher.finish()
}
