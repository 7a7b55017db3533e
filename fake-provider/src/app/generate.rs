//! What the Anthropic, Bedrock, Gemini and Vertex modes answer: the deterministic text (cut by
//! a token limit or a stop sequence) and the tool call a request asks for.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Controls;
use crate::anthropic::{self, Tool, ToolChoice};
use crate::tokens;

pub(super) fn alphanumeric(n: usize) -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(n)
        .collect()
}

/// `n` characters derived from `x-fake-id` when given (so two answers to one request are
/// identical), else random alphanumerics.
pub(super) fn fixed_or_random(ctl: &Controls, n: usize) -> String {
    match &ctl.fixed_id {
        Some(fixed) => hex::encode(Sha256::digest(fixed)).chars().take(n).collect(),
        None => alphanumeric(n),
    }
}

/// The generated text: its stream pieces, why it stopped and how many tokens were generated.
#[derive(Debug, PartialEq)]
pub(super) struct Text {
    pub text: String,
    pub pieces: Vec<String>,
    /// `end_turn`, `max_tokens` or `stop_sequence` (the names Anthropic and Bedrock use).
    pub stop_reason: &'static str,
    pub stop_sequence: Option<String>,
    pub output_tokens: u64,
}

/// Choice `choice`'s `n` one-token pieces, capped by `max_tokens` (`max_tokens`), or cut before
/// the first stop sequence to complete (`stop_sequence`; the tokens generated up to the end of
/// the stop sequence are counted, and the sequence itself is not returned).
pub(super) fn text(
    choice: u32,
    n: u64,
    max_tokens: Option<u64>,
    stop_sequences: &[String],
) -> Text {
    let mut n = n;
    let mut stop_reason = "end_turn";
    if let Some(max) = max_tokens.filter(|max| *max < n) {
        n = max;
        stop_reason = "max_tokens";
    }
    let pieces = tokens::choice_pieces(choice, n as usize);
    let full: String = pieces.concat();
    let hit = stop_sequences
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| full.find(s.as_str()).map(|at| (at + s.len(), at, s)))
        .min();
    let Some((end, at, seq)) = hit else {
        return Text {
            pieces: pieces.iter().map(|p| p.to_string()).collect(),
            text: full,
            stop_reason,
            stop_sequence: None,
            output_tokens: n,
        };
    };
    let mut out = Vec::new();
    let (mut pos, mut generated) = (0, 0);
    for piece in &pieces {
        if pos >= end {
            break;
        }
        generated += 1;
        if pos < at {
            out.push(
                piece
                    .get(..piece.len().min(at - pos))
                    .unwrap_or(piece)
                    .to_string(),
            );
        }
        pos += piece.len();
    }
    Text {
        text: full.get(..at).unwrap_or_default().to_string(),
        pieces: out,
        stop_reason: "stop_sequence",
        stop_sequence: Some(seq.clone()),
        output_tokens: generated,
    }
}

/// A tool call: the tool and an input matching its schema.
pub(super) struct Call<'a> {
    pub name: &'a str,
    pub input: Value,
    /// `input` as compact JSON.
    pub json: String,
    /// The tokens of the name and the input.
    pub output_tokens: u64,
}

/// The tool to call: `x-fake-tool-call` when the request has tools, else the tool that the
/// choice forces (`Tool`, or the first tool for `Any`); none with `None`. `x-fake-tool-call`
/// makes the model call the tool once: results handed back (`answers_tool_results`) get an
/// answer, as a real model gives, so an agent loop ends. The error names a tool the request
/// does not define.
pub(super) fn tool_call<'a>(
    tools: &'a [Tool],
    choice: &ToolChoice,
    answers_tool_results: bool,
    ctl: &Controls,
) -> Result<Option<Call<'a>>, String> {
    if tools.is_empty() || *choice == ToolChoice::None {
        return Ok(None);
    }
    let name = match (&ctl.tool_call, choice) {
        (Some(_), ToolChoice::Auto) if answers_tool_results => return Ok(None),
        (Some(name), _) => name.as_str(),
        (None, ToolChoice::Tool(name)) => name.as_str(),
        (None, ToolChoice::Any) => match tools.first() {
            Some(t) => t.name.as_str(),
            None => return Ok(None),
        },
        (None, _) => return Ok(None),
    };
    let Some(tool) = tools.iter().find(|t| t.name == name) else {
        return Err(format!(
            "fake-provider: x-fake-tool-call names tool '{name}', which the request's tools do \
             not define"
        ));
    };
    let input = anthropic::fake_value(&tool.input_schema, 0);
    let input = if input.is_object() {
        input
    } else {
        Value::Object(Default::default())
    };
    let json = input.to_string();
    let output_tokens = tokens::count(anthropic::TOKENIZER, &tool.name)
        + tokens::count(anthropic::TOKENIZER, &json);
    Ok(Some(Call {
        name: &tool.name,
        input,
        json,
        output_tokens,
    }))
}
