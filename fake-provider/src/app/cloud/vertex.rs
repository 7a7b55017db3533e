//! Vertex AI: `POST .../projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent`
//! and `:streamGenerateContent` (the Gemini wire, answered as in [`super::gemini`] with Vertex's
//! `createTime`, `trafficType` and `candidatesTokensDetails`), and
//! `.../publishers/anthropic/models/{m}:rawPredict` and `:streamRawPredict` (Anthropic's
//! Messages body with `anthropic_version: "vertex-2023-10-16"` and the model in the path,
//! answered as the Anthropic mode does, with `msg_vrtx_` ids and `req_vrtx_` request ids;
//! `stream: true` streams).
//!
//! Every request needs `Authorization: Bearer TOKEN` with a token the metadata server of this
//! process issued and that has not expired: else 401 UNAUTHENTICATED in Google's shape (reason
//! `CREDENTIALS_MISSING`, `ACCESS_TOKEN_EXPIRED` or `ACCESS_TOKEN_TYPE_UNSUPPORTED`). With
//! `--gcp-project`, another project in the path is 403 PERMISSION_DENIED. Then, for Claude, the
//! control headers, `x-fake-status` (429 is Vertex's RESOURCE_EXHAUSTED quota error in Google's
//! shape, other statuses Anthropic's errors) and the body, which must carry that
//! `anthropic_version`.
//!
//! Echo headers (once the token is accepted): `x-fake-token-serial` (which issued token, from
//! 1), `x-fake-token-age-ms` and `x-fake-token-ttl-left-ms`, `x-fake-tokens-issued` and
//! `x-fake-tokens-used` (distinct tokens accepted so far).

use std::time::Instant;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::{gemini, model_method, Answer, Exchange};
use crate::anthropic::{self, Error as AnthropicError};
use crate::app::{generate, messages, Config};
use crate::gcp::Refused;
use crate::gemini::Error;

/// The `anthropic_version` Claude on Vertex requires.
pub const ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

/// A Vertex AI publisher model endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::app) struct Target {
    anthropic: bool,
    stream: bool,
    project: String,
    location: String,
    model: String,
    /// `GenerateContent`, `StreamGenerateContent`, `RawPredict` or `StreamRawPredict`.
    method: &'static str,
}

/// `.../projects/{p}/locations/{l}/publishers/{google|anthropic}/models/{m}:{method}`.
pub(super) fn route(segments: &[&str]) -> Option<Target> {
    let [.., "projects", project, "locations", location, "publishers", publisher, "models", last] =
        segments
    else {
        return None;
    };
    let (model, method) = model_method(last)?;
    let (anthropic, stream, method) = match (*publisher, method) {
        ("google", "generateContent") => (false, false, "GenerateContent"),
        ("google", "streamGenerateContent") => (false, true, "StreamGenerateContent"),
        ("anthropic", "rawPredict") => (true, false, "RawPredict"),
        ("anthropic", "streamRawPredict") => (true, true, "StreamRawPredict"),
        _ => return None,
    };
    Some(Target {
        anthropic,
        stream,
        project: (*project).to_owned(),
        location: (*location).to_owned(),
        model,
        method,
    })
}

fn unauthenticated(target: &Target, missing: bool, reason: &str) -> Error {
    let message = if missing {
        "Request is missing required authentication credential. Expected OAuth 2 access token, \
         login cookie or other valid authentication credential. See \
         https://developers.google.com/identity/sign-in/web/devconsole-project."
    } else {
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login \
         cookie or other valid authentication credential. See \
         https://developers.google.com/identity/sign-in/web/devconsole-project."
    };
    Error::new(401, message).with_detail(json!({
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": "googleapis.com",
        "metadata": {
            "method": format!("google.cloud.aiplatform.v1.PredictionService.{}", target.method),
            "service": "aiplatform.googleapis.com"
        }
    }))
}

/// Checks the bearer token; the echo headers say which token it was.
fn authenticate(
    config: &Config,
    x: &Exchange<'_>,
    target: &Target,
    echo: &mut Vec<(&'static str, HeaderValue)>,
) -> Result<(), Error> {
    let token = x
        .header(header::AUTHORIZATION.as_str())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    let Some(token) = token else {
        return Err(unauthenticated(target, true, "CREDENTIALS_MISSING"));
    };
    let tokens = &config.clouds.gcp_tokens;
    let now = Instant::now();
    let issued = tokens.check(token, now).map_err(|refused| match refused {
        Refused::Expired(_) => unauthenticated(target, false, "ACCESS_TOKEN_EXPIRED"),
        Refused::Unknown => unauthenticated(target, false, "ACCESS_TOKEN_TYPE_UNSUPPORTED"),
    })?;
    let (issued_count, used) = tokens.counts();
    let ms = |d: std::time::Duration| HeaderValue::from(d.as_millis() as u64);
    echo.push(("x-fake-token-serial", HeaderValue::from(issued.serial)));
    echo.push(("x-fake-token-age-ms", ms(now.duration_since(issued.at))));
    echo.push((
        "x-fake-token-ttl-left-ms",
        ms(issued.expires.duration_since(now)),
    ));
    echo.push(("x-fake-tokens-issued", HeaderValue::from(issued_count)));
    echo.push(("x-fake-tokens-used", HeaderValue::from(used as u64)));
    if config
        .clouds
        .gcp_project
        .as_deref()
        .is_some_and(|p| p != target.project)
    {
        return Err(Error::new(
            403,
            format!(
                "Permission 'aiplatform.endpoints.predict' denied on resource \
                 '//aiplatform.googleapis.com/projects/{}/locations/{}/publishers/{}/models/{}' \
                 (or it may not exist).",
                target.project,
                target.location,
                if target.anthropic {
                    "anthropic"
                } else {
                    "google"
                },
                target.model
            ),
        ));
    }
    Ok(())
}

pub(super) fn respond(config: &Config, x: &Exchange<'_>, target: &Target) -> Answer {
    let mut echo = Vec::new();
    let request_id = format!("req_vrtx_011C{}", generate::alphanumeric(20));
    let (response, prompt_tokens) = match authenticate(config, x, target, &mut echo) {
        Err(e) => {
            let mut resp = e.response();
            let challenge = if e.status == StatusCode::UNAUTHORIZED {
                Some("Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"")
            } else {
                None
            };
            if let Some(c) = challenge {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
            }
            (resp, 0)
        }
        Ok(()) if target.anthropic => claude(x, target, &request_id),
        Ok(()) => gemini::generate_content(x, &target.model, target.stream, true),
    };
    Answer {
        response,
        prompt_tokens,
        model: target.model.clone(),
        echo,
        request_id,
        anthropic: target.anthropic,
    }
}

/// The Messages body of a rawPredict: `anthropic_version` checked, the model of the path.
fn parse_claude(body: &[u8], model: &str) -> Result<anthropic::MessagesRequest, AnthropicError> {
    let mut obj = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map,
        _ => return anthropic::parse_messages(body, true),
    };
    match obj.get("anthropic_version") {
        Some(Value::String(v)) if v == ANTHROPIC_VERSION => {}
        None | Some(Value::Null) => {
            return Err(AnthropicError::invalid("anthropic_version: Field required"))
        }
        Some(other) => {
            return Err(AnthropicError::invalid(format!(
                "anthropic_version: Input should be '{ANTHROPIC_VERSION}', got {other}"
            )))
        }
    }
    obj.insert("model".to_owned(), Value::from(model));
    anthropic::parse_messages(Value::Object(obj).to_string().as_bytes(), true)
}

fn claude(x: &Exchange<'_>, target: &Target, request_id: &str) -> (Response, u64) {
    let mut prompt_tokens = 0;
    let result = (|| {
        let ctl = x
            .controls
            .clone()
            .map_err(|e| Err(AnthropicError::invalid(e.message)))?;
        if let Some(status) = ctl
            .status
            .filter(|s| s.is_client_error() || s.is_server_error())
        {
            if status == StatusCode::TOO_MANY_REQUESTS {
                return Err(Ok(Error::new(429, format!(
                    "Quota exceeded for aiplatform.googleapis.com/online_prediction_input_tokens_per_minute_per_base_model with base model: anthropic-{}. Please submit a quota increase request. https://cloud.google.com/vertex-ai/docs/generative-ai/quotas-genai.",
                    target.model.split('@').next().unwrap_or_default()
                ))));
            }
            return Err(Err(AnthropicError::simulated(status)));
        }
        let req = parse_claude(x.body, &target.model).map_err(Err)?;
        prompt_tokens = req.prompt_tokens;
        messages::message(&req, &ctl, "msg_vrtx_01").map_err(Err)
    })();
    let response = match result {
        Ok(r) => r,
        Err(Ok(google)) => google.response(),
        Err(Err(e)) => messages::error_response(&e, request_id),
    };
    (response, prompt_tokens)
}
