//! The per-request record: what the filter knows about a finished request, and from it the
//! billed token figures, the price, the access-log properties and the metric updates.
//!
//! Built once per request when Envoy logs the stream (`on_log`), so every request is counted
//! exactly once whether it succeeded, failed upstream, was reset or was refused by the filter.

pub use crate::cost::Tokens;
use crate::meter::{Learned, Usage};
use crate::metrics::{stat_name, MetricUpdate};
use crate::names::{metric, prop};
use crate::tokens::Count;

/// What the filter knows about a finished request.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub consumer: Option<String>,
    /// The consumer's team (from the configuration).
    pub team: Option<String>,
    /// A budget let the request through uncharged: its model has no price.
    pub budget_unpriced: bool,
    /// The gateway's request id (Envoy's `x-request-id`), at most `meter::MAX_ID_BYTES`.
    pub request_id: Option<String>,
    /// The provider's own request id, from its response headers.
    pub provider_request_id: Option<String>,
    pub request_model: Option<String>,
    /// The request's `gen_ai_request_model` label, from the route (see `route::Decision`).
    pub model_label: Option<String>,
    pub upstream_model: Option<String>,
    pub provider: Option<String>,
    /// For a provider with several keys: the index of the key that served.
    pub provider_key: Option<usize>,
    pub endpoint: Option<&'static str>,
    pub stream: bool,
    /// Prompt tokens counted by the filter before sending.
    pub counted_prompt: Option<Count>,
    pub learned: Learned,
    /// Response status (0 when no response was produced).
    pub status: u32,
    /// Set when the filter answered itself.
    pub local_outcome: Option<&'static str>,
    pub duration_ms: u64,
    pub ttft_ms: Option<u64>,
    /// Time the filter spent on the request before forwarding it, and on counting tokens (µs).
    pub gateway_us: Option<u64>,
    pub tokenize_us: Option<u64>,
    /// The limit that refused the request (metric label: rpm, tpm, tpd, concurrent, global).
    pub limited: Option<&'static str>,
    /// Tokens reserved at admission and the tokens finally charged, once settled.
    pub reservation: Option<(u64, u64)>,
    /// Why the global rate limit service could not answer, when it could not.
    pub global_failure: Option<&'static str>,
    /// Limit scopes that could not be tracked (the shared table was full).
    pub untracked: usize,
    /// Failover routes: the attempts made, as the upstream filter recorded them.
    pub journal: Option<crate::failover::Journal>,
    /// What the request cost in picodollars (`price` sets it); `None` when the price table
    /// knows none of its models, or no provider was asked.
    pub cost: Option<u64>,
    /// On a caching route: `hit`, `semantic_hit`, `miss` or `bypass`.
    pub cache: Option<&'static str>,
    /// Total tokens of the stored answer a hit served.
    pub cache_saved: u64,
    /// A hit is charged its stored usage against token limits.
    pub cache_charge: bool,
    /// What became of offering the answer to the cache.
    pub cache_store: Option<&'static str>,
    /// Entries evicted to store this answer.
    pub cache_evictions: u32,
    /// Why a semantic lookup could not be made.
    pub semantic_failure: Option<&'static str>,
    /// Microseconds spent in cache lookups (the filter's own work, not the callouts).
    pub cache_lookup_us: Option<u64>,
    /// With `tracing`: the request's trace and span.
    pub trace: Option<crate::trace::Ids>,
}

impl Record {
    /// Which request outcome this was.
    pub fn outcome(&self) -> &'static str {
        if let Some(o) = self.local_outcome {
            return o;
        }
        if self.cache_hit() {
            return "cache_hit";
        }
        match self.status {
            0 => "no_response",
            // An error the provider sent in-band says why the stream ended early.
            200..=299 if self.learned.stream_error => "stream_error",
            200..=299 if self.stream && !self.learned.complete => "stream_incomplete",
            200..=299 => "ok",
            _ => "upstream_error",
        }
    }

    /// The answer came from the cache: no provider tokens were used.
    pub fn cache_hit(&self) -> bool {
        matches!(self.cache, Some("hit" | "semantic_hit"))
    }

    /// The key a request was sent with, for a provider with several: none when the gateway
    /// answered it itself (refused, or served from the cache).
    fn sent_key(&self) -> Option<usize> {
        self.provider_key
            .filter(|_| self.local_outcome.is_none() && !self.cache_hit())
    }

    /// What the provider bills for the request: the one figure the metrics, the access log,
    /// the usage event, the limits and the cost all use (README, "What is billed").
    /// - refused by the gateway, served from the cache, or answered with an error (no usage):
    ///   nothing;
    /// - answered (2xx), also when the stream was cut or the client left mid-answer: the
    ///   provider's usage, else the gateway's counts of the prompt and of what was generated
    ///   (`estimated`);
    /// - an error answer that carries usage: that usage.
    ///
    /// The gateway's own prompt count stays visible apart (`counted_prompt`).
    pub fn tokens(&self) -> Tokens {
        if self.local_outcome.is_some() || self.cache_hit() || self.endpoint.is_none() {
            return Tokens::default();
        }
        let counted = self.counted_prompt.unwrap_or_default();
        match self.learned.usage {
            Some(u) => from_usage(u, counted),
            None if (200..300).contains(&self.status) => {
                let prompt = counted.tokens;
                let completion = self.learned.completion_estimate.tokens;
                let total = prompt.saturating_add(completion);
                Tokens {
                    prompt,
                    completion,
                    total,
                    cached: 0,
                    cache_write: 0,
                    reasoning: 0,
                    estimated: total > 0,
                }
            }
            None => Tokens::default(),
        }
    }

    /// Tokens the request is charged against token limits: what it is billed (`tokens`), or
    /// for a cache hit on a route that charges hits, the stored answer's tokens.
    pub fn billable_tokens(&self) -> u64 {
        if self.cache_hit() && self.cache_charge && self.local_outcome.is_none() {
            return self.cache_saved;
        }
        self.tokens().total
    }

    /// Price the request: what the provider bills (nothing for a refused or failed request
    /// without usage), at the price of the first of its models (served, sent, asked) the table
    /// knows.
    pub fn price(&mut self, prices: &crate::cost::Prices) {
        if self.local_outcome.is_some() || self.endpoint.is_none() {
            self.cost = None;
            return;
        }
        let t = self.tokens();
        let models = [
            self.learned.model.as_deref(),
            self.upstream_model.as_deref(),
            self.request_model.as_deref(),
        ];
        self.cost = prices.cost(self.provider.as_deref(), models.into_iter().flatten(), &t);
    }

    /// Whether the request was billed but its models have no price.
    fn unpriced(&self) -> bool {
        self.cost.is_none() && self.local_outcome.is_none() && self.billable_tokens() > 0
    }

    /// Access-log properties (`wasm.<name>` filter state), all as strings.
    pub fn properties(&self) -> Vec<(&'static str, String)> {
        let t = self.tokens();
        // What is unknown is left unset, so the access log prints it as absent.
        let mut p: Vec<(&'static str, String)> = [
            (prop::CONSUMER, &self.consumer),
            (prop::TEAM, &self.team),
            (prop::REQUEST_MODEL, &self.request_model),
            (prop::UPSTREAM_MODEL, &self.upstream_model),
            (prop::RESPONSE_MODEL, &self.learned.model),
            (prop::PROVIDER, &self.provider),
            (prop::PROVIDER_REQUEST_ID, &self.provider_request_id),
            (prop::RESPONSE_ID, &self.learned.id),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect();
        p.extend([
            (
                prop::ENDPOINT,
                self.endpoint.unwrap_or_default().to_string(),
            ),
            (prop::STREAM, self.stream.to_string()),
            (prop::OUTCOME, self.outcome().to_string()),
            (prop::USAGE_ESTIMATED, t.estimated.to_string()),
        ]);
        if self.endpoint.is_some() && self.local_outcome.is_none() {
            p.extend([
                (prop::PROMPT_TOKENS, t.prompt.to_string()),
                (prop::COMPLETION_TOKENS, t.completion.to_string()),
                (prop::TOTAL_TOKENS, t.total.to_string()),
                (prop::CACHED_TOKENS, t.cached.to_string()),
                (prop::REASONING_TOKENS, t.reasoning.to_string()),
            ]);
        }
        if let Some(c) = self.cache {
            p.push((prop::CACHE, c.to_string()));
        }
        if self.cache_hit() {
            p.push((prop::CACHE_SAVED_TOKENS, self.cache_saved.to_string()));
        }
        if let Some(us) = self.cache_lookup_us {
            p.push((prop::CACHE_LOOKUP_US, us.to_string()));
        }
        if let Some(c) = self.cost {
            p.push((prop::COST_USD, crate::cost::dollars(c).to_string()));
        }
        if let Some(c) = self.counted_prompt {
            p.push((prop::COUNTED_PROMPT_TOKENS, c.tokens.to_string()));
            p.push((prop::COUNTED_PROMPT_ESTIMATED, c.estimated.to_string()));
        }
        if let Some(ms) = self.ttft_ms {
            p.push((prop::TTFT_MS, ms.to_string()));
        }
        if let Some(us) = self.gateway_us {
            p.push((prop::GATEWAY_US, us.to_string()));
        }
        if let Some(us) = self.tokenize_us {
            p.push((prop::TOKENIZE_US, us.to_string()));
        }
        if let Some(k) = self.sent_key() {
            p.push((prop::PROVIDER_KEY, k.to_string()));
        }
        if let Some(t) = &self.trace {
            p.push((prop::TRACE_ID, t.trace_id.clone()));
            p.push((prop::SPAN_ID, t.span_id.clone()));
            p.push((prop::TRACE_SAMPLED, t.sampled.to_string()));
        }
        if let Some(j) = self.journal.as_ref().filter(|j| !j.0.is_empty()) {
            p.push((prop::ATTEMPTS, j.0.len().to_string()));
            let f = crate::failover::Journal(j.failovers().to_vec());
            if !f.0.is_empty() {
                p.push((prop::FAILOVER, f.summary()));
            }
        }
        p
    }

    /// Metric updates for this request. `model`/`consumer` label values are passed in so the
    /// shell can fold them into `other` once a VM has seen too many distinct series.
    pub fn metrics(&self, model: &str, consumer: &str, team: Option<&str>) -> Vec<MetricUpdate> {
        let provider = self.provider.as_deref().unwrap_or("none");
        let mut base = vec![
            (metric::TAG_MODEL, model),
            (metric::TAG_PROVIDER, provider),
            (metric::TAG_CONSUMER, consumer),
        ];
        if let Some(t) = team {
            base.push((metric::TAG_TEAM, t));
        }
        let mut out = Vec::with_capacity(12);
        out.push(MetricUpdate::counter(
            stat_name(
                metric::REQUESTS,
                &with(&base, (metric::TAG_OUTCOME, self.outcome())),
            ),
            1,
        ));
        if let Some(us) = self.gateway_us {
            out.push(MetricUpdate::histogram(metric::FILTER_TIME.to_string(), us));
        }
        self.limit_metrics(consumer, &mut out);
        if self.budget_unpriced {
            out.push(MetricUpdate::counter(
                stat_name(metric::BUDGET_UNPRICED, &[(metric::TAG_CONSUMER, consumer)]),
                1,
            ));
        }
        self.cache_metrics(model, consumer, &mut out);
        if self.local_outcome.is_none() && self.endpoint.is_some() {
            let per_model = per_model_of(model, provider);
            self.token_metrics(&base, &per_model, &mut out);
            self.latency_metrics(&per_model, &mut out);
        }
        out
    }
}

impl Record {
    /// The billed tokens by type, their cost, and whether they are priced and exact.
    fn token_metrics(
        &self,
        base: &[(&str, &str)],
        per_model: &[(&str, &str)],
        out: &mut Vec<MetricUpdate>,
    ) {
        let t = self.tokens();
        for (ty, v) in [
            ("input", t.prompt),
            ("output", t.completion),
            ("cached_input", t.cached),
            ("reasoning", t.reasoning),
        ] {
            if v > 0 {
                out.push(MetricUpdate::counter(
                    stat_name(metric::TOKENS, &with(base, (metric::TAG_TOKEN_TYPE, ty))),
                    v,
                ));
            }
        }
        for (ty, v) in [("input", t.prompt), ("output", t.completion)] {
            if t.total > 0 {
                out.push(MetricUpdate::histogram(
                    stat_name(
                        metric::TOKEN_USAGE,
                        &with(base, (metric::TAG_TOKEN_TYPE, ty)),
                    ),
                    v,
                ));
            }
        }
        if let Some(c) = self.cost.filter(|c| *c > 0) {
            // Nanodollars: a 1 KB request of the cheapest model is still counted.
            out.push(MetricUpdate::counter(
                stat_name(metric::COST, base),
                c.saturating_add(500) / 1000,
            ));
        }
        if self.unpriced() {
            out.push(MetricUpdate::counter(
                stat_name(metric::UNPRICED, per_model),
                1,
            ));
        }
        if t.estimated {
            out.push(MetricUpdate::counter(stat_name(metric::ESTIMATED, base), 1));
        }
        if self.counted_prompt.is_some_and(|c| c.estimated) && self.local_outcome.is_none() {
            out.push(MetricUpdate::counter(
                stat_name(metric::PROMPT_ESTIMATED, base),
                1,
            ));
        }
    }

    /// The request's duration and time to first token.
    fn latency_metrics(&self, per_model: &[(&str, &str)], out: &mut Vec<MetricUpdate>) {
        // A hit never reached the provider: the provider's latency is not its.
        if !self.cache_hit() {
            out.push(MetricUpdate::histogram(
                stat_name(metric::DURATION, per_model),
                self.duration_ms,
            ));
        }
        if let Some(ms) = self.ttft_ms {
            out.push(MetricUpdate::histogram(
                stat_name(metric::TTFT, per_model),
                ms,
            ));
        }
    }

    /// The cache lookup's result, the tokens a hit saved, and what became of storing.
    fn cache_metrics(&self, model: &str, consumer: &str, out: &mut Vec<MetricUpdate>) {
        let counter = MetricUpdate::counter;
        let who = [(metric::TAG_MODEL, model), (metric::TAG_CONSUMER, consumer)];
        if let Some(result) = self.cache {
            out.push(counter(
                stat_name(
                    metric::CACHE_LOOKUPS,
                    &with(&who, (metric::TAG_RESULT, result)),
                ),
                1,
            ));
        }
        if self.cache_hit() && self.cache_saved > 0 {
            out.push(counter(
                stat_name(metric::CACHE_TOKENS_SAVED, &who),
                self.cache_saved,
            ));
        }
        if let Some(result) = self.cache_store {
            out.push(counter(
                stat_name(metric::CACHE_STORES, &[(metric::TAG_RESULT, result)]),
                1,
            ));
        }
        if self.cache_evictions > 0 {
            out.push(counter(
                metric::CACHE_EVICTIONS.to_string(),
                u64::from(self.cache_evictions),
            ));
        }
        if let Some(reason) = self.semantic_failure {
            out.push(counter(
                stat_name(
                    metric::CACHE_SEMANTIC_FAILURES,
                    &[(metric::TAG_REASON, reason)],
                ),
                1,
            ));
        }
    }

    /// Refusals by the limits, reservations against what was charged, the global limit's
    /// failures, failovers and scopes that could not be tracked.
    fn limit_metrics(&self, consumer: &str, out: &mut Vec<MetricUpdate>) {
        let counter = MetricUpdate::counter;
        if let Some(reason) = self.limited {
            out.push(counter(
                stat_name(
                    metric::RATELIMIT_REJECTIONS,
                    &[
                        (metric::TAG_CONSUMER, consumer),
                        (metric::TAG_REASON, reason),
                    ],
                ),
                1,
            ));
        }
        if let Some((reserved, actual)) = self.reservation {
            out.push(MetricUpdate::histogram(
                metric::RESERVATION_ERROR.to_string(),
                reserved.saturating_sub(actual),
            ));
            if actual > reserved {
                out.push(counter(
                    metric::UNDERRESERVED.to_string(),
                    actual - reserved,
                ));
            }
        }
        if let Some(reason) = self.global_failure {
            out.push(counter(
                stat_name(metric::GLOBAL_FAILURES, &[(metric::TAG_REASON, reason)]),
                1,
            ));
        }
        if let (Some(k), Some(p)) = (self.sent_key(), self.provider.as_deref()) {
            let name = crate::cooldown::key_stat(metric::KEY_REQUESTS, p, k);
            out.push(counter(name, 1));
        }
        for (provider, reason) in self.journal.iter().flat_map(|j| j.failovers()) {
            out.push(counter(
                stat_name(
                    metric::FAILOVERS,
                    &[
                        (metric::TAG_PROVIDER, provider.as_str()),
                        (metric::TAG_REASON, reason.as_str()),
                    ],
                ),
                1,
            ));
        }
        if self.untracked > 0 {
            out.push(counter(
                metric::UNTRACKED.to_string(),
                self.untracked as u64,
            ));
        }
    }
}

/// `base`'s labels and one more.
fn with<'a>(base: &[(&'a str, &'a str)], extra: (&'a str, &'a str)) -> Vec<(&'a str, &'a str)> {
    let mut v = base.to_vec();
    v.push(extra);
    v
}

fn per_model_of<'a>(model: &'a str, provider: &'a str) -> [(&'static str, &'a str); 2] {
    [(metric::TAG_MODEL, model), (metric::TAG_PROVIDER, provider)]
}

fn from_usage(u: Usage, counted: Count) -> Tokens {
    let prompt = u.prompt_tokens.unwrap_or(counted.tokens);
    let completion = u.completion_tokens.unwrap_or(0);
    Tokens {
        prompt,
        completion,
        total: u.total_tokens.unwrap_or(prompt.saturating_add(completion)),
        cached: u.cached(),
        cache_write: u.cache_write(),
        reasoning: u.reasoning(),
        estimated: u.prompt_tokens.is_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meter::{CompletionDetails, PromptDetails};

    fn ok_record() -> Record {
        Record {
            consumer: Some("team-a".into()),
            request_model: Some("gpt-4o".into()),
            upstream_model: Some("gpt-4o".into()),
            provider: Some("openai".into()),
            endpoint: Some("chat.completions"),
            counted_prompt: Some(Count {
                tokens: 8,
                estimated: false,
            }),
            status: 200,
            duration_ms: 12,
            learned: Learned {
                usage: Some(Usage {
                    prompt_tokens: Some(8),
                    completion_tokens: Some(5),
                    total_tokens: Some(13),
                    prompt_tokens_details: Some(PromptDetails {
                        cached_tokens: Some(2),
                        cache_creation_tokens: None,
                    }),
                    completion_tokens_details: Some(CompletionDetails {
                        reasoning_tokens: Some(1),
                    }),
                }),
                complete: true,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn usage_wins_and_metrics_once() {
        let r = ok_record();
        assert_eq!(r.outcome(), "ok");
        assert_eq!(
            r.tokens(),
            Tokens {
                prompt: 8,
                completion: 5,
                total: 13,
                cached: 2,
                cache_write: 0,
                reasoning: 1,
                estimated: false
            }
        );
        let m = r.metrics("gpt-4o", "team-a", None);
        let requests: Vec<_> = m
            .iter()
            .filter(|u| u.name.starts_with("llm_gateway_requests_total."))
            .collect();
        assert_eq!(requests.len(), 1);
        assert!(requests[0].name.contains("outcome=.=ok;.;"));
        assert!(m
            .iter()
            .any(|u| u.name.contains("gen_ai_token_type=.=cached_input") && u.value == 2));
        assert!(!m.iter().any(|u| u.name.starts_with(metric::TTFT)));
    }

    #[test]
    fn estimated_when_no_usage() {
        let mut r = ok_record();
        r.stream = true;
        r.learned.usage = None;
        r.learned.completion_estimate = Count {
            tokens: 7,
            estimated: false,
        };
        r.ttft_ms = Some(3);
        let t = r.tokens();
        assert_eq!((t.prompt, t.completion, t.estimated), (8, 7, true));
        assert_eq!(r.outcome(), "ok");
        r.learned.complete = false;
        assert_eq!(r.outcome(), "stream_incomplete");
        let m = r.metrics("gpt-4o", "team-a", None);
        assert!(m.iter().any(|u| u.name.starts_with(metric::ESTIMATED)));
        assert!(m
            .iter()
            .any(|u| u.name.starts_with(metric::TTFT) && u.value == 3));
    }

    #[test]
    fn a_cache_hit_counts_saved_tokens_not_provider_tokens() {
        let mut r = ok_record();
        r.cache = Some("semantic_hit");
        r.cache_saved = 42;
        let names: Vec<String> = r
            .metrics("m", "c", None)
            .into_iter()
            .map(|u| u.name)
            .collect();
        assert!(names
            .iter()
            .any(|n| n.starts_with(metric::CACHE_TOKENS_SAVED)));
        assert!(names
            .iter()
            .any(|n| n.starts_with(metric::CACHE_LOOKUPS) && n.contains("result=.=semantic_hit;")));
        for absent in [
            metric::TOKENS,
            metric::TOKEN_USAGE,
            metric::DURATION,
            metric::COST,
        ] {
            assert!(!names.iter().any(|n| n.starts_with(absent)), "{absent}");
        }
        assert_eq!(r.outcome(), "cache_hit");
        assert_eq!(r.billable_tokens(), 0);
        r.cache_charge = true;
        assert_eq!(r.billable_tokens(), 42);
        assert_eq!(r.tokens().total, 0);
    }

    #[test]
    fn local_reply_counts_request_only() {
        let r = Record {
            local_outcome: Some("unauthorized"),
            status: 401,
            endpoint: Some("chat.completions"),
            ..Default::default()
        };
        let m = r.metrics("none", "none", None);
        assert_eq!(m.len(), 1);
        assert!(m[0].name.contains("outcome=.=unauthorized"));
        assert!(!r
            .properties()
            .iter()
            .any(|(k, _)| *k == prop::PROMPT_TOKENS));
    }

    #[test]
    fn the_largest_provider_figures_saturate_in_tokens_cost_and_metrics() {
        let max = u64::MAX;
        let mut r = ok_record();
        r.learned.usage = Some(Usage {
            prompt_tokens: Some(max),
            completion_tokens: Some(2),
            total_tokens: None,
            ..Default::default()
        });
        let t = r.tokens();
        assert_eq!((t.prompt, t.completion, t.total), (max, 2, max));
        r.price(&crate::cost::Prices::parse(crate::cost::RawPricing::default()).unwrap());
        assert_eq!(r.cost, Some(max));
        let m = r.metrics("gpt-4o", "team-a", None);
        let cost = m.iter().find(|u| u.name.starts_with(metric::COST)).unwrap();
        // Nanodollars of a saturated cost: the largest count, not (max + 500) wrapped to 0.
        assert_eq!(cost.value, max / 1000);
        let p = r.properties();
        let prop_of = |k: &str| p.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        assert_eq!(prop_of(prop::TOTAL_TOKENS), Some(max.to_string()));
        assert_eq!(
            prop_of(prop::COST_USD),
            Some(crate::cost::dollars(max).to_string())
        );
        // Near the top: each sum is exact until it would pass the largest value.
        r.learned.usage = Some(Usage {
            prompt_tokens: Some(max - 5),
            completion_tokens: Some(5),
            ..Default::default()
        });
        assert_eq!(r.tokens().total, max);
        r.cost = Some(max - 499);
        let m = r.metrics("gpt-4o", "team-a", None);
        let cost = m.iter().find(|u| u.name.starts_with(metric::COST)).unwrap();
        assert_eq!(cost.value, max / 1000);
        // Without usage: the counted prompt and the estimate.
        r.learned.usage = None;
        r.counted_prompt = Some(Count {
            tokens: max,
            estimated: false,
        });
        r.learned.completion_estimate = Count {
            tokens: max,
            estimated: true,
        };
        let t = r.tokens();
        assert_eq!((t.total, t.estimated), (max, true));
    }
}
