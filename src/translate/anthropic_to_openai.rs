//! A Messages API client (`/v1/messages`, as Claude Code speaks) in front of an OpenAI-format
//! provider.
//!
//! Requests: `system` becomes a system message; text and image blocks become content parts;
//! `tool_use` blocks become the assistant's `tool_calls` and `tool_result` blocks `tool`
//! messages; tools, `tool_choice`, `stop_sequences`, `temperature`, `top_p`, `max_tokens` and
//! `metadata.user_id` map to their OpenAI fields, and a stream asks for the usage chunk.
//!
//! Responses: a `chat.completion` becomes a Messages response; an OpenAI chunk stream becomes
//! Messages events by [`Stream`]. Usage maps as [`usage_to_anthropic`] says. OpenAI errors,
//! and the gateway's own, take the Messages API's error shape.

use serde_json::{json, Map, Value};

use super::{
    openai_tool_call, text_of, usage_to_anthropic, ResponseContext, StreamTranslate, Target,
    Translated,
};
use crate::error::HttpError;
use crate::names;

#[cfg(test)]
mod tests;

/// The `model` of a Messages request, for routing (the rest is validated by
/// [`translate_request`]). The body must be JSON by the rule every path applies
/// ([`crate::wire::check`]), whatever field holds what `Value` refuses.
pub fn model_of(body: &[u8]) -> Result<String, HttpError> {
    crate::wire::check(body).map_err(|e| HttpError::invalid_json(&e.to_string()))?;
    #[derive(serde::Deserialize)]
    struct M {
        model: Option<Value>,
    }
    let m: M = serde_json::from_slice(body).map_err(|e| HttpError::invalid_json(&e.to_string()))?;
    match m.model {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        None | Some(Value::Null) => Err(HttpError::missing_param("model")),
        Some(_) => Err(HttpError::invalid_param(
            "model",
            "'model' must be a non-empty string.",
        )),
    }
}

/// Translate an Anthropic Messages request into an OpenAI chat request for `target.model`
/// (no `max_tokens` is added: OpenAI does not require one); the request also loses
/// `anthropic-version` and takes its new length.
pub fn translate_request(body: &[u8], target: &Target<'_>) -> Result<Translated, HttpError> {
    let req: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| HttpError::invalid_json(&e.to_string()))?;
    let mut out = Map::new();
    out.insert("model".into(), target.model.into());
    out.insert("messages".into(), Value::Array(messages(&req)?));
    if let Some(n) = req.get("max_tokens") {
        out.insert("max_tokens".into(), n.clone());
    }
    for k in ["temperature", "top_p"] {
        if let Some(v) = req.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        out.insert("stream".into(), true.into());
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(stop) = req.get("stop_sequences") {
        out.insert("stop".into(), stop.clone());
    }
    if let Some(user) = req.get("metadata").and_then(|m| m.get("user_id")) {
        out.insert("user".into(), user.clone());
    }
    if let Some(t) = req.get("tools").and_then(Value::as_array) {
        out.insert("tools".into(), tools(t));
    }
    if let Some(tc) = req.get("tool_choice") {
        out.insert("tool_choice".into(), tool_choice(tc));
    }
    let body = serde_json::to_vec(&Value::Object(out))
        .map_err(|e| HttpError::invalid_json(&e.to_string()))?;
    Ok(Translated::new(
        body,
        vec![(names::ANTHROPIC_VERSION, None)],
    ))
}

/// The OpenAI `messages` of a Messages request: its system prompt first, then every turn.
fn messages(req: &Map<String, Value>) -> Result<Vec<Value>, HttpError> {
    let mut messages = Vec::new();
    match req.get("system") {
        Some(Value::Null) | None => {}
        Some(sys) => messages.push(json!({"role": "system", "content": text_of(sys)})),
    }
    for m in req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| HttpError::missing_param("messages"))?
    {
        push_message(&mut messages, m);
    }
    Ok(messages)
}

/// Append one Anthropic turn: its `tool_result` blocks as `tool` messages, then the rest (text
/// and images as parts, `tool_use` blocks as tool calls) as one message, if anything is left.
fn push_message(messages: &mut Vec<Value>, m: &Value) {
    let role = m.get("role").and_then(Value::as_str).unwrap_or("");
    let content = m.get("content").unwrap_or(&Value::Null);
    let Value::Array(list) = content else {
        messages.push(json!({"role": role, "content": text_of(content)}));
        return;
    };
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    for b in list {
        match b.get("type").and_then(Value::as_str) {
            Some("tool_use") => calls.push(openai_tool_call(b)),
            Some("tool_result") => messages.push(json!({
                "role": "tool",
                "tool_call_id": b.get("tool_use_id").cloned().unwrap_or_default(),
                "content": text_of(b.get("content").unwrap_or(&Value::Null)),
            })),
            _ => parts.extend(openai_part(b)),
        }
    }
    if parts.is_empty() && calls.is_empty() {
        return;
    }
    let mut msg = Map::new();
    msg.insert("role".into(), role.into());
    let content = if parts.is_empty() {
        Value::Null
    } else {
        Value::Array(parts)
    };
    msg.insert("content".into(), content);
    if !calls.is_empty() {
        msg.insert("tool_calls".into(), Value::Array(calls));
    }
    messages.push(Value::Object(msg));
}

/// An Anthropic text or image block as an OpenAI content part; `None` for any other block.
fn openai_part(b: &Value) -> Option<Value> {
    match b.get("type").and_then(Value::as_str)? {
        "text" => Some(json!({"type": "text", "text": b.get("text").cloned().unwrap_or_default()})),
        "image" => {
            let src = b.get("source")?;
            let url = match src.get("type").and_then(Value::as_str)? {
                "base64" => format!(
                    "data:{};base64,{}",
                    src.get("media_type")
                        .and_then(Value::as_str)
                        .unwrap_or("image/png"),
                    src.get("data").and_then(Value::as_str).unwrap_or("")
                ),
                _ => src.get("url").and_then(Value::as_str)?.to_string(),
            };
            Some(json!({"type": "image_url", "image_url": {"url": url}}))
        }
        _ => None,
    }
}

/// Anthropic tools as OpenAI function tools.
fn tools(tools: &[Value]) -> Value {
    tools
        .iter()
        .map(|t| {
            json!({"type": "function", "function": {
                "name": t.get("name").cloned().unwrap_or_default(),
                "description": t.get("description").cloned().unwrap_or_default(),
                "parameters": t.get("input_schema").cloned().unwrap_or(json!({"type": "object"})),
            }})
        })
        .collect()
}

/// An Anthropic `tool_choice` as OpenAI's (`auto` for what OpenAI has no word for).
fn tool_choice(tc: &Value) -> Value {
    match tc.get("type").and_then(Value::as_str) {
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            json!({"type": "function", "function": {"name": tc.get("name").cloned().unwrap_or_default()}})
        }
        _ => json!("auto"),
    }
}

fn stop_reason(finish: Option<&str>) -> Value {
    match finish {
        Some("length") => "max_tokens".into(),
        Some("tool_calls") | Some("function_call") => "tool_use".into(),
        Some("content_filter") => "refusal".into(),
        Some(_) => "end_turn".into(),
        None => Value::Null,
    }
}

/// Translate an OpenAI answer body (a `chat.completion` or an error, whatever the status: an
/// OpenAI error body says it is one) into the Messages API's shape; `None` when it is not JSON.
/// An error's type is the Messages API's for its status where it has one of its own.
pub fn translate_response(body: &[u8], context: &ResponseContext) -> Option<Vec<u8>> {
    let r: Value = serde_json::from_slice(body).ok()?;
    if let Some(e) = r.get("error") {
        let mut out = translate_error(e);
        type_by_status(&mut out, context.status);
        return serde_json::to_vec(&out).ok();
    }
    let choice = r
        .get("choices")
        .and_then(|c| c.get(0))
        .unwrap_or(&Value::Null);
    let msg = choice.get("message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    if let Some(t) = msg
        .get("content")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        content.push(json!({"type": "text", "text": t}));
    }
    for c in msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = c.get("function").unwrap_or(&Value::Null);
        let input = f
            .get("arguments")
            .and_then(Value::as_str)
            .and_then(|a| serde_json::from_str::<Value>(a).ok())
            .unwrap_or(json!({}));
        content.push(
            json!({"type": "tool_use", "id": c.get("id").cloned().unwrap_or_default(),
                            "name": f.get("name").cloned().unwrap_or_default(), "input": input}),
        );
    }
    let out = json!({
        "id": r.get("id").cloned().unwrap_or_default(),
        "type": "message",
        "role": "assistant",
        "model": r.get("model").cloned().unwrap_or_default(),
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason").and_then(Value::as_str)),
        "stop_sequence": null,
        "usage": usage_to_anthropic(r.get("usage").unwrap_or(&Value::Null)),
    });
    serde_json::to_vec(&out).ok()
}

/// An OpenAI error object in Anthropic's error shape.
pub fn translate_error(e: &Value) -> Value {
    let kind = match e.get("type").and_then(Value::as_str) {
        Some("invalid_request_error") => "invalid_request_error",
        Some("requests") | Some("tokens") => "rate_limit_error",
        _ if e.get("code").and_then(Value::as_str) == Some("rate_limit_exceeded") => {
            "rate_limit_error"
        }
        _ => "api_error",
    };
    json!({"type": "error", "error": {"type": kind,
        "message": e.get("message").cloned().unwrap_or_else(|| "error".into())}})
}

/// A local error (`{"error":{...}}` in OpenAI's shape) in the Messages API's shape.
pub fn local_error_body(e: &HttpError) -> Vec<u8> {
    let v = json!({"type": e.kind, "code": e.code, "message": e.message});
    let mut out = translate_error(&v);
    type_by_status(&mut out, e.status);
    serde_json::to_vec(&out).unwrap_or_default()
}

/// The Messages API's error type for `status`, where it has one of its own, in `out`.
fn type_by_status(out: &mut Value, status: u32) {
    let by_status = match status {
        401 => Some("authentication_error"),
        403 => Some("permission_error"),
        404 => Some("not_found_error"),
        413 => Some("request_too_large"),
        _ => None,
    };
    if let (Some(t), Some(err)) = (
        by_status,
        out.get_mut("error").and_then(Value::as_object_mut),
    ) {
        err.insert("type".into(), t.into());
    }
}

/// The stream translator for one answer: its `message_start` announces the prompt as the
/// gateway counted it (the provider's own figures follow in its final `message_delta`).
pub fn translate_stream(context: &ResponseContext) -> Stream {
    Stream::new(context.counted_input)
}

/// Translates an OpenAI chunk stream into Anthropic Messages events, one event at a time.
/// As Anthropic does, `message_start` carries the prompt's size (the gateway's count) and the
/// final `message_delta` the usage of the whole answer (the provider's, cache fields included).
#[derive(Debug, Default)]
pub struct Stream {
    /// The prompt as the gateway counted it.
    counted_input: u64,
    started: bool,
    /// The open content block: its index and whether it is a tool_use block.
    open: Option<(u64, bool)>,
    next_block: u64,
    /// OpenAI tool call index of the open tool_use block.
    open_call: Option<u64>,
    stop: Option<Value>,
    usage: Option<Value>,
    done: bool,
}

fn event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

impl StreamTranslate for Stream {
    /// OpenAI's events have no names: only the data counts.
    fn event(&mut self, _name: &str, data: &[u8]) -> String {
        self.data(data)
    }

    /// Whether `[DONE]` arrived.
    fn finished(&self) -> bool {
        self.done
    }
}

impl Stream {
    pub fn new(counted_input: u64) -> Stream {
        Stream {
            counted_input,
            ..Stream::default()
        }
    }

    fn close_block(&mut self, out: &mut String) {
        if let Some((index, _)) = self.open.take() {
            out.push_str(&event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": index}),
            ));
        }
        self.open_call = None;
    }

    fn open_block(&mut self, out: &mut String, block: Value, tool: bool) -> u64 {
        self.close_block(out);
        let index = self.next_block;
        self.next_block += 1;
        self.open = Some((index, tool));
        out.push_str(&event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        index
    }

    fn finish(&mut self, out: &mut String) {
        if self.done {
            return;
        }
        self.close_block(out);
        // Without the provider's usage, the prompt as counted and nothing generated.
        let usage = self.usage.take().unwrap_or_else(|| {
            json!({"input_tokens": self.counted_input, "cache_creation_input_tokens": 0,
                   "cache_read_input_tokens": 0, "output_tokens": 0})
        });
        out.push_str(&event("message_delta", json!({"type": "message_delta",
            "delta": {"stop_reason": self.stop.take().unwrap_or_else(|| "end_turn".into()), "stop_sequence": null},
            "usage": usage})));
        out.push_str(&event("message_stop", json!({"type": "message_stop"})));
        self.done = true;
    }

    /// Translate one OpenAI SSE event's data; the Anthropic SSE text to send in its place.
    /// An in-band error is an `error` event that ends the stream, as in Anthropic's own streams:
    /// nothing follows it (no `message_stop` telling the client the message is complete).
    pub fn data(&mut self, data: &[u8]) -> String {
        let mut out = String::new();
        if self.done {
            return out;
        }
        if data == b"[DONE]" {
            self.finish(&mut out);
            return out;
        }
        let Ok(c) = serde_json::from_slice::<Value>(data) else {
            return out;
        };
        if let Some(e) = c.get("error") {
            out.push_str(&event("error", translate_error(e)));
            self.done = true;
            return out;
        }
        if !self.started {
            self.started = true;
            out.push_str(&event("message_start", json!({"type": "message_start", "message": {
                "id": c.get("id").cloned().unwrap_or_default(), "type": "message", "role": "assistant",
                "model": c.get("model").cloned().unwrap_or_default(), "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": self.counted_input, "cache_creation_input_tokens": 0,
                          "cache_read_input_tokens": 0, "output_tokens": 0}}})));
        }
        if let Some(u) = c.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(usage_to_anthropic(u));
        }
        let Some(choice) = c.get("choices").and_then(|c| c.get(0)) else {
            return out;
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(t) = delta
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            self.text(&mut out, t);
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.tool_call(&mut out, call);
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.stop = Some(stop_reason(Some(f)));
        }
        out
    }

    /// A piece of text: into the open text block, or a new one.
    fn text(&mut self, out: &mut String, t: &str) {
        let index = match self.open {
            Some((i, false)) => i,
            _ => self.open_block(out, json!({"type": "text", "text": ""}), false),
        };
        out.push_str(&event(
            "content_block_delta",
            json!({"type": "content_block_delta",
            "index": index, "delta": {"type": "text_delta", "text": t}}),
        ));
    }

    /// A tool call's delta: a new tool_use block for a new call, then its arguments' piece.
    fn tool_call(&mut self, out: &mut String, call: &Value) {
        let call_index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let f = call.get("function").unwrap_or(&Value::Null);
        if self.open_call != Some(call_index) {
            self.open_block(
                out,
                json!({"type": "tool_use",
                "id": call.get("id").cloned().unwrap_or_default(),
                "name": f.get("name").cloned().unwrap_or_default(), "input": {}}),
                true,
            );
            self.open_call = Some(call_index);
        }
        if let (Some(args), Some((index, true))) = (
            f.get("arguments")
                .and_then(Value::as_str)
                .filter(|a| !a.is_empty()),
            self.open,
        ) {
            out.push_str(&event(
                "content_block_delta",
                json!({"type": "content_block_delta",
                "index": index, "delta": {"type": "input_json_delta", "partial_json": args}}),
            ));
        }
    }
}
