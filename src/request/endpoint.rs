//! The OpenAI endpoints the filter understands, told from a request's method and path, and the
//! Responses API's other paths (its counting endpoint and its stored responses).

/// The OpenAI endpoints the filter understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    /// `POST .../v1/responses`, the Responses API's create.
    Responses,
}

impl Endpoint {
    /// The endpoint a request targets, from its method and path (query ignored). Paths may carry
    /// a prefix (`/openai/v1/chat/completions`). The Responses API's other paths
    /// (`.../responses/input_tokens`, `.../responses/{id}`...) are not endpoints: see
    /// [`responses_path`].
    pub fn from_request(method: &str, path: &str) -> Option<Endpoint> {
        if method != "POST" {
            return None;
        }
        let path = bare(path);
        if path.ends_with("/chat/completions") {
            Some(Endpoint::ChatCompletions)
        } else if path.ends_with("/completions") {
            Some(Endpoint::Completions)
        } else if path.ends_with("/embeddings") {
            Some(Endpoint::Embeddings)
        } else if path.ends_with("/responses") {
            Some(Endpoint::Responses)
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
            Endpoint::Responses => "responses",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat.completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Responses => "responses",
        }
    }

    /// Whether the endpoint can stream.
    pub(super) fn streams(self) -> bool {
        !matches!(self, Endpoint::Embeddings)
    }
}

/// The path without its query or fragment and without trailing slashes.
fn bare(path: &str) -> &str {
    path.split(['?', '#'])
        .next()
        .unwrap_or(path)
        .trim_end_matches('/')
}

/// Longest response id [`responses_path`] accepts (OpenAI's are `resp_` and 50 hex digits).
pub const MAX_RESPONSE_ID_BYTES: usize = 128;

/// A path of the Responses API (any prefix, query ignored), with the method it is served for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponsesPath {
    /// `POST .../responses`: a new response ([`Endpoint::Responses`]).
    Create,
    /// `POST .../responses/input_tokens`: the input tokens a request would use.
    InputTokens,
    /// `GET .../responses/{id}`: a stored response.
    Retrieve(String),
    /// `DELETE .../responses/{id}`.
    Delete(String),
    /// `GET .../responses/{id}/input_items`: the input items of a stored response.
    InputItems(String),
    /// `POST .../responses/{id}/cancel`: cancel a background response.
    Cancel(String),
}

/// Which Responses API path a request is for. An id is 1 to [`MAX_RESPONSE_ID_BYTES`] of
/// `[A-Za-z0-9_-]`; any other id, another method, or another path is `None`.
pub fn responses_path(method: &str, path: &str) -> Option<ResponsesPath> {
    let mut segments = bare(path).rsplit('/');
    let last = segments.next()?;
    // Every path has a `/` before its `responses` segment: `responses` alone is no path.
    let before = segments.next()?;
    let before2 = segments.next();
    let id = |s: &str| is_id(s).then(|| s.to_string());
    match (method, before2, before, last) {
        ("POST", _, _, "responses") => Some(ResponsesPath::Create),
        ("POST", _, "responses", "input_tokens") => Some(ResponsesPath::InputTokens),
        ("GET", Some("responses"), i, "input_items") => id(i).map(ResponsesPath::InputItems),
        ("POST", Some("responses"), i, "cancel") => id(i).map(ResponsesPath::Cancel),
        ("GET", _, "responses", i) => id(i).map(ResponsesPath::Retrieve),
        ("DELETE", _, "responses", i) => id(i).map(ResponsesPath::Delete),
        _ => None,
    }
}

fn is_id(s: &str) -> bool {
    (1..=MAX_RESPONSE_ID_BYTES).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
