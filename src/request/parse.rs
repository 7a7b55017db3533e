//! Reading a request body: the fields routing and counting need, with the 400s OpenAI would give.

use std::borrow::Cow;

use serde::Deserialize;

use super::prompt::{parse_messages, parse_texts, Prompt};
use super::{is_null, responses, Endpoint, Request, TopLevel};
use crate::error::HttpError;

impl<'a> Request<'a> {
    /// Parse a request body. Errors are the 400 replies OpenAI would give. A body is JSON
    /// by the one rule every path applies ([`crate::wire::check`]), so a body accepted here is
    /// accepted by the rewrite, the translations and the cache key alike.
    ///
    /// A Responses body's `stream_options` is not read: its stream always ends with usage, so
    /// `include_usage` is true for it and the rewrite never adds the option.
    pub fn parse(endpoint: Endpoint, body: &'a [u8]) -> Result<Request<'a>, HttpError> {
        let top = top_level(body)?;
        let model = model(&top)?;
        let stream = stream(&top)?;
        if stream && !endpoint.streams() {
            return Err(HttpError::invalid_param(
                "stream",
                "This endpoint does not stream.",
            ));
        }
        let include_usage = match endpoint {
            Endpoint::Responses => {
                responses::check_max_output_tokens(&top)?;
                true
            }
            _ => include_usage(&top)?,
        };
        let prompt = prompt(endpoint, &top)?;
        Ok(Request {
            endpoint,
            model,
            stream,
            include_usage,
            top,
            prompt,
        })
    }
}

/// The body's top level, once it is known to be JSON (one rule for every path that reads it).
pub(super) fn top_level(body: &[u8]) -> Result<TopLevel<'_>, HttpError> {
    crate::wire::check(body).map_err(|e| HttpError::invalid_json(&e.to_string()))?;
    serde_json::from_slice(body).map_err(|e| {
        let detail = match e.classify() {
            serde_json::error::Category::Data => "expected a JSON object".to_string(),
            _ => e.to_string(),
        };
        HttpError::invalid_json(&detail)
    })
}

/// `model`: a string that is not blank.
pub(super) fn model<'a>(top: &TopLevel<'a>) -> Result<Cow<'a, str>, HttpError> {
    let Some(raw) = top.get("model").filter(|v| !is_null(v)) else {
        return Err(HttpError::missing_param("model"));
    };
    match serde_json::from_str::<Cow<'a, str>>(raw.get()) {
        Ok(m) if !m.trim().is_empty() => Ok(m),
        Ok(_) => Err(HttpError::invalid_param(
            "model",
            "'model' must not be empty.",
        )),
        Err(_) => Err(HttpError::invalid_param(
            "model",
            "'model' must be a string.",
        )),
    }
}

/// `stream`: a boolean, false when absent.
fn stream(top: &TopLevel<'_>) -> Result<bool, HttpError> {
    match top.get("stream").filter(|v| !is_null(v)).map(|v| v.get()) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(HttpError::invalid_param(
            "stream",
            "'stream' must be a boolean.",
        )),
    }
}

/// `stream_options.include_usage`, false when absent.
fn include_usage(top: &TopLevel<'_>) -> Result<bool, HttpError> {
    #[derive(Deserialize)]
    struct StreamOptions {
        #[serde(default)]
        include_usage: Option<bool>,
    }
    let Some(raw) = top.get("stream_options").filter(|v| !is_null(v)) else {
        return Ok(false);
    };
    match serde_json::from_str::<StreamOptions>(raw.get()) {
        Ok(o) => Ok(o.include_usage.unwrap_or(false)),
        Err(_) => Err(HttpError::invalid_param(
            "stream_options",
            "'stream_options' must be an object with a boolean 'include_usage'.",
        )),
    }
}

/// The endpoint's counted field, required (none is for Responses), decoded now, once: a
/// malformed one is a 400, not a silent 0.
fn prompt<'a>(endpoint: Endpoint, top: &TopLevel<'a>) -> Result<Prompt<'a>, HttpError> {
    let required = match endpoint {
        Endpoint::ChatCompletions => Some("messages"),
        Endpoint::Completions => Some("prompt"),
        Endpoint::Embeddings => Some("input"),
        // Nothing: a Responses request's context may be stored at the provider.
        Endpoint::Responses => None,
    };
    if let Some(required) = required.filter(|r| top.get(r).filter(|v| !is_null(v)).is_none()) {
        return Err(HttpError::missing_param(required));
    }
    Ok(match endpoint {
        Endpoint::ChatCompletions => {
            let messages = parse_messages(top.get("messages"))?;
            if messages.is_empty() {
                return Err(HttpError::invalid_param(
                    "messages",
                    "'messages' must contain at least one message.",
                ));
            }
            Prompt::Chat(messages)
        }
        Endpoint::Completions => Prompt::Texts(parse_texts(top.get("prompt"), "prompt")?),
        Endpoint::Embeddings => Prompt::Texts(parse_texts(top.get("input"), "input")?),
        Endpoint::Responses => Prompt::Responses(responses::conversation(top)?),
    })
}
