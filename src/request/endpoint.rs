//! The OpenAI endpoints the filter understands, told from a request's method and path.

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
    pub(super) fn streams(self) -> bool {
        !matches!(self, Endpoint::Embeddings)
    }
}
