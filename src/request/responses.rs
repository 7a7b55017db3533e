//! The Responses API's request (`POST .../v1/responses`): its prompt decoded and checked, counted
//! as the equivalent chat conversation, and the answer of its counting endpoint
//! (`POST .../v1/responses/input_tokens`).
//!
//! # How the prompt is counted
//!
//! OpenAI renders a Responses request into the same token format as a chat request, so it is
//! counted with the chat formula of [`crate::tokens`] (3 tokens framing each message, 1 for a
//! standard role, the tokens of its texts, 3 priming the reply), item by item:
//!
//! - `instructions` (a non-empty string): a system message, `3 + 1 + tokens(instructions)`.
//! - `input` as a string: one user message, `3 + 1 + tokens(input)`.
//! - a message item (`type: "message"`, or no `type` and a `role`): `3 + tokens(role)` (1 for
//!   user, assistant, system, developer) plus its content: a string's tokens, or per part the
//!   tokens of `input_text` / `output_text` `text` and of `refusal` `refusal`; an `input_image`
//!   counts 85 (OpenAI's low-detail charge, the image's size being unknown here) and an
//!   `input_file` or `input_audio` nothing, both flagging the count as estimated.
//! - a `function_call` item: `tokens(name) + tokens(arguments) + 1`, and a `custom_tool_call`
//!   `tokens(name) + tokens(input) + 1`, as chat counts a tool call; a run of consecutive calls
//!   shares one assistant message's framing, `3 + 1` (parallel calls are one assistant message
//!   in chat). Estimated, as chat's tool calls are.
//! - a `function_call_output` or `custom_tool_call_output` item: a tool message,
//!   `3 + 1 + tokens(output)` (a string, or parts as for a message).
//! - other items (`reasoning`, `item_reference`, hosted tools' calls...) count nothing and flag
//!   the count as estimated: what of them re-enters the context is the provider's business.
//! - 3 priming the reply, once.
//! - `tools`: the JSON text of the array, plus 1, estimated, exactly as chat counts `tools`
//!   (an empty array counts nothing).
//! - `previous_response_id`, `conversation` or `prompt` set: the context they add is stored at
//!   the provider and invisible here; the count is flagged as estimated (a lower bound).
//!
//! So `{"input": "Hello"}` counts `3 + 1 + 1 + 3 = 8`, as the chat request with one user message
//! "Hello" does. Not counted, as for chat: `text.format`'s schema and `reasoning` settings.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::prompt::Content;
use super::{is_null, Endpoint, Request, TopLevel};
use crate::error::HttpError;
use crate::tokens::{self, Count, Encoding};

/// The counted part of a Responses request, decoded once.
pub(super) struct Conversation<'a> {
    instructions: Option<Cow<'a, str>>,
    items: Vec<Item<'a>>,
    /// `tools` defines at least one tool (an empty array adds nothing to the prompt).
    pub(super) has_tools: bool,
    /// Part of the context is stored at the provider (`previous_response_id`...).
    hidden_context: bool,
}

/// One input item, as counted.
enum Item<'a> {
    Message {
        role: Cow<'a, str>,
        content: Content<'a>,
    },
    /// A function or custom tool call: its name and its arguments (or input).
    Call {
        name: Option<Cow<'a, str>>,
        arguments: Option<Cow<'a, str>>,
    },
    /// A tool call's output.
    Output(Content<'a>),
    /// An item whose tokens are not counted (reasoning, references, hosted tools).
    Uncounted,
}

/// `input`: a string or an array of items.
enum InputField<'a> {
    Text(Cow<'a, str>),
    Items(Vec<RawItem<'a>>),
}

/// An input item's members that are counted, decoded by its `type`.
#[derive(Deserialize)]
struct RawItem<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    role: Option<&'a RawValue>,
    #[serde(default)]
    content: Option<&'a RawValue>,
    #[serde(default)]
    name: Option<&'a RawValue>,
    #[serde(default)]
    arguments: Option<&'a RawValue>,
    #[serde(default)]
    input: Option<&'a RawValue>,
    #[serde(default)]
    output: Option<&'a RawValue>,
}

/// A tool definition: only its type is checked.
#[derive(Deserialize)]
struct Tool<'a> {
    #[serde(rename = "type", borrow)]
    _kind: Cow<'a, str>,
}

/// Decode and check the counted fields of a Responses request: `instructions`, `input` and
/// `tools`. Errors are the 400s OpenAI gives, naming the field.
pub(super) fn conversation<'a>(top: &TopLevel<'a>) -> Result<Conversation<'a>, HttpError> {
    let instructions = match top.get("instructions").filter(|v| !is_null(v)) {
        None => None,
        Some(raw) => match serde_json::from_str::<Content<'a>>(raw.get()) {
            Ok(Content::Text(t)) => Some(t).filter(|t| !t.is_empty()),
            _ => {
                return Err(HttpError::invalid_param(
                    "instructions",
                    "Invalid type for 'instructions': expected a string.",
                ))
            }
        },
    };
    let has_tools = match top.get("tools").filter(|v| !is_null(v)) {
        None => false,
        Some(raw) => !serde_json::from_str::<Vec<Tool>>(raw.get())
            .map_err(|_| {
                HttpError::invalid_param(
                    "tools",
                    "Invalid 'tools': expected an array of tool objects, each with a string 'type'.",
                )
            })?
            .is_empty(),
    };
    let items = match top.get("input").filter(|v| !is_null(v)) {
        None => Vec::new(),
        Some(raw) => match serde_json::from_str::<InputField<'a>>(raw.get()) {
            Ok(InputField::Text(t)) => vec![Item::Message {
                role: Cow::Borrowed("user"),
                content: Content::Text(t),
            }],
            Ok(InputField::Items(raw)) => raw
                .into_iter()
                .enumerate()
                .map(|(i, r)| item(i, r))
                .collect::<Result<_, _>>()?,
            Err(e) => {
                return Err(HttpError::invalid_param(
                    "input",
                    format!("Invalid 'input': expected a string or an array of input items ({e})."),
                ))
            }
        },
    };
    let hidden_context = ["previous_response_id", "conversation", "prompt"]
        .iter()
        .any(|k| top.get(k).is_some_and(|v| !is_null(v)));
    Ok(Conversation {
        instructions,
        items,
        has_tools,
        hidden_context,
    })
}

/// `max_output_tokens`: absent, null, or a positive integer.
pub(super) fn check_max_output_tokens(top: &TopLevel<'_>) -> Result<(), HttpError> {
    match top.get("max_output_tokens").filter(|v| !is_null(v)) {
        Some(raw) if !raw.get().parse::<u64>().is_ok_and(|n| n > 0) => {
            Err(HttpError::invalid_param(
                "max_output_tokens",
                "Invalid 'max_output_tokens': expected a positive integer.",
            ))
        }
        _ => Ok(()),
    }
}

fn bad_item(i: usize, what: &str) -> HttpError {
    HttpError::invalid_param("input", format!("Invalid 'input[{i}]': {what}."))
}

/// A member that must be a string when present: its text, `None` when absent or null.
fn string<'a>(
    raw: Option<&'a RawValue>,
    i: usize,
    member: &str,
) -> Result<Option<Cow<'a, str>>, HttpError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    match serde_json::from_str::<Content<'a>>(raw.get()) {
        Ok(Content::Text(t)) => Ok(Some(t)),
        Ok(Content::None) => Ok(None),
        _ => Err(bad_item(i, &format!("'{member}' must be a string"))),
    }
}

/// A member that is a string or an array of content parts (or absent or null).
fn content<'a>(
    raw: Option<&'a RawValue>,
    i: usize,
    member: &str,
) -> Result<Content<'a>, HttpError> {
    let Some(raw) = raw else {
        return Ok(Content::None);
    };
    serde_json::from_str::<Content<'a>>(raw.get()).map_err(|_| {
        bad_item(
            i,
            &format!("'{member}' must be a string or an array of content parts with a 'type'"),
        )
    })
}

/// Input item `i`, decoded by its type.
fn item(i: usize, raw: RawItem<'_>) -> Result<Item<'_>, HttpError> {
    let kind = raw.kind.as_deref();
    Ok(match kind {
        None | Some("message") => {
            let Some(role) = string(raw.role, i, "role")? else {
                return Err(bad_item(
                    i,
                    "an item needs a 'type', or a message a string 'role'",
                ));
            };
            Item::Message {
                role,
                content: content(raw.content, i, "content")?,
            }
        }
        Some("function_call") => Item::Call {
            name: string(raw.name, i, "name")?,
            arguments: string(raw.arguments, i, "arguments")?,
        },
        Some("custom_tool_call") => Item::Call {
            name: string(raw.name, i, "name")?,
            arguments: string(raw.input, i, "input")?,
        },
        Some("function_call_output" | "custom_tool_call_output") => {
            Item::Output(content(raw.output, i, "output")?)
        }
        Some(_) => Item::Uncounted,
    })
}

impl Conversation<'_> {
    /// The tokens of the conversation as the module documentation says (`tools` apart).
    pub(super) fn count(&self, enc: &tokens::Counter) -> Count {
        let mut c = Count {
            tokens: 0,
            estimated: self.hidden_context,
        };
        let frame = tokens::TOKENS_PER_MESSAGE + 1;
        if let Some(i) = &self.instructions {
            c.tokens += frame + enc.count(i);
        }
        let mut in_calls = false;
        for item in &self.items {
            let call = matches!(item, Item::Call { .. });
            if call && !in_calls {
                c.tokens += frame;
            }
            in_calls = call;
            c.add(item.count(enc));
        }
        c.tokens += tokens::REPLY_PRIMING;
        c
    }
}

impl Item<'_> {
    fn count(&self, enc: &tokens::Counter) -> Count {
        match self {
            Item::Message { role, content } => {
                let mut c = Count {
                    tokens: tokens::TOKENS_PER_MESSAGE + tokens::role_tokens(enc.encoding(), role),
                    estimated: false,
                };
                c.add(count_content(content, enc));
                c
            }
            Item::Call { name, arguments } => Count {
                tokens: [name, arguments]
                    .into_iter()
                    .flatten()
                    .map(|t| enc.count(t))
                    .sum::<u64>()
                    + tokens::TOOL_OVERHEAD,
                estimated: true,
            },
            Item::Output(content) => {
                let mut c = Count {
                    tokens: tokens::TOKENS_PER_MESSAGE + 1,
                    estimated: false,
                };
                c.add(count_content(content, enc));
                c
            }
            Item::Uncounted => Count {
                tokens: 0,
                estimated: true,
            },
        }
    }
}

/// A message's content or a tool output: a string, or Responses content parts.
fn count_content(content: &Content<'_>, enc: &tokens::Counter) -> Count {
    match content {
        Content::None => Count::default(),
        Content::Text(t) => Count {
            tokens: enc.count(t),
            estimated: false,
        },
        Content::Parts(parts) => {
            let mut c = Count::default();
            for p in parts {
                match (p.kind.as_ref(), &p.text, &p.refusal) {
                    ("input_text" | "output_text", Some(t), _) => c.tokens += enc.count(t),
                    ("refusal", _, Some(r)) => c.tokens += enc.count(r),
                    ("input_image", _, _) => c.add(Count {
                        tokens: tokens::IMAGE_TOKENS_ESTIMATE,
                        estimated: true,
                    }),
                    // Files and audio are priced by the provider in ways not visible here.
                    _ => c.estimated = true,
                }
            }
            c
        }
    }
}

/// The answer of `POST .../v1/responses/input_tokens` for `body`, as OpenAI gives it:
/// `{"object":"response.input_tokens","input_tokens":N}`, N counted as a Responses request's
/// prompt is (the module documentation), with `encoding`, exactly up to `max_exact_bytes` of
/// text (see [`Request::count_prompt_within`]). The body is checked as a Responses request's,
/// except that `model` is optional there, as in OpenAI's API.
pub fn input_tokens_answer(
    body: &[u8],
    encoding: Encoding,
    max_exact_bytes: usize,
) -> Result<Vec<u8>, HttpError> {
    let top = super::parse::top_level(body)?;
    let model = match top.get("model").filter(|v| !is_null(v)) {
        Some(_) => super::parse::model(&top)?,
        None => Cow::Borrowed(""),
    };
    let prompt = super::prompt::Prompt::Responses(conversation(&top)?);
    let req = Request {
        endpoint: Endpoint::Responses,
        model,
        stream: false,
        include_usage: true,
        top,
        prompt,
    };
    let n = req.count_prompt_within(encoding, max_exact_bytes).tokens;
    Ok(input_tokens_body(n))
}

impl Request<'_> {
    /// The answer of `POST .../v1/responses/input_tokens` for this request, as
    /// [`input_tokens_answer`] gives it, but only for an exact count: one flagged as estimated
    /// (text past `max_exact_bytes`, an image or file part, `tools`, context stored at the
    /// provider) is refused, a 400 on `input`, rather than answered with a bound.
    pub fn exact_input_tokens_answer(
        &self,
        encoding: Encoding,
        max_exact_bytes: usize,
    ) -> Result<Vec<u8>, HttpError> {
        let count = self.count_prompt_within(encoding, max_exact_bytes);
        if count.estimated {
            return Err(HttpError::invalid_param(
                "input",
                "The input is too large to count exactly here.",
            ));
        }
        Ok(input_tokens_body(count.tokens))
    }
}

/// `{"object":"response.input_tokens","input_tokens":N}`, OpenAI's answer.
fn input_tokens_body(n: u64) -> Vec<u8> {
    format!(r#"{{"object":"response.input_tokens","input_tokens":{n}}}"#).into_bytes()
}

impl<'de: 'a, 'a> Deserialize<'de> for InputField<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = InputField<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of input items")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(InputField::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(InputField::Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(InputField::Text(Cow::Owned(v)))
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut s: S) -> Result<Self::Value, S::Error> {
                let mut items = Vec::new();
                while let Some(item) = s.next_element::<RawItem<'a>>()? {
                    items.push(item);
                }
                Ok(InputField::Items(items))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests;
