//! One answer to `POST /responses`: what the fake says (text, or a function call), its
//! usage, and the response object as JSON or as OpenAI's stream of events.

use serde_json::Value;
use sha2::{Digest, Sha256};
use tiktoken_rs::{ChatCompletionRequestMessage, FunctionCall};

use super::super::{random_id, tokenized, words, Completion, Controls, FIXED_CREATED};
use crate::api::{ApiError, ResponseFormat};
use crate::responses::wire::{
    ArgumentsDelta, ArgumentsDone, ErrorEventBody, ErrorObject, Frames, FunctionCallItem,
    IncompleteDetails, InputTokensDetails, ItemBody, MessageItem, OutputItem, OutputText,
    OutputTokensDetails, PartBody, ReasoningItem, ResponseBody, ResponseView, StreamError,
    TextDelta, TextDone, Usage,
};
use crate::responses::{CreateRequest, Function, Prev, ToolChoice};
use crate::{anthropic, schema, tokens};

/// Largest piece of streamed function-call arguments.
const ARGUMENT_PIECE_BYTES: usize = 6;

/// The message of the in-band stream error (`x-fake-stream-error-after-events`).
pub const STREAM_ERROR_MESSAGE: &str = "An error occurred while processing your request. You \
     can retry your request, or contact us through our help center at help.openai.com if the \
     error persists.";

/// What the turn says.
pub enum Said {
    Text {
        id: String,
        completion: Completion,
    },
    Call {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// The fake's answer to one request.
pub struct Turn {
    pub id: String,
    pub created_at: u64,
    /// A reasoning item (its id) when `x-fake-reasoning-tokens` asks for reasoning.
    pub reasoning: Option<String>,
    /// Nothing when reasoning used all of `max_output_tokens`.
    pub said: Option<Said>,
    pub incomplete: bool,
    pub usage: Option<Usage>,
}

/// `prefix` and 48 hex digits derived from the response id: ids of one response are stable
/// with `x-fake-id`.
pub fn derived_id(prefix: &str, response_id: &str, tag: &str) -> String {
    let digest = hex::encode(Sha256::digest(format!("{response_id}#{tag}")));
    format!("{prefix}{}", digest.get(..48).unwrap_or(&digest))
}

fn call_id(response_id: &str) -> String {
    let digest = hex::encode(Sha256::digest(format!("{response_id}#call")));
    format!("call_{}", digest.get(..24).unwrap_or(&digest))
}

impl Turn {
    pub fn plan(req: &CreateRequest, ctl: &Controls) -> Result<Turn, ApiError> {
        let (id, created_at) = match &ctl.fixed_id {
            Some(id) => (id.clone(), FIXED_CREATED),
            None => {
                let digest = hex::encode(Sha256::digest(random_id("")));
                let id = format!("resp_{}", digest.get(..48).unwrap_or(&digest));
                (id, super::super::now())
            }
        };
        // Reasoning tokens come out of `max_output_tokens` first, as OpenAI's do.
        let asked = ctl.reasoning_tokens;
        let (reasoning_tokens, budget) = match req.echo.max_output_tokens {
            None => (asked, None),
            Some(max) => (asked.min(max), Some(max - asked.min(max))),
        };
        let (said, said_tokens, cut) = match function_to_call(req, ctl)? {
            Some(f) => {
                let arguments = arguments_for(f);
                let tokens = tokens::count(req.tokenizer, &f.name)
                    + tokens::count(req.tokenizer, &arguments);
                let said = Said::Call {
                    id: derived_id("fc_", &id, "fc"),
                    call_id: call_id(&id),
                    name: f.name.clone(),
                    arguments,
                };
                (Some(said), tokens, false)
            }
            None if budget == Some(0) => (None, 0, true),
            None => {
                let completion = write_text(req, ctl, budget)?;
                let (tokens, cut) = (
                    completion.content_tokens,
                    completion.finish_reason == "length",
                );
                let said = Said::Text {
                    id: derived_id("msg_", &id, "msg"),
                    completion,
                };
                (Some(said), tokens, cut)
            }
        };
        let output_tokens = said_tokens + reasoning_tokens;
        let usage = (!ctl.no_usage).then(|| Usage {
            input_tokens: req.prompt_tokens,
            input_tokens_details: InputTokensDetails {
                cached_tokens: ctl.cached_tokens,
                cache_write_tokens: ctl.cache_creation_tokens,
            },
            output_tokens,
            output_tokens_details: OutputTokensDetails { reasoning_tokens },
            total_tokens: req.prompt_tokens + output_tokens,
        });
        Ok(Turn {
            reasoning: (asked > 0).then(|| derived_id("rs_", &id, "rs")),
            id,
            created_at,
            said,
            incomplete: cut || reasoning_tokens < asked,
            usage,
        })
    }

    fn status(&self) -> &'static str {
        if self.incomplete {
            "incomplete"
        } else {
            "completed"
        }
    }

    /// The output items of the finished response.
    pub fn items(&self) -> Vec<OutputItem<'_>> {
        let mut items = Vec::new();
        if let Some(id) = &self.reasoning {
            items.push(OutputItem::Reasoning(ReasoningItem {
                id,
                kind: "reasoning",
                summary: [],
            }));
        }
        match &self.said {
            Some(Said::Text { id, completion }) => items.push(OutputItem::Message(MessageItem {
                id,
                kind: "message",
                status: self.status(),
                content: vec![OutputText::new(&completion.text)],
                role: "assistant",
            })),
            Some(Said::Call {
                id,
                call_id,
                name,
                arguments,
            }) => items.push(OutputItem::FunctionCall(FunctionCallItem {
                id,
                kind: "function_call",
                status: "completed",
                arguments,
                call_id,
                name,
            })),
            None => {}
        }
        items
    }

    /// The finished response object.
    pub fn view<'a>(
        &'a self,
        req: &'a CreateRequest,
        output: &'a [OutputItem<'a>],
    ) -> ResponseView<'a> {
        ResponseView {
            id: &self.id,
            created_at: self.created_at,
            status: self.status(),
            error: None,
            incomplete_details: self.incomplete.then_some(IncompleteDetails {
                reason: "max_output_tokens",
            }),
            model: &req.model,
            output,
            service_tier: final_tier(req),
            usage: self.usage.as_ref(),
            echo: &req.echo,
        }
    }

    /// The response object while in progress (`response.created`, `response.in_progress`).
    fn in_progress<'a>(&'a self, req: &'a CreateRequest) -> ResponseView<'a> {
        ResponseView {
            status: "in_progress",
            incomplete_details: None,
            output: &[],
            service_tier: req.echo.service_tier.as_deref().unwrap_or("auto"),
            usage: None,
            ..self.view(req, &[])
        }
    }

    /// The failed response object of `response.failed`.
    pub fn failed<'a>(&'a self, req: &'a CreateRequest) -> ResponseView<'a> {
        ResponseView {
            status: "failed",
            error: Some(ErrorObject {
                code: "server_error",
                message: STREAM_ERROR_MESSAGE,
            }),
            ..self.in_progress(req)
        }
    }

    /// The chain a request continuing this response carries on with.
    pub fn prev(&self, req: &CreateRequest) -> Prev {
        let mut prev = Prev {
            messages: req.input.messages.clone(),
            calls: req.input.calls.clone(),
            pending: Vec::new(),
        };
        match &self.said {
            Some(Said::Text { completion, .. }) => {
                prev.messages.push(ChatCompletionRequestMessage {
                    role: "assistant".to_owned(),
                    content: Some(completion.text.clone()),
                    ..Default::default()
                })
            }
            Some(Said::Call {
                call_id,
                name,
                arguments,
                ..
            }) => {
                prev.messages.push(ChatCompletionRequestMessage {
                    role: "assistant".to_owned(),
                    tool_calls: vec![FunctionCall {
                        name: name.clone(),
                        arguments: arguments.clone(),
                    }],
                    ..Default::default()
                });
                prev.calls.push((call_id.clone(), name.clone()));
                prev.pending.push(call_id.clone());
            }
            None => {}
        }
        prev
    }
}

/// The `service_tier` of a finished response: the tier asked for when it is a special one,
/// else "default" (what "auto" ran on).
fn final_tier(req: &CreateRequest) -> &str {
    match req.echo.service_tier.as_deref() {
        Some(t @ ("flex" | "scale" | "priority")) => t,
        _ => "default",
    }
}

/// The function to call: `tool_choice` naming one; else `x-fake-tool-call` (not when the input
/// ends with a function's output: then the fake answers it); else the first function for
/// `"required"`. None with `"none"` or without function tools.
fn function_to_call<'a>(
    req: &'a CreateRequest,
    ctl: &Controls,
) -> Result<Option<&'a Function>, ApiError> {
    if req.functions.is_empty() || req.tool_choice == ToolChoice::None {
        return Ok(None);
    }
    let header = ctl
        .tool_call
        .as_deref()
        .filter(|_| req.input.last_output.is_none());
    let name = match (&req.tool_choice, header) {
        (ToolChoice::Function(name), _) => name.as_str(),
        (_, Some(name)) => name,
        (ToolChoice::Required, None) => match req.functions.first() {
            Some(f) => f.name.as_str(),
            None => return Ok(None),
        },
        _ => return Ok(None),
    };
    match req.functions.iter().find(|f| f.name == name) {
        Some(f) => Ok(Some(f)),
        None => Err(ApiError::invalid(format!(
            "fake-provider: x-fake-tool-call names tool '{name}', which the request's tools do \
             not define"
        ))
        .param("tools")),
    }
}

/// Arguments of a call: an instance of the function's `parameters` (`{}` when it cannot
/// make one that is an object).
fn arguments_for(f: &Function) -> String {
    let value = schema::instance(&f.parameters, 0)
        .unwrap_or_else(|_| anthropic::fake_value(&f.parameters, 0));
    if value.is_object() {
        value.to_string()
    } else {
        "{}".to_owned()
    }
}

/// The text: `x-fake-completion-tokens` one-token words, or — when the input ends with a
/// function's output — "The function NAME returned: OUTPUT"; as `{"answer": TEXT}` for
/// `json_object` and an instance of the schema for `json_schema`; cut after `budget` tokens.
fn write_text(
    req: &CreateRequest,
    ctl: &Controls,
    budget: Option<u64>,
) -> Result<Completion, ApiError> {
    let mention = req
        .input
        .last_output
        .as_ref()
        .map(|(name, output)| format!("The function {name} returned: {output}"));
    let text = match (&req.format, mention) {
        (ResponseFormat::Text, None) => {
            return Ok(words(req.tokenizer, 0, ctl.completion_tokens, budget))
        }
        (ResponseFormat::Text, Some(mention)) => mention,
        (ResponseFormat::JsonObject, mention) => {
            let answer = mention.unwrap_or_else(|| {
                tokens::completion_pieces(ctl.completion_tokens as usize).concat()
            });
            serde_json::json!({ "answer": answer }).to_string()
        }
        (ResponseFormat::JsonSchema { name, schema }, _) => schema::instance(schema, 0)
            .map_err(|why| {
                ApiError::invalid(format!(
                    "fake-provider cannot generate an instance of text.format '{name}': {why}"
                ))
                .param("text.format.schema")
            })?
            .to_string(),
    };
    Ok(tokenized(req.tokenizer, budget, &text))
}

// ------------------------------------------------------------------- stream

/// `obfuscation` of a delta: characters that pad the delta to a multiple of 16, derived from
/// the response id and the event's sequence number.
fn obfuscation(req: &CreateRequest, response_id: &str, seq: usize, delta: &str) -> Option<String> {
    if !req.obfuscation {
        return None;
    }
    let n = 16 - delta.chars().count() % 16;
    let digest = hex::encode(Sha256::digest(format!("{response_id}#obf{seq}")));
    Some(digest.chars().take(n).collect())
}

/// The events of the whole stream, `response.created` to `response.completed` (or
/// `response.incomplete`).
pub fn frames(req: &CreateRequest, turn: &Turn, output: &[OutputItem<'_>]) -> Vec<String> {
    let mut f = Frames::default();
    let started = turn.in_progress(req);
    f.push("response.created", ResponseBody { response: started });
    f.push("response.in_progress", ResponseBody { response: started });
    for (index, item) in output.iter().enumerate() {
        match item {
            OutputItem::Reasoning(_) => {
                f.push(
                    "response.output_item.added",
                    ItemBody {
                        output_index: index,
                        item,
                    },
                );
            }
            OutputItem::Message(m) => message_events(&mut f, req, turn, index, m),
            OutputItem::FunctionCall(c) => call_events(&mut f, req, turn, index, c),
        }
        f.push(
            "response.output_item.done",
            ItemBody {
                output_index: index,
                item,
            },
        );
    }
    let kind = if turn.incomplete {
        "response.incomplete"
    } else {
        "response.completed"
    };
    f.push(
        kind,
        ResponseBody {
            response: turn.view(req, output),
        },
    );
    f.frames
}

fn message_events(f: &mut Frames, req: &CreateRequest, turn: &Turn, index: usize, m: &MessageItem) {
    let added = OutputItem::Message(MessageItem {
        status: "in_progress",
        content: Vec::new(),
        ..m.clone()
    });
    f.push(
        "response.output_item.added",
        ItemBody {
            output_index: index,
            item: &added,
        },
    );
    f.push("response.content_part.added", part(m.id, index, ""));
    if let Some(Said::Text { completion, .. }) = &turn.said {
        for piece in &completion.pieces {
            let obfuscation = obfuscation(req, &turn.id, f.next_seq(), &piece.text);
            f.push(
                "response.output_text.delta",
                TextDelta {
                    item_id: m.id,
                    output_index: index,
                    content_index: 0,
                    delta: &piece.text,
                    logprobs: [],
                    obfuscation,
                },
            );
        }
    }
    let text = m.content.first().map_or("", |p| p.text);
    f.push(
        "response.output_text.done",
        TextDone {
            item_id: m.id,
            output_index: index,
            content_index: 0,
            text,
            logprobs: [],
        },
    );
    f.push("response.content_part.done", part(m.id, index, text));
}

/// A `content_part` event's body: the message's first (only) part with `text`.
fn part<'a>(item_id: &'a str, output_index: usize, text: &'a str) -> PartBody<'a> {
    PartBody {
        item_id,
        output_index,
        content_index: 0,
        part: OutputText::new(text),
    }
}

fn call_events(
    f: &mut Frames,
    req: &CreateRequest,
    turn: &Turn,
    index: usize,
    c: &FunctionCallItem,
) {
    let added = OutputItem::FunctionCall(FunctionCallItem {
        status: "in_progress",
        arguments: "",
        ..c.clone()
    });
    f.push(
        "response.output_item.added",
        ItemBody {
            output_index: index,
            item: &added,
        },
    );
    for piece in anthropic::json_pieces(c.arguments, ARGUMENT_PIECE_BYTES) {
        let obfuscation = obfuscation(req, &turn.id, f.next_seq(), piece);
        f.push(
            "response.function_call_arguments.delta",
            ArgumentsDelta {
                item_id: c.id,
                output_index: index,
                delta: piece,
                obfuscation,
            },
        );
    }
    f.push(
        "response.function_call_arguments.done",
        ArgumentsDone {
            item_id: c.id,
            output_index: index,
            arguments: c.arguments,
        },
    );
}

/// What follows the first `n` events of a stream that fails: an `error` event and
/// `response.failed`.
pub fn failure_frames(req: &CreateRequest, turn: &Turn, n: usize) -> Vec<String> {
    let mut f = Frames::starting_at(n);
    f.push(
        "error",
        ErrorEventBody {
            error: StreamError {
                kind: "server_error",
                code: "server_error",
                message: STREAM_ERROR_MESSAGE,
                param: None,
            },
        },
    );
    f.push(
        "response.failed",
        ResponseBody {
            response: turn.failed(req),
        },
    );
    f.frames
}

/// The input items as `GET /responses/{id}/input_items` lists them: each with an id (derived
/// from the response's when the request gave none) and a status.
pub fn input_items(req: &CreateRequest, response_id: &str) -> Vec<Value> {
    req.input
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let mut item = item.clone();
            if let Some(obj) = item.as_object_mut() {
                let prefix = match obj.get("type").and_then(Value::as_str) {
                    Some("message") => "msg_",
                    Some("function_call") => "fc_",
                    Some("function_call_output") => "fco_",
                    Some("reasoning") => "rs_",
                    _ => "item_",
                };
                obj.entry("id").or_insert_with(|| {
                    Value::String(derived_id(prefix, response_id, &format!("in{i}")))
                });
                obj.entry("status")
                    .or_insert_with(|| Value::String("completed".to_owned()));
            }
            item
        })
        .collect()
}
