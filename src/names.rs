//! Every header, property and metric name the filter reads or writes, in one place.
//!
//! Headers are lowercase (Envoy normalises header names). Properties are written with
//! `set_property([name])` and surface in Envoy as filter state `wasm.<name>`, which an access log
//! prints with `%FILTER_STATE(wasm.<name>:PLAIN)%`.

/// Default name of the request header the route's `cluster_header` reads.
pub const DEFAULT_CLUSTER_HEADER: &str = "x-llm-gateway-cluster";

/// Credentials a client may present. Every request the filter sees loses all of them (and the
/// configured `consumer_header`) before it goes anywhere; a provider gets only its own.
pub const AUTHORIZATION: &str = "authorization";
pub const PROXY_AUTHORIZATION: &str = "proxy-authorization";
pub const API_KEY: &str = "api-key";
pub const X_API_KEY: &str = "x-api-key";
/// Google's (Gemini) key header.
pub const X_GOOG_API_KEY: &str = "x-goog-api-key";
/// An AWS session token: Envoy's SigV4 signer sets its own only when its credentials have
/// one, so a client's must never pass.
pub const X_AMZ_SECURITY_TOKEN: &str = "x-amz-security-token";
pub const CLIENT_CREDENTIAL_HEADERS: [&str; 6] = [
    AUTHORIZATION,
    PROXY_AUTHORIZATION,
    API_KEY,
    X_API_KEY,
    X_GOOG_API_KEY,
    X_AMZ_SECURITY_TOKEN,
];

pub const METHOD: &str = ":method";
pub const PATH: &str = ":path";
pub const AUTHORITY: &str = ":authority";
/// What Envoy's SigV4 signer adds besides `authorization` and `x-amz-security-token`.
pub const X_AMZ_DATE: &str = "x-amz-date";
pub const X_AMZ_CONTENT_SHA256: &str = "x-amz-content-sha256";
pub const CONTENT_LENGTH: &str = "content-length";
pub const CONTENT_TYPE: &str = "content-type";
pub const CONTENT_ENCODING: &str = "content-encoding";
/// Removed from LLM requests so providers answer uncompressed (the filter reads the response).
pub const ACCEPT_ENCODING: &str = "accept-encoding";
pub const STATUS: &str = ":status";
/// Sent to Anthropic providers with the API version the translation targets.
pub const ANTHROPIC_VERSION: &str = "anthropic-version";
/// Set by the failover upstream filter on every attempt to the provider it reaches, for an
/// Envoy matcher after it (the composite filter that runs the SigV4 signer on the Bedrock
/// attempts only). A client's is removed.
pub const ATTEMPT_PROVIDER: &str = "x-llm-attempt-provider";
/// Envoy's per-request retry count (a failover chain makes one attempt per provider).
pub const ENVOY_MAX_RETRIES: &str = "x-envoy-max-retries";
/// Envoy's per-try timeout for one request: a chain's `first_event_timeout_ms` for a stream.
pub const ENVOY_PER_TRY_TIMEOUT: &str = "x-envoy-upstream-rq-per-try-timeout-ms";

/// Rate limit headers OpenAI clients know, on every response to a limited consumer.
pub const RATELIMIT_LIMIT_REQUESTS: &str = "x-ratelimit-limit-requests";
pub const RATELIMIT_REMAINING_REQUESTS: &str = "x-ratelimit-remaining-requests";
pub const RATELIMIT_RESET_REQUESTS: &str = "x-ratelimit-reset-requests";
pub const RATELIMIT_LIMIT_TOKENS: &str = "x-ratelimit-limit-tokens";
pub const RATELIMIT_REMAINING_TOKENS: &str = "x-ratelimit-remaining-tokens";
pub const RATELIMIT_RESET_TOKENS: &str = "x-ratelimit-reset-tokens";
pub const RETRY_AFTER: &str = "retry-after";
/// Azure OpenAI's (and OpenAI's) wait before a retry, in milliseconds.
pub const RETRY_AFTER_MS: &str = "retry-after-ms";
/// `false` on a refusal a retry cannot pass (a budget that resets later than an SDK's back-off):
/// the OpenAI and Anthropic SDKs read it and do not retry.
pub const SHOULD_RETRY: &str = "x-should-retry";
/// What the tightest local dollar budget of the caller has left after this request's
/// reservation, in USD (on every response to a consumer with a budget).
pub const BUDGET_REMAINING: &str = "x-llm-budget-remaining-usd";

/// Prefix of the rate limit table's keys in Envoy's shared data.
pub const LIMITS_SHARED_PREFIX: &str = "llm_gateway.limits.v1.";

/// W3C trace context: read from the caller, and (with `tracing`) sent to the provider.
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// Envoy's request id (the access log's `request_id`), read from the request.
pub const REQUEST_ID: &str = "x-request-id";
/// Response header carrying the gateway's request id, on every answer to an LLM request, so a
/// client can find its request in the access log and the usage events.
pub const RESPONSE_REQUEST_ID: &str = "x-llm-gateway-request-id";
/// Response headers in which providers name their own request id (OpenAI and Azure, Anthropic).
pub const PROVIDER_REQUEST_IDS: [&str; 2] = ["x-request-id", "request-id"];

/// Response header naming the provider that served the request.
pub const RESPONSE_PROVIDER: &str = "x-llm-gateway-provider";
/// Response header on caching routes: `hit`, `miss` or `bypass`.
pub const CACHE_STATUS: &str = "x-llm-cache";
/// Client request header whose `no-cache` / `no-store` bypass the cache.
pub const CACHE_CONTROL: &str = "cache-control";
/// Prefixes of the cache's keys in Envoy's shared data.
pub const CACHE_SHARED_PREFIX: &str = "llm_gateway.cache.v1.";
pub const VECTORS_SHARED_PREFIX: &str = "llm_gateway.vectors.v1.";

/// Filter-state properties for the access log (`wasm.<name>`).
pub mod prop {
    pub const CONSUMER: &str = "llm.consumer";
    /// The consumer's team, when it has one.
    pub const TEAM: &str = "llm.team";
    pub const REQUEST_MODEL: &str = "llm.request_model";
    pub const UPSTREAM_MODEL: &str = "llm.upstream_model";
    pub const RESPONSE_MODEL: &str = "llm.response_model";
    pub const PROVIDER: &str = "llm.provider";
    pub const ENDPOINT: &str = "llm.endpoint";
    pub const STREAM: &str = "llm.stream";
    pub const PROMPT_TOKENS: &str = "llm.prompt_tokens";
    pub const COMPLETION_TOKENS: &str = "llm.completion_tokens";
    pub const TOTAL_TOKENS: &str = "llm.total_tokens";
    pub const CACHED_TOKENS: &str = "llm.cached_tokens";
    pub const REASONING_TOKENS: &str = "llm.reasoning_tokens";
    pub const COUNTED_PROMPT_TOKENS: &str = "llm.counted_prompt_tokens";
    /// Whether that count is an estimate (the model's tokenizer is not public, or the prompt
    /// was beyond `tokenizer.max_exact_bytes`).
    pub const COUNTED_PROMPT_ESTIMATED: &str = "llm.counted_prompt_estimated";
    pub const USAGE_ESTIMATED: &str = "llm.usage_estimated";
    pub const TTFT_MS: &str = "llm.ttft_ms";
    pub const OUTCOME: &str = "llm.outcome";
    /// Microseconds the filter spent on the request (parse, route, count, rewrite).
    pub const GATEWAY_US: &str = "llm.gateway_us";
    /// Microseconds of that spent counting prompt tokens.
    pub const TOKENIZE_US: &str = "llm.tokenize_us";
    /// Failover routes: attempts made (1 when the first provider answered).
    pub const ATTEMPTS: &str = "llm.attempts";
    /// Failover routes: each attempt that failed over, `provider:reason` (`openai:503`,
    /// `azure:connect_failure`, `claude:timeout`), comma-separated.
    pub const FAILOVER: &str = "llm.failover";
    /// What the request cost in USD, from the price table (absent when its model has no price).
    pub const COST_USD: &str = "llm.cost_usd";
    /// On caching routes: `hit`, `semantic_hit`, `miss` or `bypass`.
    pub const CACHE: &str = "llm.cache";
    /// Total tokens of the stored answer a cache hit served (what it saved).
    pub const CACHE_SAVED_TOKENS: &str = "llm.cache_saved_tokens";
    /// Microseconds spent looking the request up in the cache (exact entry, and the nearest
    /// vector in the local index), calls to the embeddings service and vector store excluded.
    pub const CACHE_LOOKUP_US: &str = "llm.cache_lookup_us";
    /// The provider's own request id (its `x-request-id` or `request-id` response header).
    pub const PROVIDER_REQUEST_ID: &str = "llm.provider_request_id";
    /// For a provider with several keys: the index of the key that served (never the key).
    pub const PROVIDER_KEY: &str = "llm.provider_key";
    /// The response's `id` (`chatcmpl-...`, `msg_...`).
    pub const RESPONSE_ID: &str = "llm.response_id";
    /// With `tracing`: the request's trace id (the caller's when it sent a `traceparent`), and
    /// the gateway's span for the request, in hex; `llm.trace_sampled` says whether the trace
    /// is recorded (and its spans exported).
    pub const TRACE_ID: &str = "llm.trace_id";
    pub const SPAN_ID: &str = "llm.span_id";
    pub const TRACE_SAMPLED: &str = "llm.trace_sampled";
    /// Every property above, in the order the access log documents them.
    pub const ALL: [&str; 32] = [
        CONSUMER,
        TEAM,
        REQUEST_MODEL,
        UPSTREAM_MODEL,
        RESPONSE_MODEL,
        PROVIDER,
        ENDPOINT,
        STREAM,
        PROMPT_TOKENS,
        COMPLETION_TOKENS,
        TOTAL_TOKENS,
        CACHED_TOKENS,
        REASONING_TOKENS,
        COUNTED_PROMPT_TOKENS,
        COUNTED_PROMPT_ESTIMATED,
        USAGE_ESTIMATED,
        TTFT_MS,
        OUTCOME,
        GATEWAY_US,
        TOKENIZE_US,
        ATTEMPTS,
        FAILOVER,
        COST_USD,
        CACHE,
        CACHE_SAVED_TOKENS,
        CACHE_LOOKUP_US,
        PROVIDER_REQUEST_ID,
        RESPONSE_ID,
        PROVIDER_KEY,
        TRACE_ID,
        SPAN_ID,
        TRACE_SAMPLED,
    ];

    /// Internal, between the gateway filter and its upstream twin on a failover cluster
    /// (see `failover`): the request's chain, and what each attempt did.
    pub const PLAN: &str = "llm.plan";
    pub const JOURNAL: &str = "llm.journal";
    /// With `tracing`: when each attempt ran (`trace::span::Timings`).
    pub const ATTEMPT_TIMES: &str = "llm.attempt_times";
    /// The request's `:authority` before its first attempt (a Bedrock attempt's signer
    /// rewrites it; the next attempt restores it).
    pub const AUTHORITY: &str = "llm.authority";
}

/// Envoy properties read by the filter.
pub mod host {
    pub const REQUEST_ID: [&str; 2] = ["request", "id"];
    /// Which attempt an upstream filter sees (1 for the first).
    pub const ATTEMPT: [&str; 2] = ["upstream", "request_attempt_count"];
    /// Why the connection to the upstream failed, when it did.
    pub const TRANSPORT_FAILURE: [&str; 2] = ["upstream", "transport_failure_reason"];
    /// Who made the response: `via_upstream` for a provider's answer, anything else for one
    /// Envoy made itself (`upstream_reset_before_response_started{...}`, `no_healthy_upstream`).
    pub const CODE_DETAILS: [&str; 2] = ["response", "code_details"];
}

/// Metric names (Envoy adds the `wasmcustom.` prefix) and their label keys.
pub mod metric {
    pub const REQUESTS: &str = "llm_gateway_requests_total";
    pub const TOKENS: &str = "llm_gateway_tokens_total";
    pub const TOKEN_USAGE: &str = "gen_ai_client_token_usage";
    pub const DURATION: &str = "gen_ai_server_request_duration_ms";
    pub const TTFT: &str = "gen_ai_server_time_to_first_token_ms";
    pub const ESTIMATED: &str = "llm_gateway_usage_estimated_total";
    /// Requests whose prompt the gateway could only estimate (a model whose tokenizer is not
    /// public, or a prompt beyond `tokenizer.max_exact_bytes`), by model, provider, consumer.
    pub const PROMPT_ESTIMATED: &str = "llm_gateway_counted_prompt_estimated_total";
    /// Time the filter spends on a request before forwarding it (µs), without labels.
    pub const FILTER_TIME: &str = "llm_gateway_filter_request_us";
    /// Linear memory of the wasm VM that last finished a request (bytes), without labels.
    pub const VM_MEMORY: &str = "llm_gateway_vm_memory_bytes";
    /// Requests refused by a rate limit, by consumer and `reason` (rpm, tpm, tpd, concurrent,
    /// global).
    pub const RATELIMIT_REJECTIONS: &str = "llm_gateway_ratelimit_rejections_total";
    /// Tokens reserved at admission minus tokens finally charged (histogram, per request).
    pub const RESERVATION_ERROR: &str = "llm_gateway_ratelimit_reservation_error_tokens";
    /// Tokens charged beyond the reservation (the request used more than it reserved).
    pub const UNDERRESERVED: &str = "llm_gateway_ratelimit_underreserved_tokens_total";
    /// Calls to the global rate limit service that failed, by `reason` (timeout, unavailable,
    /// error).
    pub const GLOBAL_FAILURES: &str = "llm_gateway_ratelimit_global_failures_total";
    /// Limit scopes that could not be tracked because the shared table was full.
    pub const UNTRACKED: &str = "llm_gateway_ratelimit_untracked_total";
    /// Attempts of a failover chain that failed over to the next provider, by the provider
    /// that failed and `reason` (`503`, `429`, `connect_failure`, `timeout`, `reset`).
    pub const FAILOVERS: &str = "llm_gateway_failovers_total";
    /// End-of-request reports to the global service that failed.
    pub const GLOBAL_REPORT_FAILURES: &str = "llm_gateway_ratelimit_global_report_failures_total";

    /// What requests cost, in nanodollars (10⁻⁹ USD), by model, provider and consumer.
    pub const COST: &str = "llm_gateway_cost_usd_nanos_total";
    /// Billed requests whose model has no price in the price table, by model and provider.
    pub const UNPRICED: &str = "llm_gateway_cost_unpriced_requests_total";
    /// Usage events the collector accepted.
    pub const USAGE_SENT: &str = "llm_gateway_usage_events_sent_total";
    /// Usage events dropped, by `reason`: `buffer_full` or `retries_exhausted`.
    pub const USAGE_DROPPED: &str = "llm_gateway_usage_events_dropped_total";
    /// Posts to the collector that failed, by `reason`: the HTTP status (Envoy's own 503 when
    /// the collector cannot be reached, 504 on timeout), `no_response` or `dispatch`.
    pub const USAGE_POST_FAILURES: &str = "llm_gateway_usage_export_failures_total";
    /// Usage events held in the VMs' buffers (queued, waiting for a retry, or in flight).
    pub const USAGE_BUFFERED: &str = "llm_gateway_usage_events_buffered";
    /// The same four for spans (`tracing.export`).
    pub const SPANS_SENT: &str = "llm_gateway_trace_spans_sent_total";
    pub const SPANS_DROPPED: &str = "llm_gateway_trace_spans_dropped_total";
    pub const SPANS_POST_FAILURES: &str = "llm_gateway_trace_export_failures_total";
    pub const SPANS_BUFFERED: &str = "llm_gateway_trace_spans_buffered";

    /// Cache lookups on caching routes, by model, consumer and `result` (`hit`, `semantic_hit`,
    /// `miss`, `bypass`).
    pub const CACHE_LOOKUPS: &str = "llm_gateway_cache_lookups_total";
    /// Tokens cache hits saved (the stored answers' total tokens), by model and consumer.
    pub const CACHE_TOKENS_SAVED: &str = "llm_gateway_cache_tokens_saved_total";
    /// What became of answers offered to the cache, by `result` (`stored`, `error`,
    /// `incomplete`, `too_large`, `tool_calls`, `no_store`).
    pub const CACHE_STORES: &str = "llm_gateway_cache_stores_total";
    /// Entries evicted to make room.
    pub const CACHE_EVICTIONS: &str = "llm_gateway_cache_evictions_total";
    /// Semantic lookups that could not be made, by `reason` (`embedding_unavailable`,
    /// `embedding_error`, `store_unavailable`, `store_error`).
    pub const CACHE_SEMANTIC_FAILURES: &str = "llm_gateway_cache_semantic_failures_total";

    /// Budget alert thresholds crossed, by `consumer` or `team`, `window` (day, month) and
    /// `threshold` (percent); once per threshold per window.
    pub const BUDGET_ALERTS: &str = "llm_gateway_budget_alerts_total";
    /// What a calendar budget has spent, in parts per million of its limit (1000000 = all of
    /// it), by `consumer` or `team` and `window`; set as each request settles.
    pub const BUDGET_SPENT: &str = "llm_gateway_budget_spent_ppm";
    /// Requests let through uncharged by a budget because their model has no price
    /// (`limits.budgets.unpriced: allow`), by consumer.
    pub const BUDGET_UNPRICED: &str = "llm_gateway_budget_unpriced_total";

    /// Access token fetches from the GCP metadata server, by provider and `outcome` (`ok`,
    /// `error`, `dispatch`).
    pub const CREDENTIAL_REFRESHES: &str = "llm_gateway_credential_refreshes_total";

    /// Answers (a `429`, or a `503` with `Retry-After`) that cooled a provider's key down:
    /// started, extended, or met a longer cool-down already running; by provider and
    /// `provider_key` (the key's index).
    pub const COOLDOWNS: &str = "llm_gateway_provider_cooldowns_total";
    /// 1 while a provider's key is cooling down, else 0, by provider and `provider_key`.
    pub const COOLING: &str = "llm_gateway_provider_cooling";
    /// Requests sent with each key of a provider that has several, by provider and
    /// `provider_key`.
    pub const KEY_REQUESTS: &str = "llm_gateway_provider_key_requests_total";

    /// The label value of whatever the configuration does not name.
    pub const OTHER: &str = "other";
    /// The label value of what is not known (no model routed, no provider chosen).
    pub const NONE: &str = "none";

    pub const TAG_MODEL: &str = "gen_ai_request_model";
    pub const TAG_PROVIDER: &str = "gen_ai_provider_name";
    pub const TAG_TOKEN_TYPE: &str = "gen_ai_token_type";
    pub const TAG_CONSUMER: &str = "consumer";
    pub const TAG_OUTCOME: &str = "outcome";
    pub const TAG_REASON: &str = "reason";
    pub const TAG_RESULT: &str = "result";
    /// The consumer's team (only on the series of consumers that have one).
    pub const TAG_TEAM: &str = "team";
    pub const TAG_WINDOW: &str = "window";
    pub const TAG_THRESHOLD: &str = "threshold";
    /// The index of a provider's key.
    pub const TAG_PROVIDER_KEY: &str = "provider_key";
    /// Every label key, for the `stats_tags` block shipped in `envoy/`.
    pub const ALL_TAGS: [&str; 11] = [
        TAG_MODEL,
        TAG_PROVIDER,
        TAG_TOKEN_TYPE,
        TAG_CONSUMER,
        TAG_OUTCOME,
        TAG_REASON,
        TAG_RESULT,
        TAG_TEAM,
        TAG_WINDOW,
        TAG_THRESHOLD,
        TAG_PROVIDER_KEY,
    ];
}
