//! Fuzz targets for request bodies from the wire: the parser and rewrite, the cache's keys.

use super::{encoding, Input};

/// `Request::parse` on each endpoint, the counts, and the rewrite, whose output must parse
/// again with the new model and `include_usage`.
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
