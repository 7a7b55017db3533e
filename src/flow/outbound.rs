//! Stage 3: the response. Headers decide what happens to the body (an error the gateway makes
//! of it, translators, the meter, the cache's capture); the body passes through them chunk by
//! chunk, never held longer than a translator needs.

use super::{ClientApi, Exchange, Step};
use crate::error::HttpError;
use crate::failover::Journal;
use crate::host::{self, Buffer, Host, Map};
use crate::meter::{ChunkAction, Meter};
use crate::names;
use crate::translate::{Direction, ResponseContext, ResponseTranslator};

/// What the attempts of the request's failover chain recorded so far.
pub fn journal(h: &impl Host) -> Journal {
    h.property(&[names::prop::JOURNAL])
        .map(|b| Journal::decode(&b))
        .unwrap_or_default()
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
        let ct = h.header(r, names::CONTENT_TYPE).unwrap_or_default();
        let ce = h.header(r, names::CONTENT_ENCODING);
        if self.record.cache.is_some() {
            // A compressed answer cannot be read: not stored.
            let ct = if ce.is_some() { "" } else { ct.as_str() };
            self.cache_response_headers(h, self.record.status, ct);
        }
        if ce.is_none() {
            self.choose_translators(h, &ct);
        }
        let cfg = self.config();
        let meter = Meter::new(
            endpoint,
            &ct,
            ce.as_deref(),
            self.upstream.strip_usage,
            self.upstream.encoding,
            cfg.max_response_body_bytes,
        );
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

    /// The translators an uncompressed answer passes through: from an Anthropic provider to
    /// OpenAI's format, and from OpenAI's format to an Anthropic client.
    fn choose_translators(&mut self, h: &mut impl Host, content_type: &str) {
        let r = Map::ResponseHeaders;
        let passthrough = self.passthrough();
        if self.inbound.client == ClientApi::Anthropic && !passthrough {
            // An OpenAI answer for an Anthropic client: translated back as it passes.
            let context = ResponseContext {
                status: self.record.status,
                created: h.now_ms() / 1000,
                counted_input: self.record.counted_prompt.map_or(0, |c| c.tokens),
            };
            let t = ResponseTranslator::new(Direction::AnthropicToOpenai, content_type, context);
            for (name, value) in t.headers() {
                h.set_header(r, name, value.as_deref());
            }
            self.outbound.to_anthropic = Some(t);
        }
        if self.upstream.anthropic {
            let context = ResponseContext {
                status: self.record.status,
                created: h.now_ms() / 1000,
                counted_input: self.record.counted_prompt.map_or(0, |c| c.tokens),
            };
            let t = ResponseTranslator::new(Direction::OpenaiToAnthropic, content_type, context);
            // Passed through, the answer keeps its headers.
            if !passthrough {
                for (name, value) in t.headers() {
                    h.set_header(r, name, value.as_deref());
                }
            }
            self.outbound.from_anthropic = Some(t);
        }
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
        let now = h.now_ms();
        if let Some(t) = self.outbound.from_anthropic.as_mut() {
            if t.buffers() && !end_of_stream {
                return Step::Pause;
            }
            let chunk = h.body(Buffer::ResponseBody, size);
            let mut out = t.chunk(&chunk);
            self.cache_capture(&out);
            if let Some(m) = self.outbound.meter.as_mut().filter(|m| m.wants_body()) {
                if let ChunkAction::Replace(o) = m.on_chunk(&out, end_of_stream, now) {
                    out = o;
                }
            }
            if !self.passthrough() {
                h.set_body(Buffer::ResponseBody, size, &out);
            }
            return Step::Continue;
        }
        if let Some(r) = self.outbound.to_anthropic.as_mut() {
            if r.buffers() && !end_of_stream {
                return Step::Pause;
            }
            let chunk = h.body(Buffer::ResponseBody, size);
            if let Some(m) = self.outbound.meter.as_mut().filter(|m| m.wants_body()) {
                // Nothing is stripped for an Anthropic client: the answer is only read.
                let _ = m.on_chunk(&chunk, end_of_stream, now);
            }
            let out = r.chunk(&chunk);
            h.set_body(Buffer::ResponseBody, size, &out);
            return Step::Continue;
        }
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
