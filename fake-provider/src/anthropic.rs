//! Anthropic Messages API wire types: request parsing (`POST /v1/messages`, with Anthropic's
//! validation messages), the response message, the stream events and the error shape.
//!
//! Token counts are an approximation: Claude's tokenizer is not public, so `input_tokens`
//! counts the text of `system` and `messages` with OpenAI's o200k_base (see
//! [`MessagesRequest::prompt_tokens`]). The count is deterministic, which is what tests need.

use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Map, Value};
use tiktoken_rs::tokenizer::Tokenizer;

use crate::tokens;

/// Tokenizer used to count Anthropic requests and completions (Claude's own is not public).
pub const TOKENIZER: Tokenizer = Tokenizer::O200kBase;

/// `usage.service_tier` of every response.
pub const SERVICE_TIER: &str = "standard";

// ------------------------------------------------------------------ errors

/// An error answered in Anthropic's format:
/// `{"type":"error","error":{"type":KIND,"message":MESSAGE},"request_id":"req_..."}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
}

impl Error {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Error {
            status,
            kind,
            message: message.into(),
        }
    }

    /// 400 invalid_request_error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// The error type Anthropic uses for an HTTP status.
    pub fn kind_for(status: StatusCode) -> &'static str {
        match status.as_u16() {
            401 => "authentication_error",
            402 => "billing_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            504 => "timeout_error",
            529 => "overloaded_error",
            500..=599 => "api_error",
            _ => "invalid_request_error",
        }
    }

    /// The error a `x-fake-status` asks for.
    pub fn simulated(status: StatusCode) -> Self {
        let kind = Self::kind_for(status);
        let message = match kind {
            "rate_limit_error" => {
                "This request would exceed the rate limit for your organization (simulated by \
                 fake-provider). Please try again later."
                    .to_owned()
            }
            "overloaded_error" => "Overloaded".to_owned(),
            "api_error" => "Internal server error".to_owned(),
            _ => format!(
                "Simulated error (status {}) from fake-provider.",
                status.as_u16()
            ),
        };
        Self::new(status, kind, message)
    }

    /// The mid-stream error (`event: error`) of an overloaded API.
    pub fn overloaded() -> Self {
        Self::new(
            StatusCode::from_u16(529).expect("valid status"),
            "overloaded_error",
            "Overloaded",
        )
    }

    pub fn body<'a>(&'a self, request_id: Option<&'a str>) -> ErrorBody<'a> {
        ErrorBody {
            kind: "error",
            error: ErrorDetail {
                kind: self.kind,
                message: &self.message,
            },
            request_id,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub error: ErrorDetail<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct ErrorDetail<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub message: &'a str,
}

// ---------------------------------------------------------------- requests

/// A tool the request defines (custom tools have an `input_schema`; server tools may not).
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub input_schema: Value,
}

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ToolChoice {
    #[default]
    Auto,
    Any,
    Tool(String),
    None,
}

/// A parsed `POST /v1/messages` request.
#[derive(Debug, Clone, PartialEq)]
pub struct MessagesRequest {
    pub model: String,
    pub max_tokens: u64,
    pub stream: bool,
    pub stop_sequences: Vec<String>,
    pub tools: Vec<Tool>,
    pub tool_choice: ToolChoice,
    /// Approximate input tokens: the sum, over every piece of text of `messages` and `system`
    /// (text blocks, a tool_use's name and its input as compact JSON, tool_result text,
    /// thinking text), of its o200k_base token count. Images and documents count 0; roles,
    /// framing and `tools` are not counted. Deterministic, but not Claude's tokenizer.
    pub prompt_tokens: u64,
    /// The last message hands back tool results: the model answers them (as a real model
    /// does) instead of calling a tool again.
    pub answers_tool_results: bool,
}

/// Whether a message's content holds a `tool_result` block.
fn has_tool_result(msg: &Map<String, Value>) -> bool {
    field(msg, "content")
        .and_then(Value::as_array)
        .is_some_and(|blocks| {
            blocks
                .iter()
                .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
        })
}

/// Present and not null.
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

/// Tokens of one piece of text.
fn count(text: &str) -> u64 {
    tokens::count(TOKENIZER, text)
}

fn required(param: &str) -> Error {
    Error::invalid(format!("{param}: Field required"))
}

fn not_a(param: &str, what: &str) -> Error {
    Error::invalid(format!("{param}: Input should be a valid {what}"))
}

/// Text to count from one content block; `param` names it in errors.
fn block_text(block: &Value, param: &str, out: &mut u64) -> Result<(), Error> {
    let Some(b) = block.as_object() else {
        return Err(not_a(param, "dictionary"));
    };
    let text_field = |name: &str, out: &mut u64| -> Result<(), Error> {
        match field(b, name) {
            Some(Value::String(s)) => {
                *out += count(s);
                Ok(())
            }
            Some(_) => Err(not_a(&format!("{param}.{name}"), "string")),
            None => Err(required(&format!("{param}.{name}"))),
        }
    };
    match b.get("type").and_then(Value::as_str) {
        Some("text") => text_field("text", out)?,
        Some("image") | Some("document") | Some("redacted_thinking") => {
            // Not counted (images and documents are priced differently).
            if b.get("type").and_then(Value::as_str) != Some("redacted_thinking")
                && field(b, "source").is_none()
            {
                return Err(required(&format!("{param}.source")));
            }
        }
        Some("thinking") => text_field("thinking", out)?,
        Some("tool_use") => {
            text_field("name", out)?;
            match field(b, "id") {
                Some(Value::String(_)) => {}
                Some(_) => return Err(not_a(&format!("{param}.id"), "string")),
                None => return Err(required(&format!("{param}.id"))),
            }
            match field(b, "input") {
                Some(input @ Value::Object(_)) => *out += count(&input.to_string()),
                Some(_) => return Err(not_a(&format!("{param}.input"), "dictionary")),
                None => return Err(required(&format!("{param}.input"))),
            }
        }
        Some("tool_result") => {
            match field(b, "tool_use_id") {
                Some(Value::String(_)) => {}
                Some(_) => return Err(not_a(&format!("{param}.tool_use_id"), "string")),
                None => return Err(required(&format!("{param}.tool_use_id"))),
            }
            match field(b, "content") {
                None => {}
                Some(Value::String(s)) => *out += count(s),
                Some(Value::Array(parts)) => {
                    for (k, part) in parts.iter().enumerate() {
                        block_text(part, &format!("{param}.content.{k}"), out)?;
                    }
                }
                Some(_) => return Err(not_a(&format!("{param}.content"), "list")),
            }
        }
        Some(other) => {
            return Err(Error::invalid(format!(
                "{param}: Input tag '{other}' found using 'type' does not match any of the \
                 expected tags: 'text', 'image', 'document', 'tool_use', 'tool_result', \
                 'thinking', 'redacted_thinking'"
            )))
        }
        None => return Err(required(&format!("{param}.type"))),
    }
    Ok(())
}

/// Text of a `content` (string or array of blocks) or `system` value.
fn content_text(v: &Value, param: &str, out: &mut u64) -> Result<(), Error> {
    match v {
        Value::String(s) => *out += count(s),
        Value::Array(blocks) => {
            for (j, block) in blocks.iter().enumerate() {
                block_text(block, &format!("{param}.{j}"), out)?;
            }
        }
        _ => return Err(not_a(param, "list")),
    }
    Ok(())
}

fn number_in(obj: &Map<String, Value>, name: &str, lo: f64, hi: f64) -> Result<(), Error> {
    match field(obj, name) {
        None => Ok(()),
        Some(v) => match v.as_f64() {
            None => Err(not_a(name, "number")),
            Some(x) if x < lo => Err(Error::invalid(format!(
                "{name}: Input should be greater than or equal to {lo}"
            ))),
            Some(x) if x > hi => Err(Error::invalid(format!(
                "{name}: Input should be less than or equal to {hi}"
            ))),
            Some(_) => Ok(()),
        },
    }
}

fn parse_tools(obj: &Map<String, Value>) -> Result<Vec<Tool>, Error> {
    let Some(v) = field(obj, "tools") else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = v else {
        return Err(not_a("tools", "list"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let param = format!("tools.{i}");
            let Some(t) = t.as_object() else {
                return Err(not_a(&param, "dictionary"));
            };
            let name = match field(t, "name") {
                Some(Value::String(s)) => s.clone(),
                Some(_) => return Err(not_a(&format!("{param}.name"), "string")),
                None => return Err(required(&format!("{param}.name"))),
            };
            // Server tools (`"type": "web_search_20250305"`, ...) have no input_schema.
            let custom = matches!(t.get("type").and_then(Value::as_str), None | Some("custom"));
            let input_schema = match field(t, "input_schema") {
                Some(s @ Value::Object(_)) => s.clone(),
                Some(_) => return Err(not_a(&format!("{param}.input_schema"), "dictionary")),
                None if custom => return Err(required(&format!("{param}.input_schema"))),
                None => Value::Object(Map::new()),
            };
            Ok(Tool { name, input_schema })
        })
        .collect()
}

fn parse_tool_choice(obj: &Map<String, Value>, tools: &[Tool]) -> Result<ToolChoice, Error> {
    let Some(v) = field(obj, "tool_choice") else {
        return Ok(ToolChoice::Auto);
    };
    let Some(c) = v.as_object() else {
        return Err(not_a("tool_choice", "dictionary"));
    };
    let choice = match c.get("type").and_then(Value::as_str) {
        Some("auto") => ToolChoice::Auto,
        Some("any") => ToolChoice::Any,
        Some("none") => ToolChoice::None,
        Some("tool") => match field(c, "name") {
            Some(Value::String(n)) => ToolChoice::Tool(n.clone()),
            Some(_) => return Err(not_a("tool_choice.tool.name", "string")),
            None => return Err(required("tool_choice.tool.name")),
        },
        Some(other) => {
            return Err(Error::invalid(format!(
                "tool_choice: Input tag '{other}' found using 'type' does not match any of the \
                 expected tags: 'auto', 'any', 'tool', 'none'"
            )))
        }
        None => return Err(required("tool_choice.type")),
    };
    if matches!(choice, ToolChoice::Any | ToolChoice::Tool(_)) && tools.is_empty() {
        return Err(Error::invalid(
            "tool_choice may only be specified while providing tools.",
        ));
    }
    if let ToolChoice::Tool(name) = &choice {
        if !tools.iter().any(|t| &t.name == name) {
            return Err(Error::invalid(format!(
                "Tool '{name}' not found in provided tools"
            )));
        }
    }
    Ok(choice)
}

/// `POST /v1/messages`; `POST /v1/messages/count_tokens` with `max_tokens` optional
/// (`require_max_tokens` false).
pub fn parse_messages(body: &[u8], require_max_tokens: bool) -> Result<MessagesRequest, Error> {
    let obj = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err(Error::invalid("Input should be a valid dictionary")),
        Err(e) => {
            return Err(Error::invalid(format!(
                "There was an error parsing the body: {e}"
            )))
        }
    };
    let model = match field(&obj, "model") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(not_a("model", "string")),
        None => return Err(required("model")),
    };
    let max_tokens = match field(&obj, "max_tokens") {
        None if !require_max_tokens => 1,
        None => return Err(required("max_tokens")),
        Some(v) => match (v.as_i64(), v.as_u64()) {
            (_, Some(n)) if n >= 1 => n,
            (Some(_), _) => {
                return Err(Error::invalid(
                    "max_tokens: Input should be greater than or equal to 1",
                ))
            }
            _ => return Err(not_a("max_tokens", "integer")),
        },
    };
    let mut prompt_tokens = 0;
    match field(&obj, "messages") {
        None => return Err(required("messages")),
        Some(Value::Array(m)) if m.is_empty() => {
            return Err(Error::invalid("messages: at least one message is required"))
        }
        Some(Value::Array(m)) => {
            for (i, msg) in m.iter().enumerate() {
                let param = format!("messages.{i}");
                let Some(msg) = msg.as_object() else {
                    return Err(not_a(&param, "dictionary"));
                };
                match field(msg, "role").and_then(Value::as_str) {
                    Some("user") | Some("assistant") => {}
                    Some("system") => {
                        return Err(Error::invalid(
                            "messages: Unexpected role \"system\". The Messages API accepts a \
                             top-level `system` parameter, not \"system\" as an input message \
                             role.",
                        ))
                    }
                    Some(_) => {
                        return Err(Error::invalid(format!(
                            "{param}.role: Input should be 'user' or 'assistant'"
                        )))
                    }
                    None => return Err(required(&format!("{param}.role"))),
                }
                let Some(content) = field(msg, "content") else {
                    return Err(required(&format!("{param}.content")));
                };
                content_text(content, &format!("{param}.content"), &mut prompt_tokens)?;
            }
        }
        Some(_) => return Err(not_a("messages", "list")),
    }
    if let Some(system) = field(&obj, "system") {
        content_text(system, "system", &mut prompt_tokens)?;
    }
    let stream = match field(&obj, "stream") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(not_a("stream", "boolean")),
    };
    let stop_sequences = match field(&obj, "stop_sequences") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| not_a(&format!("stop_sequences.{i}"), "string"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(not_a("stop_sequences", "list")),
    };
    number_in(&obj, "temperature", 0.0, 1.0)?;
    number_in(&obj, "top_p", 0.0, 1.0)?;
    if let Some(v) = field(&obj, "top_k") {
        if v.as_u64().is_none() {
            return Err(not_a("top_k", "integer"));
        }
    }
    match field(&obj, "metadata") {
        None | Some(Value::Object(_)) => {}
        Some(_) => return Err(not_a("metadata", "dictionary")),
    }
    let tools = parse_tools(&obj)?;
    let tool_choice = parse_tool_choice(&obj, &tools)?;
    let answers_tool_results = field(&obj, "messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last())
        .and_then(Value::as_object)
        .is_some_and(has_tool_result);
    Ok(MessagesRequest {
        model,
        max_tokens,
        stream,
        stop_sequences,
        tools,
        tool_choice,
        prompt_tokens,
        answers_tool_results,
    })
}

// ------------------------------------------------------------ tool inputs

/// A deterministic value matching a JSON schema (`enum`/`const`/`default` first, then the
/// `type`), so a fake tool call's `input` has the properties the tool declares.
pub fn fake_value(schema: &Value, depth: usize) -> Value {
    let Some(s) = schema.as_object() else {
        return Value::String("fake".into());
    };
    if let Some(v) = s.get("const") {
        return v.clone();
    }
    if let Some(first) = s
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    if let Some(v) = s.get("default") {
        return v.clone();
    }
    let ty = match s.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if s.contains_key("properties") => "object",
        _ => "string",
    };
    match ty {
        "object" if depth < 8 => {
            let props = s.get("properties").and_then(Value::as_object);
            Value::Object(
                props
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), fake_value(v, depth + 1)))
                    .collect(),
            )
        }
        "object" => Value::Object(Map::new()),
        "array" if depth < 8 => match s.get("items") {
            Some(items) => Value::Array(vec![fake_value(items, depth + 1)]),
            None => Value::Array(Vec::new()),
        },
        "array" => Value::Array(Vec::new()),
        "integer" => Value::from(1),
        "number" => Value::from(1.5),
        "boolean" => Value::Bool(true),
        "null" => Value::Null,
        _ => Value::String("fake".into()),
    }
}

/// Splits a JSON text into `partial_json` pieces of at most `size` bytes (on char boundaries).
pub fn json_pieces(json: &str, size: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = json;
    while !rest.is_empty() {
        let mut end = size.min(rest.len());
        while !rest.is_char_boundary(end) {
            end += 1;
        }
        out.push(&rest[..end]);
        rest = &rest[end..];
    }
    out
}

// --------------------------------------------------------------- responses

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CacheCreation {
    pub ephemeral_5m_input_tokens: u64,
    pub ephemeral_1h_input_tokens: u64,
}

/// `usage` of a message (and of `message_start`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Usage {
    pub input_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_creation: CacheCreation,
    pub output_tokens: u64,
    pub service_tier: &'static str,
}

/// `usage` of `message_delta`: cumulative counts.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeltaUsage {
    pub input_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub output_tokens: u64,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock<'a> {
    Text {
        text: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: &'a Value,
    },
}

#[derive(Debug, Serialize)]
pub struct Message<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub role: &'static str,
    pub model: &'a str,
    pub content: Vec<ContentBlock<'a>>,
    pub stop_reason: Option<&'a str>,
    pub stop_sequence: Option<&'a str>,
    pub usage: Usage,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Delta<'a> {
    TextDelta { text: &'a str },
    InputJsonDelta { partial_json: &'a str },
}

#[derive(Debug, Serialize)]
pub struct MessageDeltaBody<'a> {
    pub stop_reason: &'a str,
    pub stop_sequence: Option<&'a str>,
}

/// One server-sent event of a message stream; its `type` is also the SSE event name.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent<'a> {
    MessageStart {
        message: Message<'a>,
    },
    ContentBlockStart {
        index: u32,
        content_block: ContentBlock<'a>,
    },
    Ping,
    ContentBlockDelta {
        index: u32,
        delta: Delta<'a>,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: MessageDeltaBody<'a>,
        usage: DeltaUsage,
    },
    MessageStop,
}

impl StreamEvent<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            StreamEvent::MessageStart { .. } => "message_start",
            StreamEvent::ContentBlockStart { .. } => "content_block_start",
            StreamEvent::Ping => "ping",
            StreamEvent::ContentBlockDelta { .. } => "content_block_delta",
            StreamEvent::ContentBlockStop { .. } => "content_block_stop",
            StreamEvent::MessageDelta { .. } => "message_delta",
            StreamEvent::MessageStop => "message_stop",
        }
    }

    /// `event: NAME\ndata: JSON\n\n`.
    pub fn frame(&self) -> String {
        frame(
            self.name(),
            &serde_json::to_string(self).expect("serialisable"),
        )
    }
}

/// One SSE frame with an event name.
pub fn frame(name: &str, data: &str) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// The `event: error` frame sent when a stream fails after its 200 (no request_id, as in
/// Anthropic's streaming docs).
pub fn error_frame(err: &Error) -> String {
    frame(
        "error",
        &serde_json::to_string(&err.body(None)).expect("serialisable"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<MessagesRequest, Error> {
        parse_messages(v.to_string().as_bytes(), true)
    }

    #[test]
    fn counts_text_of_system_and_every_block_kind() {
        let r = parse(json!({"model": "claude-x", "max_tokens": 10,
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather in Paris?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                    {"type": "tool_result", "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "warm"}]}]}]}))
        .unwrap();
        let expected: u64 = [
            "Weather in Paris?",
            "get_weather",
            r#"{"city":"Paris"}"#,
            "sunny",
            "warm",
            "Be brief.",
        ]
        .iter()
        .map(|s| tokens::count(TOKENIZER, s))
        .sum();
        assert_eq!(r.prompt_tokens, expected);
        assert!(expected > 10, "{expected}");
    }

    #[test]
    fn validation_messages() {
        let msgs = json!([{"role": "user", "content": "hi"}]);
        let cases = [
            (
                json!({"model": "m", "messages": msgs}),
                "max_tokens: Field required",
            ),
            (
                json!({"max_tokens": 5, "messages": msgs}),
                "model: Field required",
            ),
            (
                json!({"model": "m", "max_tokens": 5}),
                "messages: Field required",
            ),
            (
                json!({"model": "m", "max_tokens": 0, "messages": msgs}),
                "max_tokens: Input should be greater than or equal to 1",
            ),
            (
                json!({"model": "m", "max_tokens": "5", "messages": msgs}),
                "max_tokens: Input should be a valid integer",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": []}),
                "messages: at least one message is required",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]}),
                "messages.0.role: Input should be 'user' or 'assistant'",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "temperature": 1.5, "messages": msgs}),
                "temperature: Input should be less than or equal to 1",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "tool_choice": {"type": "any"}, "messages": msgs}),
                "tool_choice may only be specified while providing tools.",
            ),
        ];
        for (body, message) in cases {
            let err = parse(body.clone()).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(err.kind, "invalid_request_error");
            assert_eq!(err.message, message, "{body}");
        }
        let err = parse(json!({"model": "m", "max_tokens": 5, "messages": [
            {"role": "user", "content": [{"type": "video", "url": "x"}]}]}))
        .unwrap_err();
        assert!(err
            .message
            .starts_with("messages.0.content.0: Input tag 'video'"));
        // count_tokens takes no max_tokens, and checks the rest alike.
        let body = json!({"model": "m", "messages": msgs}).to_string();
        assert!(parse_messages(body.as_bytes(), false).is_ok());
        let body = json!({"model": "m", "messages": []}).to_string();
        let err = parse_messages(body.as_bytes(), false).unwrap_err();
        assert_eq!(err.message, "messages: at least one message is required");
    }

    #[test]
    fn fake_values_follow_the_schema() {
        let schema = json!({"type": "object", "properties": {
            "city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "f"]},
            "days": {"type": "integer"}, "precise": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "number"}},
            "opt": {"type": ["null", "integer"]},
            "nested": {"properties": {"a": {"const": 7}}}}});
        assert_eq!(
            fake_value(&schema, 0),
            json!({"city": "fake", "unit": "celsius", "days": 1, "precise": true,
                "tags": [1.5], "opt": 1, "nested": {"a": 7}})
        );
    }

    #[test]
    fn json_pieces_reassemble() {
        let s = r#"{"city":"Zürich","n":1}"#;
        for size in 1..8 {
            let pieces = json_pieces(s, size);
            assert_eq!(pieces.concat(), s);
            assert!(pieces.iter().all(|p| !p.is_empty()));
        }
        assert!(json_pieces("", 4).is_empty());
    }
}
