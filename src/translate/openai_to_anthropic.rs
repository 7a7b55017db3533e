//! An OpenAI chat client in front of an Anthropic Messages provider.
//!
//! Requests: an OpenAI chat request becomes a Messages request. System (and developer) messages
//! become `system`; text and image parts become content blocks; assistant `tool_calls` become
//! `tool_use` blocks and `tool` messages `tool_result` blocks (consecutive ones merged into one
//! user turn, since Anthropic wants user and assistant to alternate); tools, `tool_choice`,
//! `stop`, `temperature`, `top_p` and `user` map to their Anthropic fields, and `max_tokens`
//! (required there) comes from `max_completion_tokens`, `max_tokens` or a configured default.
//!
//! Responses: a Messages response becomes a `chat.completion`; a Messages SSE stream is
//! translated event by event into `chat.completion.chunk` events by [`Stream`]. Usage maps as
//! [`usage_to_openai`] says. Anthropic errors become OpenAI-format errors.

use serde_json::{json, Map, Value};

use super::{
    openai_tool_call, text_of, usage_to_openai, ResponseContext, StreamTranslate, Target,
    Translated, API_VERSION,
};
use crate::error::HttpError;
use crate::names;

#[cfg(test)]
mod tests;

/// Translate an OpenAI chat request body into an Anthropic Messages request body for
/// `target.model`; the request also needs `anthropic-version` and its new length.
pub fn translate_request(body: &[u8], target: &Target<'_>) -> Result<Translated, HttpError> {
    let req: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| HttpError::invalid_json(&e.to_string()))?;
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| HttpError::missing_param("messages"))?;
    let (system, turns) = conversation(messages)?;
    let num = |k: &str| req.get(k).and_then(Value::as_u64);
    let max_tokens = num("max_completion_tokens")
        .or_else(|| num("max_tokens"))
        .unwrap_or(target.default_max_tokens);
    let mut out = Map::new();
    out.insert("model".into(), target.model.into());
    out.insert("max_tokens".into(), max_tokens.into());
    out.insert("messages".into(), Value::Array(turns));
    if !system.is_empty() {
        out.insert("system".into(), system.join("\n\n").into());
    }
    for k in ["temperature", "top_p", "stream"] {
        if let Some(v) = req.get(k).filter(|v| !v.is_null()) {
            out.insert(k.into(), v.clone());
        }
    }
    match req.get("stop") {
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            out.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if let Some(user) = req.get("user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    if let Some(t) = req.get("tools").and_then(Value::as_array) {
        out.insert("tools".into(), tools(t));
    }
    if let Some(c) = req.get("tool_choice").and_then(tool_choice) {
        out.insert("tool_choice".into(), c);
    }
    let body = serde_json::to_vec(&Value::Object(out))
        .map_err(|e| HttpError::invalid_json(&e.to_string()))?;
    let version = (names::ANTHROPIC_VERSION, Some(API_VERSION.to_string()));
    Ok(Translated::new(body, vec![version]))
}

/// The system texts and the alternating user and assistant turns of OpenAI `messages`.
fn conversation(messages: &[Value]) -> Result<(Vec<String>, Vec<Value>), HttpError> {
    let mut system = Vec::new();
    let mut turns: Vec<Value> = Vec::new();
    for m in messages {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => system.push(text_of(content)),
            "user" => push_turn(&mut turns, "user", blocks(content)?),
            "assistant" => push_turn(&mut turns, "assistant", assistant_blocks(m, content)?),
            "tool" => {
                let result = json!({
                    "type": "tool_result",
                    "tool_use_id": m.get("tool_call_id").and_then(Value::as_str).unwrap_or(""),
                    "content": text_of(content),
                });
                push_turn(&mut turns, "user", vec![result]);
            }
            other => {
                return Err(HttpError::invalid_param(
                    "messages",
                    format!("unknown message role '{other}'"),
                ))
            }
        }
    }
    Ok((system, turns))
}

/// An assistant message's content blocks, its tool calls as `tool_use` blocks after them.
fn assistant_blocks(m: &Value, content: &Value) -> Result<Vec<Value>, HttpError> {
    let mut b = blocks(content)?;
    for call in m
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = call.get("function").unwrap_or(&Value::Null);
        let args = f.get("arguments").and_then(Value::as_str).unwrap_or("{}");
        let input: Value = serde_json::from_str(args).map_err(|_| {
            HttpError::invalid_param("messages", "tool call arguments must be JSON")
        })?;
        b.push(json!({
            "type": "tool_use",
            "id": call.get("id").and_then(Value::as_str).unwrap_or(""),
            "name": f.get("name").and_then(Value::as_str).unwrap_or(""),
            "input": input,
        }));
    }
    Ok(b)
}

/// One OpenAI content part as an Anthropic content block.
fn block(part: &Value) -> Result<Value, HttpError> {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "text" => Ok(
            json!({"type": "text", "text": part.get("text").and_then(Value::as_str).unwrap_or("")}),
        ),
        "image_url" => {
            let url = part
                .get("image_url")
                .and_then(|u| u.get("url").or(Some(u)))
                .and_then(Value::as_str)
                .unwrap_or("");
            if let Some(rest) = url.strip_prefix("data:") {
                let (media_type, data) = rest.split_once(";base64,").ok_or_else(|| {
                    HttpError::invalid_param("messages", "an image data URL must be base64")
                })?;
                Ok(
                    json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}),
                )
            } else {
                Ok(json!({"type": "image", "source": {"type": "url", "url": url}}))
            }
        }
        other => Err(HttpError::invalid_param(
            "messages",
            format!("content parts of type '{other}' cannot be sent to this model's provider"),
        )),
    }
}

fn blocks(content: &Value) -> Result<Vec<Value>, HttpError> {
    match content {
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(vec![json!({"type": "text", "text": s})]),
        Value::Array(parts) => parts.iter().map(block).collect(),
        Value::Null => Ok(Vec::new()),
        _ => Err(HttpError::invalid_param(
            "messages",
            "'content' must be a string or an array of parts",
        )),
    }
}

/// Append a turn, merging it into the previous one when the role repeats.
fn push_turn(turns: &mut Vec<Value>, role: &str, mut content: Vec<Value>) {
    if let Some(last) = turns.last_mut() {
        if last.get("role").and_then(Value::as_str) == Some(role) {
            if let Some(arr) = last.get_mut("content").and_then(Value::as_array_mut) {
                arr.append(&mut content);
                return;
            }
        }
    }
    turns.push(json!({"role": role, "content": content}));
}

/// OpenAI function tools as Anthropic tools.
fn tools(tools: &[Value]) -> Value {
    tools
        .iter()
        .filter_map(|t| t.get("function"))
        .map(|f| {
            let mut tool = Map::new();
            tool.insert("name".into(), f.get("name").cloned().unwrap_or(Value::Null));
            tool.insert(
                "input_schema".into(),
                f.get("parameters")
                    .cloned()
                    .unwrap_or(json!({"type": "object"})),
            );
            if let Some(d) = f.get("description") {
                tool.insert("description".into(), d.clone());
            }
            Value::Object(tool)
        })
        .collect()
}

/// An OpenAI `tool_choice` as Anthropic's; `None` when it names nothing Anthropic has.
fn tool_choice(tc: &Value) -> Option<Value> {
    match tc {
        Value::String(s) if s == "required" => Some(json!({"type": "any"})),
        Value::String(s) if s == "none" => Some(json!({"type": "none"})),
        Value::String(_) => Some(json!({"type": "auto"})),
        Value::Object(o) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .map(|n| json!({"type": "tool", "name": n})),
        _ => None,
    }
}

fn finish_reason(stop: Option<&str>) -> Value {
    match stop {
        Some("end_turn") | Some("stop_sequence") | Some("pause_turn") => "stop".into(),
        Some("max_tokens") => "length".into(),
        Some("tool_use") => "tool_calls".into(),
        Some("refusal") => "content_filter".into(),
        _ => Value::Null,
    }
}

/// The `anthropic_version` Claude on Vertex AI takes in the body (instead of the header).
pub const VERTEX_VERSION: &str = "vertex-2023-10-16";

/// A Messages request `body` as Claude on Vertex AI takes it: the model is in the path, not
/// the body, and the API version is in the body.
pub fn for_vertex(body: &[u8]) -> Result<Vec<u8>, HttpError> {
    let mut req: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| HttpError::invalid_json(&e.to_string()))?;
    req.remove("model");
    req.insert("anthropic_version".into(), VERTEX_VERSION.into());
    serde_json::to_vec(&req).map_err(|e| HttpError::invalid_json(&e.to_string()))
}

/// Translate an Anthropic answer body into OpenAI's format: a message (2xx) into a
/// `chat.completion`, an error (any other status, or a 2xx body of type `error`) into an
/// OpenAI-format error. `None` when the body is not JSON.
pub fn translate_response(body: &[u8], context: &ResponseContext) -> Option<Vec<u8>> {
    if !(200..300).contains(&context.status) {
        return serde_json::from_slice::<Value>(body).ok().map(|v| {
            if is_google_error(&v) {
                crate::translate::openai_to_gemini::translate_error(&v, context.status).body()
            } else {
                translate_error(&v).body()
            }
        });
    }
    let m: Value = serde_json::from_slice(body).ok()?;
    if m.get("type").and_then(Value::as_str) == Some("error") {
        return Some(translate_error(&m).body());
    }
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in m
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => calls.push(openai_tool_call(b)),
            _ => {}
        }
    }
    let content = if text.is_empty() && !calls.is_empty() {
        Value::Null
    } else {
        text.into()
    };
    let mut message = Map::new();
    message.insert("role".into(), "assistant".into());
    message.insert("content".into(), content);
    if !calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    let out = json!({
        "id": m.get("id").cloned().unwrap_or(Value::Null),
        "object": "chat.completion",
        "created": context.created,
        "model": m.get("model").cloned().unwrap_or(Value::Null),
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": finish_reason(m.get("stop_reason").and_then(Value::as_str)),
        }],
        "usage": usage_to_openai(m.get("usage").unwrap_or(&Value::Null)),
    });
    serde_json::to_vec(&out).ok()
}

/// Whether `v` is an error in Google's shape (`{"error": {"code", "message", "status"}}`), as
/// Vertex AI answers for Claude when the request fails before reaching the model (quota,
/// credentials, permissions), rather than Anthropic's (`{"type": "error", "error": {"type"}}`).
pub fn is_google_error(v: &Value) -> bool {
    v.get("error")
        .is_some_and(|e| e.get("status").is_some_and(Value::is_string) && e.get("type").is_none())
}

/// An Anthropic error object as the OpenAI-format error a client expects.
pub fn translate_error(e: &Value) -> HttpError {
    let inner = e.get("error").unwrap_or(e);
    let message = inner
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("The provider returned an error.")
        .to_string();
    match inner.get("type").and_then(Value::as_str).unwrap_or("") {
        "invalid_request_error" => HttpError::invalid_param("messages", message),
        "rate_limit_error" => HttpError::rate_limited("requests", message),
        other => {
            // The other types by the status Anthropic gives them, as a Google error of that
            // status reads (the same OpenAI type and code).
            let status = match other {
                "authentication_error" => 401,
                "permission_error" => 403,
                "not_found_error" => 404,
                "request_too_large" => 413,
                "api_error" => 500,
                "overloaded_error" => 503,
                _ => return HttpError::provider_error(message),
            };
            let e = serde_json::json!({ "message": message });
            crate::translate::openai_to_gemini::translate_error(&e, status)
        }
    }
}

/// The stream translator for one answer. Its usage chunk is always produced: the accounting
/// reads it, and strips it when the client did not ask for it.
pub fn translate_stream(context: &ResponseContext) -> Stream {
    Stream::new(context.created, true)
}

/// Translates a Messages SSE stream into OpenAI `chat.completion.chunk` events, one event at a
/// time. It keeps the message id, model, the running tool-call index and the usage figures.
#[derive(Debug, Default)]
pub struct Stream {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    input: Value,
    /// Anthropic content block index → OpenAI tool call index, for the open tool_use block.
    tool_block: Option<(u64, u64)>,
    tools_seen: u64,
    output_tokens: u64,
    done: bool,
}

impl StreamTranslate for Stream {
    fn event(&mut self, name: &str, data: &[u8]) -> String {
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            return String::new();
        };
        match v.get("type").and_then(Value::as_str).unwrap_or(name) {
            "message_start" => self.message_start(&v),
            "content_block_start" => self.block_start(&v),
            "content_block_delta" => self.block_delta(&v),
            "content_block_stop" => {
                self.tool_block = None;
                String::new()
            }
            "message_delta" => self.message_delta(&v),
            "message_stop" => self.message_stop(),
            "error" => {
                let e = translate_error(&v);
                format!("data: {}\n\n", String::from_utf8_lossy(&e.body()))
            }
            _ => String::new(), // ping and future event types
        }
    }

    /// Whether `message_stop` arrived.
    fn finished(&self) -> bool {
        self.done
    }
}

impl Stream {
    pub fn new(created: u64, include_usage: bool) -> Stream {
        Stream {
            created,
            include_usage,
            ..Stream::default()
        }
    }

    /// One `chat.completion.chunk` event.
    fn sse_chunk(&self, delta: Value, finish: Value) -> String {
        let c = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        });
        format!("data: {c}\n\n")
    }

    fn message_start(&mut self, v: &Value) -> String {
        let m = v.get("message").unwrap_or(&Value::Null);
        let text = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        self.id = text("id");
        self.model = text("model");
        self.input = m.get("usage").cloned().unwrap_or(Value::Null);
        self.sse_chunk(json!({"role": "assistant", "content": ""}), Value::Null)
    }

    fn block_start(&mut self, v: &Value) -> String {
        let b = v.get("content_block").unwrap_or(&Value::Null);
        if b.get("type").and_then(Value::as_str) != Some("tool_use") {
            return String::new();
        }
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        let call = self.tools_seen;
        self.tools_seen += 1;
        self.tool_block = Some((index, call));
        self.sse_chunk(
            json!({"tool_calls": [{
                "index": call,
                "id": b.get("id").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {"name": b.get("name").cloned().unwrap_or(Value::Null), "arguments": ""},
            }]}),
            Value::Null,
        )
    }

    fn block_delta(&mut self, v: &Value) -> String {
        let d = v.get("delta").unwrap_or(&Value::Null);
        match d.get("type").and_then(Value::as_str) {
            Some("text_delta") => self.sse_chunk(
                json!({"content": d.get("text").cloned().unwrap_or_default()}),
                Value::Null,
            ),
            Some("input_json_delta") => {
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                let Some((_, call)) = self.tool_block.filter(|(b, _)| *b == index) else {
                    return String::new();
                };
                self.sse_chunk(
                    json!({"tool_calls": [{"index": call, "function": {
                        "arguments": d.get("partial_json").cloned().unwrap_or_default()}}]}),
                    Value::Null,
                )
            }
            _ => String::new(),
        }
    }

    fn message_delta(&mut self, v: &Value) -> String {
        if let Some(n) = v
            .get("usage")
            .and_then(|u| u.get("output_tokens"))
            .and_then(crate::wire::count)
        {
            self.output_tokens = n;
        }
        let stop = v
            .get("delta")
            .and_then(|d| d.get("stop_reason"))
            .and_then(Value::as_str);
        self.sse_chunk(json!({}), finish_reason(stop))
    }

    fn message_stop(&mut self) -> String {
        self.done = true;
        let mut out = String::new();
        if self.include_usage {
            let mut u = self.input.clone();
            if let Some(o) = u.as_object_mut() {
                o.insert("output_tokens".into(), self.output_tokens.into());
            }
            let c = json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": usage_to_openai(&u),
            });
            out.push_str(&format!("data: {c}\n\n"));
        }
        out.push_str("data: [DONE]\n\n");
        out
    }
}
