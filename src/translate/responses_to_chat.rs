//! A Responses API client (`/v1/responses`: the OpenAI Agents SDK, Codex, `client.responses`)
//! in front of a provider that serves only chat completions.
//!
//! The translation is stateless: nothing is stored, so what needs OpenAI's stored state
//! (`previous_response_id`, `conversation`, `prompt` templates, `item_reference` items, files
//! by `file_id`) or its background execution (`background: true`) is refused with a 400 naming
//! the parameter, and `store` is accepted and not honoured (the `response` says `store: false`).
//! Only function tools exist in chat completions: any other tool type is refused.
//!
//! Requests ([`translate_request`]): `instructions` becomes a leading system message, `input`
//! (a string, or items) the messages; function tools, `tool_choice`, `text.format`,
//! `max_output_tokens`, `reasoning.effort` and the sampling fields map to their chat fields.
//! The request's settings a `response` object repeats are kept as a [`ResponsesEcho`], which
//! the answer's translation takes.
//!
//! Answers: a `chat.completion` becomes a `response` object ([`translate_response`]); a chunk
//! stream becomes the Responses event sequence ([`translate_stream`]); errors keep OpenAI's
//! `{"error":{...}}` shape ([`translate_error`]). Usage maps as [`usage_to_responses`] says.

use serde_json::{json, Map, Value};

mod input;
mod request;
mod response;
mod stream;
#[cfg(test)]
mod tests;

pub use request::translate_request;
pub use response::translate_response;
pub use stream::{translate_stream, Stream};

/// The settings of a Responses request that its `response` object repeats (OpenAI's answers
/// echo them), each as the request gave it or as OpenAI states its default. Made by
/// [`translate_request`] from a request it accepted, so every field has a shape the
/// `response` object allows; [`ResponsesEcho::default`] is a request that set none of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponsesEcho {
    fields: Map<String, Value>,
}

/// The echoed fields and their values when the request has none.
fn echo_defaults() -> [(&'static str, Value); 13] {
    [
        ("instructions", Value::Null),
        ("max_output_tokens", Value::Null),
        ("metadata", json!({})),
        ("parallel_tool_calls", true.into()),
        ("prompt_cache_key", Value::Null),
        ("reasoning", json!({"effort": null, "summary": null})),
        ("safety_identifier", Value::Null),
        ("temperature", Value::Null),
        ("text", json!({"format": {"type": "text"}})),
        ("tool_choice", "auto".into()),
        ("tools", json!([])),
        ("top_p", Value::Null),
        ("user", Value::Null),
    ]
}

impl Default for ResponsesEcho {
    fn default() -> ResponsesEcho {
        ResponsesEcho::of(&Map::new())
    }
}

impl ResponsesEcho {
    /// The echo of an accepted request: its own value of each field (a `null` is the default).
    fn of(req: &Map<String, Value>) -> ResponsesEcho {
        let mut fields = Map::new();
        for (k, default) in echo_defaults() {
            let v = req.get(k).filter(|v| !v.is_null()).cloned();
            fields.insert(k.into(), v.unwrap_or(default));
        }
        ResponsesEcho { fields }
    }

    /// The echoed fields, to start a `response` object from.
    fn fields(&self) -> Map<String, Value> {
        self.fields.clone()
    }
}

/// The part of the chat completion's id the response's ids are made of: the same answer has
/// the same ids (`resp_<id>`, `msg_<id>_<n>`, `fc_<id>_<n>`); without an id, the answer's time.
fn id_suffix(chat_id: Option<&str>, created: u64) -> String {
    match chat_id.map(|id| id.strip_prefix("chatcmpl-").unwrap_or(id)) {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => created.to_string(),
    }
}

/// Responses usage from a chat completion's: `prompt_tokens` is `input_tokens` (cached tokens
/// included, as at OpenAI), `cached_tokens` and the cache writes an Anthropic provider reports
/// (`cache_creation_tokens`) its details, `completion_tokens` `output_tokens` (reasoning
/// included) and `reasoning_tokens` its details.
pub fn usage_to_responses(u: &Value) -> Value {
    let n = |k: &str| u.get(k).and_then(crate::wire::count);
    let detail = |d: &str, k: &str| {
        u.get(d)
            .and_then(|d| d.get(k))
            .and_then(crate::wire::count)
            .unwrap_or(0)
    };
    let input = n("prompt_tokens").unwrap_or(0);
    let output = n("completion_tokens").unwrap_or(0);
    json!({
        "input_tokens": input,
        "input_tokens_details": {
            "cached_tokens": detail("prompt_tokens_details", "cached_tokens"),
            "cache_write_tokens": detail("prompt_tokens_details", "cache_creation_tokens"),
        },
        "output_tokens": output,
        "output_tokens_details": {
            "reasoning_tokens": detail("completion_tokens_details", "reasoning_tokens"),
        },
        "total_tokens": n("total_tokens").unwrap_or_else(|| input.saturating_add(output)),
    })
}

/// A chat provider's error (`{"error":{...}}`, the inner object, or what an OpenAI-compatible
/// server sends instead, such as FastAPI's `{"detail": ...}`) as the OpenAI-format error a
/// Responses client gets: `{"error":{"message","type","param","code"}}`.
pub fn translate_error(e: &Value) -> Value {
    error_body(e, "server_error")
}

/// [`translate_error`], with `kind` as the type when the error names none.
fn error_body(e: &Value, kind: &str) -> Value {
    let inner = e.get("error").filter(|i| i.is_object()).unwrap_or(e);
    let text = |k: &str| inner.get(k).filter(|v| v.is_string()).cloned();
    let message = text("message")
        .or_else(|| e.get("detail").filter(|v| v.is_string()).cloned())
        .or_else(|| inner.as_str().map(Value::from))
        .unwrap_or_else(|| "The provider returned an error.".into());
    json!({"error": {
        "message": message,
        "type": text("type").unwrap_or_else(|| kind.into()),
        "param": text("param").unwrap_or(Value::Null),
        "code": text("code").unwrap_or(Value::Null),
    }})
}

/// The `code` of a `response.failed` response's `error`, which must be one OpenAI's Responses
/// API defines: the provider's own when it is one of those, else by the error's type.
fn failed_code(error: &Value) -> &'static str {
    let inner = error.get("error").unwrap_or(&Value::Null);
    let field = |k: &str| inner.get(k).and_then(Value::as_str).unwrap_or("");
    match (field("code"), field("type")) {
        ("rate_limit_exceeded", _) | (_, "requests") | (_, "tokens") => "rate_limit_exceeded",
        ("invalid_prompt", _) | (_, "invalid_request_error") => "invalid_prompt",
        _ => "server_error",
    }
}
