//! The cloud providers: AWS Bedrock's Converse API ([`bedrock`]), the Gemini API
//! ([`gemini`]), Vertex AI's Gemini and Claude publishers ([`vertex`]) and a GCE metadata
//! server issuing the tokens Vertex accepts ([`metadata`]). Their routes (any path prefix):
//!
//! - `POST .../model/{modelId}/converse` and `/converse-stream` (the id percent-encoded or
//!   not, a model id, an inference profile id or an ARN);
//! - `POST .../models/{model}:generateContent` and `:streamGenerateContent` (`?alt=sse`: SSE;
//!   otherwise a JSON array of the same chunks, as Google answers);
//! - `POST .../projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent` and
//!   `:streamGenerateContent`, `.../publishers/anthropic/models/{m}:rawPredict` and
//!   `:streamRawPredict`;
//! - `GET /computeMetadata/v1/instance/service-accounts/{account}/token`, `.../email` and
//!   `/computeMetadata/v1/project/project-id`.
//!
//! They answer with the echo headers of the other modes (`x-fake-received-model` is the
//! model of the path), the control headers apply as described in each module, and the
//! signature check sees the request's headers as received (before `--force-header`).

mod bedrock;
mod gemini;
mod metadata;
mod vertex;

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use axum::response::Response;
use percent_encoding::percent_decode_str;

use super::{echo_headers, finish, Config, Controls};
use crate::api::ApiError;

/// A cloud endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Cloud {
    Bedrock { stream: bool, model_id: String },
    Gemini { stream: bool, model: String },
    Vertex(vertex::Target),
    Metadata(metadata::Path),
}

/// The model and method of a last segment `{model}:{method}`.
fn model_method(segment: &str) -> Option<(String, &str)> {
    let (model, method) = segment.rsplit_once(':')?;
    let model = percent_decode_str(model).decode_utf8().ok()?;
    (!model.is_empty()).then(|| (model.into_owned(), method))
}

/// The cloud endpoint of a request, if it is one.
pub(super) fn route(method: &Method, path: &str) -> Option<Cloud> {
    if let Some(rest) = path.strip_prefix("/computeMetadata/v1/") {
        return (method == Method::GET)
            .then(|| metadata::route(rest))
            .flatten()
            .map(Cloud::Metadata);
    }
    if method != Method::POST {
        return None;
    }
    if let Some((before, op)) = path.rsplit_once('/') {
        if let Some(at) = before
            .find("/model/")
            .filter(|_| op.starts_with("converse"))
        {
            let stream = match op {
                "converse" => false,
                "converse-stream" => true,
                _ => return None,
            };
            let id = before.get(at + "/model/".len()..)?;
            let model_id = percent_decode_str(id).decode_utf8().ok()?.into_owned();
            return Some(Cloud::Bedrock { stream, model_id });
        }
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if let Some(target) = vertex::route(&segments) {
        return Some(Cloud::Vertex(target));
    }
    let [.., "models", last] = segments.as_slice() else {
        return None;
    };
    let (model, method) = model_method(last)?;
    let stream = match method {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => return None,
    };
    Some(Cloud::Gemini { stream, model })
}

/// What one exchange brings: the request as received and as the controls see it.
pub(super) struct Exchange<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    /// The headers as received (what a signature covers).
    pub received: &'a HeaderMap,
    /// The headers with `--force-header`'s.
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub controls: &'a Result<Controls, ApiError>,
}

impl Exchange<'_> {
    /// A query parameter's value (percent-decoded).
    pub fn query(&self, name: &str) -> Option<String> {
        self.uri.query()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| percent_decode_str(v).decode_utf8_lossy().into_owned())
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A cloud answer and what the echo headers report about it.
pub(super) struct Answer {
    pub response: Response,
    pub prompt_tokens: u64,
    /// The model of the path.
    pub model: String,
    /// Extra `x-fake-*` headers.
    pub echo: Vec<(&'static str, HeaderValue)>,
    pub request_id: String,
    /// Answered in Anthropic's format (Claude on Vertex).
    pub anthropic: bool,
}

fn answer(config: &Config, cloud: &Cloud, x: &Exchange<'_>) -> Answer {
    match cloud {
        Cloud::Bedrock { stream, model_id } => bedrock::respond(config, x, *stream, model_id),
        Cloud::Gemini { stream, model } => gemini::respond_api(config, x, *stream, model),
        Cloud::Vertex(target) => vertex::respond(config, x, target),
        Cloud::Metadata(path) => metadata::respond(config, x, path),
    }
}

/// `key=` of a query replaced by the key's fingerprint.
fn redact_key(path: &str) -> String {
    let Some((path, query)) = path.split_once('?') else {
        return path.to_owned();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some(("key", v)) => format!("key={}", super::fingerprint(v.as_bytes())),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

/// Answers a cloud request.
pub(super) async fn handle(
    config: std::sync::Arc<Config>,
    cloud: Cloud,
    method: Method,
    uri: Uri,
    received: HeaderMap,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let controls = Controls::from_headers(&headers);
    if let Ok(c) = &controls {
        if !c.delay.is_zero() {
            tokio::time::sleep(c.delay).await;
        }
    }
    let (config2, method2, uri2) = (config.clone(), method.clone(), uri.clone());
    // Signatures hash the body and tokenising takes a while on big ones: off the reactor.
    let joined = tokio::task::spawn_blocking(move || {
        let x = Exchange {
            method: &method2,
            uri: &uri2,
            received: &received,
            headers: &headers,
            body: &body,
            controls: &controls,
        };
        let a = answer(&config2, &cloud, &x);
        let mut echo = echo_headers(&uri2, &headers, &body, a.prompt_tokens, a.anthropic);
        for (name, value) in echo.iter_mut() {
            match *name {
                "x-fake-received-model" => {
                    *value = HeaderValue::from_str(&a.model).unwrap_or(HeaderValue::from_static(""))
                }
                "x-fake-received-path" => {
                    let path = redact_key(value.to_str().unwrap_or_default());
                    *value = HeaderValue::from_str(&path).unwrap_or(HeaderValue::from_static(""))
                }
                _ => {}
            }
        }
        echo.extend(a.echo);
        (a.response, echo, a.request_id)
    })
    .await;
    match joined {
        Ok((response, echo, request_id)) => {
            finish(&config, &method, &uri, response, echo, request_id)
        }
        Err(e) => {
            let err = ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                format!("fake-provider: {e}"),
            );
            super::error_response(&err)
        }
    }
}

/// Sets `key` of a JSON object (nothing on another value).
pub(super) fn set(v: &mut serde_json::Value, key: &str, value: serde_json::Value) {
    if let Some(obj) = v.as_object_mut() {
        obj.insert(key.to_owned(), value);
    }
}

/// `x-amzn-RequestId`-style id: a random UUID (version 4 layout).
pub(super) fn uuid() -> String {
    let hex: String = std::iter::repeat_with(|| fastrand::u8(..16))
        .take(32)
        .map(|n| char::from_digit(u32::from(n), 16).unwrap_or('0'))
        .collect();
    let part = |a: usize, b: usize| hex.get(a..b).unwrap_or_default().to_owned();
    format!(
        "{}-{}-4{}-a{}-{}",
        part(0, 8),
        part(8, 12),
        part(13, 16),
        part(17, 20),
        part(20, 32)
    )
}

/// The `latencyMs` / timing a fake answer reports: its configured delays.
pub(super) fn latency_ms(ctl: &Controls, events: usize) -> u64 {
    let per_event = ctl
        .chunk_delay
        .saturating_mul(u32::try_from(events).unwrap_or(u32::MAX));
    (ctl.delay + ctl.first_event_delay + per_event)
        .max(Duration::from_millis(1))
        .as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let post = |p: &str| route(&Method::POST, p);
        assert_eq!(
            post("/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"),
            Some(Cloud::Bedrock {
                stream: false,
                model_id: "anthropic.claude-3-5-sonnet-20240620-v1:0".into()
            })
        );
        assert_eq!(
            post("/model/arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-pro-v1:0/converse-stream"),
            Some(Cloud::Bedrock { stream: true, model_id: "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-pro-v1:0".into() })
        );
        assert_eq!(post("/model/x/invoke"), None);
        assert_eq!(
            post("/v1beta/models/gemini-2.5-flash:streamGenerateContent"),
            Some(Cloud::Gemini {
                stream: true,
                model: "gemini-2.5-flash".into()
            })
        );
        assert_eq!(
            post("/v1beta/models/gemini-2.5-flash:generateContent"),
            Some(Cloud::Gemini {
                stream: false,
                model: "gemini-2.5-flash".into()
            })
        );
        assert_eq!(post("/v1beta/models/gemini-2.5-flash:embedContent"), None);
        assert!(matches!(
            post("/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict"),
            Some(Cloud::Vertex(_))
        ));
        assert_eq!(
            route(
                &Method::GET,
                "/v1beta/models/gemini-2.5-flash:generateContent"
            ),
            None
        );
        assert!(matches!(
            route(
                &Method::GET,
                "/computeMetadata/v1/instance/service-accounts/default/token"
            ),
            Some(Cloud::Metadata(_))
        ));
        // The OpenAI and Anthropic routes are not clouds.
        assert_eq!(post("/v1/chat/completions"), None);
        assert_eq!(post("/v1/messages"), None);
        assert_eq!(route(&Method::GET, "/v1/models"), None);
    }

    #[test]
    fn ids_and_redaction() {
        let id = uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
        assert_ne!(uuid(), id);
        assert_eq!(
            redact_key("/v1beta/models/m:streamGenerateContent?alt=sse&key=secret"),
            format!(
                "/v1beta/models/m:streamGenerateContent?alt=sse&key={}",
                super::super::fingerprint(b"secret")
            )
        );
        assert_eq!(redact_key("/x"), "/x");
    }
}
