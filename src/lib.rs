//! llm-gateway: an LLM gateway that runs inside Envoy as a proxy-wasm HTTP filter.
//!
//! A request's journey is [`flow`]: inbound headers → admit (parse, route, cache, limits, the
//! upstream request) → outbound (response, translators, meter) → finish (settle, price,
//! metrics, access log, usage event). The flow asks everything of Envoy through one trait,
//! [`host::Host`]; `shell` (wasm32 only) implements it over proxy-wasm and only adapts Envoy's
//! callbacks to the flow's stages, and [`host::fake::FakeHost`] implements it natively, so the
//! whole flow runs in `cargo test`.
//!
//! The modules, in the order a request meets them:

// A panic kills the VM for every request on its worker: nothing outside tests may panic on what
// it reads from the wire, shared data or configuration.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

// What the flow stands on.
pub mod config;
pub mod error;
pub mod host;
pub mod names;

// The journey, and the shell that runs it in Envoy.
pub mod flow;
#[cfg(target_arch = "wasm32")]
mod shell;

// Inbound and admit: what the client sent, who sent it, which models it may use, where it goes.
pub mod access;
pub mod models;
pub mod request;
pub mod route;
pub mod tokens;
pub mod wire;

// The response cache and its stores.
pub mod cache;
pub mod chroma;
pub mod completion;

// Limits: local windows in shared data, the global rate limit service.
pub mod limits;
pub mod rls;

// The upstream request and the answer: provider credentials the VM fetches, translation
// between client APIs and providers, failover chains, reading provider responses (SSE and
// AWS event-stream framing).
pub mod cooldown;
pub mod eventstream;
pub mod failover;
pub mod gcp_token;
pub mod meter;
pub mod sse;
pub mod translate;

// Finish: the per-request record, its price, metrics, usage events and spans, and the export
// queue both go out through.
pub mod cost;
pub mod export;
pub mod metrics;
pub mod otlp;
pub mod record;
pub mod trace;
pub mod usage;

#[cfg(not(target_arch = "wasm32"))]
#[doc(hidden)]
pub mod fuzzing;
