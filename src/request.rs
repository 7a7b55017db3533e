//! OpenAI request bodies: what the filter must know about them, and how it rewrites them.
//!
//! The body is parsed once. The top level is read as a list of `(key, raw value)` pairs that
//! borrow from the body, so fields the filter does not care about are never decoded, and a
//! rewrite (`model`, `stream_options`) is a splice of raw slices rather than a round trip through
//! a `serde_json::Value` tree. Duplicate top-level keys keep the last value, as OpenAI's own
//! parser does, and the rewritten body carries just that one, so the provider and the filter can
//! never disagree about which `model` was asked for. Only the fields that are counted
//! (`messages`, `prompt`, `input`) are decoded further, into borrowed typed structs.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::HttpError;
use crate::tokens::{self, Count, Encoding};
use crate::wire::{Function, ToolCall};

/// The OpenAI endpoints the filter understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
}

impl Endpoint {
    /// The endpoint a request targets, from its method and path (query ignored). Paths may carry
    /// a prefix (`/openai/v1/chat/completions`).
    pub fn from_request(method: &str, path: &str) -> Option<Endpoint> {
        if method != "POST" {
            return None;
        }
        let path = path.split(['?', '#']).next().unwrap_or(path);
        let path = path.trim_end_matches('/');
        if path.ends_with("/chat/completions") {
            Some(Endpoint::ChatCompletions)
        } else if path.ends_with("/completions") {
            Some(Endpoint::Completions)
        } else if path.ends_with("/embeddings") {
            Some(Endpoint::Embeddings)
        } else {
            None
        }
    }

    /// The path suffix OpenAI-style APIs serve this endpoint under.
    pub fn path_suffix(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat/completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat.completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
        }
    }

    /// Whether the endpoint can stream.
    fn streams(self) -> bool {
        !matches!(self, Endpoint::Embeddings)
    }
}

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

/// A parsed OpenAI request: what routing, counting and rewriting need.
pub struct Request<'a> {
    pub endpoint: Endpoint,
    pub model: Cow<'a, str>,
    pub stream: bool,
    /// `stream_options.include_usage` as the client sent it.
    pub include_usage: bool,
    top: TopLevel<'a>,
    prompt: Prompt<'a>,
}

/// The counted part of a request, decoded once.
enum Prompt<'a> {
    Chat(Vec<Message<'a>>),
    Texts(Texts<'a>),
}

fn parse_messages<'a>(raw: Option<&'a RawValue>) -> Result<Vec<Message<'a>>, HttpError> {
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

fn parse_texts<'a>(raw: Option<&'a RawValue>, field: &'static str) -> Result<Texts<'a>, HttpError> {
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

fn is_null(v: &RawValue) -> bool {
    v.get() == "null"
}

impl<'a> Request<'a> {
    /// Parse a request body. Errors are the 400 replies OpenAI would give. A body is JSON
    /// by the one rule every path applies ([`crate::wire::check`]), so a body accepted here is
    /// accepted by the rewrite, the translations and the cache key alike.
    pub fn parse(endpoint: Endpoint, body: &'a [u8]) -> Result<Request<'a>, HttpError> {
        crate::wire::check(body).map_err(|e| HttpError::invalid_json(&e.to_string()))?;
        let top: TopLevel<'a> = serde_json::from_slice(body).map_err(|e| {
            let detail = match e.classify() {
                serde_json::error::Category::Data => "expected a JSON object".to_string(),
                _ => e.to_string(),
            };
            HttpError::invalid_json(&detail)
        })?;
        let model = match top.get("model").filter(|v| !is_null(v)) {
            None => return Err(HttpError::missing_param("model")),
            Some(raw) => match serde_json::from_str::<Cow<'a, str>>(raw.get()) {
                Ok(m) if !m.trim().is_empty() => m,
                Ok(_) => {
                    return Err(HttpError::invalid_param(
                        "model",
                        "'model' must not be empty.",
                    ))
                }
                Err(_) => {
                    return Err(HttpError::invalid_param(
                        "model",
                        "'model' must be a string.",
                    ))
                }
            },
        };
        let stream = match top.get("stream").filter(|v| !is_null(v)) {
            None => false,
            Some(raw) => match raw.get() {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(HttpError::invalid_param(
                        "stream",
                        "'stream' must be a boolean.",
                    ))
                }
            },
        };
        if stream && !endpoint.streams() {
            return Err(HttpError::invalid_param(
                "stream",
                "This endpoint does not stream.",
            ));
        }
        let include_usage =
            match top.get("stream_options").filter(|v| !is_null(v)) {
                None => false,
                Some(raw) => {
                    #[derive(Deserialize)]
                    struct StreamOptions {
                        #[serde(default)]
                        include_usage: Option<bool>,
                    }
                    match serde_json::from_str::<StreamOptions>(raw.get()) {
                        Ok(o) => o.include_usage.unwrap_or(false),
                        Err(_) => return Err(HttpError::invalid_param(
                            "stream_options",
                            "'stream_options' must be an object with a boolean 'include_usage'.",
                        )),
                    }
                }
            };
        let required = match endpoint {
            Endpoint::ChatCompletions => "messages",
            Endpoint::Completions => "prompt",
            Endpoint::Embeddings => "input",
        };
        if top.get(required).filter(|v| !is_null(v)).is_none() {
            return Err(HttpError::missing_param(required));
        }
        // Decode the counted field now, once: a malformed one is a 400, not a silent 0.
        let prompt = match endpoint {
            Endpoint::ChatCompletions => {
                let messages = parse_messages(top.get("messages"))?;
                if messages.is_empty() {
                    return Err(HttpError::invalid_param(
                        "messages",
                        "'messages' must contain at least one message.",
                    ));
                }
                Prompt::Chat(messages)
            }
            Endpoint::Completions => Prompt::Texts(parse_texts(top.get("prompt"), "prompt")?),
            Endpoint::Embeddings => Prompt::Texts(parse_texts(top.get("input"), "input")?),
        };
        Ok(Request {
            endpoint,
            model,
            stream,
            include_usage,
            top,
            prompt,
        })
    }

    /// How many answers the request asks for (`n`, at least 1).
    pub fn choices(&self) -> u64 {
        self.top
            .get("n")
            .filter(|v| !is_null(v))
            .and_then(|v| v.get().parse::<u64>().ok())
            .unwrap_or(1)
            .max(1)
    }

    /// The most completion tokens the request allows: `max_completion_tokens` (or the older
    /// `max_tokens`) times `n`. `None` when the request sets no cap. Embeddings produce none;
    /// legacy completions default to 16 as OpenAI documents.
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
        };
        cap.map(|c| c.saturating_mul(n))
    }

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
                if let Some(raw) = self.top.get("tools").filter(|v| !is_null(v)) {
                    // Tool definitions are rendered by OpenAI into a private format; counting
                    // their JSON is the usual approximation.
                    count.add(Count {
                        tokens: enc.count(raw.get()) + tokens::TOOL_OVERHEAD,
                        estimated: true,
                    });
                }
                count
            }
            Prompt::Texts(t) => t.count(enc),
        }
    }

    /// The body to send upstream, if it must change: `model` replaced by `new_model`, and
    /// `stream_options.include_usage` set when `add_include_usage`. `None` means "send as is".
    pub fn rewrite(&self, new_model: Option<&str>, add_include_usage: bool) -> Option<Vec<u8>> {
        let model_changes = new_model.is_some_and(|m| m != self.model);
        if !model_changes && !add_include_usage {
            return None;
        }
        let mut out = Vec::with_capacity(
            self.top
                .0
                .iter()
                .map(|(k, v)| k.len() + v.get().len() + 4)
                .sum::<usize>()
                + 64,
        );
        out.push(b'{');
        let mut first = true;
        let mut push_member = |out: &mut Vec<u8>, key: &str, value: &[u8]| {
            if !first {
                out.push(b',');
            }
            first = false;
            // Keys are re-encoded (they may have been unescaped); values are copied raw.
            let _ = serde_json::to_writer(&mut *out, key);
            out.push(b':');
            out.extend_from_slice(value);
        };
        let mut wrote_stream_options = false;
        for (k, v) in &self.top.0 {
            match (k.as_ref(), new_model) {
                ("model", Some(m)) if model_changes => {
                    let encoded = serde_json::to_vec(m).unwrap_or_default();
                    push_member(&mut out, k, &encoded);
                }
                ("stream_options", _) if add_include_usage => {
                    push_member(&mut out, k, &with_include_usage(v));
                    wrote_stream_options = true;
                }
                _ => push_member(&mut out, k, v.get().as_bytes()),
            }
        }
        if add_include_usage && !wrote_stream_options {
            push_member(&mut out, "stream_options", br#"{"include_usage":true}"#);
        }
        out.push(b'}');
        Some(out)
    }
}

/// `stream_options` with `include_usage: true`, keeping the client's other options.
fn with_include_usage(raw: &RawValue) -> Vec<u8> {
    match serde_json::from_str::<TopLevel>(raw.get()) {
        Ok(obj) => {
            let mut out = b"{\"include_usage\":true".to_vec();
            for (k, v) in obj.0.iter().filter(|(k, _)| k != "include_usage") {
                out.push(b',');
                let _ = serde_json::to_writer(&mut out, k.as_ref());
                out.push(b':');
                out.extend_from_slice(v.get().as_bytes());
            }
            out.push(b'}');
            out
        }
        Err(_) => br#"{"include_usage":true}"#.to_vec(),
    }
}

/// One chat message, borrowing its strings from the body where they have no escapes.
#[derive(Deserialize)]
struct Message<'a> {
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
enum Content<'a> {
    #[default]
    None,
    Text(Cow<'a, str>),
    Parts(Vec<Part<'a>>),
}

#[derive(Deserialize)]
struct Part<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    refusal: Option<Cow<'a, str>>,
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
enum Texts<'a> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::{anthropic_to_openai, openai_to_anthropic, Target};
    use serde_json::json;

    fn target(model: &str, default_max_tokens: u64) -> Target<'_> {
        Target {
            model,
            default_max_tokens,
        }
    }

    fn chat(v: serde_json::Value) -> Vec<u8> {
        v.to_string().into_bytes()
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            Endpoint::from_request("POST", "/v1/chat/completions"),
            Some(Endpoint::ChatCompletions)
        );
        assert_eq!(
            Endpoint::from_request("POST", "/openai/v1/chat/completions?x=1"),
            Some(Endpoint::ChatCompletions)
        );
        assert_eq!(
            Endpoint::from_request("POST", "/v1/completions"),
            Some(Endpoint::Completions)
        );
        assert_eq!(
            Endpoint::from_request("POST", "/v1/embeddings/"),
            Some(Endpoint::Embeddings)
        );
        assert_eq!(Endpoint::from_request("GET", "/v1/chat/completions"), None);
        assert_eq!(Endpoint::from_request("POST", "/v1/models"), None);
        assert_eq!(
            Endpoint::from_request("POST", "/v1/chat/completions/x"),
            None
        );
    }

    #[test]
    fn cookbook_counts() {
        // The OpenAI cookbook's example conversation: 129 prompt tokens for gpt-4o-class models
        // as reported by the API (o200k_base), 129 for gpt-4 (cl100k_base).
        let body = chat(json!({"model": "gpt-4o", "messages": [
            {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
            {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
            {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
            {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
            {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how to do better."},
            {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client deliverable."}
        ]}));
        let r = Request::parse(Endpoint::ChatCompletions, &body).unwrap();
        assert_eq!(
            r.count_prompt(Encoding::O200kBase),
            Count {
                tokens: 124,
                estimated: false
            }
        );
        assert_eq!(
            r.count_prompt(Encoding::Cl100kBase),
            Count {
                tokens: 129,
                estimated: false
            }
        );
    }

    #[test]
    fn hello() {
        let body =
            chat(json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}]}));
        let r = Request::parse(Endpoint::ChatCompletions, &body).unwrap();
        assert_eq!(r.count_prompt(Encoding::O200kBase).tokens, 8);
    }

    #[test]
    fn parts_images_tools_are_estimated() {
        let body = chat(json!({"model": "gpt-4o", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Hello"},
                                          {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"}
        ], "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}));
        let r = Request::parse(Endpoint::ChatCompletions, &body).unwrap();
        let c = r.count_prompt(Encoding::O200kBase);
        assert!(c.estimated);
        assert!(c.tokens > 85 + 8);
    }

    #[test]
    fn counting_is_exact_within_the_budget_and_bounded_above_past_it() {
        let long = "The quick brown fox jumps over the lazy dog. ".repeat(2000);
        let body = chat(json!({"model": "gpt-4o", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": long}
        ]}));
        let r = Request::parse(Endpoint::ChatCompletions, &body).unwrap();
        let exact = r.count_prompt(Encoding::O200kBase);
        assert!(!exact.estimated);
        // Room for everything: the same exact count.
        assert_eq!(
            r.count_prompt_within(Encoding::O200kBase, long.len() + 64),
            exact
        );
        // Room for the system message only: the long text counts as its bytes, flagged.
        let bounded = r.count_prompt_within(Encoding::O200kBase, 64);
        assert!(bounded.estimated);
        let system = Encoding::O200kBase.count("Be brief.");
        assert_eq!(
            bounded.tokens,
            3 + 1 + system + 3 + 1 + long.len() as u64 + 3,
            "system exact, the user's text as its bytes"
        );
        assert!(bounded.tokens >= exact.tokens);
        // Nothing counted exactly: still an upper bound.
        assert!(r.count_prompt_within(Encoding::O200kBase, 0).tokens >= exact.tokens);
    }

    #[test]
    fn escaped_strings_count_like_plain() {
        let a = chat(
            json!({"model": "m", "messages": [{"role": "user", "content": "line\n\"quoted\" é"}]}),
        );
        let r = Request::parse(Endpoint::ChatCompletions, &a).unwrap();
        let expected = 3 + 1 + Encoding::O200kBase.count("line\n\"quoted\" é") + 3;
        assert_eq!(r.count_prompt(Encoding::O200kBase).tokens, expected);
    }

    #[test]
    fn completions_and_embeddings() {
        let b = chat(
            json!({"model": "gpt-3.5-turbo-instruct", "prompt": ["Hello, world!", "Hello, world!"]}),
        );
        let r = Request::parse(Endpoint::Completions, &b).unwrap();
        assert_eq!(r.count_prompt(Encoding::Cl100kBase).tokens, 8);
        let b = chat(json!({"model": "text-embedding-3-small", "input": [[1, 2, 3], [4]]}));
        let r = Request::parse(Endpoint::Embeddings, &b).unwrap();
        assert_eq!(r.count_prompt(Encoding::Cl100kBase).tokens, 4);
        let b = chat(json!({"model": "text-embedding-3-small", "input": "Hello, world!"}));
        let r = Request::parse(Endpoint::Embeddings, &b).unwrap();
        assert_eq!(r.count_prompt(Encoding::Cl100kBase).tokens, 4);
    }

    fn code_of(endpoint: Endpoint, body: &[u8]) -> (u32, &'static str, Option<&'static str>) {
        match Request::parse(endpoint, body) {
            Ok(_) => panic!("accepted {}", String::from_utf8_lossy(body)),
            Err(e) => (e.status, e.code, e.param),
        }
    }

    #[test]
    fn bad_requests() {
        let ep = Endpoint::ChatCompletions;
        assert_eq!(code_of(ep, b"{"), (400, "invalid_json", None));
        assert_eq!(code_of(ep, b""), (400, "invalid_json", None));
        assert_eq!(code_of(ep, b"[1,2]"), (400, "invalid_json", None));
        assert_eq!(
            code_of(ep, b"{\"model\":\"x\"} trailing"),
            (400, "invalid_json", None)
        );
        assert_eq!(
            code_of(ep, br#"{"messages":[]}"#),
            (400, "missing_required_parameter", Some("model"))
        );
        assert_eq!(
            code_of(ep, br#"{"model":null,"messages":[]}"#).2,
            Some("model")
        );
        assert_eq!(
            code_of(ep, br#"{"model":5,"messages":[]}"#),
            (400, "invalid_value", Some("model"))
        );
        assert_eq!(
            code_of(ep, br#"{"model":"","messages":[]}"#).2,
            Some("model")
        );
        assert_eq!(
            code_of(ep, br#"{"model":"m"}"#),
            (400, "missing_required_parameter", Some("messages"))
        );
        assert_eq!(
            code_of(ep, br#"{"model":"m","messages":[]}"#),
            (400, "invalid_value", Some("messages"))
        );
        assert_eq!(
            code_of(ep, br#"{"model":"m","messages":"hi"}"#).2,
            Some("messages")
        );
        assert_eq!(
            code_of(ep, br#"{"model":"m","messages":[{"content":"x"}]}"#).2,
            Some("messages")
        );
        assert_eq!(
            code_of(
                ep,
                br#"{"model":"m","messages":[{"role":"user","content":5}]}"#
            )
            .2,
            Some("messages")
        );
        assert_eq!(
            code_of(
                ep,
                br#"{"model":"m","messages":[{"role":"user"}],"stream":"yes"}"#
            )
            .2,
            Some("stream")
        );
        assert_eq!(
            code_of(
                ep,
                br#"{"model":"m","messages":[{"role":"user"}],"stream_options":5}"#
            )
            .2,
            Some("stream_options")
        );
        assert_eq!(
            code_of(Endpoint::Embeddings, br#"{"model":"m","input":{"a":1}}"#).2,
            Some("input")
        );
        assert_eq!(
            code_of(
                Endpoint::Embeddings,
                br#"{"model":"m","input":"x","stream":true}"#
            )
            .2,
            Some("stream")
        );
    }

    #[test]
    fn rewrite_model_and_usage() {
        let body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true,"temperature":0.5}"#;
        let r = Request::parse(Endpoint::ChatCompletions, body).unwrap();
        assert!(r.stream && !r.include_usage);
        assert!(r.rewrite(None, false).is_none());
        assert!(r.rewrite(Some("gpt-4o"), false).is_none());
        let out = r.rewrite(Some("gpt-4o-2024-08-06"), true).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "gpt-4o-2024-08-06");
        assert_eq!(v["stream_options"], json!({"include_usage": true}));
        assert_eq!(v["temperature"], 0.5);
        assert_eq!(v["messages"][0]["content"], "hi");
    }

    #[test]
    fn rewrite_keeps_other_stream_options_and_dedupes() {
        let body = br#"{"model":"a","model":"b","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":false,"x":1}}"#;
        let r = Request::parse(Endpoint::ChatCompletions, body).unwrap();
        assert_eq!(r.model, "b");
        let out = r.rewrite(Some("c"), true).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("\"model\"").count(), 1);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["model"], "c");
        assert_eq!(v["stream_options"], json!({"include_usage": true, "x": 1}));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_bytes(body in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            for ep in [Endpoint::ChatCompletions, Endpoint::Completions, Endpoint::Embeddings] {
                if let Ok(r) = Request::parse(ep, &body) {
                    let _ = r.count_prompt(Encoding::O200kBase);
                    let _ = r.rewrite(Some("x"), true);
                }
            }
        }

        #[test]
        fn never_panics_on_json_shapes(s in r#"\{("(model|messages|stream|prompt|input|stream_options|role|content)":(null|true|1|"x"|\[\]|\{\}|\[\{"role":"u","content":\[\{"type":"text"\}\]\}\]),?){0,6}\}"#) {
            for ep in [Endpoint::ChatCompletions, Endpoint::Completions, Endpoint::Embeddings] {
                if let Ok(r) = Request::parse(ep, s.as_bytes()) {
                    let _ = r.count_prompt(Encoding::O200kBase);
                    if let Some(out) = r.rewrite(Some("y"), true) {
                        proptest::prop_assert!(serde_json::from_slice::<serde_json::Value>(&out).is_ok());
                    }
                }
            }
        }
    }

    #[test]
    fn max_output_tokens() {
        let p = |ep, b: &str| {
            Request::parse(ep, b.as_bytes())
                .unwrap()
                .max_output_tokens()
        };
        let chat = Endpoint::ChatCompletions;
        let m = r#""model":"m","messages":[{"role":"user","content":"x"}]"#;
        assert_eq!(p(chat, &format!("{{{m}}}")), None);
        assert_eq!(p(chat, &format!(r#"{{{m},"max_tokens":100}}"#)), Some(100));
        assert_eq!(
            p(
                chat,
                &format!(r#"{{{m},"max_tokens":100,"max_completion_tokens":50,"n":3}}"#)
            ),
            Some(150)
        );
        assert_eq!(p(chat, &format!(r#"{{{m},"max_tokens":null}}"#)), None);
        assert_eq!(
            p(Endpoint::Completions, r#"{"model":"m","prompt":"x"}"#),
            Some(16)
        );
        assert_eq!(
            p(Endpoint::Embeddings, r#"{"model":"m","input":"x"}"#),
            Some(0)
        );
    }

    /// Every path that reads a request body, on one body: whether each accepted it.
    fn paths(body: &[u8]) -> Vec<(&'static str, bool)> {
        let parsed = Request::parse(Endpoint::ChatCompletions, body);
        if let Err(e) = &parsed {
            assert_eq!(e.code, "invalid_json", "{e:?}");
        }
        let rewritten = parsed
            .as_ref()
            .ok()
            .and_then(|r| r.rewrite(Some("other"), true))
            .is_some_and(|b| serde_json::from_slice::<serde_json::Value>(&b).is_ok());
        vec![
            ("parse", parsed.is_ok()),
            ("rewrite", rewritten),
            (
                "openai_to_anthropic::translate_request",
                openai_to_anthropic::translate_request(body, &target("claude", 16)).is_ok(),
            ),
            (
                "failover with_model",
                crate::wire::with_model(body, "other").is_ok(),
            ),
            (
                "cache key",
                crate::cache::keys(body, "p", "m", None, None).is_some(),
            ),
        ]
    }

    /// The same for a body an Anthropic client sent.
    fn anthropic_paths(body: &[u8]) -> Vec<(&'static str, bool)> {
        let model = anthropic_to_openai::model_of(body);
        if let Err(e) = &model {
            assert_eq!(e.code, "invalid_json", "{e:?}");
        }
        let translated = anthropic_to_openai::translate_request(body, &target("gpt", 16));
        if let Err(e) = &translated {
            assert_eq!(e.code, "invalid_json", "{e:?}");
        }
        let reparsed = translated
            .as_ref()
            .is_ok_and(|t| Request::parse(Endpoint::ChatCompletions, &t.body).is_ok());
        vec![
            ("model_of", model.is_ok()),
            ("anthropic_to_openai::translate_request", translated.is_ok()),
            ("parse of the translation", reparsed),
            (
                "anthropic to anthropic with_model",
                crate::wire::with_model(body, "claude").is_ok(),
            ),
        ]
    }

    fn agree(body: &str, expect: bool) {
        let value_ok = serde_json::from_str::<serde_json::Value>(body).is_ok();
        assert_eq!(value_ok, expect, "{body}");
        for (path, ok) in paths(body.as_bytes()) {
            assert_eq!(ok, expect, "{path} on {body}");
        }
    }

    fn agree_anthropic(body: &str, expect: bool) {
        let value_ok = serde_json::from_str::<serde_json::Value>(body).is_ok();
        assert_eq!(value_ok, expect, "{body}");
        for (path, ok) in anthropic_paths(body.as_bytes()) {
            assert_eq!(ok, expect, "{path} on {body}");
        }
    }

    #[test]
    fn one_json_rule_on_every_path() {
        let chat = |x: &str| {
            format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"hi","y":{x}}}],"x":{x}}}"#
            )
        };
        let claude = |x: &str| {
            format!(
                r#"{{"model":"c","max_tokens":5,"messages":[{{"role":"user","content":"hi"}}],"x":{x}}}"#
            )
        };
        for e in crate::wire::tests::EDGES {
            let ok = serde_json::from_str::<serde_json::Value>(e).is_ok();
            agree(&chat(e), ok);
            agree_anthropic(&claude(e), ok);
        }
        for depth in [100, 126, 127, 1000] {
            let x = crate::wire::tests::nested(depth, "1");
            let ok = |b: &str| serde_json::from_str::<serde_json::Value>(b).is_ok();
            agree(&chat(&x), ok(&chat(&x)));
            agree_anthropic(&claude(&x), ok(&claude(&x)));
        }
        // The issue's body: refused on every route, with the same error.
        let body = chat("1e999");
        let e = Request::parse(Endpoint::ChatCompletions, body.as_bytes()).err();
        let e = e.unwrap();
        assert_eq!((e.status, e.code), (400, "invalid_json"));
        assert!(e.message.contains("number out of range"), "{}", e.message);
        assert_eq!(
            anthropic_to_openai::model_of(claude("1e999").as_bytes())
                .unwrap_err()
                .code,
            "invalid_json"
        );
    }

    proptest::proptest! {
        #[test]
        fn every_path_accepts_the_same_bodies(x in crate::wire::tests::jsonish()) {
            let body = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],"x":{x}}}"#);
            let expect = serde_json::from_str::<serde_json::Value>(&body).is_ok();
            for (path, ok) in paths(body.as_bytes()) {
                proptest::prop_assert_eq!(ok, expect, "{} on {}", path, body);
            }
            let body = format!(r#"{{"model":"c","max_tokens":5,"messages":[{{"role":"user","content":"hi"}}],"x":{x}}}"#);
            for (path, ok) in anthropic_paths(body.as_bytes()) {
                proptest::prop_assert_eq!(ok, expect, "{} on {}", path, body);
            }
        }
    }
}
