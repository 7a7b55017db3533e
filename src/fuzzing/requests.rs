//! Fuzz targets for request bodies from the wire: the parser and rewrite, the cache's keys.

use super::{encoding, Input};

/// `Request::parse` on each endpoint, the counts, and the rewrite, whose output must parse
/// again with the new model and `include_usage`; the same body as a Responses request too, and
/// the body as a path of the Responses API.
pub fn request(data: &[u8]) {
    use crate::request::{Endpoint, Request};
    let mut input = Input::new(data);
    let flags = input.byte();
    let body = input.rest();
    let endpoint = match flags % 3 {
        0 => Endpoint::ChatCompletions,
        1 => Endpoint::Completions,
        _ => Endpoint::Embeddings,
    };
    let path = String::from_utf8_lossy(body);
    let _ = Endpoint::from_request("POST", &path);
    responses_paths(&path);
    responses_request(flags, body);
    let _ = crate::wire::with_model(body, "fuzz-model");
    let Ok(req) = Request::parse(endpoint, body) else {
        return;
    };
    let _ = req.max_output_tokens();
    if let Some(enc) = encoding(flags >> 2) {
        let _ = req.count_prompt(enc);
    }
    let new_model = match (flags >> 4) % 3 {
        0 => None,
        1 => Some("fuzz-model"),
        _ => Some("m\"\\\u{1}é"),
    };
    let add_include_usage = flags & 0x40 != 0 && req.stream;
    let Some(out) = req.rewrite(new_model, add_include_usage) else {
        return;
    };
    let again = Request::parse(endpoint, &out).map_err(|e| e.message);
    assert!(
        again.is_ok(),
        "the rewrite of an accepted body is refused ({}): {}",
        again.as_ref().err().map_or("", String::as_str),
        String::from_utf8_lossy(&out)
    );
    let Ok(again) = again else {
        return;
    };
    if let Some(m) = new_model {
        assert_eq!(again.model, m, "the rewrite lost the new model");
    }
    if add_include_usage {
        assert!(again.include_usage, "the rewrite lost include_usage");
    }
    assert_eq!(again.stream, req.stream, "the rewrite changed stream");
}

/// The Responses API's paths: `Create` exactly where the endpoint is `Responses`, ids only of
/// the allowed characters and length.
fn responses_paths(path: &str) {
    use crate::request::{responses_path, Endpoint, ResponsesPath, MAX_RESPONSE_ID_BYTES};
    assert_eq!(
        responses_path("POST", path) == Some(ResponsesPath::Create),
        Endpoint::from_request("POST", path) == Some(Endpoint::Responses),
        "the create path and the endpoint disagree on {path:?}"
    );
    for method in ["GET", "POST", "DELETE"] {
        let id = match responses_path(method, path) {
            Some(
                ResponsesPath::Retrieve(id)
                | ResponsesPath::Delete(id)
                | ResponsesPath::InputItems(id)
                | ResponsesPath::Cancel(id),
            ) => id,
            _ => continue,
        };
        assert!(
            (1..=MAX_RESPONSE_ID_BYTES).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "a response id out of bounds: {id:?}"
        );
    }
}

/// A body as a Responses request: parse, count, the counting endpoint (which takes every body
/// the parser takes, with the same count), and the rewrite, which changes the model and nothing
/// else (no `stream_options`, whatever is asked).
fn responses_request(flags: u8, body: &[u8]) {
    use crate::request::{input_tokens_answer, Endpoint, Request};
    let enc = encoding(flags >> 2);
    if let Some(enc) = enc {
        let _ = input_tokens_answer(body, enc, 1 << 10);
    }
    let Ok(req) = Request::parse(Endpoint::Responses, body) else {
        return;
    };
    let _ = req.max_output_tokens();
    assert_eq!(req.choices(), 1, "a Responses request asks for one answer");
    if let Some(enc) = enc {
        let n = req.count_prompt(enc).tokens;
        let answer = input_tokens_answer(body, enc, usize::MAX).map_err(|e| e.message);
        let expected = format!(r#"{{"object":"response.input_tokens","input_tokens":{n}}}"#);
        assert_eq!(
            answer.as_deref(),
            Ok(expected.as_bytes()),
            "the counting endpoint disagrees with the request's count"
        );
    }
    let new_model = ((flags >> 4) % 2 == 1).then_some("m\"\\\u{1}é");
    let Some(out) = req.rewrite(new_model, true) else {
        assert!(
            new_model.is_none_or(|m| m == req.model),
            "the model was not rewritten"
        );
        return;
    };
    let again = Request::parse(Endpoint::Responses, &out).map_err(|e| e.message);
    assert!(
        again
            .as_ref()
            .is_ok_and(|a| Some(a.model.as_ref()) == new_model),
        "the rewrite of an accepted Responses body is refused or lost its model ({:?}): {}",
        again.as_ref().err(),
        String::from_utf8_lossy(&out)
    );
    let members = |b: &[u8]| {
        let mut v: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(b).unwrap_or_default();
        v.remove("model");
        v
    };
    assert_eq!(
        members(body),
        members(&out),
        "the rewrite changed more than the model"
    );
}

/// The response cache's keys of a request body and the client's `Cache-Control`.
pub fn cache_keys(data: &[u8]) {
    use crate::cache::{keys, Directives, RouteSemantic};
    let mut input = Input::new(data);
    let flags = input.byte();
    let body = input.rest();
    let semantic = RouteSemantic {
        threshold: 0.9,
        multi_turn: flags & 1 != 0,
    };
    let consumer = (flags & 2 != 0).then_some("team-a");
    let first = keys(body, "openai", "gpt-4o-mini", consumer, Some(&semantic));
    // The same body gives the same keys.
    assert_eq!(
        first,
        keys(body, "openai", "gpt-4o-mini", consumer, Some(&semantic))
    );
    let _ = keys(body, "openai", "gpt-4o-mini", consumer, None);
    let _ = Directives::parse(Some(&String::from_utf8_lossy(body)));
}

/// The pre-tokenizers (`tokens::split`) against fancy-regex with tiktoken's patterns: the same
/// pieces for both encodings on any text (the body as UTF-8, lossily).
pub fn split(data: &[u8]) {
    use std::sync::OnceLock;

    use crate::tokens::split::{cl100k, o200k, CL100K_PAT_STR};
    static REGEXES: OnceLock<Option<[fancy_regex::Regex; 2]>> = OnceLock::new();
    let regexes = REGEXES.get_or_init(|| {
        let o200k = fancy_regex::Regex::new(tiktoken_rs::O200K_BASE_PAT_STR).ok()?;
        Some([o200k, fancy_regex::Regex::new(CL100K_PAT_STR).ok()?])
    });
    assert!(regexes.is_some(), "tiktoken's patterns compile");
    let Some([o200k_re, cl100k_re]) = regexes else {
        return;
    };
    let text: &str = &String::from_utf8_lossy(data);
    let pieces = |re: &fancy_regex::Regex| -> Option<Vec<&str>> {
        re.find_iter(text)
            .map(|m| m.ok().map(|m| m.as_str()))
            .collect()
    };
    assert_eq!(
        Some(o200k(text).collect()),
        pieces(o200k_re),
        "o200k on {text:?}"
    );
    assert_eq!(
        Some(cl100k(text).collect()),
        pieces(cl100k_re),
        "cl100k on {text:?}"
    );
}
