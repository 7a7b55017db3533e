//! An OpenAI chat client in front of a Google Gemini provider: the Gemini API
//! (`v1beta/models/{model}:generateContent`, `:streamGenerateContent?alt=sse`) or Vertex AI's
//! `publishers/google` models (`v1/projects/…/publishers/google/models/{model}:generateContent`),
//! which take the same body but for what [`Dialect`] names. The model is in the path, not the
//! body.
//!
//! Requests (`request`): system and developer messages become `systemInstruction`; the other
//! turns become `contents` with roles `user` and `model`, consecutive turns of one role merged
//! (a turn of `functionResponse` parts is never merged with other parts: Gemini wants the
//! answers to a step's calls alone in their turn, in the calls' order). Text, images (`data:` URLs
//! as `inlineData`, `http(s)`/`gs://` URLs as `fileData`), audio and PDF files become parts;
//! assistant `tool_calls` become `functionCall` parts and `tool` messages `functionResponse`
//! parts named after the call they answer (found by its id). `tools` become
//! `functionDeclarations` with `parametersJsonSchema` (full JSON Schema, no lossy conversion to
//! the OpenAPI subset `parameters` takes), `tool_choice` becomes
//! `toolConfig.functionCallingConfig`, and the sampling settings, `response_format`
//! (`responseMimeType` + `responseJsonSchema`), logprobs and `reasoning_effort` (`thinkingConfig`)
//! become `generationConfig`.
//!
//! Thought signatures: Gemini 2.5 and 3 put an opaque `thoughtSignature` on the first
//! `functionCall` part of a step, and Gemini 3 answers 400 when it does not come back on that
//! part in the next request. The translation keeps no state, so the signature rides in the
//! OpenAI tool call id, which OpenAI clients echo (in the assistant message and the `tool`
//! message's `tool_call_id`): `<id>__thought__<signature>`, the form LiteLLM and agentgateway
//! use too (the signature in base64url, so the id stays `[A-Za-z0-9_-]`). A request's tool call
//! id is split again: the id goes back as the call's id, the signature (standard base64 again) as
//! the part's `thoughtSignature`. A step whose first call carries none (history from
//! another model, a client that rewrote the ids) gets Google's documented placeholder
//! (base64 of `skip_thought_signature_validator`) so Gemini 3 accepts it. Signatures on text
//! parts have no OpenAI field to ride in and are dropped.
//!
//! Responses (`response`, `stream`): each candidate becomes a choice; text parts are joined
//! into `content`, `thought: true` parts into `reasoning_content` (where DeepSeek-style clients
//! and LiteLLM read reasoning; asked for only when the request set `reasoning_effort`),
//! `functionCall` parts into `tool_calls` (ids `call_{nonce:016x}_{choice}_{n}` when Gemini gives
//! none). Usage: `prompt_tokens` is `promptTokenCount` (which includes the cached tokens) plus
//! `toolUsePromptTokenCount`, `completion_tokens` is `candidatesTokenCount` plus
//! `thoughtsTokenCount` (as OpenAI's includes reasoning), their details `cached_tokens`
//! (`cachedContentTokenCount`) and `reasoning_tokens` (`thoughtsTokenCount`). Google errors
//! (`{"error":{"code","message","status"}}`) become OpenAI-format errors with the status their
//! `status` names.
//!
//! Vertex AI (`aiplatform.googleapis.com/v1`, `publishers/google`) against the Gemini API
//! (`generativelanguage.googleapis.com/v1beta`), for the bodies this module writes and reads:
//! - `functionCall.id` and `functionResponse.id`: the Gemini API has them; Vertex AI v1 has not
//!   (v1beta1 has) and refuses unknown fields, so [`Dialect::VertexAi`] sends no ids: Vertex
//!   matches answers to calls by name and order, which the translation keeps.
//! - `fileData.mimeType`: optional on the Gemini API, required on Vertex AI, so a Vertex image URL
//!   without a known extension is refused (400) rather than sent without one.
//! - the same elsewhere: `systemInstruction`, `tools` (`parametersJsonSchema`), `toolConfig`
//!   (`AUTO`, `ANY`, `NONE`, `VALIDATED`), `generationConfig` (`responseJsonSchema`,
//!   `thinkingConfig` with `thinkingBudget` or `thinkingLevel`, `responseLogprobs`, `logprobs`),
//!   `thoughtSignature`, and the answers (`candidates`, `promptFeedback`, `usageMetadata`,
//!   `modelVersion`, `responseId`, the error object).
//! - Vertex only, not written: `labels` (billing labels; OpenAI's `metadata` is not the same
//!   thing), `safetySettings.method`, `modelArmorConfig`. Vertex only, read: finish and block
//!   reason `MODEL_ARMOR` (→ `content_filter`), block reason `JAILBREAK`, `createTime`,
//!   `usageMetadata.trafficType` (ignored).

use serde_json::Value;

use super::{ResponseContext, Target, Translated};
use crate::error::HttpError;

mod request;
mod response;
mod stream;
#[cfg(test)]
mod tests;

pub use response::translate_error;
pub use stream::Stream;

/// Which Google API the request goes to: the bodies differ as the module documentation says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// The Gemini API (`generativelanguage.googleapis.com`, `v1beta`).
    #[default]
    GeminiApi,
    /// Vertex AI's `publishers/google` models (`aiplatform.googleapis.com`, `v1`).
    VertexAi,
}

/// Translate an OpenAI chat request body into a `GenerateContentRequest` body for
/// `target.model` (named in the path, not the body; the model's name chooses how
/// `reasoning_effort` is said). The request needs no header but its new length.
pub fn translate_request(
    body: &[u8],
    target: &Target<'_>,
    dialect: Dialect,
) -> Result<Translated, HttpError> {
    request::translate(body, target.model, dialect)
}

/// Translate a Gemini answer body into OpenAI's format: a `GenerateContentResponse` (2xx) into
/// a `chat.completion`, an error (any other status, or an error object at 2xx) into an
/// OpenAI-format error. `None` when the body is not JSON.
pub fn translate_response(body: &[u8], context: &ResponseContext) -> Option<Vec<u8>> {
    response::translate(body, context)
}

/// The stream translator for one answer. Its usage chunk is produced whenever Gemini sent
/// `usageMetadata`: the accounting reads it, and strips it when the client did not ask for it.
pub fn translate_stream(context: &ResponseContext) -> Stream {
    Stream::new(context)
}

/// What separates a tool call's own id from the thought signature it carries.
const SIGNATURE_SEPARATOR: &str = "__thought__";

/// Google's documented placeholder signature for a function call Gemini did not make itself:
/// base64 of `skip_thought_signature_validator`.
const FOREIGN_SIGNATURE: &str = "c2tpcF90aG91Z2h0X3NpZ25hdHVyZV92YWxpZGF0b3I=";

/// An OpenAI tool call id split into the call's own id and the signature it carries (as the
/// standard, padded base64 Gemini wrote).
fn split_call_id(id: &str) -> (&str, Option<String>) {
    match id.split_once(SIGNATURE_SEPARATOR) {
        Some((base, signature)) if !signature.is_empty() => {
            let mut s = signature.replace('-', "+").replace('_', "/");
            while s.len() % 4 != 0 {
                s.push('=');
            }
            (base, Some(s))
        }
        _ => (id, None),
    }
}

/// The OpenAI tool call id for a call and the signature of its part. The signature is written in
/// base64url without padding, so the id keeps to `[A-Za-z0-9_-]` (what Anthropic's `tool_use` ids
/// must match, should a Messages client's history reach Anthropic) when Gemini's id does.
fn join_call_id(base: &str, signature: Option<&str>) -> String {
    match signature.filter(|s| !s.is_empty()) {
        Some(s) => {
            let safe = s.trim_end_matches('=').replace('+', "-").replace('/', "_");
            format!("{base}{SIGNATURE_SEPARATOR}{safe}")
        }
        None => base.to_string(),
    }
}

/// The error object in a Google answer: `{"error": …}`, or the first element of an array of
/// answers (a stream read as JSON) when that is one.
fn error_of(v: &Value) -> Option<&Value> {
    let first = match v {
        Value::Array(items) => items.first()?,
        other => other,
    };
    first.get("error").filter(|e| e.is_object()).map(|_| first)
}

/// An OpenAI `finish_reason` for a Gemini `finishReason`: `stop` becomes `tool_calls` when the
/// candidate called tools; the filters' reasons are `content_filter`; what OpenAI has no word for
/// (`OTHER`, `MALFORMED_FUNCTION_CALL`, `LANGUAGE`, …) is `stop`.
fn finish_reason(reason: &str, called: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION"
        | "MODEL_ARMOR" => "content_filter",
        _ if called => "tool_calls",
        _ => "stop",
    }
}

/// Gemini's `usageMetadata` figures, each the last one read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    prompt: u64,
    cached: u64,
    candidates: u64,
    tool_use: u64,
    thoughts: u64,
}

impl Counts {
    /// Take the figures a `usageMetadata` object has (a stream's chunks may each carry some).
    fn read(&mut self, u: &Value) {
        for (key, slot) in [
            ("promptTokenCount", &mut self.prompt),
            ("cachedContentTokenCount", &mut self.cached),
            ("candidatesTokenCount", &mut self.candidates),
            ("toolUsePromptTokenCount", &mut self.tool_use),
            ("thoughtsTokenCount", &mut self.thoughts),
        ] {
            if let Some(n) = u.get(key).and_then(crate::wire::count) {
                *slot = n;
            }
        }
    }

    /// OpenAI's usage object (sums saturate: a provider's figures may be anything).
    fn openai(&self) -> Value {
        let prompt = self.prompt.saturating_add(self.tool_use);
        let completion = self.candidates.saturating_add(self.thoughts);
        serde_json::json!({
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt.saturating_add(completion),
            "prompt_tokens_details": {"cached_tokens": self.cached},
            "completion_tokens_details": {"reasoning_tokens": self.thoughts},
        })
    }
}
