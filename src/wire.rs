//! OpenAI wire types shared by the request and response sides.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::HttpError;

/// A JSON request body (OpenAI's or Anthropic's: both name the model at the top level) with
/// its `model` set to `model`; the body itself when it already names it.
pub fn with_model(body: &[u8], model: &str) -> Result<Vec<u8>, HttpError> {
    let mut req: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| HttpError::invalid_json(&e.to_string()))?;
    if req.get("model").and_then(Value::as_str) == Some(model) {
        return Ok(body.to_vec());
    }
    req.insert("model".into(), model.into());
    serde_json::to_vec(&req).map_err(|e| HttpError::invalid_json(&e.to_string()))
}

/// A tool call in a message (request history) or in a response or stream delta.
#[derive(Deserialize)]
pub struct ToolCall<'a> {
    #[serde(default, borrow)]
    pub function: Option<Function<'a>>,
}

/// A function call: its name and its JSON arguments (as text, possibly a stream fragment).
#[derive(Deserialize)]
pub struct Function<'a> {
    #[serde(default, borrow)]
    pub name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub arguments: Option<Cow<'a, str>>,
}

impl Function<'_> {
    /// The texts a tokenizer counts: name and arguments, where present.
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        [&self.name, &self.arguments]
            .into_iter()
            .flatten()
            .map(|s| s.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn with_model_sets_the_model_and_keeps_the_rest() {
        let body = br#"{"model":"a","max_tokens":5}"#;
        let w: Value = serde_json::from_slice(&with_model(body, "b").unwrap()).unwrap();
        assert_eq!(w, json!({"model": "b", "max_tokens": 5}));
        assert_eq!(with_model(body, "a").unwrap(), body);
        assert_eq!(with_model(b"[1]", "a").unwrap_err().status, 400);
    }
}
