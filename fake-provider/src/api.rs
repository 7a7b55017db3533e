//! OpenAI wire types: request parsing (lenient where OpenAI is, strict where
//! it answers 400) and response objects serialised in OpenAI's field order.

use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Map, Value};
use tiktoken_rs::tokenizer::Tokenizer;
use tiktoken_rs::{ChatCompletionRequestMessage, FunctionCall};

use crate::tokens;

/// An error answered in OpenAI's format.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// The `retry-after` (seconds) of the answer; a 429 without one says `1`.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// 400 invalid_request_error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn param(mut self, param: &str) -> Self {
        self.param = Some(param.to_owned());
        self
    }

    pub fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub(crate) fn missing(param: &str) -> Self {
        Self::invalid(format!("Missing required parameter: '{param}'."))
            .param(param)
            .code("missing_required_parameter")
    }

    pub(crate) fn bad_type(param: &str, expected: &str, got: &Value) -> Self {
        Self::invalid(format!(
            "Invalid type for '{param}': expected {expected}, but got {} instead.",
            type_name(got)
        ))
        .param(param)
        .code("invalid_type")
    }

    /// `{"error":{"message","type","param","code"}}`, in OpenAI's order.
    pub fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            error: ErrorDetail {
                message: &self.message,
                kind: self.kind,
                param: self.param.as_deref(),
                code: self.code,
            },
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Debug, Serialize)]
pub struct ErrorDetail<'a> {
    pub message: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub param: Option<&'a str>,
    pub code: Option<&'static str>,
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a decimal",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------- requests

/// Fields shared by chat and legacy completions.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    pub model: String,
    pub stream: bool,
    pub include_usage: bool,
    /// The smaller of `max_tokens` / `max_completion_tokens` when given.
    pub max_tokens: Option<u64>,
    pub prompt_tokens: u64,
    /// Tokenizer used for counting (also for the completion).
    pub tokenizer: Tokenizer,
    /// Names of the function tools the request offers (chat only), in order.
    pub tools: Vec<String>,
    /// `tool_choice: "none"`: the model may not call a tool.
    pub tool_choice_none: bool,
    /// `n`: how many choices to generate (1..=128).
    pub n: u32,
    /// Log probabilities asked for: chat's `logprobs: true` with its `top_logprobs` (0..=20),
    /// or the legacy endpoint's `logprobs` (0..=5).
    pub logprobs: Option<u32>,
    /// Chat's `response_format`.
    pub response_format: ResponseFormat,
    /// Characters of a legacy prompt given as one string (where `text_offset` starts).
    pub prompt_chars: usize,
}

/// Chat's `response_format`.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ResponseFormat {
    #[default]
    Text,
    /// `{"type": "json_object"}`: the content is a JSON object.
    JsonObject,
    /// `{"type": "json_schema", "json_schema": {...}}`: the content is an instance of `schema`.
    JsonSchema { name: String, schema: Value },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodingFormat {
    Float,
    Base64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EmbeddingInput {
    Text(String),
    Tokens(Vec<u32>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub inputs: Vec<EmbeddingInput>,
    pub encoding_format: EncodingFormat,
    pub dimensions: usize,
    pub prompt_tokens: u64,
    pub tokenizer: Tokenizer,
}

/// Parses a body as a JSON object, with OpenAI's error for anything else.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ApiError::invalid(format!(
            "Invalid type for request body: expected an object, but got {} instead.",
            type_name(&other)
        ))),
        Err(_) => Err(ApiError::invalid(
            "We could not parse the JSON body of your request. (HINT: This likely means you \
             aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, \
             but what was sent was not valid JSON. If you have trouble figuring out how to fix \
             this, please contact us through our help center at help.openai.com.)",
        )),
    }
}

/// Present and not null.
pub(crate) fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn model(obj: &Map<String, Value>) -> Result<String, ApiError> {
    match field(obj, "model") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(ApiError::bad_type("model", "a string", other)),
        None => Err(ApiError::invalid("you must provide a model parameter")),
    }
}

pub(crate) fn opt_u64(obj: &Map<String, Value>, name: &str) -> Result<Option<u64>, ApiError> {
    match field(obj, name) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| ApiError::bad_type(name, "a non-negative integer", v)),
    }
}

fn stream_flags(obj: &Map<String, Value>) -> Result<(bool, bool), ApiError> {
    let stream = match field(obj, "stream") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(ApiError::bad_type("stream", "a boolean", other)),
    };
    let include_usage = match field(obj, "stream_options") {
        None => false,
        Some(_) if !stream => {
            return Err(ApiError::invalid(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            )
            .param("stream_options"))
        }
        Some(Value::Object(opts)) => match field(opts, "include_usage") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(ApiError::bad_type(
                    "stream_options.include_usage",
                    "a boolean",
                    other,
                ))
            }
        },
        Some(other) => return Err(ApiError::bad_type("stream_options", "an object", other)),
    };
    Ok((stream, include_usage))
}

/// An optional integer within `min..=max`, with OpenAI's errors outside.
pub(crate) fn int_in(
    obj: &Map<String, Value>,
    name: &str,
    min: i64,
    max: i64,
) -> Result<Option<i64>, ApiError> {
    let Some(v) = field(obj, name) else {
        return Ok(None);
    };
    let n = match (v.as_i64(), v.as_u64()) {
        (Some(n), _) => n,
        (None, Some(_)) => i64::MAX,
        _ => return Err(ApiError::bad_type(name, "an integer", v)),
    };
    if n < min {
        return Err(ApiError::invalid(format!(
            "Invalid '{name}': integer below minimum value. Expected a value >= {min}, but got \
             {n} instead."
        ))
        .param(name)
        .code("integer_below_min_value"));
    }
    if n > max {
        let got = v.to_string();
        return Err(ApiError::invalid(format!(
            "Invalid '{name}': integer above maximum value. Expected a value <= {max}, but got \
             {got} instead."
        ))
        .param(name)
        .code("integer_above_max_value"));
    }
    Ok(Some(n))
}

/// Largest `n`, as OpenAI accepts.
pub const MAX_N: i64 = 128;
/// Largest chat `top_logprobs`.
pub const MAX_TOP_LOGPROBS: i64 = 20;
/// Largest legacy `logprobs`.
pub const MAX_LEGACY_LOGPROBS: i64 = 5;

fn choices_n(obj: &Map<String, Value>) -> Result<u32, ApiError> {
    Ok(int_in(obj, "n", 1, MAX_N)?.map_or(1, |n| n as u32))
}

/// Chat's `logprobs` (a boolean) and `top_logprobs`, which needs it.
fn chat_logprobs(obj: &Map<String, Value>) -> Result<Option<u32>, ApiError> {
    let on = match field(obj, "logprobs") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(ApiError::bad_type("logprobs", "a boolean", other)),
    };
    let top = int_in(obj, "top_logprobs", 0, MAX_TOP_LOGPROBS)?;
    if top.is_some() && !on {
        return Err(ApiError::invalid(
            "Invalid value for 'top_logprobs': 'logprobs' must be set to true when \
             'top_logprobs' is used.",
        )
        .param("top_logprobs")
        .code("invalid_value"));
    }
    Ok(on.then(|| top.unwrap_or(0) as u32))
}

/// `^[a-zA-Z0-9_-]{1,64}$`, the names OpenAI accepts for a schema.
pub(crate) fn valid_schema_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Chat's `response_format`; `messages` for json_object's rule that they mention JSON.
fn response_format(
    obj: &Map<String, Value>,
    messages: &[ChatCompletionRequestMessage],
) -> Result<ResponseFormat, ApiError> {
    let Some(rf) = field(obj, "response_format") else {
        return Ok(ResponseFormat::Text);
    };
    let Some(rf) = rf.as_object() else {
        return Err(ApiError::bad_type("response_format", "an object", rf));
    };
    let kind = match field(rf, "type") {
        Some(Value::String(t)) => t.as_str(),
        Some(other) => {
            return Err(ApiError::bad_type(
                "response_format.type",
                "a string",
                other,
            ))
        }
        None => return Err(ApiError::missing("response_format.type")),
    };
    match kind {
        "text" => Ok(ResponseFormat::Text),
        "json_object" => {
            let mentions_json = messages
                .iter()
                .filter_map(|m| m.content.as_deref())
                .any(|c| c.to_ascii_lowercase().contains("json"));
            if !mentions_json {
                return Err(ApiError::invalid(
                    "'messages' must contain the word 'json' in some form, to use \
                     'response_format' of type 'json_object'.",
                )
                .param("messages"));
            }
            Ok(ResponseFormat::JsonObject)
        }
        "json_schema" => {
            let js = match field(rf, "json_schema") {
                Some(Value::Object(js)) => js,
                Some(other) => {
                    return Err(ApiError::bad_type(
                        "response_format.json_schema",
                        "an object",
                        other,
                    ))
                }
                None => return Err(ApiError::missing("response_format.json_schema")),
            };
            let name = match field(js, "name") {
                Some(Value::String(n)) if valid_schema_name(n) => n.clone(),
                Some(Value::String(_)) => {
                    return Err(ApiError::invalid(
                        "Invalid 'response_format.json_schema.name': string does not match \
                         pattern. Expected a string that matches the pattern \
                         '^[a-zA-Z0-9_-]+$'.",
                    )
                    .param("response_format.json_schema.name")
                    .code("invalid_value"))
                }
                Some(other) => {
                    return Err(ApiError::bad_type(
                        "response_format.json_schema.name",
                        "a string",
                        other,
                    ))
                }
                None => return Err(ApiError::missing("response_format.json_schema.name")),
            };
            let schema = match field(js, "schema") {
                None => Value::Object(Map::new()),
                Some(s @ Value::Object(_)) => s.clone(),
                Some(other) => {
                    return Err(ApiError::bad_type(
                        "response_format.json_schema.schema",
                        "an object",
                        other,
                    ))
                }
            };
            let strict = match field(js, "strict") {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(other) => {
                    return Err(ApiError::bad_type(
                        "response_format.json_schema.strict",
                        "a boolean",
                        other,
                    ))
                }
            };
            if strict {
                crate::schema::check_strict(&schema).map_err(|why| {
                    ApiError::invalid(format!(
                        "Invalid schema for response_format '{name}': {why}"
                    ))
                    .param("response_format")
                    .code("invalid_json_schema")
                })?;
            }
            // The instance is made here so that a schema the fake cannot satisfy is a 400.
            crate::schema::instance(&schema, 0).map_err(|why| {
                ApiError::invalid(format!(
                    "fake-provider cannot generate an instance of response_format '{name}': {why}"
                ))
                .param("response_format.json_schema.schema")
            })?;
            Ok(ResponseFormat::JsonSchema { name, schema })
        }
        other => Err(ApiError::invalid(format!(
            "Invalid value: '{other}'. Supported values are: 'text', 'json_object', and \
             'json_schema'."
        ))
        .param("response_format.type")
        .code("invalid_value")),
    }
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Text of a message's `content`: a string, null, or an array of parts whose
/// text parts are concatenated.
fn content_text(v: Option<&Value>, param: &str) -> Result<Option<String>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                let Some(part) = part.as_object() else {
                    return Err(ApiError::bad_type(
                        &format!("{param}[{j}]"),
                        "an object",
                        part,
                    ));
                };
                match part.get("type").and_then(Value::as_str) {
                    Some("text") | Some("input_text") => {
                        if let Some(t) = part.get("text").and_then(Value::as_str) {
                            text.push_str(t);
                        }
                    }
                    Some("refusal") => {
                        if let Some(t) = part.get("refusal").and_then(Value::as_str) {
                            text.push_str(t);
                        }
                    }
                    Some(_) => {} // image_url, input_audio, file: not counted
                    None => return Err(ApiError::missing(&format!("{param}[{j}].type"))),
                }
            }
            Ok(Some(text))
        }
        Some(other) => Err(ApiError::bad_type(param, "a string or array", other)),
    }
}

fn to_function_call(v: &Value) -> FunctionCall {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    FunctionCall {
        name: s("name"),
        arguments: s("arguments"),
    }
}

fn chat_message(i: usize, v: &Value) -> Result<ChatCompletionRequestMessage, ApiError> {
    let param = format!("messages[{i}]");
    let Some(m) = v.as_object() else {
        return Err(ApiError::bad_type(&param, "an object", v));
    };
    let role = match field(m, "role") {
        Some(Value::String(r)) => r.clone(),
        Some(other) => {
            return Err(ApiError::bad_type(
                &format!("{param}.role"),
                "a string",
                other,
            ))
        }
        None => return Err(ApiError::missing(&format!("{param}.role"))),
    };
    let content = content_text(m.get("content"), &format!("{param}.content"))?;
    let name = field(m, "name").and_then(Value::as_str).map(str::to_owned);
    let refusal = field(m, "refusal")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let function_call = field(m, "function_call").map(to_function_call);
    let tool_calls = match field(m, "tool_calls") {
        Some(Value::Array(calls)) => calls
            .iter()
            .map(|c| to_function_call(c.get("function").unwrap_or(&Value::Null)))
            .collect(),
        _ => Vec::new(),
    };
    Ok(ChatCompletionRequestMessage {
        role,
        content,
        name,
        function_call,
        tool_calls,
        refusal,
    })
}

/// `POST /chat/completions`.
pub fn parse_chat(obj: &Map<String, Value>) -> Result<GenerationRequest, ApiError> {
    let model = model(obj)?;
    let messages = match field(obj, "messages") {
        Some(Value::Array(m)) if m.is_empty() => {
            return Err(ApiError::invalid(
                "Invalid 'messages': empty array. Expected an array with minimum length 1, \
                 but got an empty array instead.",
            )
            .param("messages")
            .code("empty_array"))
        }
        Some(Value::Array(m)) => m
            .iter()
            .enumerate()
            .map(|(i, v)| chat_message(i, v))
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => return Err(ApiError::bad_type("messages", "an array", other)),
        None => return Err(ApiError::missing("messages")),
    };
    let n = choices_n(obj)?;
    let (stream, include_usage) = stream_flags(obj)?;
    let logprobs = chat_logprobs(obj)?;
    let response_format = response_format(obj, &messages)?;
    let max_tokens = min_opt(
        opt_u64(obj, "max_tokens")?,
        opt_u64(obj, "max_completion_tokens")?,
    );
    let (prompt_tokens, tokenizer) = tokens::chat_prompt_tokens(&model, &messages);
    let tools = match field(obj, "tools") {
        None => Vec::new(),
        Some(Value::Array(tools)) => tools
            .iter()
            .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
            .map(str::to_owned)
            .collect(),
        Some(other) => return Err(ApiError::bad_type("tools", "an array", other)),
    };
    let tool_choice_none = field(obj, "tool_choice").and_then(Value::as_str) == Some("none");
    Ok(GenerationRequest {
        model,
        stream,
        include_usage,
        max_tokens,
        prompt_tokens,
        tokenizer,
        tools,
        tool_choice_none,
        n,
        logprobs,
        response_format,
        prompt_chars: 0,
    })
}

fn token_array(v: &[Value]) -> Option<Vec<u32>> {
    v.iter()
        .map(|t| t.as_u64().and_then(|t| u32::try_from(t).ok()))
        .collect()
}

/// `POST /completions` (legacy).
pub fn parse_completion(obj: &Map<String, Value>) -> Result<GenerationRequest, ApiError> {
    let model = model(obj)?;
    let tokenizer = tokens::tokenizer_for(&model);
    let bad_prompt = |v: &Value| {
        ApiError::bad_type(
            "prompt",
            "a string, array of strings, array of integers or array of integer arrays",
            v,
        )
    };
    let prompt_tokens = match field(obj, "prompt") {
        None => return Err(ApiError::missing("prompt")),
        Some(Value::String(s)) => tokens::count(tokenizer, s),
        Some(p @ Value::Array(items)) => {
            let mut total = 0;
            if let Some(ids) = token_array(items) {
                total = ids.len() as u64;
            } else {
                for item in items {
                    total += match item {
                        Value::String(s) => tokens::count(tokenizer, s),
                        Value::Array(ids) => {
                            token_array(ids).ok_or_else(|| bad_prompt(p))?.len() as u64
                        }
                        _ => return Err(bad_prompt(p)),
                    };
                }
            }
            total
        }
        Some(other) => return Err(bad_prompt(other)),
    };
    let n = choices_n(obj)?;
    let (stream, include_usage) = stream_flags(obj)?;
    let logprobs = int_in(obj, "logprobs", 0, MAX_LEGACY_LOGPROBS)?.map(|k| k as u32);
    let prompt_chars = match field(obj, "prompt") {
        Some(Value::String(s)) => s.chars().count(),
        _ => 0,
    };
    Ok(GenerationRequest {
        model,
        stream,
        include_usage,
        max_tokens: opt_u64(obj, "max_tokens")?,
        prompt_tokens,
        tokenizer,
        tools: Vec::new(),
        tool_choice_none: false,
        n,
        logprobs,
        response_format: ResponseFormat::Text,
        prompt_chars,
    })
}

/// `POST /embeddings`.
pub fn parse_embeddings(obj: &Map<String, Value>) -> Result<EmbeddingsRequest, ApiError> {
    let model = model(obj)?;
    let tokenizer = tokens::tokenizer_for(&model);
    let invalid_input = || {
        ApiError::invalid("'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.")
            .param("input")
    };
    let inputs = match field(obj, "input") {
        None => return Err(ApiError::missing("input")),
        Some(Value::String(s)) if s.is_empty() => return Err(invalid_input()),
        Some(Value::String(s)) => vec![EmbeddingInput::Text(s.clone())],
        Some(Value::Array(items)) if items.is_empty() => return Err(invalid_input()),
        Some(Value::Array(items)) => {
            if let Some(ids) = token_array(items) {
                vec![EmbeddingInput::Tokens(ids)]
            } else {
                items
                    .iter()
                    .map(|item| match item {
                        Value::String(s) if !s.is_empty() => Ok(EmbeddingInput::Text(s.clone())),
                        Value::Array(ids) if !ids.is_empty() => token_array(ids)
                            .map(EmbeddingInput::Tokens)
                            .ok_or_else(invalid_input),
                        _ => Err(invalid_input()),
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
        }
        Some(_) => return Err(invalid_input()),
    };
    let encoding_format = match field(obj, "encoding_format") {
        None => EncodingFormat::Float,
        Some(Value::String(s)) if s == "float" => EncodingFormat::Float,
        Some(Value::String(s)) if s == "base64" => EncodingFormat::Base64,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "Invalid value for 'encoding_format': expected 'float' or 'base64', got {other}."
            ))
            .param("encoding_format"))
        }
    };
    let dimensions = match opt_u64(obj, "dimensions")? {
        None => crate::embed::DEFAULT_DIMENSIONS,
        Some(d @ 1..=4096) => d as usize,
        Some(d) => {
            return Err(ApiError::invalid(format!(
                "Invalid value for 'dimensions': {d}. It must be between 1 and 4096."
            ))
            .param("dimensions"))
        }
    };
    let prompt_tokens = inputs
        .iter()
        .map(|i| match i {
            EmbeddingInput::Text(s) => tokens::count(tokenizer, s),
            EmbeddingInput::Tokens(t) => t.len() as u64,
        })
        .sum();
    Ok(EmbeddingsRequest {
        model,
        inputs,
        encoding_format,
        dimensions,
        prompt_tokens,
        tokenizer,
    })
}

// --------------------------------------------------------------- responses

pub const SERVICE_TIER: &str = "default";
pub const SYSTEM_FINGERPRINT: &str = "fp_fake";

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PromptTokensDetails {
    pub cached_tokens: u64,
    pub audio_tokens: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CompletionTokensDetails {
    pub reasoning_tokens: u64,
    pub audio_tokens: u64,
    pub accepted_prediction_tokens: u64,
    pub rejected_prediction_tokens: u64,
}

/// Chat usage, with details.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChatUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub prompt_tokens_details: PromptTokensDetails,
    pub completion_tokens_details: CompletionTokensDetails,
}

impl ChatUsage {
    pub fn new(prompt: u64, content: u64, cached: u64, reasoning: u64) -> Self {
        let completion = content + reasoning;
        ChatUsage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            prompt_tokens_details: PromptTokensDetails {
                cached_tokens: cached,
                audio_tokens: 0,
            },
            completion_tokens_details: CompletionTokensDetails {
                reasoning_tokens: reasoning,
                audio_tokens: 0,
                accepted_prediction_tokens: 0,
                rejected_prediction_tokens: 0,
            },
        }
    }
}

/// Legacy completions usage.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TextUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// A function the model calls (`message.tool_calls[].function`).
#[derive(Debug, Serialize)]
pub struct FunctionCallOut<'a> {
    pub name: &'a str,
    pub arguments: &'a str,
}

/// One entry of `message.tool_calls`.
#[derive(Debug, Serialize)]
pub struct ToolCallOut<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionCallOut<'a>,
}

#[derive(Debug, Serialize)]
pub struct ChatMessage<'a> {
    pub role: &'static str,
    /// `null` when the message calls tools.
    pub content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallOut<'a>>>,
    pub refusal: Option<&'a str>,
    pub annotations: [(); 0],
}

/// One of `top_logprobs`: an alternative token at a position.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f64,
    pub bytes: Vec<u8>,
}

/// One token of `logprobs.content`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f64,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<TopLogprob>,
}

/// A chat choice's `logprobs`: `content` (null when the message has none) and `refusal`
/// (always null: the fake never refuses).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChatLogprobs {
    pub content: Option<Vec<TokenLogprob>>,
    pub refusal: Option<()>,
}

/// A map serialised in its own order (the legacy `top_logprobs` entries).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderedMap(pub Vec<(String, f64)>);

impl Serialize for OrderedMap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// The legacy completions' `logprobs`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LegacyLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<f64>,
    pub top_logprobs: Vec<OrderedMap>,
    pub text_offset: Vec<usize>,
}

#[derive(Debug, Serialize)]
pub struct ChatChoice<'a> {
    pub index: u32,
    pub message: ChatMessage<'a>,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: &'static str,
}

#[derive(Debug, Serialize)]
pub struct ChatCompletion<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: Vec<ChatChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<ChatUsage>,
    pub service_tier: &'static str,
    pub system_fingerprint: &'static str,
}

/// `function` of a streamed tool call: the name in the first delta only, then pieces of the
/// arguments.
#[derive(Debug, Serialize)]
pub struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    pub arguments: &'a str,
}

/// One entry of `delta.tool_calls`: `id` and `type` in the first delta of a call only.
#[derive(Debug, Serialize)]
pub struct ToolCallDelta<'a> {
    pub index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub function: FunctionDelta<'a>,
}

#[derive(Debug, Default, Serialize)]
pub struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// `Some(None)` serialises as `"content": null` (the first delta of a tool call).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta<'a>>>,
    /// `Some(None)` serialises as `"refusal": null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Option<&'a str>>,
}

#[derive(Debug, Serialize)]
pub struct ChunkChoice<'a> {
    pub index: u32,
    pub delta: Delta<'a>,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: Option<&'static str>,
}

/// `usage` of a stream chunk: absent (`None`), `null` (`Some(None)`) or the
/// object.
pub type ChunkUsage<U> = Option<Option<U>>;

#[derive(Debug, Serialize)]
pub struct ChatChunk<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub service_tier: &'static str,
    pub system_fingerprint: &'static str,
    pub choices: Vec<ChunkChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: ChunkUsage<ChatUsage>,
}

#[derive(Debug, Serialize)]
pub struct TextChoice<'a> {
    pub text: &'a str,
    pub index: u32,
    pub logprobs: Option<LegacyLogprobs>,
    pub finish_reason: Option<&'static str>,
}

/// A legacy completion, or one of its stream chunks.
#[derive(Debug, Serialize)]
pub struct TextCompletion<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: Vec<TextChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: ChunkUsage<TextUsage>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum EmbeddingVector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Serialize)]
pub struct Embedding {
    pub object: &'static str,
    pub index: usize,
    pub embedding: EmbeddingVector,
}

#[derive(Debug, Serialize)]
pub struct EmbeddingUsage {
    pub prompt_tokens: u64,
    pub total_tokens: u64,
}

#[derive(Debug, Serialize)]
pub struct EmbeddingList<'a> {
    pub object: &'static str,
    pub data: Vec<Embedding>,
    pub model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<EmbeddingUsage>,
}

/// Models listed by `GET /models`, with their OpenAI creation times.
pub const MODELS: &[(&str, u64)] = &[
    ("gpt-4o", 1715367049),
    ("gpt-4o-mini", 1721172741),
    ("gpt-4.1", 1744316542),
    ("gpt-4.1-mini", 1744318173),
    ("o3-mini", 1737146383),
    ("text-embedding-3-small", 1705948997),
];

#[derive(Debug, Serialize)]
pub struct Model {
    pub id: &'static str,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
}

#[derive(Debug, Serialize)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<Model>,
}

pub fn models_list() -> ModelList {
    ModelList {
        object: "list",
        data: MODELS
            .iter()
            .map(|&(id, created)| Model {
                id,
                object: "model",
                created,
                owned_by: "system",
            })
            .collect(),
    }
}
