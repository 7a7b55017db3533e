//! OpenAI chat completions ⇄ Anthropic Messages, both directions, streams included.
//!
//! Requests: an OpenAI chat request becomes a Messages request. System (and developer) messages
//! become `system`; text and image parts become content blocks; assistant `tool_calls` become
//! `tool_use` blocks and `tool` messages `tool_result` blocks (consecutive ones merged into one
//! user turn, since Anthropic wants user and assistant to alternate); tools, `tool_choice`,
//! `stop`, `temperature`, `top_p` and `user` map to their Anthropic fields, and `max_tokens`
//! (required there) comes from `max_completion_tokens`, `max_tokens` or a configured default.
//!
//! Responses: a Messages response becomes a `chat.completion`; a Messages SSE stream is
//! translated event by event into `chat.completion.chunk` events by [`StreamTranslator`], which
//! keeps only the ids and counters it needs (bounded memory, whatever the stream's length).
//! Usage maps `input_tokens + cache_read + cache_creation` to `prompt_tokens`, cache reads to
//! `prompt_tokens_details.cached_tokens`, and `output_tokens` to `completion_tokens`. Anthropic
//! errors become OpenAI-format errors.
//!
//! The other direction serves clients of the Messages API (`/v1/messages`, as Claude Code
//! speaks) in front of OpenAI-format providers: [`request_to_openai`],
//! [`response_to_anthropic`] and [`ReverseStream`].
//!
//! Status: the translation core, tested on its own; not yet wired into the filter.

use serde_json::{json, Map, Value};

use crate::error::HttpError;

/// The `anthropic-version` header value the translation targets.
pub const API_VERSION: &str = "2023-06-01";
/// The Messages API's path.
pub const MESSAGES_PATH: &str = "/v1/messages";

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
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
        if last["role"] == role {
            if let Some(arr) = last["content"].as_array_mut() {
                arr.append(&mut content);
                return;
            }
        }
    }
    turns.push(json!({"role": role, "content": content}));
}

/// Translate an OpenAI chat request body into an Anthropic Messages request body for `model`.
pub fn request(body: &[u8], model: &str, default_max_tokens: u64) -> Result<Vec<u8>, HttpError> {
    let req: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| HttpError::invalid_json(&e.to_string()))?;
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| HttpError::missing_param("messages"))?;
    let mut system = Vec::new();
    let mut turns: Vec<Value> = Vec::new();
    for m in messages {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => system.push(text_of(content)),
            "user" => push_turn(&mut turns, "user", blocks(content)?),
            "assistant" => {
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
                push_turn(&mut turns, "assistant", b);
            }
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
    let num = |k: &str| req.get(k).and_then(Value::as_u64);
    let max_tokens = num("max_completion_tokens")
        .or_else(|| num("max_tokens"))
        .unwrap_or(default_max_tokens);
    let mut out = Map::new();
    out.insert("model".into(), model.into());
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
    if let Some(tools) = req.get("tools").and_then(Value::as_array) {
        let t: Vec<Value> = tools
            .iter()
            .filter_map(|t| t.get("function"))
            .map(|f| {
                let mut tool = json!({
                    "name": f.get("name").cloned().unwrap_or(Value::Null),
                    "input_schema": f.get("parameters").cloned().unwrap_or(json!({"type": "object"})),
                });
                if let Some(d) = f.get("description") {
                    tool["description"] = d.clone();
                }
                tool
            })
            .collect();
        out.insert("tools".into(), Value::Array(t));
    }
    if let Some(tc) = req.get("tool_choice") {
        let choice = match tc {
            Value::String(s) if s == "required" => Some(json!({"type": "any"})),
            Value::String(s) if s == "none" => Some(json!({"type": "none"})),
            Value::String(_) => Some(json!({"type": "auto"})),
            Value::Object(o) => o
                .get("function")
                .and_then(|f| f.get("name"))
                .map(|n| json!({"type": "tool", "name": n})),
            _ => None,
        };
        if let Some(c) = choice {
            out.insert("tool_choice".into(), c);
        }
    }
    serde_json::to_vec(&Value::Object(out)).map_err(|e| HttpError::invalid_json(&e.to_string()))
}

/// An Anthropic `tool_use` block as an OpenAI tool call (arguments as JSON text).
fn openai_tool_call(b: &Value) -> Value {
    json!({
        "id": b.get("id").cloned().unwrap_or_default(),
        "type": "function",
        "function": {
            "name": b.get("name").cloned().unwrap_or_default(),
            "arguments": b.get("input").map(Value::to_string).unwrap_or_else(|| "{}".into()),
        },
    })
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

/// OpenAI usage from an Anthropic usage object.
pub fn usage(u: &Value) -> Value {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let cached = n("cache_read_input_tokens");
    let written = n("cache_creation_input_tokens");
    let prompt = n("input_tokens")
        .saturating_add(cached)
        .saturating_add(written);
    let completion = n("output_tokens");
    let mut details = json!({"cached_tokens": cached});
    if written > 0 {
        // Not an OpenAI field: cache writes are priced apart (1.25 × input at Anthropic).
        details["cache_creation_tokens"] = written.into();
    }
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt.saturating_add(completion),
        "prompt_tokens_details": details,
    })
}

/// Translate an Anthropic Messages response body into an OpenAI `chat.completion`.
pub fn response(body: &[u8], created: u64) -> Option<Vec<u8>> {
    let m: Value = serde_json::from_slice(body).ok()?;
    if m.get("type").and_then(Value::as_str) == Some("error") {
        return Some(error(&m).body());
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
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { text.into() }});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let out = json!({
        "id": m.get("id").cloned().unwrap_or(Value::Null),
        "object": "chat.completion",
        "created": created,
        "model": m.get("model").cloned().unwrap_or(Value::Null),
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": finish_reason(m.get("stop_reason").and_then(Value::as_str)),
        }],
        "usage": usage(m.get("usage").unwrap_or(&Value::Null)),
    });
    serde_json::to_vec(&out).ok()
}

/// An Anthropic error object as the OpenAI-format error a client expects.
pub fn error(e: &Value) -> HttpError {
    let inner = e.get("error").unwrap_or(e);
    let message = inner
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("The provider returned an error.")
        .to_string();
    match inner.get("type").and_then(Value::as_str).unwrap_or("") {
        "invalid_request_error" => HttpError::invalid_param("messages", message),
        "rate_limit_error" => HttpError::rate_limited("requests", message),
        _ => HttpError::provider_error(message),
    }
}

/// Translates a Messages SSE stream into OpenAI `chat.completion.chunk` events, one event at a
/// time. It keeps the message id, model, the running tool-call index and the usage figures.
#[derive(Debug, Default)]
pub struct StreamTranslator {
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

impl StreamTranslator {
    pub fn new(created: u64, include_usage: bool) -> StreamTranslator {
        StreamTranslator {
            created,
            include_usage,
            ..StreamTranslator::default()
        }
    }

    fn chunk(&self, delta: Value, finish: Value) -> String {
        let c = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        });
        format!("data: {c}\n\n")
    }

    /// Translate one Anthropic event (its `event:` name and `data:`); the OpenAI SSE text to
    /// send in its place (possibly empty).
    pub fn event(&mut self, name: &str, data: &[u8]) -> String {
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            return String::new();
        };
        let kind = v.get("type").and_then(Value::as_str).unwrap_or(name);
        match kind {
            "message_start" => {
                let m = v.get("message").unwrap_or(&Value::Null);
                self.id = m
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                self.model = m
                    .get("model")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                self.input = m.get("usage").cloned().unwrap_or(Value::Null);
                self.chunk(json!({"role": "assistant", "content": ""}), Value::Null)
            }
            "content_block_start" => {
                let b = v.get("content_block").unwrap_or(&Value::Null);
                if b.get("type").and_then(Value::as_str) != Some("tool_use") {
                    return String::new();
                }
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                let call = self.tools_seen;
                self.tools_seen += 1;
                self.tool_block = Some((index, call));
                self.chunk(
                    json!({"tool_calls": [{
                        "index": call,
                        "id": b.get("id").cloned().unwrap_or(Value::Null),
                        "type": "function",
                        "function": {"name": b.get("name").cloned().unwrap_or(Value::Null), "arguments": ""},
                    }]}),
                    Value::Null,
                )
            }
            "content_block_delta" => {
                let d = v.get("delta").unwrap_or(&Value::Null);
                match d.get("type").and_then(Value::as_str) {
                    Some("text_delta") => self.chunk(
                        json!({"content": d.get("text").cloned().unwrap_or_default()}),
                        Value::Null,
                    ),
                    Some("input_json_delta") => {
                        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let Some((_, call)) = self.tool_block.filter(|(b, _)| *b == index) else {
                            return String::new();
                        };
                        self.chunk(
                            json!({"tool_calls": [{"index": call, "function": {
                                "arguments": d.get("partial_json").cloned().unwrap_or_default()}}]}),
                            Value::Null,
                        )
                    }
                    _ => String::new(),
                }
            }
            "content_block_stop" => {
                self.tool_block = None;
                String::new()
            }
            "message_delta" => {
                if let Some(n) = v
                    .get("usage")
                    .and_then(|u| u.get("output_tokens"))
                    .and_then(Value::as_u64)
                {
                    self.output_tokens = n;
                }
                let stop = v
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str);
                self.chunk(json!({}), finish_reason(stop))
            }
            "message_stop" => {
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
                        "usage": usage(&u),
                    });
                    out.push_str(&format!("data: {c}\n\n"));
                }
                out.push_str("data: [DONE]\n\n");
                out
            }
            "error" => {
                let e = error(&v);
                format!("data: {}\n\n", String::from_utf8_lossy(&e.body()))
            }
            _ => String::new(), // ping and future event types
        }
    }

    /// Whether `message_stop` arrived.
    pub fn finished(&self) -> bool {
        self.done
    }
}

/// Largest single Anthropic SSE event the translator holds (a tool call's input arrives in
/// many small deltas; a bigger event is cut and flagged by the parser).
const MAX_EVENT_BYTES: usize = 1 << 20;

/// The translation of one Anthropic response into OpenAI's format, chosen by its content type.
#[derive(Debug)]
pub enum Translation {
    /// A whole JSON body (a message or an error), translated once it has all arrived.
    Json { status: u32, created: u64 },
    /// An SSE stream, translated event by event as it passes.
    Sse {
        parser: crate::sse::Parser,
        translator: Box<StreamTranslator>,
    },
}

impl Translation {
    pub fn new(content_type: &str, status: u32, created: u64) -> Translation {
        let ct = content_type.split(';').next().unwrap_or("").trim();
        if ct.eq_ignore_ascii_case("text/event-stream") {
            Translation::Sse {
                parser: crate::sse::Parser::new(MAX_EVENT_BYTES),
                // The usage chunk is always produced: the accounting reads it, and strips it
                // when the client did not ask for it.
                translator: Box::new(StreamTranslator::new(created, true)),
            }
        } else {
            Translation::Json { status, created }
        }
    }

    /// Whether the whole body must be held before it can be translated.
    pub fn buffers(&self) -> bool {
        matches!(self, Translation::Json { .. })
    }

    /// Translate the next piece of the body (for JSON: the whole body, once).
    pub fn chunk(&mut self, chunk: &[u8]) -> Vec<u8> {
        match self {
            Translation::Json { status, created } => {
                let translated = if (200..300).contains(status) {
                    response(chunk, *created)
                } else {
                    serde_json::from_slice::<Value>(chunk)
                        .ok()
                        .map(|v| error(&v).body())
                };
                translated.unwrap_or_else(|| chunk.to_vec())
            }
            Translation::Sse { parser, translator } => {
                let mut out = String::new();
                parser.feed(chunk, |_, e| {
                    out.push_str(&translator.event(&String::from_utf8_lossy(e.name), e.data));
                });
                out.into_bytes()
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The other direction: Anthropic clients (the Messages API) in front of OpenAI-format providers.
// ---------------------------------------------------------------------------------------------

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

/// Translate an Anthropic Messages request into an OpenAI chat request for `model`.
pub fn request_to_openai(body: &[u8], model: &str) -> Result<Vec<u8>, HttpError> {
    let req: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| HttpError::invalid_json(&e.to_string()))?;
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
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let content = m.get("content").unwrap_or(&Value::Null);
        let Value::Array(list) = content else {
            messages.push(json!({"role": role, "content": text_of(content)}));
            continue;
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
            continue;
        }
        let mut msg = json!({"role": role, "content": if parts.is_empty() { Value::Null } else { Value::Array(parts) }});
        if !calls.is_empty() {
            msg["tool_calls"] = Value::Array(calls);
        }
        messages.push(msg);
    }
    let mut out = Map::new();
    out.insert("model".into(), model.into());
    out.insert("messages".into(), Value::Array(messages));
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
    if let Some(tools) = req.get("tools").and_then(Value::as_array) {
        let t: Vec<Value> = tools
            .iter()
            .map(|t| json!({"type": "function", "function": {
                "name": t.get("name").cloned().unwrap_or_default(),
                "description": t.get("description").cloned().unwrap_or_default(),
                "parameters": t.get("input_schema").cloned().unwrap_or(json!({"type": "object"})),
            }}))
            .collect();
        out.insert("tools".into(), Value::Array(t));
    }
    if let Some(tc) = req.get("tool_choice") {
        let choice = match tc.get("type").and_then(Value::as_str) {
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => {
                json!({"type": "function", "function": {"name": tc.get("name").cloned().unwrap_or_default()}})
            }
            _ => json!("auto"),
        };
        out.insert("tool_choice".into(), choice);
    }
    serde_json::to_vec(&Value::Object(out)).map_err(|e| HttpError::invalid_json(&e.to_string()))
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

/// Anthropic usage from an OpenAI usage object.
pub fn usage_to_anthropic(u: &Value) -> Value {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let detail = |k: &str| {
        u.get("prompt_tokens_details")
            .and_then(|d| d.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let cached = detail("cached_tokens");
    let written = detail("cache_creation_tokens");
    json!({
        "input_tokens": n("prompt_tokens").saturating_sub(cached).saturating_sub(written),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
        "output_tokens": n("completion_tokens"),
    })
}

/// Translate an OpenAI `chat.completion` into an Anthropic Messages response.
pub fn response_to_anthropic(body: &[u8]) -> Option<Vec<u8>> {
    let r: Value = serde_json::from_slice(body).ok()?;
    if let Some(e) = r.get("error") {
        return serde_json::to_vec(&error_to_anthropic(e)).ok();
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
pub fn error_to_anthropic(e: &Value) -> Value {
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

/// The translation of one OpenAI response into the Messages API's format, for an Anthropic
/// client, chosen by its content type.
#[derive(Debug)]
pub enum Reverse {
    /// A whole JSON body (a completion or an error), translated once it has all arrived.
    Json,
    /// An SSE stream, translated event by event as it passes.
    Sse {
        parser: crate::sse::Parser,
        stream: Box<ReverseStream>,
    },
}

impl Reverse {
    pub fn new(content_type: &str) -> Reverse {
        let ct = content_type.split(';').next().unwrap_or("").trim();
        if ct.eq_ignore_ascii_case("text/event-stream") {
            Reverse::Sse {
                parser: crate::sse::Parser::new(MAX_EVENT_BYTES),
                stream: Box::default(),
            }
        } else {
            Reverse::Json
        }
    }

    /// Whether the whole body must be held before it can be translated.
    pub fn buffers(&self) -> bool {
        matches!(self, Reverse::Json)
    }

    /// Translate the next piece of the body (for JSON: the whole body, once).
    pub fn chunk(&mut self, chunk: &[u8]) -> Vec<u8> {
        match self {
            Reverse::Json => response_to_anthropic(chunk).unwrap_or_else(|| chunk.to_vec()),
            Reverse::Sse { parser, stream } => {
                let mut out = String::new();
                parser.feed(chunk, |_, e| out.push_str(&stream.data(e.data)));
                out.into_bytes()
            }
        }
    }
}

/// A local error (`{"error":{...}}` in OpenAI's shape) in the Messages API's shape.
pub fn local_error_body(e: &HttpError) -> Vec<u8> {
    let v = json!({"type": e.kind, "code": e.code, "message": e.message});
    serde_json::to_vec(&error_to_anthropic(&v)).unwrap_or_default()
}

/// The `model` of a Messages request, for routing (the rest is validated by
/// `request_to_openai`).
pub fn model_of(body: &[u8]) -> Result<String, HttpError> {
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

/// Translates an OpenAI chunk stream into Anthropic Messages events, one event at a time.
#[derive(Debug, Default)]
pub struct ReverseStream {
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

impl ReverseStream {
    pub fn new() -> ReverseStream {
        ReverseStream::default()
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
        let usage = self
            .usage
            .take()
            .unwrap_or_else(|| usage_to_anthropic(&Value::Null));
        out.push_str(&event("message_delta", json!({"type": "message_delta",
            "delta": {"stop_reason": self.stop.take().unwrap_or_else(|| "end_turn".into()), "stop_sequence": null},
            "usage": {"output_tokens": usage["output_tokens"]}})));
        out.push_str(&event("message_stop", json!({"type": "message_stop"})));
        self.done = true;
    }

    /// Translate one OpenAI SSE event's data; the Anthropic SSE text to send in its place.
    pub fn data(&mut self, data: &[u8]) -> String {
        let mut out = String::new();
        if data == b"[DONE]" {
            self.finish(&mut out);
            return out;
        }
        let Ok(c) = serde_json::from_slice::<Value>(data) else {
            return out;
        };
        if let Some(e) = c.get("error") {
            out.push_str(&event("error", error_to_anthropic(e)));
            return out;
        }
        if !self.started {
            self.started = true;
            out.push_str(&event("message_start", json!({"type": "message_start", "message": {
                "id": c.get("id").cloned().unwrap_or_default(), "type": "message", "role": "assistant",
                "model": c.get("model").cloned().unwrap_or_default(), "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0}}})));
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
            let index = match self.open {
                Some((i, false)) => i,
                _ => self.open_block(&mut out, json!({"type": "text", "text": ""}), false),
            };
            out.push_str(&event(
                "content_block_delta",
                json!({"type": "content_block_delta",
                "index": index, "delta": {"type": "text_delta", "text": t}}),
            ));
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let call_index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let f = call.get("function").unwrap_or(&Value::Null);
            if self.open_call != Some(call_index) {
                self.open_block(
                    &mut out,
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
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.stop = Some(stop_reason(Some(f)));
        }
        out
    }

    pub fn finished(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse;

    fn req(v: Value) -> Value {
        serde_json::from_slice(
            &request(v.to_string().as_bytes(), "claude-sonnet-4-5", 1024).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn multi_turn_with_system_images_and_tools() {
        let out = req(json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in this image, and the weather?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Rome\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                {"role": "tool", "tool_call_id": "call_2", "content": "24C"},
                {"role": "user", "content": "Thanks. Summarise."}
            ],
            "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather by city",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": "required",
            "max_completion_tokens": 300,
            "stop": "END",
            "temperature": 0.2,
            "stream": true,
            "stream_options": {"include_usage": true},
            "user": "u-42"
        }));
        assert_eq!(out["model"], "claude-sonnet-4-5");
        assert_eq!(out["system"], "You are terse.\n\nUse tools.");
        assert_eq!(out["max_tokens"], 300);
        assert_eq!(out["stop_sequences"], json!(["END"]));
        assert_eq!(out["temperature"], 0.2);
        assert_eq!(out["stream"], true);
        assert!(out.get("stream_options").is_none());
        assert_eq!(out["metadata"]["user_id"], "u-42");
        assert_eq!(out["tool_choice"], json!({"type": "any"}));
        assert_eq!(
            out["tools"][0]["input_schema"]["properties"]["city"]["type"],
            "string"
        );
        let turns = out["messages"].as_array().unwrap();
        // user, assistant (two tool_use), user (two tool_result merged with the next user text).
        assert_eq!(turns.len(), 3);
        assert_eq!(turns[0]["content"][1]["source"]["media_type"], "image/png");
        assert_eq!(turns[1]["content"][1]["input"], json!({"city": "Rome"}));
        assert_eq!(turns[2]["role"], "user");
        assert_eq!(turns[2]["content"][0]["tool_use_id"], "call_1");
        assert_eq!(turns[2]["content"][1]["content"], "24C");
        assert_eq!(turns[2]["content"][2]["text"], "Thanks. Summarise.");
    }

    #[test]
    fn max_tokens_default_and_tool_choice_by_name() {
        let out = req(json!({"messages": [{"role": "user", "content": "hi"}],
                             "tool_choice": {"type": "function", "function": {"name": "f"}}}));
        assert_eq!(out["max_tokens"], 1024);
        assert_eq!(out["tool_choice"], json!({"type": "tool", "name": "f"}));
        let bad = request(br#"{"messages":[{"role":"wizard","content":"x"}]}"#, "m", 1);
        assert_eq!(bad.unwrap_err().status, 400);
    }

    /// A recorded-shape Messages response with a tool call and cache usage.
    const RESPONSE: &str = r#"{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Let me check."},{"type":"tool_use","id":"toolu_01A09q90qw90lq917835lq9","name":"weather","input":{"city":"Paris"}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":100,"cache_read_input_tokens":2048,"output_tokens":89}}"#;

    #[test]
    fn response_with_tool_call_and_cache_usage() {
        let out: Value =
            serde_json::from_slice(&response(RESPONSE.as_bytes(), 7).unwrap()).unwrap();
        assert_eq!(out["object"], "chat.completion");
        assert_eq!(out["created"], 7);
        let c = &out["choices"][0];
        assert_eq!(c["finish_reason"], "tool_calls");
        assert_eq!(c["message"]["content"], "Let me check.");
        assert_eq!(
            c["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Paris\"}"
        );
        assert_eq!(out["usage"]["prompt_tokens"], 472 + 100 + 2048);
        assert_eq!(out["usage"]["prompt_tokens_details"]["cached_tokens"], 2048);
        assert_eq!(
            out["usage"]["prompt_tokens_details"]["cache_creation_tokens"],
            100
        );
        // Back to Anthropic's shape, every figure is where it was.
        assert_eq!(
            usage_to_anthropic(&out["usage"]),
            json!({"input_tokens": 472, "cache_creation_input_tokens": 100,
                   "cache_read_input_tokens": 2048, "output_tokens": 89})
        );
        assert_eq!(out["usage"]["completion_tokens"], 89);
        assert_eq!(out["usage"]["total_tokens"], 472 + 100 + 2048 + 89);
    }

    #[test]
    fn errors_become_openai_errors() {
        let e = error(
            &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        );
        assert_eq!(e.status, 502);
        let e = error(
            &json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}),
        );
        assert_eq!(e.status, 429);
    }

    /// A recorded-shape Messages stream: text, then a tool call, with cache usage.
    const STREAM: &str = "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":10,\"output_tokens\":1}}}\r\n\r\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: ping\ndata: {\"type\": \"ping\"}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" there\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"weather\",\"input\":{}}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"Paris\\\"}\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

    fn translate(chunks: &[&[u8]]) -> String {
        let mut p = sse::Parser::new(1 << 16);
        let mut t = StreamTranslator::new(1, true);
        let mut out = String::new();
        for c in chunks {
            p.feed(c, |_, e| {
                out.push_str(&t.event(&String::from_utf8_lossy(e.name), e.data));
            });
        }
        assert!(t.finished());
        out
    }

    #[test]
    fn stream_translates_to_chunks() {
        let out = translate(&[STREAM.as_bytes()]);
        let events: Vec<&str> = out
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| e.strip_prefix("data: ").unwrap())
            .collect();
        assert_eq!(*events.last().unwrap(), "[DONE]");
        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        assert!(chunks
            .iter()
            .all(|c| c["id"] == "msg_1" && c["object"] == "chat.completion.chunk"));
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Hello there");
        let args: String = chunks
            .iter()
            .filter_map(|c| {
                c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
            })
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&args).unwrap(),
            json!({"city": "Paris"})
        );
        let finish: Vec<&Value> = chunks
            .iter()
            .map(|c| &c["choices"][0]["finish_reason"])
            .filter(|f| !f.is_null())
            .collect();
        assert_eq!(finish, [&json!("tool_calls")]);
        let u = &chunks.last().unwrap()["usage"];
        assert_eq!(u["prompt_tokens"], 35);
        assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 10);
        assert_eq!(u["completion_tokens"], 15);
    }

    #[test]
    fn stream_split_at_every_byte_translates_the_same() {
        let whole = translate(&[STREAM.as_bytes()]);
        let bytes = STREAM.as_bytes();
        for cut in 1..bytes.len() {
            assert_eq!(
                translate(&[&bytes[..cut], &bytes[cut..]]),
                whole,
                "cut at {cut}"
            );
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(translate(&singles), whole);
    }

    #[test]
    fn anthropic_client_request_to_openai() {
        let body = json!({
            "model": "claude-sonnet-4-5", "max_tokens": 512, "stream": true,
            "system": [{"type": "text", "text": "Be brief."}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"}}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "-3C"}]}
            ],
            "tools": [{"name": "weather", "description": "d", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "weather"},
            "stop_sequences": ["###"], "metadata": {"user_id": "u1"}
        });
        let out: Value = serde_json::from_slice(
            &request_to_openai(body.to_string().as_bytes(), "gpt-4o").unwrap(),
        )
        .unwrap();
        assert_eq!(out["model"], "gpt-4o");
        assert_eq!(out["stream_options"]["include_usage"], true);
        let m = out["messages"].as_array().unwrap();
        assert_eq!(m[0], json!({"role": "system", "content": "Be brief."}));
        assert_eq!(
            m[1]["content"][1]["image_url"]["url"],
            "data:image/jpeg;base64,AAAA"
        );
        assert_eq!(
            m[2]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Oslo\"}"
        );
        assert_eq!(
            m[3],
            json!({"role": "tool", "tool_call_id": "toolu_1", "content": "-3C"})
        );
        assert_eq!(out["tool_choice"]["function"]["name"], "weather");
        assert_eq!(out["stop"], json!(["###"]));
        assert_eq!(out["user"], "u1");
    }

    #[test]
    fn openai_response_to_anthropic_client() {
        let r = json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": "Checking.",
                "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120, "prompt_tokens_details": {"cached_tokens": 64}}});
        let out: Value =
            serde_json::from_slice(&response_to_anthropic(r.to_string().as_bytes()).unwrap())
                .unwrap();
        assert_eq!(out["type"], "message");
        assert_eq!(out["stop_reason"], "tool_use");
        assert_eq!(out["content"][0]["text"], "Checking.");
        assert_eq!(out["content"][1]["input"], json!({"city": "Oslo"}));
        assert_eq!(
            out["usage"],
            json!({"input_tokens": 36, "cache_creation_input_tokens": 0,
                                         "cache_read_input_tokens": 64, "output_tokens": 20})
        );
        let e: Value = serde_json::from_slice(
            &response_to_anthropic(
                br#"{"error":{"message":"slow","type":"requests","code":"rate_limit_exceeded"}}"#,
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(e["error"]["type"], "rate_limit_error");
    }

    const OPENAI_STREAM: &str = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"weather\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Oslo\\\"}\"}}]},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":12,\"total_tokens\":42}}\n\n\
data: [DONE]\n\n";

    fn reverse(chunks: &[&[u8]]) -> String {
        let mut p = sse::Parser::new(1 << 16);
        let mut t = ReverseStream::new();
        let mut out = String::new();
        for c in chunks {
            p.feed(c, |_, e| out.push_str(&t.data(e.data)));
        }
        assert!(t.finished());
        out
    }

    #[test]
    fn reverse_translation_by_content_type() {
        let mut r = Reverse::new("text/event-stream; charset=utf-8");
        assert!(!r.buffers());
        let bytes = OPENAI_STREAM.as_bytes();
        let mut out = r.chunk(&bytes[..40]);
        out.extend(r.chunk(&bytes[40..]));
        assert_eq!(String::from_utf8(out).unwrap(), reverse(&[bytes]));
        let mut r = Reverse::new("application/json");
        assert!(r.buffers());
        let err =
            br#"{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}"#;
        let v: Value = serde_json::from_slice(&r.chunk(err)).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert_eq!(v["error"]["message"], "slow down");
        let local: Value =
            serde_json::from_slice(&local_error_body(&HttpError::invalid_key())).unwrap();
        assert_eq!(local["type"], "error");
        assert_eq!(local["error"]["type"], "invalid_request_error");
        assert_eq!(
            model_of(br#"{"model":"claude-x","messages":[]}"#).unwrap(),
            "claude-x"
        );
        assert_eq!(model_of(br#"{"messages":[]}"#).unwrap_err().status, 400);
        assert_eq!(model_of(b"[1]").unwrap_err().status, 400);
    }

    #[test]
    fn openai_stream_to_anthropic_events_at_every_split() {
        let whole = reverse(&[OPENAI_STREAM.as_bytes()]);
        let mut p = sse::Parser::new(1 << 16);
        let mut events: Vec<(String, Value)> = Vec::new();
        p.feed(whole.as_bytes(), |_, e| {
            events.push((
                String::from_utf8_lossy(e.name).into_owned(),
                serde_json::from_slice(e.data).unwrap(),
            ));
        });
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert!(events.iter().all(|(n, v)| v["type"] == n.as_str()));
        assert_eq!(events[4].1["content_block"]["name"], "weather");
        let args: String = events
            .iter()
            .filter_map(|(_, v)| v["delta"]["partial_json"].as_str())
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&args).unwrap(),
            json!({"city": "Oslo"})
        );
        assert_eq!(events[8].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(events[8].1["usage"]["output_tokens"], 12);
        let bytes = OPENAI_STREAM.as_bytes();
        for cut in 1..bytes.len() {
            assert_eq!(
                reverse(&[&bytes[..cut], &bytes[cut..]]),
                whole,
                "cut at {cut}"
            );
        }
    }
}
