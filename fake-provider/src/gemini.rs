//! Google Gemini wire (the Gemini API's `models/{model}:generateContent` and the same body on
//! Vertex AI): request parsing with Google's validation, and Google's error shape
//! `{"error": {"code", "message", "status", "details"?}}`.
//!
//! The request is checked the way Google's JSON-to-proto front end checks it: an unknown field
//! anywhere (camelCase and the proto's snake_case names are both accepted) is `Invalid JSON
//! payload received. Unknown name "x" at 'path': Cannot find field.`, a function's
//! `parameters` must use the OpenAPI subset Gemini's `Schema` has (`parametersJsonSchema`
//! takes any JSON Schema), `inlineData.data` must be base64, `functionCall.args` and
//! `functionResponse.response` objects; a function response turn must follow a function call
//! turn with as many parts; Gemini 3 models require the `thoughtSignature` of the first
//! function call of each step of the current turn.
//!
//! Token counts are an approximation (Gemini's tokenizer is not public): the text of
//! `systemInstruction` and `contents` (text parts, a function call's name and args, a function
//! response's name and response, as compact JSON) counted with o200k_base; inline data 0.

mod check;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};

use crate::anthropic::{self, Tool, ToolChoice};
use crate::tokens;

pub use check::{is_gemini_3, SIGNATURE_PREFIX};

// ------------------------------------------------------------------ errors

/// An error answered in Google's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pub status: StatusCode,
    pub message: String,
    /// `error.details` (`google.rpc.ErrorInfo`, `RetryInfo`, ...), when Google sends some.
    pub details: Vec<Value>,
}

impl Error {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Error {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// 400 INVALID_ARGUMENT.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    pub fn with_detail(mut self, detail: Value) -> Self {
        self.details.push(detail);
        self
    }

    /// The canonical gRPC status name Google gives an HTTP status.
    pub fn status_name(status: StatusCode) -> &'static str {
        match status.as_u16() {
            400 => "INVALID_ARGUMENT",
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "NOT_FOUND",
            409 => "ABORTED",
            429 => "RESOURCE_EXHAUSTED",
            499 => "CANCELLED",
            500 => "INTERNAL",
            501 => "UNIMPLEMENTED",
            503 => "UNAVAILABLE",
            504 => "DEADLINE_EXCEEDED",
            _ => "UNKNOWN",
        }
    }

    /// The error an `x-fake-status` asks for (`service` is `generativelanguage.googleapis.com`
    /// or `aiplatform.googleapis.com`).
    pub fn simulated(status: StatusCode, service: &str) -> Self {
        let code = status.as_u16();
        match code {
            429 => Self::new(
                code,
                "You exceeded your current quota, please check your plan and billing details \
                 (simulated by fake-provider). Please retry in 1s.",
            )
            .with_detail(json!({
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": "1s"
            }))
            .with_detail(json!({
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "RATE_LIMIT_EXCEEDED",
                "domain": "googleapis.com",
                "metadata": {"service": service}
            })),
            500 => Self::new(code, "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"),
            503 => Self::new(code, "The model is overloaded. Please try again later."),
            504 => Self::new(code, "Deadline expired before operation could complete."),
            _ => Self::new(code, format!("Simulated error (status {code}) from fake-provider.")),
        }
    }

    /// The body: `{"error": {"code", "message", "status", "details"?}}`.
    pub fn body(&self) -> Value {
        let mut error = Map::new();
        error.insert("code".to_owned(), json!(self.status.as_u16()));
        error.insert("message".to_owned(), json!(self.message));
        error.insert("status".to_owned(), json!(Self::status_name(self.status)));
        if !self.details.is_empty() {
            error.insert("details".to_owned(), Value::Array(self.details.clone()));
        }
        json!({ "error": error })
    }

    pub fn response(&self) -> Response {
        let mut resp = Response::new(Body::from(self.body().to_string()));
        *resp.status_mut() = self.status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=UTF-8"),
        );
        resp
    }

    /// The error as the last event of an SSE stream.
    pub fn stream_frame(&self) -> String {
        format!("data: {}\r\n\r\n", self.body())
    }
}

// ---------------------------------------------------------------- requests

/// `generationConfig`'s JSON output: `responseMimeType: application/json`, with the schema of
/// `responseJsonSchema` (or `responseSchema`, turned into JSON Schema) when one is given.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonOutput {
    pub schema: Option<Value>,
}

/// A parsed GenerateContentRequest.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// The functions of `tools[].functionDeclarations`, their parameters as JSON Schema (of the
    /// functions `allowedFunctionNames` allows, with mode `ANY`).
    pub tools: Vec<Tool>,
    /// `toolConfig.functionCallingConfig.mode`: `AUTO` (and `VALIDATED`), `ANY`, `NONE`.
    pub tool_choice: ToolChoice,
    /// The last content hands back function responses: the model answers them.
    pub answers_function_responses: bool,
    pub max_output_tokens: Option<u64>,
    /// `candidateCount` (1 to 8).
    pub candidate_count: u32,
    pub stop_sequences: Vec<String>,
    pub json: Option<JsonOutput>,
    /// `thinkingConfig.thinkingBudget` (-1 is dynamic).
    pub thinking_budget: Option<i64>,
    pub include_thoughts: bool,
    /// Approximate prompt tokens (see the module doc).
    pub prompt_tokens: u64,
}

fn count(text: &str) -> u64 {
    tokens::count(anthropic::TOKENIZER, text)
}

/// A `Schema` (OpenAPI subset, upper-case types) as JSON Schema: lower-case types, `nullable`
/// as a `null` type, the rest as is.
pub fn openapi_to_json_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(obj) => {
            let mut out = Map::new();
            for (k, v) in obj {
                match (k.as_str(), v) {
                    ("type", Value::String(t)) => {
                        out.insert(k.clone(), Value::String(t.to_ascii_lowercase()));
                    }
                    ("properties", Value::Object(props)) => {
                        let props = props
                            .iter()
                            .map(|(name, s)| (name.clone(), openapi_to_json_schema(s)))
                            .collect();
                        out.insert(k.clone(), Value::Object(props));
                    }
                    ("items", s) => {
                        out.insert(k.clone(), openapi_to_json_schema(s));
                    }
                    ("anyOf" | "any_of", Value::Array(branches)) => {
                        let branches = branches.iter().map(openapi_to_json_schema).collect();
                        out.insert("anyOf".to_owned(), Value::Array(branches));
                    }
                    ("nullable" | "propertyOrdering" | "property_ordering" | "example", _) => {}
                    _ => {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
            if obj.get("nullable") == Some(&Value::Bool(true)) {
                if let Some(Value::String(t)) = out.get("type").cloned() {
                    out.insert("type".to_owned(), json!([t, "null"]));
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// Parses a GenerateContentRequest for `model` (`vertex` for Vertex AI's field set).
pub fn parse_generate(body: &[u8], model: &str, vertex: bool) -> Result<GenerateRequest, Error> {
    let obj = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map,
        Ok(other) => {
            return Err(Error::invalid(format!(
                "Invalid JSON payload received. Expected an object, got {other}."
            )))
        }
        Err(e) => {
            return Err(Error::invalid(format!(
                "Invalid JSON payload received. {e}"
            )))
        }
    };
    check::request(&obj, model, vertex)
}

#[cfg(test)]
mod tests;
