//! `tools` and `tool_choice` of a Responses request.

use serde_json::{Map, Value};

use super::{invalid_value, string_at, Function, ToolChoice, ToolEcho};
use crate::api::{self, field, ApiError};
use crate::schema;

/// Hosted tool types OpenAI accepts besides `function` (echoed, never called by the fake).
const HOSTED_TOOLS: &[&str] = &[
    "file_search",
    "computer",
    "computer_use_preview",
    "web_search",
    "web_search_2025_08_26",
    "web_search_preview",
    "web_search_preview_2025_03_11",
    "mcp",
    "code_interpreter",
    "programmatic_tool_calling",
    "image_generation",
    "local_shell",
    "shell",
    "custom",
    "namespace",
    "tool_search",
    "apply_patch",
];

/// `tools`: function tools are checked (name pattern, `parameters` an object, a `strict`
/// schema OpenAI's way); `strict` left out is true when the schema qualifies.
pub(super) fn parse_tools(
    obj: &Map<String, Value>,
) -> Result<(Vec<Function>, Vec<ToolEcho>), ApiError> {
    let items = match field(obj, "tools") {
        None => return Ok((Vec::new(), Vec::new())),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(ApiError::bad_type("tools", "an array", other)),
    };
    let mut functions = Vec::new();
    let mut echo = Vec::new();
    for (i, tool) in items.iter().enumerate() {
        let param = format!("tools[{i}]");
        let Some(t) = tool.as_object() else {
            return Err(ApiError::bad_type(&param, "an object", tool));
        };
        match field(t, "type") {
            Some(Value::String(kind)) if kind == "function" => {
                let (function, e) = function_tool(t, &param)?;
                functions.push(function);
                echo.push(e);
            }
            Some(Value::String(kind)) if HOSTED_TOOLS.contains(&kind.as_str()) => {
                echo.push(ToolEcho::Other(tool.clone()));
            }
            Some(Value::String(kind)) => {
                let mut supported = vec!["function"];
                supported.extend_from_slice(HOSTED_TOOLS);
                return Err(invalid_value(&format!("{param}.type"), kind, &supported));
            }
            Some(other) => {
                return Err(ApiError::bad_type(
                    &format!("{param}.type"),
                    "a string",
                    other,
                ))
            }
            None => return Err(ApiError::missing(&format!("{param}.type"))),
        }
    }
    Ok((functions, echo))
}

fn function_tool(t: &Map<String, Value>, param: &str) -> Result<(Function, ToolEcho), ApiError> {
    let name = match field(t, "name") {
        Some(Value::String(n)) if api::valid_schema_name(n) => n.clone(),
        Some(Value::String(_)) => {
            return Err(ApiError::invalid(format!(
                "Invalid '{param}.name': string does not match pattern. Expected a string that \
                 matches the pattern '^[a-zA-Z0-9_-]+$'."
            ))
            .param(&format!("{param}.name"))
            .code("invalid_value"))
        }
        Some(other) => {
            return Err(ApiError::bad_type(
                &format!("{param}.name"),
                "a string",
                other,
            ))
        }
        None => return Err(ApiError::missing(&format!("{param}.name"))),
    };
    let description = string_at(t, "description", &format!("{param}.description"))?;
    let parameters = match field(t, "parameters") {
        None => None,
        Some(p @ Value::Object(_)) => Some(p.clone()),
        Some(other) => {
            return Err(ApiError::bad_type(
                &format!("{param}.parameters"),
                "an object",
                other,
            ))
        }
    };
    let schema = parameters
        .clone()
        .unwrap_or_else(|| Value::Object(Map::new()));
    let strict = match field(t, "strict") {
        None => parameters.is_some() && schema::check_strict(&schema).is_ok(),
        Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => {
            schema::check_strict(&schema).map_err(|why| {
                ApiError::invalid(format!("Invalid schema for function '{name}': {why}"))
                    .param(&format!("{param}.parameters"))
                    .code("invalid_function_parameters")
            })?;
            true
        }
        Some(other) => {
            return Err(ApiError::bad_type(
                &format!("{param}.strict"),
                "a boolean",
                other,
            ))
        }
    };
    let echo = ToolEcho::Function {
        kind: "function",
        description,
        name: name.clone(),
        parameters,
        strict,
    };
    Ok((
        Function {
            name,
            parameters: schema,
        },
        echo,
    ))
}

/// Tool choice types OpenAI accepts besides `function` and `allowed_tools` (the fake calls
/// none of them: it answers as for `auto`).
const HOSTED_CHOICES: &[&str] = &[
    "file_search",
    "web_search_preview",
    "web_search_preview_2025_03_11",
    "computer",
    "computer_use_preview",
    "image_generation",
    "code_interpreter",
    "mcp",
    "custom",
    "apply_patch",
    "shell",
    "programmatic_tool_calling",
];

pub(super) fn parse_tool_choice(
    obj: &Map<String, Value>,
    functions: &[Function],
) -> Result<(ToolChoice, Value), ApiError> {
    let Some(v) = field(obj, "tool_choice") else {
        return Ok((ToolChoice::Auto, Value::String("auto".to_owned())));
    };
    let choice = match v {
        Value::String(s) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(invalid_value(
                    "tool_choice",
                    other,
                    &["none", "auto", "required"],
                ))
            }
        },
        Value::Object(c) => match field(c, "type") {
            Some(Value::String(t)) if t == "function" => {
                let name = match field(c, "name") {
                    Some(Value::String(n)) => n.clone(),
                    Some(other) => {
                        return Err(ApiError::bad_type("tool_choice.name", "a string", other))
                    }
                    None => return Err(ApiError::missing("tool_choice.name")),
                };
                if !functions.iter().any(|f| f.name == name) {
                    return Err(ApiError::invalid(format!(
                        "Tool choice 'function' with name '{name}' not found in 'tools' \
                         parameter."
                    ))
                    .param("tool_choice"));
                }
                ToolChoice::Function(name)
            }
            Some(Value::String(t)) if t == "allowed_tools" => {
                match field(c, "mode").and_then(Value::as_str) {
                    Some("required") => ToolChoice::Required,
                    _ => ToolChoice::Auto,
                }
            }
            Some(Value::String(t)) if HOSTED_CHOICES.contains(&t.as_str()) => ToolChoice::Auto,
            Some(Value::String(t)) => {
                let mut supported = vec!["function", "allowed_tools"];
                supported.extend_from_slice(HOSTED_CHOICES);
                return Err(invalid_value("tool_choice.type", t, &supported));
            }
            Some(other) => return Err(ApiError::bad_type("tool_choice.type", "a string", other)),
            None => return Err(ApiError::missing("tool_choice.type")),
        },
        other => {
            return Err(ApiError::bad_type(
                "tool_choice",
                "a string or object",
                other,
            ))
        }
    };
    if choice == ToolChoice::Required && functions.is_empty() {
        return Err(ApiError::invalid(
            "Tool choice 'required' must be specified with 'tools' parameter.",
        )
        .param("tool_choice"));
    }
    Ok((choice, v.clone()))
}
