//! The counted part of a request (`messages`, `prompt`, `input`; the Responses API's in
//! [`super::responses`]): decoded once into borrowed typed structs, and counted as the provider
//! will count it.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::responses::Conversation;
use super::{is_null, Request};
use crate::error::HttpError;
use crate::tokens::{self, Count, Encoding};
use crate::wire::{Function, ToolCall};

/// The counted part of a request, decoded once.
pub(super) enum Prompt<'a> {
    Chat(Vec<Message<'a>>),
    Texts(Texts<'a>),
    Responses(Conversation<'a>),
}

pub(super) fn parse_messages<'a>(raw: Option<&'a RawValue>) -> Result<Vec<Message<'a>>, HttpError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    serde_json::from_str::<Vec<Message<'a>>>(raw.get()).map_err(|e| {
        HttpError::invalid_param(
            "messages",
            format!("'messages' must be an array of message objects with a string 'role' ({e})."),
        )
    })
}

pub(super) fn parse_texts<'a>(
    raw: Option<&'a RawValue>,
    field: &'static str,
) -> Result<Texts<'a>, HttpError> {
    let Some(raw) = raw else {
        return Ok(Texts::Tokens(0));
    };
    serde_json::from_str::<Texts<'a>>(raw.get()).map_err(|_| {
        HttpError::invalid_param(
            field,
            format!("'{field}' must be a string, an array of strings, or token arrays."),
        )
    })
}

impl Request<'_> {
    /// Prompt tokens as the provider will count them.
    pub fn count_prompt(&self, enc: Encoding) -> Count {
        self.count_prompt_within(enc, usize::MAX)
    }

    /// The prompt's tokens, counted exactly up to `max_exact_bytes` of text and bounded above
    /// beyond it (see `tokens::Counter`; the count is then flagged as estimated).
    pub fn count_prompt_within(&self, enc: Encoding, max_exact_bytes: usize) -> Count {
        let counter = tokens::Counter::new(enc, max_exact_bytes);
        let mut count = self.count_with(&counter);
        count.estimated |= counter.bounded();
        count
    }

    fn count_with(&self, enc: &tokens::Counter) -> Count {
        match &self.prompt {
            Prompt::Chat(messages) => {
                let mut count = Count::default();
                for m in messages {
                    count.add(m.count(enc));
                }
                count.tokens += tokens::REPLY_PRIMING;
                count.add(self.count_tools(enc));
                count
            }
            Prompt::Texts(t) => t.count(enc),
            Prompt::Responses(c) => {
                let mut count = c.count(enc);
                if c.has_tools {
                    count.add(self.count_tools(enc));
                }
                count
            }
        }
    }

    /// The `tools` definitions. OpenAI renders them into a private format; counting their JSON
    /// text (plus [`tokens::TOOL_OVERHEAD`]) is the usual approximation, flagged as estimated.
    fn count_tools(&self, enc: &tokens::Counter) -> Count {
        match self.top.get("tools").filter(|v| !is_null(v)) {
            Some(raw) => Count {
                tokens: enc.count(raw.get()) + tokens::TOOL_OVERHEAD,
                estimated: true,
            },
            None => Count::default(),
        }
    }
}

/// One chat message, borrowing its strings from the body where they have no escapes.
#[derive(Deserialize)]
pub(super) struct Message<'a> {
    #[serde(borrow)]
    role: Cow<'a, str>,
    #[serde(default, borrow)]
    content: Content<'a>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<ToolCall<'a>>>,
    #[serde(default, borrow)]
    function_call: Option<Function<'a>>,
    #[serde(default, borrow)]
    refusal: Option<Cow<'a, str>>,
}

impl Message<'_> {
    fn count(&self, enc: &tokens::Counter) -> Count {
        let mut c = Count {
            tokens: tokens::TOKENS_PER_MESSAGE + tokens::role_tokens(enc.encoding(), &self.role),
            estimated: false,
        };
        c.add(self.content.count(enc));
        if let Some(name) = &self.name {
            c.tokens += enc.count(name) + tokens::TOKENS_PER_NAME;
        }
        if let Some(r) = &self.refusal {
            c.tokens += enc.count(r);
        }
        let calls = self
            .tool_calls
            .iter()
            .flatten()
            .filter_map(|t| t.function.as_ref())
            .chain(self.function_call.as_ref());
        for f in calls {
            c.add(Count {
                tokens: f.texts().map(|t| enc.count(t)).sum::<u64>() + tokens::TOOL_OVERHEAD,
                estimated: true,
            });
        }
        c
    }
}

/// `content`: a string, null, or an array of parts.
#[derive(Default)]
pub(super) enum Content<'a> {
    #[default]
    None,
    Text(Cow<'a, str>),
    Parts(Vec<Part<'a>>),
}

/// A content part: its type and the texts counted.
#[derive(Deserialize)]
pub(super) struct Part<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(super) text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(super) refusal: Option<Cow<'a, str>>,
}

impl Content<'_> {
    fn count(&self, enc: &tokens::Counter) -> Count {
        match self {
            Content::None => Count::default(),
            Content::Text(t) => Count {
                tokens: enc.count(t),
                estimated: false,
            },
            Content::Parts(parts) => {
                let mut c = Count::default();
                for p in parts {
                    match (p.kind.as_ref(), &p.text, &p.refusal) {
                        ("text", Some(t), _) => c.tokens += enc.count(t),
                        ("refusal", _, Some(r)) => c.tokens += enc.count(r),
                        ("image_url", _, _) => c.add(Count {
                            tokens: tokens::IMAGE_TOKENS_ESTIMATE,
                            estimated: true,
                        }),
                        // Audio and files are priced by the provider in ways not visible here.
                        _ => c.estimated = true,
                    }
                }
                c
            }
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Content<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Content<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, null, or an array of content parts")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Content::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Content::Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Content::Text(Cow::Owned(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Content::None)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Content::None)
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut s: S) -> Result<Self::Value, S::Error> {
                let mut parts = Vec::new();
                while let Some(p) = s.next_element::<Part<'a>>()? {
                    parts.push(p);
                }
                Ok(Content::Parts(parts))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// `prompt` / `input`: a string, strings, a token array, or token arrays.
pub(super) enum Texts<'a> {
    Strings(Vec<Cow<'a, str>>),
    Tokens(u64),
}

impl Texts<'_> {
    fn count(&self, enc: &tokens::Counter) -> Count {
        match self {
            Texts::Strings(s) => Count {
                tokens: s.iter().map(|t| enc.count(t)).sum(),
                estimated: false,
            },
            Texts::Tokens(n) => Count {
                tokens: *n,
                estimated: false,
            },
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Texts<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// One element of the array form: a string, a token id, or a token array.
        enum Item<'a> {
            Text(Cow<'a, str>),
            Token,
            Tokens(u64),
        }
        impl<'de: 'a, 'a> Deserialize<'de> for Item<'a> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V<'a>(std::marker::PhantomData<&'a ()>);
                impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
                    type Value = Item<'a>;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str("a string, a token id or a token array")
                    }
                    fn visit_borrowed_str<E: de::Error>(
                        self,
                        v: &'de str,
                    ) -> Result<Self::Value, E> {
                        Ok(Item::Text(Cow::Borrowed(v)))
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                        Ok(Item::Text(Cow::Owned(v.to_string())))
                    }
                    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                        Ok(Item::Token)
                    }
                    fn visit_seq<S: SeqAccess<'de>>(
                        self,
                        mut s: S,
                    ) -> Result<Self::Value, S::Error> {
                        let mut n = 0;
                        while s.next_element::<u64>()?.is_some() {
                            n += 1;
                        }
                        Ok(Item::Tokens(n))
                    }
                }
                d.deserialize_any(V(std::marker::PhantomData))
            }
        }

        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Texts<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Texts::Strings(vec![Cow::Borrowed(v)]))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Texts::Strings(vec![Cow::Owned(v.to_string())]))
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut s: S) -> Result<Self::Value, S::Error> {
                let mut strings = Vec::new();
                let mut tokens = 0u64;
                while let Some(item) = s.next_element::<Item<'a>>()? {
                    match item {
                        Item::Text(t) => strings.push(t),
                        Item::Token => tokens += 1,
                        Item::Tokens(n) => tokens += n,
                    }
                }
                match (strings.is_empty(), tokens) {
                    (false, 0) => Ok(Texts::Strings(strings)),
                    (true, n) => Ok(Texts::Tokens(n)),
                    _ => Err(de::Error::custom("mixed strings and tokens")),
                }
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}
