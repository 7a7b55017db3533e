//! `tracing`: where spans go (the shared export settings, OTLP only), how new traces are
//! sampled, and which routes may put prompt and completion content in their spans.

use serde::Deserialize;

use crate::config::check::{bounded, err, ConfigError};
use crate::export::{self, Export, RawExport};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    pub export: RawExport,
    #[serde(default)]
    pub sampling_ratio: Option<f64>,
    #[serde(default)]
    pub content: Option<RawContent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawContent {
    pub routes: Vec<String>,
    #[serde(default)]
    pub max_bytes: Option<usize>,
}

/// The validated `tracing` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracing {
    pub export: Export,
    /// The share of traces started here (no sampled `traceparent` from the caller) that are
    /// recorded; a caller's sampled flag is followed as it is.
    pub sampling_ratio: f64,
    /// Routes (by name; `default` for the default target) whose spans carry the prompt and
    /// the completion.
    pub content_routes: Vec<String>,
    /// At most this many bytes of each (prompt, completion) go into a span.
    pub max_content_bytes: usize,
}

/// Default `content.max_bytes`.
pub const DEFAULT_MAX_CONTENT_BYTES: usize = 4096;
/// Largest `content.max_bytes`: a span stays well inside a post.
pub const MAX_CONTENT_BYTES: usize = 65_536;

impl Tracing {
    /// Validate `tracing`; `route_known` says whether a route of that name exists.
    pub fn parse(
        raw: RawTracing,
        route_known: &dyn Fn(&str) -> bool,
    ) -> Result<Tracing, ConfigError> {
        let export = Export::parse_section(raw.export, export::config::TRACES)?;
        let sampling_ratio = raw.sampling_ratio.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&sampling_ratio) {
            return Err(err("tracing.sampling_ratio", "must be between 0 and 1"));
        }
        let (content_routes, max_content_bytes) = match raw.content {
            None => (Vec::new(), DEFAULT_MAX_CONTENT_BYTES),
            Some(c) => {
                for (i, r) in c.routes.iter().enumerate() {
                    if !route_known(r) {
                        return Err(err(
                            format!("tracing.content.routes[{i}]"),
                            format!("no route is named {r:?}"),
                        ));
                    }
                }
                let max = bounded(
                    "tracing.content.max_bytes",
                    c.max_bytes,
                    DEFAULT_MAX_CONTENT_BYTES,
                    MAX_CONTENT_BYTES,
                )?;
                (c.routes, max)
            }
        };
        Ok(Tracing {
            export,
            sampling_ratio,
            content_routes,
            max_content_bytes,
        })
    }

    /// The content bound of route `route`'s spans, when it opted in.
    pub fn content_of(&self, route: &str) -> Option<usize> {
        self.content_routes
            .iter()
            .any(|r| r == route)
            .then_some(self.max_content_bytes)
    }
}
