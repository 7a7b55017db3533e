//! An OpenAI chat client in front of an AWS Bedrock provider (the Converse and ConverseStream
//! APIs).
//!
//! Requests: an OpenAI chat request becomes a Converse request body. The model is not in it
//! (it is in the path, `/model/{modelId}/converse` or `/converse-stream`), nor is `stream` (the
//! path says it). System and developer messages become `system` blocks; text and inline
//! (`data:`) images become content blocks; assistant `tool_calls` become `toolUse` blocks and
//! `tool` messages `toolResult` blocks in a user message; consecutive messages of one role are
//! merged, since Converse wants user and assistant to alternate. `tools` and `tool_choice`
//! become `toolConfig`, `max_completion_tokens` (or `max_tokens`), `temperature`, `top_p` and
//! `stop` become `inferenceConfig`, and a `json_schema` `response_format` becomes
//! `outputConfig`. `n` above 1 is refused (Converse answers one message); the parameters
//! Converse has no field for are left out, as for an Anthropic provider.
//!
//! Answers: a Converse answer becomes a `chat.completion`, and a ConverseStream answer
//! (event-stream frames, decoded by [`crate::eventstream`]) is translated event by event by
//! [`Stream`]. Usage maps as [`usage_to_openai`] says: Bedrock's `inputTokens` counts the
//! prompt tokens neither read from nor written to the cache, so `prompt_tokens` is
//! `inputTokens + cacheReadInputTokens + cacheWriteInputTokens`. Converse answers name no model
//! and carry no id: the translated answer's `model` is empty and its id is
//! `chatcmpl-{nonce:016x}`. Bedrock errors become OpenAI-format errors of the status that
//! matches (throttling stays a 429).

use serde_json::{json, Map, Value};

use super::{openai_tool_call, usage_to_openai, ResponseContext, Target, Translated};
use crate::error::HttpError;

mod request;
mod stream;
#[cfg(test)]
mod tests;

pub use stream::Stream;

/// Translate an OpenAI chat request body into a Converse request body (for any model: the
/// model is in the path); the request also needs its new length.
pub fn translate_request(body: &[u8], _target: &Target<'_>) -> Result<Translated, HttpError> {
    let req: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| HttpError::invalid_json(&e.to_string()))?;
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| HttpError::missing_param("messages"))?;
    if req.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(HttpError::invalid_param(
            "n",
            "this model's provider (Bedrock) answers with one choice: 'n' must be 1",
        ));
    }
    let (system, turns) = request::conversation(messages)?;
    let mut out = Map::new();
    if let Some(tc) = request::tool_config(&req, &turns) {
        out.insert("toolConfig".into(), tc);
    }
    out.insert("messages".into(), Value::Array(turns));
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    if let Some(ic) = request::inference_config(&req) {
        out.insert("inferenceConfig".into(), ic);
    }
    if let Some(oc) = request::output_config(&req)? {
        out.insert("outputConfig".into(), oc);
    }
    let body = serde_json::to_vec(&Value::Object(out))
        .map_err(|e| HttpError::invalid_json(&e.to_string()))?;
    Ok(Translated::new(body, Vec::new()))
}

/// An OpenAI `finish_reason` for a Converse `stopReason`.
fn finish_reason(stop: Option<&str>) -> Value {
    match stop {
        Some("end_turn") | Some("stop_sequence") => "stop".into(),
        Some("max_tokens") | Some("model_context_window_exceeded") => "length".into(),
        Some("tool_use") => "tool_calls".into(),
        Some("guardrail_intervened") | Some("content_filtered") => "content_filter".into(),
        _ => Value::Null,
    }
}

/// Bedrock's usage (`inputTokens`, `outputTokens`, `cacheReadInputTokens`,
/// `cacheWriteInputTokens`) in Anthropic's names, which [`usage_to_openai`] reads: Bedrock's
/// input tokens, like Anthropic's, exclude the cache's reads and writes.
fn bedrock_usage(u: &Value) -> Value {
    let n = |k: &str| u.get(k).and_then(crate::wire::count).unwrap_or(0);
    json!({
        "input_tokens": n("inputTokens"),
        "cache_read_input_tokens": n("cacheReadInputTokens"),
        "cache_creation_input_tokens": n("cacheWriteInputTokens"),
        "output_tokens": n("outputTokens"),
    })
}

/// The answer's id: Converse gives none.
fn answer_id(context: &ResponseContext) -> String {
    format!("chatcmpl-{:016x}", context.nonce)
}

/// Translate a Bedrock answer body into OpenAI's format: a Converse answer (2xx) into a
/// `chat.completion`, an error (any other status) into an OpenAI-format error. `None` when the
/// body is not JSON.
pub fn translate_response(body: &[u8], context: &ResponseContext) -> Option<Vec<u8>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    if !(200..300).contains(&context.status) {
        return Some(translate_error(context.status, &v).body());
    }
    let message = v
        .get("output")
        .and_then(|o| o.get("message"))
        .unwrap_or(&Value::Null);
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for b in message
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(t) = b.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(u) = b.get("toolUse") {
            calls.push(openai_tool_call(&json!({
                "id": u.get("toolUseId"),
                "name": u.get("name"),
                "input": u.get("input"),
            })));
        } else if let Some(r) = b
            .get("reasoningContent")
            .and_then(|r| r.get("reasoningText"))
            .and_then(|r| r.get("text"))
            .and_then(Value::as_str)
        {
            reasoning.push_str(r);
        }
    }
    let mut out = Map::new();
    out.insert("role".into(), "assistant".into());
    let content = if text.is_empty() && !calls.is_empty() {
        Value::Null
    } else {
        text.into()
    };
    out.insert("content".into(), content);
    if !reasoning.is_empty() {
        out.insert("reasoning_content".into(), reasoning.into());
    }
    if !calls.is_empty() {
        out.insert("tool_calls".into(), Value::Array(calls));
    }
    let completion = json!({
        "id": answer_id(context),
        "object": "chat.completion",
        "created": context.created,
        "model": context.model,
        "choices": [{
            "index": 0,
            "message": out,
            "finish_reason": finish_reason(v.get("stopReason").and_then(Value::as_str)),
        }],
        "usage": usage_to_openai(&bedrock_usage(v.get("usage").unwrap_or(&Value::Null))),
    });
    serde_json::to_vec(&completion).ok()
}

/// A Bedrock error's message (`message`, or `Message` as some AWS front ends write it).
fn error_message(e: &Value, fallback: impl FnOnce() -> String) -> String {
    ["message", "Message"]
        .iter()
        .find_map(|k| e.get(*k).and_then(Value::as_str))
        .map_or_else(fallback, str::to_string)
}

/// An OpenAI-format error of this status and message.
fn error(
    status: u32,
    kind: &'static str,
    code: &'static str,
    outcome: &'static str,
    message: String,
) -> HttpError {
    HttpError {
        status,
        kind,
        code,
        param: None,
        message,
        outcome,
        retry_after_ms: None,
    }
}

/// A Bedrock error answer (status and `{"message"}` body) as the OpenAI-format error a client
/// expects. Bedrock's statuses are kept where OpenAI's clients know them (400 validation,
/// 403 access denied, 404 model not found, 408 model timeout, 429 throttling or model not
/// ready, 500, 503); a 424 (the model failed) and any other server error are a 502.
pub fn translate_error(status: u32, e: &Value) -> HttpError {
    let message = error_message(e, || {
        format!("The provider returned an error (HTTP {status}).")
    });
    let client = "invalid_request_error";
    match status {
        400 => error(400, client, "invalid_request", "bad_request", message),
        401 => error(401, client, "invalid_api_key", "unauthorized", message),
        403 => error(403, client, "access_denied", "unauthorized", message),
        404 => error(404, client, "model_not_found", "no_route", message),
        408 => error(
            408,
            "server_error",
            "provider_timeout",
            "upstream_error",
            message,
        ),
        429 => HttpError::rate_limited("requests", message),
        500 | 503 => error(
            status,
            "server_error",
            "provider_error",
            "upstream_error",
            message,
        ),
        402..=499 if status != 424 => {
            error(status, client, "invalid_request", "bad_request", message)
        }
        _ => HttpError::provider_error(message),
    }
}

/// An exception ConverseStream reports in its stream (`:exception-type`, payload
/// `{"message"}`) as an OpenAI-format error, of the status the same error has as an answer.
pub fn exception_error(kind: &str, e: &Value) -> HttpError {
    let status = match kind {
        "validationException" => 400,
        "throttlingException" => 429,
        "serviceUnavailableException" => 503,
        "internalServerException" => 500,
        _ => 502, // modelStreamErrorException, an unreadable stream, exceptions added later
    };
    let message = error_message(e, || format!("The provider's stream failed ({kind})."));
    translate_error(status, &json!({ "message": message }))
}

/// The stream translator for one answer. Its usage chunk is always produced: the meter reads
/// it, and strips it when the client did not ask for it.
pub fn translate_stream(context: &ResponseContext) -> Stream {
    Stream::new(answer_id(context), context.created, context.model.clone())
}
