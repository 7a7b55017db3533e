//! llm-gateway: an LLM gateway that runs inside Envoy as a proxy-wasm HTTP filter.
//!
//! The pure core (everything but `filter`) compiles and is tested natively; `filter` is the thin
//! proxy-wasm shell that reads from the host, calls the core and applies its decisions.

pub mod cache;
pub mod chroma;
pub mod completion;
pub mod config;
pub mod cost;
pub mod error;
pub mod failover;
pub mod flow;
#[cfg(not(target_arch = "wasm32"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod host;
pub mod limits;
pub mod meter;
pub mod metrics;
pub mod models;
pub mod names;
pub mod record;
pub mod request;
pub mod rls;
pub mod route;
pub mod sse;
pub mod tokens;
pub mod translate;
pub mod usage;
pub mod wire;

#[cfg(target_arch = "wasm32")]
mod shell;
