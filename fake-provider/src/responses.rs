//! OpenAI Responses API: parsing of `POST /responses` and `POST /responses/input_tokens`
//! bodies (OpenAI's validation messages, with `param`), and what a response echoes of them.
//!
//! Unknown top-level parameters are ignored, as the fake's chat endpoint does; the ones OpenAI
//! documents are checked for their types and values. `background`, `conversation` and `prompt`
//! need server state the fake does not keep and are a 400 naming the parameter.
//!
//! Input tokens mirror the chat count ([`tokens::chat_prompt_tokens`]): the request is read as
//! the chat messages it amounts to (see [`input`]) — `instructions` as a first `system`
//! message, then the messages of the `previous_response_id` chain (its inputs and outputs,
//! without its instructions, as OpenAI carries them over), then this request's `input` items —
//! and counted with OpenAI's chat formula and the model's tokenizer (gpt-4o's o200k_base for
//! models tiktoken does not know). Tool definitions and `text.format` are not counted.

pub mod input;
mod tools;
pub mod wire;

use serde::Serialize;
use serde_json::{Map, Value};
use tiktoken_rs::tokenizer::Tokenizer;
use tiktoken_rs::ChatCompletionRequestMessage;

use crate::api::{self, field, ApiError, ResponseFormat};
use crate::{schema, tokens};
pub use input::{Input, Prev};
use tools::{parse_tool_choice, parse_tools};

/// A function tool of the request.
#[derive(Debug, Clone, PartialEq)]
pub struct Function {
    pub name: String,
    /// The `parameters` schema (`{}` when the tool has none).
    pub parameters: Value,
}

/// `tool_choice`, as the fake acts on it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ToolChoice {
    #[default]
    Auto,
    None,
    /// `"required"`: call a function tool.
    Required,
    /// `{"type": "function", "name": NAME}`.
    Function(String),
}

/// A tool as the response echoes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ToolEcho {
    Function {
        #[serde(rename = "type")]
        kind: &'static str,
        description: Option<String>,
        name: String,
        parameters: Option<Value>,
        strict: bool,
    },
    /// Hosted tools (web_search, file_search, mcp, custom, ...): echoed as given, never called.
    Other(Value),
}

/// `text.format` as the response echoes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum FormatEcho {
    Plain {
        #[serde(rename = "type")]
        kind: &'static str,
    },
    JsonSchema {
        #[serde(rename = "type")]
        kind: &'static str,
        description: Option<String>,
        name: String,
        schema: Value,
        strict: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextEcho {
    pub format: FormatEcho,
    pub verbosity: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReasoningEcho {
    pub effort: Option<String>,
    pub summary: Option<String>,
}

/// The request fields a response object echoes, with OpenAI's defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Echo {
    pub instructions: Option<String>,
    pub max_output_tokens: Option<u64>,
    pub max_tool_calls: Option<u64>,
    pub parallel_tool_calls: bool,
    pub previous_response_id: Option<String>,
    pub prompt_cache_key: Option<String>,
    pub reasoning: ReasoningEcho,
    pub safety_identifier: Option<String>,
    /// The requested `service_tier` (`None`: "auto").
    pub service_tier: Option<String>,
    pub store: bool,
    pub temperature: f64,
    pub text: TextEcho,
    pub tool_choice: Value,
    pub tools: Vec<ToolEcho>,
    pub top_logprobs: u64,
    pub top_p: f64,
    pub truncation: String,
    pub user: Option<String>,
    pub metadata: Value,
}

/// A parsed `POST /responses` (or `/responses/input_tokens`) body.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateRequest {
    pub model: String,
    pub stream: bool,
    /// `stream_options.include_obfuscation` (default true): `obfuscation` on delta events.
    pub obfuscation: bool,
    pub input: Input,
    pub prompt_tokens: u64,
    pub tokenizer: Tokenizer,
    pub functions: Vec<Function>,
    pub tool_choice: ToolChoice,
    pub format: ResponseFormat,
    pub echo: Echo,
}

/// The previous response a request continues, found by its id.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<Prev>;

/// `POST /responses` (`count_only`: `POST /responses/input_tokens`, where `model` and `input`
/// are optional and `stream` is not a parameter).
pub fn parse_create(
    obj: &Map<String, Value>,
    lookup: Lookup,
    count_only: bool,
) -> Result<CreateRequest, ApiError> {
    let model = match field(obj, "model") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(ApiError::bad_type("model", "a string", other)),
        None if count_only => tokens::FALLBACK_MODEL.to_owned(),
        None => return Err(ApiError::missing("model")),
    };
    unsupported(obj)?;
    let (stream, obfuscation) = if count_only {
        (false, true)
    } else {
        stream_flags(obj)?
    };
    let instructions = opt_string(obj, "instructions")?;
    let previous_response_id = opt_string(obj, "previous_response_id")?;
    let prev = match &previous_response_id {
        None => None,
        Some(id) => Some(lookup(id).ok_or_else(|| {
            ApiError::invalid(format!("Previous response with id '{id}' not found."))
                .param("previous_response_id")
                .code("previous_response_not_found")
        })?),
    };
    let input = match field(obj, "input") {
        None if !count_only && prev.is_none() => return Err(ApiError::missing("input")),
        v => input::parse(v, prev.as_ref())?,
    };
    let (functions, tools) = parse_tools(obj)?;
    let (tool_choice, tool_choice_echo) = parse_tool_choice(obj, &functions)?;
    let mentions_json = instructions
        .as_deref()
        .is_some_and(|i| i.to_ascii_lowercase().contains("json"))
        || input.mentions("json");
    let (format, text) = parse_text(obj, mentions_json)?;
    let (prompt_tokens, tokenizer) = count(&model, instructions.as_deref(), &input.messages);
    let echo = Echo {
        instructions,
        max_output_tokens: api::int_in(obj, "max_output_tokens", 16, i64::MAX)?.map(|n| n as u64),
        max_tool_calls: api::opt_u64(obj, "max_tool_calls")?,
        parallel_tool_calls: opt_bool(obj, "parallel_tool_calls")?.unwrap_or(true),
        previous_response_id,
        prompt_cache_key: opt_string(obj, "prompt_cache_key")?,
        reasoning: parse_reasoning(obj)?,
        safety_identifier: opt_string(obj, "safety_identifier")?,
        service_tier: one_of(obj, "service_tier", SERVICE_TIERS)?,
        store: opt_bool(obj, "store")?.unwrap_or(true),
        temperature: number_in(obj, "temperature", 0.0, 2.0)?.unwrap_or(1.0),
        text,
        tool_choice: tool_choice_echo,
        tools,
        top_logprobs: api::int_in(obj, "top_logprobs", 0, 20)?.map_or(0, |n| n as u64),
        top_p: number_in(obj, "top_p", 0.0, 1.0)?.unwrap_or(1.0),
        truncation: one_of(obj, "truncation", &["auto", "disabled"])?
            .unwrap_or_else(|| "disabled".to_owned()),
        user: opt_string(obj, "user")?,
        metadata: parse_metadata(obj)?,
    };
    check_include(obj)?;
    Ok(CreateRequest {
        model,
        stream,
        obfuscation,
        input,
        prompt_tokens,
        tokenizer,
        functions,
        tool_choice,
        format,
        echo,
    })
}

/// The request's input tokens: `instructions` as a `system` message, then `messages`.
pub fn count(
    model: &str,
    instructions: Option<&str>,
    messages: &[ChatCompletionRequestMessage],
) -> (u64, Tokenizer) {
    let mut all = Vec::with_capacity(messages.len() + 1);
    if let Some(text) = instructions {
        all.push(ChatCompletionRequestMessage {
            role: "system".to_owned(),
            content: Some(text.to_owned()),
            ..Default::default()
        });
    }
    all.extend_from_slice(messages);
    tokens::chat_prompt_tokens(model, &all)
}

const SERVICE_TIERS: &[&str] = &["auto", "default", "flex", "scale", "priority"];

/// Parameters that need state the fake does not keep.
fn unsupported(obj: &Map<String, Value>) -> Result<(), ApiError> {
    if opt_bool(obj, "background")? == Some(true) {
        return Err(
            ApiError::invalid("fake-provider does not run background responses.")
                .param("background"),
        );
    }
    for (name, what) in [
        ("conversation", "conversations"),
        ("prompt", "prompt templates"),
    ] {
        if field(obj, name).is_some() {
            return Err(
                ApiError::invalid(format!("fake-provider does not keep {what}.")).param(name),
            );
        }
    }
    Ok(())
}

fn stream_flags(obj: &Map<String, Value>) -> Result<(bool, bool), ApiError> {
    let stream = opt_bool(obj, "stream")?.unwrap_or(false);
    let Some(options) = field(obj, "stream_options") else {
        return Ok((stream, true));
    };
    if !stream {
        return Err(ApiError::invalid(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        )
        .param("stream_options"));
    }
    let Some(options) = options.as_object() else {
        return Err(ApiError::bad_type("stream_options", "an object", options));
    };
    let obfuscation = match field(options, "include_obfuscation") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(ApiError::bad_type(
                "stream_options.include_obfuscation",
                "a boolean",
                other,
            ))
        }
    };
    Ok((stream, obfuscation))
}

pub(crate) fn opt_string(obj: &Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    string_at(obj, name, name)
}

/// An optional string field `name` of `obj`, named `param` in errors.
pub(crate) fn string_at(
    obj: &Map<String, Value>,
    name: &str,
    param: &str,
) -> Result<Option<String>, ApiError> {
    match field(obj, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ApiError::bad_type(param, "a string", other)),
    }
}

fn opt_bool(obj: &Map<String, Value>, name: &str) -> Result<Option<bool>, ApiError> {
    match field(obj, name) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(ApiError::bad_type(name, "a boolean", other)),
    }
}

/// "Invalid value: 'x'. Supported values are: 'a', 'b', and 'c'."
pub(crate) fn invalid_value(param: &str, got: &str, supported: &[&str]) -> ApiError {
    let quoted: Vec<String> = supported.iter().map(|s| format!("'{s}'")).collect();
    let list = match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, [one])) => format!("{one} and {last}"),
        Some((last, rest)) => format!("{}, and {last}", rest.join(", ")),
    };
    ApiError::invalid(format!(
        "Invalid value: '{got}'. Supported values are: {list}."
    ))
    .param(param)
    .code("invalid_value")
}

/// An optional string that must be one of `values`.
fn one_of(
    obj: &Map<String, Value>,
    name: &str,
    values: &[&str],
) -> Result<Option<String>, ApiError> {
    one_of_at(obj, name, name, values)
}

fn one_of_at(
    obj: &Map<String, Value>,
    name: &str,
    param: &str,
    values: &[&str],
) -> Result<Option<String>, ApiError> {
    match string_at(obj, name, param)? {
        Some(s) if !values.contains(&s.as_str()) => Err(invalid_value(param, &s, values)),
        v => Ok(v),
    }
}

/// An optional number within `min..=max`, with OpenAI's errors outside.
fn number_in(
    obj: &Map<String, Value>,
    name: &str,
    min: f64,
    max: f64,
) -> Result<Option<f64>, ApiError> {
    let Some(v) = field(obj, name) else {
        return Ok(None);
    };
    let Some(x) = v.as_f64() else {
        return Err(ApiError::bad_type(name, "a decimal", v));
    };
    let (bound, code, word) = if x < min {
        (
            min,
            "decimal_below_min_value",
            "below minimum value. Expected a value >=",
        )
    } else if x > max {
        (
            max,
            "decimal_above_max_value",
            "above maximum value. Expected a value <=",
        )
    } else {
        return Ok(Some(x));
    };
    Err(ApiError::invalid(format!(
        "Invalid '{name}': decimal {word} {bound}, but got {v} instead."
    ))
    .param(name)
    .code(code))
}

/// `metadata`: at most 16 string values, keys of at most 64 and values of at most 512
/// characters. Echoed as `{}` when absent.
fn parse_metadata(obj: &Map<String, Value>) -> Result<Value, ApiError> {
    let Some(v) = field(obj, "metadata") else {
        return Ok(Value::Object(Map::new()));
    };
    let Some(map) = v.as_object() else {
        return Err(ApiError::bad_type("metadata", "an object", v));
    };
    if map.len() > 16 {
        return Err(ApiError::invalid(format!(
            "Invalid 'metadata': too many properties. Expected an object with at most 16 \
             properties, but got an object with {} properties instead.",
            map.len()
        ))
        .param("metadata")
        .code("object_above_max_properties"));
    }
    for (key, value) in map {
        let param = format!("metadata.{key}");
        let too_long = |what: &str, max: usize, len: usize| {
            ApiError::invalid(format!(
                "Invalid '{param}': {what} too long. Expected a string with maximum length \
                 {max}, but got a string with length {len} instead."
            ))
            .param(&param)
            .code("string_above_max_length")
        };
        if key.chars().count() > 64 {
            return Err(too_long("key", 64, key.chars().count()));
        }
        match value {
            Value::String(s) if s.chars().count() > 512 => {
                return Err(too_long("string", 512, s.chars().count()))
            }
            Value::String(_) => {}
            other => return Err(ApiError::bad_type(&param, "a string", other)),
        }
    }
    Ok(v.clone())
}

fn check_include(obj: &Map<String, Value>) -> Result<(), ApiError> {
    match field(obj, "include") {
        None => Ok(()),
        Some(Value::Array(items)) => {
            items
                .iter()
                .enumerate()
                .try_for_each(|(i, item)| match item {
                    Value::String(_) => Ok(()),
                    other => Err(ApiError::bad_type(
                        &format!("include[{i}]"),
                        "a string",
                        other,
                    )),
                })
        }
        Some(other) => Err(ApiError::bad_type("include", "an array", other)),
    }
}

fn parse_reasoning(obj: &Map<String, Value>) -> Result<ReasoningEcho, ApiError> {
    let Some(v) = field(obj, "reasoning") else {
        return Ok(ReasoningEcho {
            effort: None,
            summary: None,
        });
    };
    let Some(r) = v.as_object() else {
        return Err(ApiError::bad_type("reasoning", "an object", v));
    };
    let pick = |name: &str, values: &[&str]| -> Result<Option<String>, ApiError> {
        let param = format!("reasoning.{name}");
        match field(r, name) {
            None => Ok(None),
            Some(Value::String(s)) if values.contains(&s.as_str()) => Ok(Some(s.clone())),
            Some(Value::String(s)) => Err(invalid_value(&param, s, values)),
            Some(other) => Err(ApiError::bad_type(&param, "a string", other)),
        }
    };
    let effort = pick(
        "effort",
        &["none", "minimal", "low", "medium", "high", "xhigh"],
    )?;
    let summaries = ["auto", "concise", "detailed"];
    let summary = pick("summary", &summaries)?;
    let generate_summary = pick("generate_summary", &summaries)?;
    Ok(ReasoningEcho {
        effort,
        summary: summary.or(generate_summary),
    })
}

fn parse_text(
    obj: &Map<String, Value>,
    mentions_json: bool,
) -> Result<(ResponseFormat, TextEcho), ApiError> {
    let plain = |kind| FormatEcho::Plain { kind };
    let mut echo = TextEcho {
        format: plain("text"),
        verbosity: "medium".to_owned(),
    };
    let Some(v) = field(obj, "text") else {
        return Ok((ResponseFormat::Text, echo));
    };
    let Some(text) = v.as_object() else {
        return Err(ApiError::bad_type("text", "an object", v));
    };
    if let Some(verbosity) = one_of_at(
        text,
        "verbosity",
        "text.verbosity",
        &["low", "medium", "high"],
    )? {
        echo.verbosity = verbosity;
    }
    let Some(f) = field(text, "format") else {
        return Ok((ResponseFormat::Text, echo));
    };
    let Some(f) = f.as_object() else {
        return Err(ApiError::bad_type("text.format", "an object", f));
    };
    let format = match field(f, "type") {
        Some(Value::String(t)) if t == "text" => ResponseFormat::Text,
        Some(Value::String(t)) if t == "json_object" => {
            if !mentions_json {
                return Err(ApiError::invalid(
                    "Response input messages must contain the word 'json' in some form to use \
                     'text.format' of type 'json_object'.",
                )
                .param("input"));
            }
            echo.format = plain("json_object");
            ResponseFormat::JsonObject
        }
        Some(Value::String(t)) if t == "json_schema" => {
            let (format, e) = json_schema(f)?;
            echo.format = e;
            format
        }
        Some(Value::String(t)) => {
            return Err(invalid_value(
                "text.format.type",
                t,
                &["text", "json_object", "json_schema"],
            ))
        }
        Some(other) => return Err(ApiError::bad_type("text.format.type", "a string", other)),
        None => return Err(ApiError::missing("text.format.type")),
    };
    Ok((format, echo))
}

/// `text.format` of type `json_schema`: `name`, `schema`, `strict`, `description`.
fn json_schema(f: &Map<String, Value>) -> Result<(ResponseFormat, FormatEcho), ApiError> {
    let name = match field(f, "name") {
        Some(Value::String(n)) if api::valid_schema_name(n) => n.clone(),
        Some(Value::String(_)) => {
            return Err(ApiError::invalid(
                "Invalid 'text.format.name': string does not match pattern. Expected a string \
                 that matches the pattern '^[a-zA-Z0-9_-]+$'.",
            )
            .param("text.format.name")
            .code("invalid_value"))
        }
        Some(other) => return Err(ApiError::bad_type("text.format.name", "a string", other)),
        None => return Err(ApiError::missing("text.format.name")),
    };
    let schema = match field(f, "schema") {
        Some(s @ Value::Object(_)) => s.clone(),
        Some(other) => return Err(ApiError::bad_type("text.format.schema", "an object", other)),
        None => return Err(ApiError::missing("text.format.schema")),
    };
    let strict = match field(f, "strict") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(ApiError::bad_type("text.format.strict", "a boolean", other)),
    };
    let description = string_at(f, "description", "text.format.description")?;
    if strict {
        schema::check_strict(&schema).map_err(|why| {
            ApiError::invalid(format!(
                "Invalid schema for response_format '{name}': {why}"
            ))
            .param("text.format.schema")
            .code("invalid_json_schema")
        })?;
    }
    // The instance is made here so that a schema the fake cannot satisfy is a 400.
    schema::instance(&schema, 0).map_err(|why| {
        ApiError::invalid(format!(
            "fake-provider cannot generate an instance of text.format '{name}': {why}"
        ))
        .param("text.format.schema")
    })?;
    let echo = FormatEcho::JsonSchema {
        kind: "json_schema",
        description,
        name: name.clone(),
        schema: schema.clone(),
        strict,
    };
    Ok((ResponseFormat::JsonSchema { name, schema }, echo))
}

#[cfg(test)]
mod tests;
