//! OpenAI request bodies: what the filter must know about them, and how it rewrites them.
//!
//! The body is parsed once. The top level is read as a list of `(key, raw value)` pairs that
//! borrow from the body, so fields the filter does not care about are never decoded, and a
//! rewrite (`model`, `stream_options`) is a splice of raw slices rather than a round trip through
//! a `serde_json::Value` tree. Duplicate top-level keys keep the last value, as OpenAI's own
//! parser does, and the rewritten body carries just that one, so the provider and the filter can
//! never disagree about which `model` was asked for. Only the fields that are counted
//! (`messages`, `prompt`, `input`; a Responses request's `instructions` and `input`) are decoded
//! further, into borrowed typed structs.
//!
//! `endpoint` tells the endpoint from the path (and the Responses API's other paths), `parse`
//! reads a body, `prompt` decodes and counts the prompt, `responses` does both for the Responses
//! API and answers its counting endpoint, `rewrite` writes the body sent upstream.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

mod endpoint;
mod parse;
mod prompt;
mod responses;
mod rewrite;

pub use endpoint::{responses_path, Endpoint, ResponsesPath, MAX_RESPONSE_ID_BYTES};
use prompt::Prompt;
pub use responses::input_tokens_answer;

/// The top level of a JSON object as borrowed raw members, in order, last duplicate winning.
struct TopLevel<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for TopLevel<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = TopLevel<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Self::Value, M::Error> {
                let mut members: Vec<(Cow<'a, str>, &'a RawValue)> = Vec::new();
                while let Some(k) = m.next_key::<Cow<'de, str>>()? {
                    let v: &'de RawValue = m.next_value()?;
                    if let Some(slot) = members.iter_mut().find(|(key, _)| *key == k) {
                        slot.1 = v;
                    } else {
                        members.push((k, v));
                    }
                }
                Ok(TopLevel(members))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

impl<'a> TopLevel<'a> {
    fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

fn is_null(v: &RawValue) -> bool {
    v.get() == "null"
}

/// A parsed OpenAI request: what routing, counting and rewriting need.
pub struct Request<'a> {
    pub endpoint: Endpoint,
    pub model: Cow<'a, str>,
    pub stream: bool,
    /// Whether the client's stream carries usage: `stream_options.include_usage` as the client
    /// sent it; always for the Responses API, whose streams end with usage.
    pub include_usage: bool,
    top: TopLevel<'a>,
    prompt: Prompt<'a>,
}

impl<'a> Request<'a> {
    /// A top-level field as the client sent it (`null` reads as absent).
    pub fn param(&self, key: &str) -> Option<&'a RawValue> {
        self.top.get(key).filter(|v| !is_null(v))
    }

    /// How many answers the request asks for (`n`, at least 1; the Responses API has no `n`).
    pub fn choices(&self) -> u64 {
        if self.endpoint == Endpoint::Responses {
            return 1;
        }
        self.top
            .get("n")
            .filter(|v| !is_null(v))
            .and_then(|v| v.get().parse::<u64>().ok())
            .unwrap_or(1)
            .max(1)
    }

    /// The most completion tokens the request allows: `max_completion_tokens` (or the older
    /// `max_tokens`) times `n`, a Responses request's `max_output_tokens`. `None` when the
    /// request sets no cap. Embeddings produce none; legacy completions default to 16 as OpenAI
    /// documents.
    pub fn max_output_tokens(&self) -> Option<u64> {
        let num = |k: &str| {
            self.top
                .get(k)
                .filter(|v| !is_null(v))
                .and_then(|v| v.get().parse::<u64>().ok())
        };
        let n = self.choices();
        let cap = match self.endpoint {
            Endpoint::Embeddings => return Some(0),
            Endpoint::ChatCompletions => num("max_completion_tokens").or_else(|| num("max_tokens")),
            Endpoint::Completions => Some(num("max_tokens").unwrap_or(16)),
            Endpoint::Responses => num("max_output_tokens"),
        };
        cap.map(|c| c.saturating_mul(n))
    }
}

#[cfg(test)]
mod tests;
