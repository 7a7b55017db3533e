//! Where a sink's records go (`usage_export`, `tracing.export`), in which format, and the
//! bounds of the buffer.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::check::{at_most, bounded, err, non_empty, ConfigError, MAX_TIMEOUT_MS};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// OTLP/HTTP JSON logs, for an OpenTelemetry Collector.
    Otlp,
    /// A JSON array of flat event objects.
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExport {
    pub cluster: String,
    #[serde(default)]
    pub format: Option<Format>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub batch_size: Option<usize>,
    #[serde(default)]
    pub flush_interval_ms: Option<u64>,
    #[serde(default)]
    pub max_buffered_events: Option<usize>,
    #[serde(default)]
    pub max_retries: Option<u32>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub service_name: Option<String>,
}

/// Where and how a sink's records (usage events, spans) are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub cluster: String,
    pub format: Format,
    pub path: String,
    pub authority: String,
    pub headers: Vec<(String, String)>,
    /// Events per post at most.
    pub batch_size: usize,
    /// Age of the oldest buffered event that triggers a post.
    pub flush_interval_ms: u64,
    /// Events a VM holds at most (buffered, waiting for a retry, or in flight).
    pub max_buffered_events: usize,
    /// Retries of a failed post before its events are dropped.
    pub max_retries: u32,
    pub timeout_ms: u64,
    pub service_name: String,
}

pub const DEFAULT_BATCH_SIZE: usize = 100;
pub const DEFAULT_FLUSH_INTERVAL_MS: u64 = 1000;
pub const DEFAULT_MAX_BUFFERED_EVENTS: usize = 5000;
pub const DEFAULT_MAX_RETRIES: u32 = 3;
pub const DEFAULT_TIMEOUT_MS: u64 = 5000;
/// Largest `batch_size`: a post holds one batch (about 1 KB an event).
pub const MAX_BATCH_SIZE: usize = 1000;
/// Largest `max_buffered_events`: what a VM holds while the collector is slow or down.
pub const MAX_BUFFERED_EVENTS: usize = 20_000;
/// Largest `flush_interval_ms` (10 minutes).
pub const MAX_FLUSH_INTERVAL_MS: u64 = 600_000;
/// Largest `max_retries` (the back-off reaches `MAX_BACKOFF_MS` after 6).
pub const MAX_RETRIES: u32 = 10;

/// What a section's records are, for its defaults and its errors.
#[derive(Debug, Clone, Copy)]
pub struct Section {
    /// The field path every error starts with (`usage_export`, `tracing.export`).
    pub field: &'static str,
    /// The OTLP/HTTP path of its signal (`/v1/logs`, `/v1/traces`).
    pub otlp_path: &'static str,
    /// The section takes OTLP only.
    pub otlp_only: bool,
}

/// `usage_export`.
pub const USAGE: Section = Section {
    field: "usage_export",
    otlp_path: "/v1/logs",
    otlp_only: false,
};

/// `tracing.export`.
pub const TRACES: Section = Section {
    field: "tracing.export",
    otlp_path: "/v1/traces",
    otlp_only: true,
};

impl Export {
    /// Validate `usage_export`.
    pub fn parse(raw: RawExport) -> Result<Export, ConfigError> {
        Export::parse_section(raw, USAGE)
    }

    /// Validate a section of this shape.
    pub fn parse_section(raw: RawExport, section: Section) -> Result<Export, ConfigError> {
        let field = section.field;
        if raw.cluster.trim().is_empty() {
            return Err(err(format!("{field}.cluster"), "must not be empty"));
        }
        let format = raw.format.unwrap_or(Format::Otlp);
        if section.otlp_only && format != Format::Otlp {
            return Err(err(format!("{field}.format"), "must be otlp"));
        }
        let path = path(field, raw.path, format, section.otlp_path)?;
        let headers = headers(field, raw.headers)?;
        let batch_size = bounded(
            &format!("{field}.batch_size"),
            raw.batch_size,
            DEFAULT_BATCH_SIZE,
            MAX_BATCH_SIZE,
        )?;
        let max_buffered_events = bounded(
            &format!("{field}.max_buffered_events"),
            raw.max_buffered_events,
            DEFAULT_MAX_BUFFERED_EVENTS,
            MAX_BUFFERED_EVENTS,
        )?;
        if max_buffered_events < batch_size {
            return Err(err(
                format!("{field}.max_buffered_events"),
                "must be at least batch_size",
            ));
        }
        let authority = non_empty(&format!("{field}.authority"), raw.authority)?
            .unwrap_or_else(|| raw.cluster.clone());
        Ok(Export {
            format,
            path,
            authority,
            headers,
            batch_size,
            flush_interval_ms: bounded(
                &format!("{field}.flush_interval_ms"),
                raw.flush_interval_ms,
                DEFAULT_FLUSH_INTERVAL_MS,
                MAX_FLUSH_INTERVAL_MS,
            )?,
            max_buffered_events,
            max_retries: at_most(
                &format!("{field}.max_retries"),
                raw.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
                MAX_RETRIES,
            )?,
            timeout_ms: bounded(
                &format!("{field}.timeout_ms"),
                raw.timeout_ms,
                DEFAULT_TIMEOUT_MS,
                MAX_TIMEOUT_MS,
            )?,
            service_name: non_empty(&format!("{field}.service_name"), raw.service_name)?
                .unwrap_or_else(|| "llm-gateway".to_string()),
            cluster: raw.cluster,
        })
    }
}

/// The path records are posted to: as configured, or the format's.
fn path(
    field: &str,
    raw: Option<String>,
    format: Format,
    otlp_path: &str,
) -> Result<String, ConfigError> {
    match raw {
        Some(p) if p.starts_with('/') && !p.bytes().any(|b| b.is_ascii_control()) => Ok(p),
        Some(_) => Err(err(
            format!("{field}.path"),
            "must be a path starting with /",
        )),
        None if format == Format::Otlp => Ok(otlp_path.to_string()),
        None => Ok("/".to_string()),
    }
}

/// The headers every post carries: names lowercased, none the gateway sets itself.
fn headers(
    field: &str,
    raw: BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut headers = Vec::with_capacity(raw.len());
    for (name, value) in raw {
        let n = name.to_ascii_lowercase();
        let valid = !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && !matches!(n.as_str(), "content-type" | "content-length" | "host");
        if !valid || value.bytes().any(|b| b.is_ascii_control()) {
            return Err(err(
                format!("{field}.headers.{name}"),
                "is not a header the gateway can set",
            ));
        }
        headers.push((n, value));
    }
    Ok(headers)
}
