//! AWS Bedrock Converse wire: request parsing (`POST /model/{modelId}/converse` and
//! `/converse-stream`) with Bedrock's validation, and its error shape: the status, an
//! `x-amzn-ErrorType: NAME:http://internal.amazon.com/coral/...` header, `x-amzn-RequestId`,
//! and a `{"message": ...}` body.
//!
//! Token counts are an approximation, as in the Anthropic mode: the text of `system` and
//! `messages` (text blocks, a toolUse's name and its input as compact JSON, toolResult text and
//! JSON, reasoning text) counted with o200k_base. Images and documents count 0, `toolConfig`
//! is not counted.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::anthropic::{self, Tool, ToolChoice};
use crate::tokens;

// ------------------------------------------------------------------ errors

/// An error answered in Bedrock's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pub status: StatusCode,
    /// The exception name: `ValidationException`, `ThrottlingException`, ...
    pub code: String,
    pub message: String,
    /// The key of the message in the body: `message`, except for a refused Bedrock API key,
    /// which Bedrock answers `{"Message": ...}`.
    pub message_key: &'static str,
}

/// `x-amzn-ErrorType` namespace of Bedrock's own exceptions.
const BEDROCK_NAMESPACE: &str = "http://internal.amazon.com/coral/com.amazon.bedrock/";
/// `x-amzn-ErrorType` namespace of the authentication exceptions AWS's front end answers.
const CORAL_NAMESPACE: &str = "http://internal.amazon.com/coral/com.amazon.coral.service/";

impl Error {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Error {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: code.to_owned(),
            message: message.into(),
            message_key: "message",
        }
    }

    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// 400 ValidationException.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(400, "ValidationException", message)
    }

    /// Coral's message for a member that breaks a constraint.
    fn constraint(value: &str, at: &str, constraint: &str) -> Self {
        Self::validation(format!(
            "1 validation error detected: Value {value} at '{at}' failed to satisfy constraint: \
             Member must {constraint}"
        ))
    }

    fn malformed(at: &str, what: &str) -> Self {
        Self::validation(format!(
            "Malformed input request: expected {what} at '{at}', please reformat your input and \
             try again."
        ))
    }

    /// The status and message of an exception Bedrock's Converse API names.
    pub fn named(code: &str) -> Self {
        let (status, message) = match code {
            "AccessDeniedException" => (403, "You don't have access to the model with the specified model ID."),
            "ResourceNotFoundException" => (404, "Could not resolve the foundation model from the provided model identifier."),
            "ModelTimeoutException" => (408, "Model has timed out in processing the request. Try your request again."),
            "ModelErrorException" => (424, "The model returned an error while processing the request (simulated by fake-provider)."),
            "ThrottlingException" => (429, "Too many requests, please wait before trying again."),
            "ModelNotReadyException" => (429, "Model is not ready to serve inference requests. The AWS SDK will automatically retry the operation up to 5 times. For information about configuring automatic retries, see Retry behavior in the AWS SDKs and Tools reference guide."),
            "ServiceQuotaExceededException" => (400, "Your request exceeds the service quota for your account. You can view your quotas at Viewing service quotas. You can resubmit your request later."),
            "InternalServerException" => (500, "The system encountered an unexpected error during processing. Try your request again."),
            "ServiceUnavailableException" => (503, "Bedrock is unable to process your request."),
            "ModelStreamErrorException" => (424, "The model stream failed (simulated by fake-provider)."),
            _ => (400, "Simulated error from fake-provider."),
        };
        Self::new(status, code, message)
    }

    /// The exception an `x-fake-status` asks for.
    pub fn simulated(status: StatusCode) -> Self {
        let code = match status.as_u16() {
            403 => "AccessDeniedException",
            404 => "ResourceNotFoundException",
            408 => "ModelTimeoutException",
            424 => "ModelErrorException",
            429 => "ThrottlingException",
            503 => "ServiceUnavailableException",
            500..=599 => "InternalServerException",
            _ => "ValidationException",
        };
        let mut err = Self::named(code);
        err.status = status;
        if code == "ValidationException" {
            err.message = format!(
                "Simulated error (status {}) from fake-provider.",
                status.as_u16()
            );
        }
        err
    }

    /// The name as a ConverseStream exception member (`throttlingException`).
    pub fn stream_member(&self) -> String {
        let mut chars = self.code.chars();
        match chars.next() {
            Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
            None => String::new(),
        }
    }

    /// The error response, with `x-amzn-RequestId: request_id`.
    pub fn response(&self, request_id: &str) -> Response {
        let namespace = match self.code.as_str() {
            "MissingAuthenticationTokenException"
            | "IncompleteSignatureException"
            | "InvalidSignatureException"
            | "UnrecognizedClientException" => CORAL_NAMESPACE,
            _ => BEDROCK_NAMESPACE,
        };
        let mut body = Map::new();
        body.insert(
            self.message_key.to_owned(),
            Value::from(self.message.as_str()),
        );
        let mut resp = Response::new(Body::from(Value::Object(body).to_string()));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Ok(v) = HeaderValue::from_str(&format!("{}:{namespace}", self.code)) {
            h.insert("x-amzn-errortype", v);
        }
        if let Ok(v) = HeaderValue::from_str(request_id) {
            h.insert("x-amzn-requestid", v);
        }
        resp
    }
}

// ---------------------------------------------------------------- requests

/// A parsed Converse / ConverseStream request.
#[derive(Debug, Clone, PartialEq)]
pub struct ConverseRequest {
    /// `inferenceConfig.maxTokens`.
    pub max_tokens: Option<u64>,
    /// `inferenceConfig.stopSequences`.
    pub stop_sequences: Vec<String>,
    /// `toolConfig.tools[].toolSpec`: name and `inputSchema.json`.
    pub tools: Vec<Tool>,
    /// `toolConfig.toolChoice` (`auto` without one).
    pub tool_choice: ToolChoice,
    /// Approximate input tokens (see the module doc).
    pub prompt_tokens: u64,
    /// The last message hands back toolResults: the model answers them.
    pub answers_tool_results: bool,
}

fn count(text: &str) -> u64 {
    tokens::count(anthropic::TOKENIZER, text)
}

fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn string<'a>(obj: &'a Map<String, Value>, name: &str, at: &str) -> Result<&'a str, Error> {
    match field(obj, name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Error::malformed(&format!("{at}.{name}"), "a string")),
        None => Err(Error::constraint(
            "null",
            &format!("{at}.{name}"),
            "not be null",
        )),
    }
}

fn object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>, Error> {
    v.as_object()
        .ok_or_else(|| Error::malformed(at, "an object"))
}

/// The members of ContentBlock (and the other unions), exactly one of which a block sets.
const CONTENT_MEMBERS: &[&str] = &[
    "text",
    "image",
    "document",
    "video",
    "toolUse",
    "toolResult",
    "guardContent",
    "cachePoint",
    "reasoningContent",
    "citationsContent",
    "searchResult",
];

/// The one member a union value sets.
fn member<'a>(block: &'a Value, at: &str, members: &[&str]) -> Result<(&'a str, &'a Value), Error> {
    let obj = object(block, at)?;
    let mut set = obj.iter().filter(|(_, v)| !v.is_null());
    match (set.next(), set.next()) {
        (Some((k, v)), None) if members.contains(&k.as_str()) => Ok((k, v)),
        (Some((k, _)), None) => Err(Error::validation(format!(
            "Malformed input request: unknown member '{k}' at '{at}', expected one of: {}, \
             please reformat your input and try again.",
            members.join(", ")
        ))),
        _ => Err(Error::validation(format!(
            "Malformed input request: exactly one member of {} must be set at '{at}', please \
             reformat your input and try again.",
            members.join(", ")
        ))),
    }
}

/// An image (or document/video) `source.bytes` must be base64.
fn check_media(v: &Value, at: &str, formats: &[&str]) -> Result<(), Error> {
    let obj = object(v, at)?;
    let format = string(obj, "format", at)?;
    if !formats.contains(&format) {
        return Err(Error::constraint(
            &format!("'{format}'"),
            &format!("{at}.format"),
            &format!("satisfy enum value set: [{}]", formats.join(", ")),
        ));
    }
    let source_at = format!("{at}.source");
    let source =
        field(obj, "source").ok_or_else(|| Error::constraint("null", &source_at, "not be null"))?;
    let (kind, data) = member(
        source,
        &source_at,
        &["bytes", "s3Location", "text", "content"],
    )?;
    if kind == "bytes" {
        let ok = data
            .as_str()
            .is_some_and(|b| base64::engine::general_purpose::STANDARD.decode(b).is_ok());
        if !ok {
            return Err(Error::validation(format!(
                "Malformed input request: '{source_at}.bytes' is not valid base64, please \
                 reformat your input and try again."
            )));
        }
    }
    Ok(())
}

/// What one message block holds, for the tool pairing checks.
enum Block {
    Other,
    ToolUse(String),
    ToolResult(String),
}

/// Counts one content block of `messages` (or of a toolResult's content) and says what it is.
fn content_block(block: &Value, at: &str, tokens: &mut u64) -> Result<Block, Error> {
    let (kind, v) = member(block, at, CONTENT_MEMBERS)?;
    let at = format!("{at}.{kind}");
    match kind {
        "text" => {
            *tokens += count(
                v.as_str()
                    .ok_or_else(|| Error::malformed(&at, "a string"))?,
            )
        }
        "image" => check_media(v, &at, &["png", "jpeg", "gif", "webp"])?,
        "document" => check_media(
            v,
            &at,
            &[
                "pdf", "csv", "doc", "docx", "xls", "xlsx", "html", "txt", "md",
            ],
        )?,
        "toolUse" => {
            let obj = object(v, &at)?;
            let id = string(obj, "toolUseId", &at)?;
            *tokens += count(string(obj, "name", &at)?);
            match obj.get("input") {
                Some(input) => *tokens += count(&input.to_string()),
                None => {
                    return Err(Error::constraint(
                        "null",
                        &format!("{at}.input"),
                        "not be null",
                    ))
                }
            }
            return Ok(Block::ToolUse(id.to_owned()));
        }
        "toolResult" => {
            let obj = object(v, &at)?;
            let id = string(obj, "toolUseId", &at)?;
            let content_at = format!("{at}.content");
            let Some(Value::Array(parts)) = field(obj, "content") else {
                return Err(Error::malformed(&content_at, "a list"));
            };
            for (k, part) in parts.iter().enumerate() {
                let part_at = format!("{content_at}.{k}");
                let (kind, v) = member(
                    part,
                    &part_at,
                    &["text", "json", "image", "document", "video", "searchResult"],
                )?;
                match kind {
                    "text" => *tokens += count(v.as_str().unwrap_or_default()),
                    "json" => *tokens += count(&v.to_string()),
                    "image" => check_media(
                        v,
                        &format!("{part_at}.image"),
                        &["png", "jpeg", "gif", "webp"],
                    )?,
                    _ => {}
                }
            }
            if let Some(status) = field(obj, "status") {
                if !matches!(status.as_str(), Some("success" | "error")) {
                    return Err(Error::constraint(
                        &format!("'{status}'"),
                        &format!("{at}.status"),
                        "satisfy enum value set: [success, error]",
                    ));
                }
            }
            return Ok(Block::ToolResult(id.to_owned()));
        }
        "reasoningContent" => {
            if let Some(text) = v.pointer("/reasoningText/text").and_then(Value::as_str) {
                *tokens += count(text);
            }
        }
        _ => {}
    }
    Ok(Block::Other)
}

/// Checks the roles, the content and the toolUse/toolResult pairing of `messages`; returns
/// whether the last message answers tool uses.
fn parse_messages(messages: &Value, tokens: &mut u64) -> Result<bool, Error> {
    let Value::Array(messages) = messages else {
        return Err(Error::malformed("messages", "a list"));
    };
    let mut pending: Vec<String> = Vec::new();
    let mut previous: Option<&str> = None;
    let mut last_answers = false;
    for (i, msg) in messages.iter().enumerate() {
        let at = format!("messages.{i}");
        let obj = object(msg, &at)?;
        let role = match field(obj, "role").and_then(Value::as_str) {
            Some(r @ ("user" | "assistant")) => r,
            Some(r) => {
                return Err(Error::constraint(
                    &format!("'{r}'"),
                    &format!("{at}.member.role"),
                    "satisfy enum value set: [user, assistant]",
                ))
            }
            None => {
                return Err(Error::constraint(
                    "null",
                    &format!("{at}.member.role"),
                    "not be null",
                ))
            }
        };
        if previous.is_none() && role != "user" {
            return Err(Error::validation("A conversation must start with a user message. Try again with a conversation that starts with a user message."));
        }
        if previous == Some(role) {
            return Err(Error::validation("A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again."));
        }
        previous = Some(role);
        let content = match field(obj, "content") {
            Some(Value::Array(c)) if !c.is_empty() => c,
            Some(Value::Array(_)) | None => return Err(Error::validation(format!("The content field in the Message object at {at} is empty. Add a ContentBlock object to the content field and try again."))),
            Some(_) => return Err(Error::malformed(&format!("{at}.content"), "a list")),
        };
        let (mut uses, mut results) = (Vec::new(), Vec::new());
        for (j, block) in content.iter().enumerate() {
            match content_block(block, &format!("{at}.content.{j}"), tokens)? {
                Block::ToolUse(id) if role == "assistant" => uses.push(id),
                Block::ToolResult(id) if role == "user" => results.push(id),
                Block::ToolUse(_) | Block::ToolResult(_) => return Err(Error::validation(format!("{at}.content.{j}: toolUse blocks belong in assistant messages and toolResult blocks in user messages."))),
                Block::Other => {}
            }
        }
        if role == "user" {
            if results.len() > pending.len() {
                return Err(Error::validation(format!("The number of toolResult blocks at {at}.content exceeds the number of toolUse blocks of previous turn.")));
            }
            if let Some(stray) = results.iter().find(|id| !pending.contains(id)) {
                return Err(Error::validation(format!("{at}.content: unexpected `toolUseId` found in `toolResult` blocks: {stray}. Each `toolResult` block must have a corresponding `toolUse` block in the previous message.")));
            }
            let missing: Vec<&str> = pending
                .iter()
                .filter(|id| !results.contains(id))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                return Err(Error::validation(format!(
                    "Expected toolResult blocks at {at}.content for the following Ids: {}",
                    missing.join(", ")
                )));
            }
            last_answers = !results.is_empty();
            pending.clear();
        } else {
            pending = uses;
            last_answers = false;
        }
    }
    if previous.is_none() {
        return Err(Error::validation("A conversation must start with a user message. Try again with a conversation that starts with a user message."));
    }
    Ok(last_answers)
}

fn number_in(config: &Map<String, Value>, name: &str, hi: f64) -> Result<(), Error> {
    let at = format!("inferenceConfig.{name}");
    match field(config, name) {
        None => Ok(()),
        Some(v) => match v.as_f64() {
            None => Err(Error::malformed(&at, "a number")),
            Some(x) if x < 0.0 => Err(Error::constraint(
                &format!("'{v}'"),
                &at,
                "have value greater than or equal to 0",
            )),
            Some(x) if x > hi => Err(Error::constraint(
                &format!("'{v}'"),
                &at,
                &format!("have value less than or equal to {hi}"),
            )),
            Some(_) => Ok(()),
        },
    }
}

fn parse_inference(obj: &Map<String, Value>) -> Result<(Option<u64>, Vec<String>), Error> {
    let Some(config) = field(obj, "inferenceConfig") else {
        return Ok((None, Vec::new()));
    };
    let config = object(config, "inferenceConfig")?;
    let max_tokens = match field(config, "maxTokens") {
        None => None,
        Some(v) => match (v.as_i64(), v.as_u64()) {
            (_, Some(n)) if n >= 1 => Some(n),
            (Some(n), _) => {
                return Err(Error::constraint(
                    &format!("'{n}'"),
                    "inferenceConfig.maxTokens",
                    "have value greater than or equal to 1",
                ))
            }
            _ => return Err(Error::malformed("inferenceConfig.maxTokens", "an integer")),
        },
    };
    number_in(config, "temperature", 1.0)?;
    number_in(config, "topP", 1.0)?;
    let stop_sequences = match field(config, "stopSequences") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, s)| match s.as_str() {
                Some("") => Err(Error::constraint(
                    "''",
                    &format!("inferenceConfig.stopSequences.{i}.member"),
                    "have length greater than or equal to 1",
                )),
                Some(s) => Ok(s.to_owned()),
                None => Err(Error::malformed(
                    &format!("inferenceConfig.stopSequences.{i}"),
                    "a string",
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(Error::malformed("inferenceConfig.stopSequences", "a list")),
    };
    Ok((max_tokens, stop_sequences))
}

fn valid_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn parse_tool_config(obj: &Map<String, Value>) -> Result<Option<(Vec<Tool>, ToolChoice)>, Error> {
    let Some(config) = field(obj, "toolConfig") else {
        return Ok(None);
    };
    let config = object(config, "toolConfig")?;
    let Some(Value::Array(items)) = field(config, "tools") else {
        return Err(Error::constraint("null", "toolConfig.tools", "not be null"));
    };
    if items.is_empty() {
        return Err(Error::constraint(
            "'[]'",
            "toolConfig.tools",
            "have length greater than or equal to 1",
        ));
    }
    let mut tools = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("toolConfig.tools.{i}");
        let (kind, spec) = member(item, &at, &["toolSpec", "cachePoint", "systemTool"])?;
        if kind != "toolSpec" {
            continue;
        }
        let at = format!("{at}.toolSpec");
        let spec = object(spec, &at)?;
        let name = string(spec, "name", &at)?;
        if !valid_tool_name(name) {
            return Err(Error::constraint(
                &format!("'{name}'"),
                &format!("{at}.name"),
                "satisfy regular expression pattern: [a-zA-Z0-9_-]+",
            ));
        }
        let schema_at = format!("{at}.inputSchema");
        let schema = field(spec, "inputSchema")
            .ok_or_else(|| Error::constraint("null", &schema_at, "not be null"))?;
        let (_, json) = member(schema, &schema_at, &["json"])?;
        if !json.is_object() {
            return Err(Error::malformed(
                &format!("{schema_at}.json"),
                "a JSON object",
            ));
        }
        tools.push(Tool {
            name: name.to_owned(),
            input_schema: json.clone(),
        });
    }
    let choice = match field(config, "toolChoice") {
        None => ToolChoice::Auto,
        Some(choice) => match member(choice, "toolConfig.toolChoice", &["auto", "any", "tool"])? {
            ("auto", _) => ToolChoice::Auto,
            ("any", _) => ToolChoice::Any,
            (_, tool) => {
                let name = string(
                    object(tool, "toolConfig.toolChoice.tool")?,
                    "name",
                    "toolConfig.toolChoice.tool",
                )?;
                if !tools.iter().any(|t| t.name == name) {
                    return Err(Error::validation(format!("The tool {name} in toolConfig.toolChoice is not one of the tools in toolConfig.tools.")));
                }
                ToolChoice::Tool(name.to_owned())
            }
        },
    };
    Ok(Some((tools, choice)))
}

/// Parses a Converse / ConverseStream body.
pub fn parse_converse(body: &[u8]) -> Result<ConverseRequest, Error> {
    let obj = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err(Error::malformed("", "a JSON object")),
        Err(e) => {
            return Err(Error::validation(format!(
                "Malformed input request: {e}, please reformat your input and try again."
            )))
        }
    };
    let mut prompt_tokens = 0;
    let Some(messages) = field(&obj, "messages") else {
        return Err(Error::constraint("null", "messages", "not be null"));
    };
    let has_tool_blocks = messages.as_array().into_iter().flatten().any(|m| {
        m.get("content").and_then(Value::as_array).is_some_and(|c| {
            c.iter()
                .any(|b| b.get("toolUse").is_some() || b.get("toolResult").is_some())
        })
    });
    if has_tool_blocks && field(&obj, "toolConfig").is_none() {
        return Err(Error::validation(
            "The toolConfig field must be defined when using toolUse and toolResult content blocks.",
        ));
    }
    let answers_tool_results = parse_messages(messages, &mut prompt_tokens)?;
    if let Some(system) = field(&obj, "system") {
        let Value::Array(blocks) = system else {
            return Err(Error::malformed("system", "a list"));
        };
        for (i, block) in blocks.iter().enumerate() {
            let at = format!("system.{i}");
            if let ("text", text) = member(block, &at, &["text", "guardContent", "cachePoint"])? {
                prompt_tokens += count(
                    text.as_str()
                        .ok_or_else(|| Error::malformed(&at, "a string"))?,
                );
            }
        }
    }
    let (max_tokens, stop_sequences) = parse_inference(&obj)?;
    let (tools, tool_choice) = parse_tool_config(&obj)?.unwrap_or((Vec::new(), ToolChoice::Auto));
    Ok(ConverseRequest {
        max_tokens,
        stop_sequences,
        tools,
        tool_choice,
        prompt_tokens,
        answers_tool_results,
    })
}

/// Checks a model id from the path (already percent-decoded): a model or inference profile id,
/// or an ARN of a Bedrock resource.
pub fn check_model_id(model_id: &str) -> Result<(), Error> {
    let arn_ok = |id: &str| {
        let parts: Vec<&str> = id.splitn(6, ':').collect();
        matches!(parts.as_slice(), ["arn", partition, "bedrock", _region, _account, resource]
            if partition.starts_with("aws") && resource.contains('/'))
    };
    let ok = if model_id.starts_with("arn:") {
        arn_ok(model_id)
    } else {
        !model_id.is_empty() && !model_id.contains('/') && !model_id.contains(char::is_whitespace)
    };
    if ok {
        Ok(())
    } else {
        Err(Error::validation(
            "The provided model identifier is invalid.",
        ))
    }
}

#[cfg(test)]
mod tests;
