//! A Responses request's `instructions` and `input` as chat messages (the mapping is in
//! [`super::request`]'s table).

use serde_json::{json, Map, Value};

use super::request::{check, given, STATELESS};
use crate::error::HttpError;

/// A 400 about `input`.
fn bad_input(message: String) -> HttpError {
    HttpError::invalid_param("input", message)
}

/// A required field of the item at `at` (`input[3]`), refused unless it is `what`.
fn item_field<'a>(
    at: &str,
    item: &'a Map<String, Value>,
    k: &str,
    ok: fn(&Value) -> bool,
    what: &str,
) -> Result<&'a Value, HttpError> {
    match given(item, k) {
        None => Err(bad_input(format!(
            "Missing required parameter: '{at}.{k}'."
        ))),
        Some(v) if !ok(v) => Err(bad_input(format!("'{at}.{k}' must be {what}."))),
        Some(v) => Ok(v),
    }
}

/// The chat messages: `instructions` first, then `input`.
pub(super) fn messages(req: &Map<String, Value>) -> Result<Vec<Value>, HttpError> {
    let mut out = Vec::new();
    if let Some(s) = check(req, "instructions", Value::is_string, "a string")? {
        out.push(json!({"role": "system", "content": s}));
    }
    match req.get("input") {
        None | Some(Value::Null) => return Err(HttpError::missing_param("input")),
        Some(s @ Value::String(_)) => out.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                push_item(&mut out, &format!("input[{i}]"), item)?;
            }
        }
        Some(_) => {
            let m = "'input' must be a string or an array of input items.";
            return Err(HttpError::invalid_param("input", m));
        }
    }
    Ok(out)
}

/// Append one input item (at `at`, `input[3]`) to the chat messages.
fn push_item(out: &mut Vec<Value>, at: &str, item: &Value) -> Result<(), HttpError> {
    let Some(m) = item.as_object() else {
        return Err(bad_input(format!("'{at}' must be an object.")));
    };
    match m.get("type").and_then(Value::as_str) {
        None | Some("message") => out.push(message(at, m)?),
        Some("function_call") => push_call(out, tool_call(at, m)?),
        Some("function_call_output") => out.push(tool_output(at, m)?),
        // The model's own (often encrypted) reasoning: chat takes no input for it.
        Some("reasoning") => {}
        Some("item_reference") => {
            return Err(bad_input(format!(
                "'{at}' is an item_reference, which names a stored item: {STATELESS}; send the item itself."
            )))
        }
        Some(other) => {
            return Err(bad_input(format!(
                "'{at}': items of type '{other}' cannot be sent to this model: its provider serves chat completions, which take messages, function calls and function call outputs."
            )))
        }
    }
    Ok(())
}

fn string_or_parts(v: &Value) -> bool {
    v.is_string() || v.is_array()
}

/// A message item as a chat message.
fn message(at: &str, m: &Map<String, Value>) -> Result<Value, HttpError> {
    let role = item_field(at, m, "role", Value::is_string, "a string")?;
    let parts = "a string or an array of content parts";
    let content = item_field(at, m, "content", string_or_parts, parts)?;
    let at = format!("{at}.content");
    match role.as_str().unwrap_or("") {
        "user" => Ok(json!({"role": "user", "content": user_content(&at, content)?})),
        "system" | "developer" => {
            let text = joined(&at, content, "\n", &["input_text"])?;
            Ok(json!({"role": "system", "content": text}))
        }
        "assistant" => assistant(&at, content),
        other => Err(bad_input(format!(
            "'{at}' belongs to a message of role '{other}': the role must be 'user', 'assistant', 'system' or 'developer'."
        ))),
    }
}

/// A user message's content: a string, or its parts as chat content parts.
fn user_content(at: &str, content: &Value) -> Result<Value, HttpError> {
    let Value::Array(parts) = content else {
        return Ok(content.clone());
    };
    parts
        .iter()
        .enumerate()
        .map(|(j, p)| user_part(&format!("{at}[{j}]"), p))
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// A part's `text`, which must be a string.
fn part_text(at: &str, p: &Value) -> Result<Value, HttpError> {
    match p.get("text") {
        Some(t @ Value::String(_)) => Ok(t.clone()),
        _ => Err(bad_input(format!(
            "Missing required parameter: '{at}.text'."
        ))),
    }
}

/// A user message's content part as a chat content part.
fn user_part(at: &str, p: &Value) -> Result<Value, HttpError> {
    let kind = p.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "input_text" => Ok(json!({"type": "text", "text": part_text(at, p)?})),
        "input_image" => image(at, p),
        "input_file" => file(at, p),
        "input_audio" => match p.get("input_audio") {
            Some(a @ Value::Object(_)) => Ok(json!({"type": "input_audio", "input_audio": a})),
            _ => Err(bad_input(format!(
                "Missing required parameter: '{at}.input_audio'."
            ))),
        },
        other => Err(bad_input(format!(
            "'{at}': content parts of type '{other}' cannot be sent to this model's provider."
        ))),
    }
}

/// Refuses a part that names a file in OpenAI's storage.
fn refuse_file_id(at: &str, p: &Value, instead: &str) -> Result<(), HttpError> {
    if p.get("file_id").is_some_and(|v| !v.is_null()) {
        return Err(bad_input(format!(
            "'{at}' names a 'file_id', a file in OpenAI's storage, which this model's provider does not have; send {instead}."
        )));
    }
    Ok(())
}

/// An `input_image` as an `image_url` part.
fn image(at: &str, p: &Value) -> Result<Value, HttpError> {
    refuse_file_id(
        at,
        p,
        "the image as 'image_url' (a URL or a base64 data URL)",
    )?;
    let Some(url) = p.get("image_url").filter(|u| u.is_string()) else {
        return Err(bad_input(format!(
            "Missing required parameter: '{at}.image_url'."
        )));
    };
    let mut image_url = Map::new();
    image_url.insert("url".into(), url.clone());
    // Chat's details; `original` (and anything else) is left to the provider's default.
    if let Some(d) = p
        .get("detail")
        .and_then(Value::as_str)
        .filter(|d| matches!(*d, "auto" | "low" | "high"))
    {
        image_url.insert("detail".into(), d.into());
    }
    Ok(json!({"type": "image_url", "image_url": image_url}))
}

/// An `input_file` with its content (`file_data`, a base64 data URL) as chat's `file` part, the
/// only file input chat completions has: a file by `file_id` or `file_url` is refused.
fn file(at: &str, p: &Value) -> Result<Value, HttpError> {
    let instead = "its content as 'file_data' (a base64 data URL) with its 'filename'";
    refuse_file_id(at, p, instead)?;
    let Some(data) = p.get("file_data").filter(|d| d.is_string()) else {
        let why = if p.get("file_url").is_some_and(|v| !v.is_null()) {
            format!("'{at}' names a 'file_url': chat completions take a file only as its content; send {instead}.")
        } else {
            format!("Missing required parameter: '{at}.file_data'.")
        };
        return Err(bad_input(why));
    };
    let mut file = Map::new();
    file.insert("file_data".into(), data.clone());
    if let Some(name) = p.get("filename").filter(|n| n.is_string()) {
        file.insert("filename".into(), name.clone());
    }
    Ok(json!({"type": "file", "file": file}))
}

/// The text of a content that becomes a text-only chat message: a string, or its parts of the
/// `kinds` joined by `sep`.
fn joined(at: &str, content: &Value, sep: &str, kinds: &[&str]) -> Result<String, HttpError> {
    let Value::Array(parts) = content else {
        return Ok(content.as_str().unwrap_or("").to_string());
    };
    let mut texts = Vec::new();
    for (j, p) in parts.iter().enumerate() {
        let at = format!("{at}[{j}]");
        let kind = p.get("type").and_then(Value::as_str).unwrap_or("");
        if !kinds.contains(&kind) {
            return Err(bad_input(format!(
                "'{at}': content parts of type '{kind}' cannot be sent here: the chat message this becomes takes only text."
            )));
        }
        texts.push(part_text(&at, p)?.as_str().unwrap_or("").to_string());
    }
    Ok(texts.join(sep))
}

/// An assistant message: its text parts as one string (as the SDKs read a message's text),
/// a refusal part as the message's `refusal`.
fn assistant(at: &str, content: &Value) -> Result<Value, HttpError> {
    let mut msg = Map::new();
    msg.insert("role".into(), "assistant".into());
    let mut rest = content.clone();
    if let Value::Array(parts) = &mut rest {
        let mut refusals = Vec::new();
        parts.retain(|p| match p.get("type").and_then(Value::as_str) {
            Some("refusal") => {
                refusals.extend(p.get("refusal").and_then(Value::as_str).map(String::from));
                false
            }
            _ => true,
        });
        if !refusals.is_empty() {
            msg.insert("refusal".into(), refusals.concat().into());
        }
    }
    let text = joined(at, &rest, "", &["output_text", "input_text"])?;
    msg.insert("content".into(), text.into());
    Ok(Value::Object(msg))
}

/// A `function_call` item as a chat tool call.
fn tool_call(at: &str, m: &Map<String, Value>) -> Result<Value, HttpError> {
    let field = |k: &str| item_field(at, m, k, Value::is_string, "a string");
    Ok(json!({
        "id": field("call_id")?,
        "type": "function",
        "function": {"name": field("name")?, "arguments": field("arguments")?},
    }))
}

/// Append a tool call to the assistant message just before it (the text of the same turn, or
/// the calls before it), or to a new assistant message.
fn push_call(out: &mut Vec<Value>, call: Value) {
    let last = out
        .last_mut()
        .and_then(Value::as_object_mut)
        .filter(|m| m.get("role").and_then(Value::as_str) == Some("assistant"));
    match last {
        Some(m) => match m.get_mut("tool_calls").and_then(Value::as_array_mut) {
            Some(calls) => calls.push(call),
            None => {
                m.insert("tool_calls".into(), json!([call]));
            }
        },
        None => out.push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
    }
}

/// A `function_call_output` item as a `tool` message (its text: chat's tool messages take no
/// images or files).
fn tool_output(at: &str, m: &Map<String, Value>) -> Result<Value, HttpError> {
    let call_id = item_field(at, m, "call_id", Value::is_string, "a string")?;
    let parts = "a string or an array of content parts";
    let output = item_field(at, m, "output", string_or_parts, parts)?;
    let content = joined(&format!("{at}.output"), output, "\n", &["input_text"])?;
    Ok(json!({"role": "tool", "tool_call_id": call_id, "content": content}))
}
