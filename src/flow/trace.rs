//! The request's trace, stage by stage (with `tracing` configured): its context from the
//! caller's headers (stage 1), the request's parameters and, on a route that opted in, its
//! prompt (stage 2), the provider's `traceparent` (the upstream request), events for the
//! callouts it waited for, and at the end its spans, queued for export (stage 4). The
//! upstream filter's part, per attempt of a failover chain, is [`attempt_headers`] and
//! [`attempt_ran`].

use serde_json::value::RawValue;

use super::{set_request_header, Exchange, RequestHeaders};
use crate::host::{Host, Map};
use crate::names;
use crate::otlp::Val;
use crate::request::Request;
use crate::trace::span::{self, Attempt, Attrs, State, Timings};
use crate::trace::Context;

pub use crate::trace::span::{GLOBAL_LIMIT, SEMANTIC_LOOKUP};

impl Exchange {
    /// Stage 1: the request's trace context, from the caller's `traceparent` and
    /// `tracestate` or new.
    pub(super) fn trace_start(&mut self, h: &mut impl Host, headers: &RequestHeaders) {
        let Some(t) = self.shared.config.tracing.as_ref() else {
            return;
        };
        let ratio = t.sampling_ratio;
        let ctx = Context::start(
            headers.get(names::TRACEPARENT).as_deref(),
            headers.get(names::TRACESTATE).as_deref(),
            ratio,
            &mut || h.random_u64(),
        );
        self.record.trace = Some(ctx.ids());
        self.trace = Some(Box::new(State::new(ctx, h.now_ns())));
    }

    /// Stage 2: what the request asks for, and on a route that shows content, its prompt.
    pub(super) fn trace_request(&mut self, req: &Request<'_>, body: &[u8], route: &str) {
        let content = self
            .shared
            .config
            .tracing
            .as_ref()
            .and_then(|t| t.content_of(route));
        let Some(st) = self.trace.as_mut().filter(|t| t.ctx.sampled) else {
            return;
        };
        st.params = params(req);
        st.content_max = content;
        st.input = content.and_then(|max| span::input_messages(body, max));
    }

    /// The upstream request: a direct route's provider gets the `traceparent` of the
    /// request's one attempt; a chain's attempts get theirs from the upstream filter, which
    /// finds the context in the chain's plan (`Plan::trace`).
    pub(super) fn trace_upstream(&mut self, h: &mut impl Host, chain: bool) {
        let Some(st) = self.trace.as_mut().filter(|_| !chain) else {
            return;
        };
        let tp = st.ctx.traceparent(&st.ctx.attempt_span(1));
        set_request_header(h, names::TRACEPARENT, Some(&tp));
        st.sent_ns = Some(h.now_ns());
    }

    /// A callout the request waits for left: the semantic cache's lookup (its first call,
    /// [`SEMANTIC_LOOKUP`]) or the call to the global rate limit service ([`GLOBAL_LIMIT`]).
    pub(super) fn trace_callout(&mut self, h: &impl Host, event: &'static str) {
        if let Some(st) = self.trace.as_mut() {
            *st.callout_start(event) = Some(h.now_ns());
        }
    }

    /// That callout ended, with `result`: for the lookup `semantic_hit`, `miss` or why it
    /// failed; for the global service `ok`, `over_limit` or why there was no answer.
    pub(super) fn trace_callout_done(
        &mut self,
        h: &impl Host,
        event: &'static str,
        result: &'static str,
    ) {
        let now = h.now_ns();
        let Some(st) = self.trace.as_mut() else {
            return;
        };
        if let Some(start) = st.callout_start(event).take() {
            let attrs = vec![("llm_gateway.result", Val::Str(result.to_string()))];
            st.event(event, start, now, attrs);
        }
    }

    /// Stage 4: the finished request's spans, queued for export (all of them or, when the
    /// buffer has no room for them all, none: counted as dropped).
    pub(super) fn export_spans(&mut self, h: &mut impl Host) {
        let (Some(x), Some(st)) = (self.shared.tracer.clone(), self.trace.as_ref()) else {
            return;
        };
        if !st.ctx.sampled {
            return;
        }
        let now = h.now_ns();
        let attempts = self.attempts(h, st, now);
        let output = st.content_max.and_then(|max| {
            let text = self.record.learned.output.as_deref()?;
            let reason = self.record.learned.finish_reasons.first().copied();
            Some(span::output_messages(text, max, reason))
        });
        let spans = span::spans(st, &self.record, now, &attempts, output);
        super::finish::queue(h, &x, spans.iter().map(span::Span::encode).collect());
    }

    /// The upstream attempts the request made: each provider of its chain (as the journal
    /// and the upstream filter's timings tell), or a direct route's one attempt.
    fn attempts(&self, h: &impl Host, st: &State, now_ns: u64) -> Vec<Attempt> {
        let r = &self.record;
        if let Some(journal) = &r.journal {
            let times = h
                .property(&[names::prop::ATTEMPT_TIMES])
                .map(|b| Timings::decode(&b))
                .unwrap_or_default();
            return journal
                .0
                .iter()
                .zip(1u64..)
                .map(|((provider, outcome), n)| {
                    let (start_ns, end_ns) = times.of(n).unwrap_or((st.start_ns, now_ns));
                    Attempt {
                        n,
                        provider: provider.clone(),
                        model: usize::try_from(n - 1)
                            .ok()
                            .and_then(|i| st.chain_models.get(i).cloned()),
                        outcome: outcome.clone(),
                        start_ns,
                        end_ns,
                    }
                })
                .collect();
        }
        let (Some(sent), Some(provider)) = (st.sent_ns, &r.provider) else {
            return Vec::new();
        };
        if r.local_outcome.is_some() || r.cache_hit() {
            return Vec::new();
        }
        let outcome = match r.status {
            0 => "no_response".to_string(),
            s => s.to_string(),
        };
        vec![Attempt {
            n: 1,
            provider: provider.clone(),
            model: r.upstream_model.clone(),
            outcome,
            start_ns: sent,
            end_ns: now_ns,
        }]
    }
}

/// The `gen_ai.request.*` attributes of what the client asked for.
fn params(req: &Request<'_>) -> Attrs {
    let mut a: Attrs = Vec::new();
    let num = |k: &str| req.param(k).and_then(|v| v.get().parse::<f64>().ok());
    let int = |k: &str| req.param(k).and_then(|v| v.get().parse::<u64>().ok());
    let max_tokens = int("max_completion_tokens")
        .or_else(|| int("max_tokens"))
        .or_else(|| int("max_output_tokens"));
    if let Some(m) = max_tokens {
        a.push(("gen_ai.request.max_tokens", Val::Int(m)));
    }
    for (key, attr) in [
        ("temperature", "gen_ai.request.temperature"),
        ("top_p", "gen_ai.request.top_p"),
        ("frequency_penalty", "gen_ai.request.frequency_penalty"),
        ("presence_penalty", "gen_ai.request.presence_penalty"),
    ] {
        if let Some(v) = num(key).filter(|v| v.is_finite()) {
            a.push((attr, Val::Double(v)));
        }
    }
    if let Some(s) = int("seed") {
        a.push(("gen_ai.request.seed", Val::Int(s)));
    }
    if let Some(n) = int("n").filter(|n| *n != 1) {
        a.push(("gen_ai.request.choice.count", Val::Int(n)));
    }
    if let Some(t) = req.param("response_format").and_then(output_type) {
        a.push(("gen_ai.output.type", Val::Str(t.to_string())));
    }
    a
}

/// `gen_ai.output.type` of a `response_format`.
fn output_type(v: &RawValue) -> Option<&'static str> {
    #[derive(serde::Deserialize)]
    struct Format<'a> {
        #[serde(borrow, rename = "type")]
        kind: std::borrow::Cow<'a, str>,
    }
    let f: Format = serde_json::from_str(v.get()).ok()?;
    match f.kind.as_ref() {
        "json_object" | "json_schema" => Some("json"),
        "text" => Some("text"),
        _ => None,
    }
}

/// Upstream filter, attempt `n` of a chain: its provider gets the `traceparent` of the
/// attempt's span, when the request is traced (`trace`: the plan's context).
pub fn attempt_headers(h: &mut impl Host, n: u64, trace: Option<&str>) -> bool {
    let Some(ctx) = trace.and_then(|t| Context::decode(t.as_bytes())) else {
        return false;
    };
    let tp = ctx.traceparent(&ctx.attempt_span(n));
    h.set_header(Map::RequestHeaders, names::TRACEPARENT, Some(&tp));
    true
}

/// Upstream filter: attempt `n` ran from `start_us` until now.
pub fn attempt_ran(h: &mut impl Host, n: u64, start_us: u64) {
    let mut t = h
        .property(&[names::prop::ATTEMPT_TIMES])
        .map(|b| Timings::decode(&b))
        .unwrap_or_default();
    t.record(n, start_us, h.now_us());
    h.set_property(names::prop::ATTEMPT_TIMES, &t.encode());
}
