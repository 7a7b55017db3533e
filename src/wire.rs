//! OpenAI wire types shared by the request and response sides.

use std::borrow::Cow;

use serde::Deserialize;

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
