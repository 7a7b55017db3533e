//! The Gemini API (`POST .../models/{model}:generateContent` and `:streamGenerateContent`),
//! and the same answers for Vertex AI's Gemini publisher.
//!
//! The key comes in `x-goog-api-key` or `?key=`: without one, 403 PERMISSION_DENIED; with
//! `--gemini-api-key`, another key is 400 INVALID_ARGUMENT with reason `API_KEY_INVALID`, as
//! Google answers. Then the control headers, `x-fake-status` (429 RESOURCE_EXHAUSTED with a
//! RetryInfo, 500 INTERNAL, 503 UNAVAILABLE, ...) and the body.
//!
//! Each of the `candidateCount` candidates says the fake's text (choice i's words,
//! `x-fake-completion-tokens` of them, cut by `maxOutputTokens`: `finishReason: MAX_TOKENS`;
//! at a stop sequence: `STOP`), a JSON text for `responseMimeType: application/json` (an
//! instance of `responseJsonSchema` / `responseSchema`, else `{"answer": ...}`), or a
//! `functionCall` (`x-fake-tool-call: NAME`, or mode `ANY`; not when the last content hands
//! back function responses) with `finishMessage`. `x-fake-reasoning-tokens` is the
//! `thoughtsTokenCount` (capped by `thinkingConfig.thinkingBudget`, taken first out of
//! `maxOutputTokens`; a thought summary part with `includeThoughts`); with thoughts, or on a
//! Gemini 3 model, the first function call part (else the last part) carries a
//! `thoughtSignature`. `x-fake-cached-tokens` is `cachedContentTokenCount` (part of the
//! prompt). `x-fake-id` fixes `responseId` (and signatures).
//!
//! Streams (`?alt=sse`): `data: <GenerateContentResponse>\r\n\r\n` events, one part each, every
//! one with the usage so far; the last of a candidate has its `finishReason`.
//! `x-fake-stream-error-after-events: N` ends with an UNAVAILABLE error event after N events;
//! `x-fake-abort-after-events` cuts the stream. Without `alt=sse` the same chunks come as one
//! JSON array.

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{json, Value};

use super::{set, Answer, Exchange};
use crate::app::generate::{self, Call};
use crate::app::{json_response, tokenized, Config, Controls, FIXED_CREATED};
use crate::gemini::{self, Error, GenerateRequest};
use crate::{anthropic, sse};

/// The text of a thought summary (`includeThoughts`).
const THOUGHT_SUMMARY: &str = "**Answering the question**\n\nThe fake model thinks it over.";

pub(super) fn respond_api(config: &Config, x: &Exchange<'_>, stream: bool, model: &str) -> Answer {
    let key = x
        .header("x-goog-api-key")
        .map(str::to_owned)
        .or_else(|| x.query("key"));
    let service = "generativelanguage.googleapis.com";
    let checked = match (key, &config.clouds.gemini_api_key) {
        (None, _) => Err(Error::new(403, "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.")),
        (Some(k), Some(expected)) if &k != expected => Err(Error::invalid("API key not valid. Please pass a valid API key.")
            .with_detail(json!({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com", "metadata": {"service": service}}))
            .with_detail(json!({"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": "API key not valid. Please pass a valid API key."}))),
        _ => Ok(()),
    };
    let (response, prompt_tokens) = match checked {
        Ok(()) => generate_content(x, model, stream, false),
        Err(e) => (e.response(), 0),
    };
    Answer {
        response,
        prompt_tokens,
        model: model.to_owned(),
        echo: Vec::new(),
        request_id: crate::app::random_id("req_"),
        anthropic: false,
    }
}

/// Answers a checked-in GenerateContentRequest (`vertex` for Vertex AI's response fields);
/// returns the response and the prompt tokens.
pub(super) fn generate_content(
    x: &Exchange<'_>,
    model: &str,
    stream: bool,
    vertex: bool,
) -> (Response, u64) {
    let service = if vertex {
        "aiplatform.googleapis.com"
    } else {
        "generativelanguage.googleapis.com"
    };
    let mut prompt_tokens = 0;
    let result = (|| {
        let ctl = x.controls.clone().map_err(|e| Error::invalid(e.message))?;
        if let Some(status) = ctl
            .status
            .filter(|s| s.is_client_error() || s.is_server_error())
        {
            return Err(Error::simulated(status, service));
        }
        let req = gemini::parse_generate(x.body, model, vertex)?;
        prompt_tokens = req.prompt_tokens;
        let answer = Generated::new(&req, &ctl, model)?;
        let meta = Meta::new(&ctl, model, vertex);
        if !stream {
            return Ok(json_response(
                StatusCode::OK,
                &answer.whole(&req, &ctl, &meta, vertex),
            ));
        }
        let sse = x.query("alt").as_deref() == Some("sse");
        Ok(answer.stream(&req, &ctl, &meta, vertex, sse))
    })();
    let mut response = result.unwrap_or_else(|e| e.response());
    if response.status() == StatusCode::OK && !stream {
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=UTF-8"),
        );
    }
    (response, prompt_tokens)
}

/// The response-wide fields.
struct Meta {
    response_id: String,
    model_version: String,
    /// Vertex AI's `createTime`.
    create_time: String,
}

impl Meta {
    fn new(ctl: &Controls, model: &str, vertex: bool) -> Self {
        let (response_id, secs) = match &ctl.fixed_id {
            Some(id) => (id.clone(), FIXED_CREATED as i64),
            None => (generate::alphanumeric(23), crate::app::now() as i64),
        };
        let mut time = aws_smithy_types::DateTime::from_secs(secs);
        time.set_subsec_nanos(if ctl.fixed_id.is_some() {
            0
        } else {
            fastrand::u32(..1_000_000) * 1000
        });
        let create_time = if vertex {
            time.fmt(aws_smithy_types::date_time::Format::DateTime)
                .unwrap_or_default()
        } else {
            String::new()
        };
        Meta {
            response_id,
            model_version: model.to_owned(),
            create_time,
        }
    }

    fn wrap(&self, candidates: Vec<Value>, usage: Value, vertex: bool) -> Value {
        let mut out = json!({
            "candidates": candidates,
            "usageMetadata": usage,
            "modelVersion": self.model_version,
            "responseId": self.response_id,
        });
        if vertex {
            set(&mut out, "createTime", json!(self.create_time));
        }
        out
    }
}

/// What one candidate says.
enum Body<'a> {
    /// Text pieces, each with its token count.
    Text(Vec<(String, u64)>),
    Call(Call<'a>),
    /// Nothing (the output limit was spent thinking).
    Empty,
}

struct Candidate<'a> {
    body: Body<'a>,
    finish: &'static str,
    tokens: u64,
}

/// The candidates of one answer and its thinking.
struct Generated<'a> {
    candidates: Vec<Candidate<'a>>,
    thoughts: u64,
    /// The thought summary part is sent.
    summary: bool,
    signature: Option<String>,
}

impl<'a> Generated<'a> {
    fn new(req: &'a GenerateRequest, ctl: &Controls, model: &str) -> Result<Self, Error> {
        let thoughts = match req.thinking_budget {
            Some(b) if b >= 0 => ctl.reasoning_tokens.min(b as u64),
            _ => ctl.reasoning_tokens,
        };
        let visible = req.max_output_tokens.map(|m| m.saturating_sub(thoughts));
        let signature = (thoughts > 0 || gemini::is_gemini_3(model)).then(|| {
            let mut bytes = gemini::SIGNATURE_PREFIX.to_vec();
            bytes.extend(generate::fixed_or_random(ctl, 24).bytes());
            base64::engine::general_purpose::STANDARD.encode(bytes)
        });
        let mut candidates = Vec::new();
        for choice in 0..req.candidate_count {
            let call = generate::tool_call(
                &req.tools,
                &req.tool_choice,
                req.answers_function_responses,
                ctl,
            )
            .map_err(Error::invalid)?;
            candidates.push(match call {
                _ if visible == Some(0) => Candidate {
                    body: Body::Empty,
                    finish: "MAX_TOKENS",
                    tokens: 0,
                },
                Some(call) => Candidate {
                    tokens: call.output_tokens,
                    body: Body::Call(call),
                    finish: "STOP",
                },
                None => text_candidate(req, ctl, choice, visible)?,
            });
        }
        Ok(Generated {
            candidates,
            thoughts,
            summary: req.include_thoughts && thoughts > 0,
            signature,
        })
    }

    fn usage(
        &self,
        req: &GenerateRequest,
        ctl: &Controls,
        candidates_tokens: u64,
        vertex: bool,
    ) -> Value {
        let prompt = req.prompt_tokens;
        let cached = ctl.cached_tokens.min(prompt);
        let mut usage = json!({
            "promptTokenCount": prompt,
            "totalTokenCount": prompt + candidates_tokens + self.thoughts,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
        });
        if candidates_tokens > 0 {
            set(&mut usage, "candidatesTokenCount", json!(candidates_tokens));
            if vertex {
                set(
                    &mut usage,
                    "candidatesTokensDetails",
                    json!([{"modality": "TEXT", "tokenCount": candidates_tokens}]),
                );
            }
        }
        if cached > 0 {
            set(&mut usage, "cachedContentTokenCount", json!(cached));
            set(
                &mut usage,
                "cacheTokensDetails",
                json!([{"modality": "TEXT", "tokenCount": cached}]),
            );
        }
        if self.thoughts > 0 {
            set(&mut usage, "thoughtsTokenCount", json!(self.thoughts));
        }
        if vertex {
            set(&mut usage, "trafficType", json!("ON_DEMAND"));
        }
        usage
    }

    /// The parts of candidate `c` with their tokens: one per stream event, or the text in one
    /// part (`whole`); a signature on the first call, else on the last part.
    fn parts(&self, c: &Candidate<'_>, whole: bool) -> Vec<(Value, u64)> {
        let mut parts = Vec::new();
        if self.summary {
            parts.push((json!({"text": THOUGHT_SUMMARY, "thought": true}), 0));
        }
        let first_visible = parts.len();
        match &c.body {
            Body::Text(pieces) if whole => {
                let text: String = pieces.iter().map(|(t, _)| t.as_str()).collect();
                parts.push((json!({ "text": text }), c.tokens));
            }
            Body::Text(pieces) => {
                parts.extend(pieces.iter().map(|(t, n)| (json!({"text": t}), *n)))
            }
            Body::Call(call) => parts.push((
                json!({"functionCall": {"name": call.name, "args": call.input}}),
                c.tokens,
            )),
            Body::Empty => {}
        }
        if let Some(sig) = &self.signature {
            let at = match c.body {
                Body::Call(_) => Some(first_visible),
                _ => parts.len().checked_sub(1),
            };
            if let Some((part, _)) = at.and_then(|i| parts.get_mut(i)) {
                set(part, "thoughtSignature", json!(sig));
            }
        }
        parts
    }

    fn candidate(c: &Candidate<'_>, index: usize, parts: Vec<Value>, finished: bool) -> Value {
        let mut content = json!({"role": "model"});
        if !parts.is_empty() {
            set(&mut content, "parts", Value::Array(parts));
        }
        let mut out = json!({"content": content, "index": index});
        if finished {
            set(&mut out, "finishReason", json!(c.finish));
            if matches!(c.body, Body::Call(_)) {
                set(
                    &mut out,
                    "finishMessage",
                    json!("Model generated function call(s)."),
                );
            }
        }
        out
    }

    /// The whole answer, its text in one part as Google returns it.
    fn whole(&self, req: &GenerateRequest, ctl: &Controls, meta: &Meta, vertex: bool) -> Value {
        let candidates = self
            .candidates
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let parts = self.parts(c, true).into_iter().map(|(p, _)| p).collect();
                Self::candidate(c, i, parts, true)
            })
            .collect();
        let total = self.candidates.iter().map(|c| c.tokens).sum();
        meta.wrap(candidates, self.usage(req, ctl, total, vertex), vertex)
    }

    /// The streamed answer: SSE events, or one JSON array of the chunks.
    fn stream(
        &self,
        req: &GenerateRequest,
        ctl: &Controls,
        meta: &Meta,
        vertex: bool,
        sse_mode: bool,
    ) -> Response {
        let per: Vec<Vec<(Value, u64)>> = self
            .candidates
            .iter()
            .map(|c| self.parts(c, false))
            .collect();
        let steps = per.iter().map(|p| p.len().max(1)).max().unwrap_or(1);
        let mut so_far = 0;
        let mut chunks = Vec::new();
        for step in 0..steps {
            let mut candidates = Vec::new();
            for (i, (c, parts)) in self.candidates.iter().zip(&per).enumerate() {
                let last = parts.len().max(1) - 1;
                if step > last {
                    continue;
                }
                let part = parts.get(step).map(|(p, n)| {
                    so_far += n;
                    vec![p.clone()]
                });
                candidates.push(Self::candidate(
                    c,
                    i,
                    part.unwrap_or_default(),
                    step == last,
                ));
            }
            chunks.push(
                meta.wrap(candidates, self.usage(req, ctl, so_far, vertex), vertex)
                    .to_string(),
            );
        }
        let error = || Error::new(503, "The model is overloaded. Please try again later.");
        if sse_mode {
            let frames = chunks
                .into_iter()
                .map(|c| format!("data: {c}\r\n\r\n"))
                .collect();
            let error_after = ctl
                .stream_error_after_events
                .map(|n| (n, vec![error().stream_frame()]));
            return sse::frames_response(
                frames,
                "text/event-stream",
                ctl.pace(),
                ctl.abort_after_events,
                error_after,
            );
        }
        let n = chunks.len();
        let frames: Vec<String> = chunks
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let open = if i == 0 { "[" } else { ",\r\n" };
                let close = if i + 1 == n { "]" } else { "" };
                format!("{open}{c}{close}")
            })
            .collect();
        let error_after = ctl
            .stream_error_after_events
            .map(|k| (k, vec![format!(",\r\n{}]", error().body())]));
        sse::frames_response(
            frames,
            "application/json; charset=UTF-8",
            ctl.pace(),
            ctl.abort_after_events,
            error_after,
        )
    }
}

/// Candidate `choice`'s text: the words, or the JSON text of `responseMimeType`, cut at
/// `limit` tokens.
fn text_candidate<'a>(
    req: &GenerateRequest,
    ctl: &Controls,
    choice: u32,
    limit: Option<u64>,
) -> Result<Candidate<'a>, Error> {
    let Some(json) = &req.json else {
        let t = generate::text(choice, ctl.completion_tokens, limit, &req.stop_sequences);
        let finish = if t.stop_reason == "max_tokens" {
            "MAX_TOKENS"
        } else {
            "STOP"
        };
        let pieces = t.pieces.into_iter().map(|p| (p, 1)).collect();
        return Ok(Candidate {
            body: Body::Text(pieces),
            finish,
            tokens: t.output_tokens,
        });
    };
    let value = match &json.schema {
        Some(schema) => crate::schema::instance(schema, choice).map_err(|why| {
            Error::invalid(format!(
                "fake-provider cannot generate an instance of the response schema: {why}"
            ))
        })?,
        None => {
            json!({"answer": crate::tokens::choice_pieces(choice, ctl.completion_tokens as usize).concat()})
        }
    };
    let c = tokenized(anthropic::TOKENIZER, limit, &value.to_string());
    let finish = if c.finish_reason == "length" {
        "MAX_TOKENS"
    } else {
        "STOP"
    };
    let pieces = c
        .pieces
        .into_iter()
        .map(|p| (p.text, p.tokens.len() as u64))
        .collect();
    Ok(Candidate {
        body: Body::Text(pieces),
        finish,
        tokens: c.content_tokens,
    })
}
