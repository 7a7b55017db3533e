//! The `input` of a Responses request: a string (one user message) or a list of items, checked
//! as OpenAI checks them, and read as the chat messages it amounts to for counting:
//!
//! - a `message` (role `user`, `assistant`, `system` or `developer`): a chat message of that
//!   role whose content is its text (`input_text` / `output_text` text and `refusal`s,
//!   concatenated; `input_image` and `input_file` parts count 0, as images do in chat);
//! - a `function_call`: a tool call (name and arguments) of an assistant message — of the
//!   assistant message or call just before it, else of a new one, as chat groups them;
//! - a `function_call_output`: a `tool` message whose content is the output's text;
//! - a `reasoning` item and the other item types OpenAI accepts (`item_reference`, hosted tool
//!   calls, ...): not counted.
//!
//! Every `function_call_output` must answer a call of this input or of the previous response
//! chain, and every call must be answered, or it is OpenAI's 400.

use serde_json::{json, Map, Value};
use tiktoken_rs::{ChatCompletionRequestMessage, FunctionCall};

use super::{invalid_value, string_at};
use crate::api::{field, ApiError};

/// What a stored response passes on to a request that continues it (`previous_response_id`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Prev {
    /// The messages of the chain so far (inputs and outputs, without instructions).
    pub messages: Vec<ChatCompletionRequestMessage>,
    /// Every function call of the chain: call id and function name.
    pub calls: Vec<(String, String)>,
    /// Calls of the chain that no output has answered yet.
    pub pending: Vec<String>,
}

/// A parsed `input`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Input {
    /// This request's items, normalised (string content as parts), without ids.
    pub items: Vec<Value>,
    /// The chain's messages followed by this input's, for counting and for the next turn.
    pub messages: Vec<ChatCompletionRequestMessage>,
    /// Every function call of the chain, this input's included.
    pub calls: Vec<(String, String)>,
    /// When the last item is a `function_call_output`: the function's name and the output.
    pub last_output: Option<(String, String)>,
}

impl Input {
    /// Whether the text of the input's messages contains `word` (any case).
    pub fn mentions(&self, word: &str) -> bool {
        self.messages
            .iter()
            .filter_map(|m| m.content.as_deref())
            .any(|c| c.to_ascii_lowercase().contains(word))
    }
}

/// Item types OpenAI accepts that the fake neither counts nor answers.
const OTHER_ITEMS: &[&str] = &[
    "item_reference",
    "file_search_call",
    "computer_call",
    "computer_call_output",
    "web_search_call",
    "image_generation_call",
    "code_interpreter_call",
    "local_shell_call",
    "local_shell_call_output",
    "shell_call",
    "shell_call_output",
    "apply_patch_call",
    "apply_patch_call_output",
    "mcp_list_tools",
    "mcp_approval_request",
    "mcp_approval_response",
    "mcp_call",
    "custom_tool_call",
    "custom_tool_call_output",
    "tool_search_call",
    "tool_search_output",
    "compaction",
];

/// The state while reading the items.
struct Reader {
    input: Input,
    pending: Vec<String>,
    /// The last message can take the next function call (it is an assistant message or call).
    open_assistant: bool,
}

/// `input` (absent: nothing), continuing `prev` when given.
pub fn parse(v: Option<&Value>, prev: Option<&Prev>) -> Result<Input, ApiError> {
    let prev = prev.cloned().unwrap_or_default();
    let mut r = Reader {
        input: Input {
            items: Vec::new(),
            messages: prev.messages,
            calls: prev.calls,
            last_output: None,
        },
        pending: prev.pending,
        open_assistant: false,
    };
    match v {
        None => {}
        Some(Value::String(s)) => {
            r.input.items.push(json!({"type": "message", "role": "user",
                "content": [{"type": "input_text", "text": s}]}));
            r.push("user", s.clone());
        }
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                r.item(i, item, i + 1 == items.len())?;
            }
        }
        Some(other) => {
            return Err(ApiError::bad_type(
                "input",
                "a string or an array of input items",
                other,
            ))
        }
    }
    if let Some(call_id) = r.pending.first() {
        return Err(ApiError::invalid(format!(
            "No tool output found for function call {call_id}."
        ))
        .param("input"));
    }
    Ok(r.input)
}

impl Reader {
    fn push(&mut self, role: &str, content: String) {
        self.input.messages.push(ChatCompletionRequestMessage {
            role: role.to_owned(),
            content: Some(content),
            ..Default::default()
        });
        self.open_assistant = role == "assistant";
    }

    fn item(&mut self, i: usize, item: &Value, last: bool) -> Result<(), ApiError> {
        let param = format!("input[{i}]");
        let Some(obj) = item.as_object() else {
            return Err(ApiError::bad_type(&param, "an object", item));
        };
        let kind = match field(obj, "type") {
            None => "message",
            Some(Value::String(t)) => t.as_str(),
            Some(other) => {
                return Err(ApiError::bad_type(
                    &format!("{param}.type"),
                    "a string",
                    other,
                ))
            }
        };
        match kind {
            "message" => self.message(obj, &param)?,
            "function_call" => self.function_call(obj, &param)?,
            "function_call_output" => self.function_call_output(obj, &param, last)?,
            "reasoning" => reasoning(obj, &param)?,
            other if OTHER_ITEMS.contains(&other) => self.open_assistant = false,
            other => {
                let mut supported = vec!["message", "function_call", "function_call_output"];
                supported.push("reasoning");
                supported.extend_from_slice(OTHER_ITEMS);
                return Err(invalid_value(&format!("{param}.type"), other, &supported));
            }
        }
        let mut normalised = obj.clone();
        normalised.insert("type".to_owned(), Value::String(kind.to_owned()));
        if kind == "message" {
            if let Some(Value::String(text)) = obj.get("content") {
                let part = match obj.get("role").and_then(Value::as_str) {
                    Some("assistant") => {
                        json!({"type": "output_text", "text": text, "annotations": []})
                    }
                    _ => json!({"type": "input_text", "text": text}),
                };
                normalised.insert("content".to_owned(), json!([part]));
            }
        }
        self.input.items.push(Value::Object(normalised));
        Ok(())
    }

    fn message(&mut self, m: &Map<String, Value>, param: &str) -> Result<(), ApiError> {
        let roles = ["assistant", "system", "developer", "user"];
        let role = match field(m, "role") {
            Some(Value::String(r)) if roles.contains(&r.as_str()) => r.clone(),
            Some(Value::String(r)) => {
                return Err(invalid_value(&format!("{param}.role"), r, &roles))
            }
            Some(other) => {
                return Err(ApiError::bad_type(
                    &format!("{param}.role"),
                    "a string",
                    other,
                ))
            }
            None => return Err(ApiError::missing(&format!("{param}.role"))),
        };
        let param = format!("{param}.content");
        let text = match field(m, "content") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => {
                let mut text = String::new();
                for (j, part) in parts.iter().enumerate() {
                    content_part(part, &format!("{param}[{j}]"), &role, &mut text)?;
                }
                text
            }
            Some(other) => return Err(ApiError::bad_type(&param, "a string or array", other)),
            None => return Err(ApiError::missing(&param)),
        };
        self.push(&role, text);
        Ok(())
    }

    fn function_call(&mut self, c: &Map<String, Value>, param: &str) -> Result<(), ApiError> {
        let call_id = required_string(c, "call_id", param)?;
        let name = required_string(c, "name", param)?;
        let arguments = required_string(c, "arguments", param)?;
        self.input.calls.push((call_id.clone(), name.clone()));
        self.pending.push(call_id);
        let call = FunctionCall { name, arguments };
        match self.input.messages.last_mut() {
            Some(m) if self.open_assistant => m.tool_calls.push(call),
            _ => {
                self.input.messages.push(ChatCompletionRequestMessage {
                    role: "assistant".to_owned(),
                    tool_calls: vec![call],
                    ..Default::default()
                });
                self.open_assistant = true;
            }
        }
        Ok(())
    }

    fn function_call_output(
        &mut self,
        o: &Map<String, Value>,
        param: &str,
        last: bool,
    ) -> Result<(), ApiError> {
        let call_id = required_string(o, "call_id", param)?;
        let param = format!("{param}.output");
        let output = match field(o, "output") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => {
                let mut text = String::new();
                for (j, part) in parts.iter().enumerate() {
                    content_part(part, &format!("{param}[{j}]"), "user", &mut text)?;
                }
                text
            }
            Some(other) => return Err(ApiError::bad_type(&param, "a string or array", other)),
            None => return Err(ApiError::missing(&param)),
        };
        let Some((_, name)) = self.input.calls.iter().find(|(id, _)| *id == call_id) else {
            return Err(ApiError::invalid(format!(
                "No tool call found for function call output with call_id {call_id}."
            ))
            .param("input"));
        };
        if last {
            self.input.last_output = Some((name.clone(), output.clone()));
        }
        self.pending.retain(|id| *id != call_id);
        self.push("tool", output);
        Ok(())
    }
}

fn required_string(obj: &Map<String, Value>, name: &str, param: &str) -> Result<String, ApiError> {
    let param = format!("{param}.{name}");
    string_at(obj, name, &param)?.ok_or_else(|| ApiError::missing(&param))
}

/// One content part of a message (or of a function call's output), its text added to `text`.
/// Assistant messages take `output_text` and `refusal` parts, the others input parts.
fn content_part(part: &Value, param: &str, role: &str, text: &mut String) -> Result<(), ApiError> {
    let Some(p) = part.as_object() else {
        return Err(ApiError::bad_type(param, "an object", part));
    };
    let kind = match field(p, "type") {
        Some(Value::String(t)) => t.as_str(),
        Some(other) => {
            return Err(ApiError::bad_type(
                &format!("{param}.type"),
                "a string",
                other,
            ))
        }
        None => return Err(ApiError::missing(&format!("{param}.type"))),
    };
    let supported: &[&str] = if role == "assistant" {
        &["output_text", "refusal"]
    } else {
        &["input_text", "input_image", "input_file"]
    };
    if !supported.contains(&kind) {
        return Err(invalid_value(param, kind, supported));
    }
    match kind {
        "input_text" | "output_text" => text.push_str(&required_string(p, "text", param)?),
        "refusal" => text.push_str(&required_string(p, "refusal", param)?),
        "input_image" => {
            if field(p, "image_url").is_none() && field(p, "file_id").is_none() {
                return Err(ApiError::invalid(format!(
                    "Invalid '{param}': one of 'image_url' or 'file_id' must be provided."
                ))
                .param(param));
            }
        }
        _ => {
            let sources = ["file_id", "file_data", "file_url"];
            if !sources.iter().any(|s| field(p, s).is_some()) {
                return Err(ApiError::invalid(format!(
                    "Invalid '{param}': one of 'file_id', 'file_data' or 'file_url' must be \
                     provided."
                ))
                .param(param));
            }
        }
    }
    Ok(())
}

/// A `reasoning` item: `summary` (a list of `summary_text` parts) is required.
fn reasoning(r: &Map<String, Value>, param: &str) -> Result<(), ApiError> {
    let param = format!("{param}.summary");
    let Some(summary) = field(r, "summary") else {
        return Err(ApiError::missing(&param));
    };
    let Some(parts) = summary.as_array() else {
        return Err(ApiError::bad_type(&param, "an array", summary));
    };
    for (j, part) in parts.iter().enumerate() {
        let param = format!("{param}[{j}]");
        let Some(p) = part.as_object() else {
            return Err(ApiError::bad_type(&param, "an object", part));
        };
        required_string(p, "text", &param)?;
    }
    Ok(())
}
