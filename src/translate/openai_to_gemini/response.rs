//! A whole Gemini answer (`GenerateContentResponse`, or a Google error) in OpenAI's format.

use serde_json::{json, Map, Value};

use super::{error_of, finish_reason, join_call_id, Counts};
use crate::error::HttpError;
use crate::translate::ResponseContext;

pub(super) fn translate(body: &[u8], context: &ResponseContext) -> Option<Vec<u8>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    if let Some(e) = error_of(&v) {
        return Some(translate_error(e, context.status).body());
    }
    if !(200..300).contains(&context.status) {
        return Some(translate_error(&v, context.status).body());
    }
    serde_json::to_vec(&completion(&v, context)).ok()
}

/// The `chat.completion` for a `GenerateContentResponse`.
fn completion(v: &Value, context: &ResponseContext) -> Value {
    let candidates = v.get("candidates").and_then(Value::as_array);
    let mut choices: Vec<Value> = candidates
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(position, c)| choice(c, position as u64, context.nonce))
        .collect();
    if choices.is_empty() {
        // No candidates: the prompt was blocked (`promptFeedback.blockReason`), or nothing came.
        let blocked = v
            .pointer("/promptFeedback/blockReason")
            .is_some_and(|r| !r.is_null());
        choices.push(json!({
            "index": 0,
            "message": {"role": "assistant", "content": ""},
            "finish_reason": if blocked { "content_filter" } else { "stop" },
            "logprobs": null,
        }));
    }
    let mut out = Map::new();
    out.insert("id".into(), response_id(v, context.nonce).into());
    out.insert("object".into(), "chat.completion".into());
    out.insert("created".into(), context.created.into());
    out.insert(
        "model".into(),
        v.get("modelVersion").cloned().unwrap_or(Value::Null),
    );
    out.insert("choices".into(), Value::Array(choices));
    if let Some(u) = v.get("usageMetadata").filter(|u| u.is_object()) {
        let mut counts = Counts::default();
        counts.read(u);
        out.insert("usage".into(), counts.openai());
    }
    Value::Object(out)
}

/// The answer's id: Gemini's `responseId`, else one made from the nonce.
pub(super) fn response_id(v: &Value, nonce: u64) -> String {
    v.get("responseId")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map_or_else(|| format!("chatcmpl-{nonce:016x}"), str::to_string)
}

/// What a candidate's parts say: its text, its thoughts and its function calls.
#[derive(Debug, Default)]
pub(super) struct Parts {
    pub text: String,
    pub reasoning: String,
    pub calls: Vec<Value>,
}

impl Parts {
    /// Read `parts`; calls get ids `call_{nonce}_{choice}_{n}` (`n` counted from `first_call`)
    /// when Gemini gives none.
    pub fn read(parts: &Value, nonce: u64, choice: u64, first_call: u64) -> Parts {
        let mut out = Parts::default();
        for p in parts.as_array().into_iter().flatten() {
            if let Some(fc) = p.get("functionCall") {
                let n = first_call + out.calls.len() as u64;
                out.calls
                    .push(tool_call(p, fc, &format!("call_{nonce:016x}_{choice}_{n}")));
            } else if let Some(t) = p.get("text").and_then(Value::as_str) {
                if p.get("thought").and_then(Value::as_bool) == Some(true) {
                    out.reasoning.push_str(t);
                } else {
                    out.text.push_str(t);
                }
            }
        }
        out
    }
}

/// A `functionCall` part as an OpenAI tool call; its signature rides in the id.
fn tool_call(part: &Value, fc: &Value, made_id: &str) -> Value {
    let base = fc
        .get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(made_id);
    let signature = part.get("thoughtSignature").and_then(Value::as_str);
    let args = fc
        .get("args")
        .filter(|a| a.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}));
    json!({
        "id": join_call_id(base, signature),
        "type": "function",
        "function": {
            "name": fc.get("name").cloned().unwrap_or_else(|| "".into()),
            "arguments": args.to_string(),
        },
    })
}

/// A candidate as a choice.
fn choice(c: &Value, position: u64, nonce: u64) -> Value {
    let index = c.get("index").and_then(Value::as_u64).unwrap_or(position);
    let parts = Parts::read(
        c.pointer("/content/parts").unwrap_or(&Value::Null),
        nonce,
        index,
        0,
    );
    let called = !parts.calls.is_empty();
    let mut message = Map::new();
    message.insert("role".into(), "assistant".into());
    let content = if parts.text.is_empty() && called {
        Value::Null
    } else {
        parts.text.into()
    };
    message.insert("content".into(), content);
    if !parts.reasoning.is_empty() {
        message.insert("reasoning_content".into(), parts.reasoning.into());
    }
    if called {
        message.insert("tool_calls".into(), Value::Array(parts.calls));
    }
    let reason = c
        .get("finishReason")
        .and_then(Value::as_str)
        .unwrap_or("STOP");
    json!({
        "index": index,
        "message": message,
        "finish_reason": finish_reason(reason, called),
        "logprobs": c.get("logprobsResult").map_or(Value::Null, logprobs),
    })
}

/// A candidate's `logprobsResult` as OpenAI's `logprobs`: each chosen token with the top
/// candidates of its step.
pub(super) fn logprobs(result: &Value) -> Value {
    let entry = |c: &Value| {
        let token = c.get("token").and_then(Value::as_str).unwrap_or("");
        json!({
            "token": token,
            "logprob": c.get("logProbability").and_then(Value::as_f64).unwrap_or(0.0),
            "bytes": token.as_bytes(),
        })
    };
    let top = result.get("topCandidates").and_then(Value::as_array);
    let content: Vec<Value> = result
        .get("chosenCandidates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(step, chosen)| {
            let mut e = entry(chosen);
            let alternatives: Vec<Value> = top
                .and_then(|t| t.get(step))
                .and_then(|t| t.get("candidates"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(entry)
                .collect();
            if let Some(o) = e.as_object_mut() {
                o.insert("top_logprobs".into(), Value::Array(alternatives));
            }
            e
        })
        .collect();
    json!({"content": content, "refusal": null})
}

/// A Google error object as the OpenAI-format error a client expects. The status comes from the
/// error's `status` (`INVALID_ARGUMENT` 400, `UNAUTHENTICATED` 401, `PERMISSION_DENIED` 403,
/// `NOT_FOUND` 404, `RESOURCE_EXHAUSTED` 429, `INTERNAL` 500, `UNAVAILABLE` 503,
/// `DEADLINE_EXCEEDED` 504, …), else its numeric `code`, else `status` (the answer's HTTP
/// status). A 429 is a rate limit error, as the gateway's own.
pub fn translate_error(e: &Value, status: u32) -> HttpError {
    let inner = e.get("error").filter(|i| i.is_object()).unwrap_or(e);
    let message = inner
        .get("message")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .unwrap_or("The provider returned an error.")
        .to_string();
    let code = inner
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u32::try_from(c).ok())
        .filter(|c| (400..600).contains(c));
    let status = match inner.get("status").and_then(Value::as_str).unwrap_or("") {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => 400,
        "UNAUTHENTICATED" => 401,
        "PERMISSION_DENIED" => 403,
        "NOT_FOUND" => 404,
        "ABORTED" | "ALREADY_EXISTS" => 409,
        "RESOURCE_EXHAUSTED" => 429,
        "CANCELLED" => 499,
        "INTERNAL" | "UNKNOWN" | "DATA_LOSS" => 500,
        "UNIMPLEMENTED" => 501,
        "UNAVAILABLE" => 503,
        "DEADLINE_EXCEEDED" => 504,
        _ => code.unwrap_or(if (400..600).contains(&status) {
            status
        } else {
            502
        }),
    };
    if status == 429 {
        return HttpError::rate_limited("requests", message);
    }
    let (kind, code) = match status {
        401 => ("authentication_error", "invalid_api_key"),
        403 => ("permission_error", "permission_denied"),
        404 => ("invalid_request_error", "not_found"),
        409 => ("invalid_request_error", "conflict"),
        400..=499 => ("invalid_request_error", "invalid_request"),
        503 => ("server_error", "provider_unavailable"),
        504 => ("server_error", "provider_timeout"),
        _ => ("server_error", "provider_error"),
    };
    HttpError {
        status,
        kind,
        code,
        param: None,
        message,
        outcome: "upstream_error",
        retry_after_ms: None,
    }
}
