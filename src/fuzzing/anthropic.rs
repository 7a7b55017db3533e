//! Fuzz targets for the Anthropic translations: requests both ways, answers both ways.

use super::{chunks, Input};

/// Both directions of the Anthropic request translation, and the model lookup.
pub fn anthropic_request(data: &[u8]) {
    use crate::translate::{anthropic_to_openai, openai_to_anthropic, Target};
    let mut input = Input::new(data);
    let default_max = input.number();
    let body = input.rest();
    let target = |model| Target {
        model,
        default_max_tokens: default_max,
    };
    if let Ok(out) = openai_to_anthropic::translate_request(body, &target("claude-fuzz")) {
        let _ = anthropic_to_openai::model_of(&out.body);
    }
    let _ = anthropic_to_openai::model_of(body);
    if let Ok(out) = anthropic_to_openai::translate_request(body, &target("gpt-fuzz")) {
        // What the reverse translation produces is an OpenAI request the filter goes on with.
        let _ =
            crate::request::Request::parse(crate::request::Endpoint::ChatCompletions, &out.body);
    }
}

/// An Anthropic answer (a JSON body with any status, or an SSE stream cut into chunks)
/// translated to OpenAI's format, then read by the usage meter as the filter does.
pub fn anthropic_translation(data: &[u8]) {
    use crate::meter::Meter;
    use crate::translate::openai_to_anthropic::{self, Stream};
    use crate::translate::{Direction, ResponseContext, ResponseTranslator, StreamTranslate};
    let mut input = Input::new(data);
    let flags = input.byte();
    let seed = u64::from(input.u16());
    let status = match flags % 8 {
        0 => 200,
        1 => 201,
        2 => 400,
        3 => 429,
        4 => 500,
        5 => 529,
        6 => 0,
        _ => 99_999,
    };
    if flags & 64 != 0 {
        anthropic_usage(&mut input);
    }
    let body = input.rest();
    let ct = if flags & 8 != 0 {
        "text/event-stream; charset=utf-8"
    } else {
        "application/json"
    };
    let context = ResponseContext {
        status,
        created: u64::from(flags),
        counted_input: 0,
        nonce: 0,
        model: String::new(),
    };
    let mut t = ResponseTranslator::new(Direction::OpenaiToAnthropic, ct, context);
    let mut meter = Meter::new(
        crate::request::Endpoint::ChatCompletions,
        ct,
        None,
        flags & 16 != 0,
        None,
        1 << 20,
    );
    if t.buffers() {
        let out = t.chunk(body);
        let _ = meter.on_chunk(&out, true, 0);
    } else {
        let pieces = chunks(body, seed, 256);
        let last = pieces.len().saturating_sub(1);
        for (i, c) in pieces.iter().enumerate() {
            let out = t.chunk(c);
            let _ = meter.on_chunk(&out, i == last, i as u64);
        }
    }
    let _ = meter.finish();
    let answered = ResponseContext {
        status: 200,
        created: 0,
        counted_input: 0,
        nonce: 0,
        model: String::new(),
    };
    let _ = openai_to_anthropic::translate_response(body, &answered);
    if let Ok(v) = serde_json::from_slice(body) {
        let _ = openai_to_anthropic::translate_error(&v).body();
        let _ = crate::translate::usage_to_openai(&v);
    }
    // The stream translator on the body as one event, under every name.
    let mut st = Stream::new(0, flags & 32 != 0);
    for name in [
        "message_start",
        "content_block_delta",
        "message_delta",
        "message_stop",
    ] {
        let _ = st.event(name, body);
    }
    let _ = st.finished();
}

/// Anthropic usage figures (any numbers a provider may send) through the JSON and the stream
/// translation: OpenAI's figures are the sums, never wrapped.
fn anthropic_usage(input: &mut Input<'_>) {
    use crate::translate::openai_to_anthropic::Stream;
    use crate::translate::{usage_to_openai, StreamTranslate};
    use serde_json::{json, Map, Value};
    let mut u = Map::new();
    for k in [
        "input_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "output_tokens",
    ] {
        if input.byte() & 1 != 0 {
            u.insert(k.into(), input.number().into());
        }
    }
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let least_prompt = n("input_tokens")
        .max(n("cache_read_input_tokens"))
        .max(n("cache_creation_input_tokens"));
    let check = |o: &Value, output: u64| {
        let get = |k: &str| o.get(k).and_then(Value::as_u64).unwrap_or(0);
        assert!(
            get("prompt_tokens") >= least_prompt,
            "prompt_tokens wrapped: {o}"
        );
        assert!(get("completion_tokens") == output, "completion_tokens: {o}");
        assert!(
            get("total_tokens") >= get("prompt_tokens").max(output),
            "total_tokens wrapped: {o}"
        );
    };
    check(
        &usage_to_openai(&Value::Object(u.clone())),
        n("output_tokens"),
    );
    let mut st = Stream::new(0, true);
    let start = json!({"type": "message_start", "message": {"id": "m", "usage": u}});
    let _ = st.event("message_start", start.to_string().as_bytes());
    let delta = json!({"type": "message_delta", "usage": {"output_tokens": n("output_tokens")}});
    let _ = st.event("message_delta", delta.to_string().as_bytes());
    let stop = st.event("message_stop", br#"{"type":"message_stop"}"#);
    let chunk = stop
        .strip_prefix("data: ")
        .and_then(|s| s.split("\n\n").next())
        .and_then(|s| serde_json::from_str::<Value>(s).ok());
    assert!(chunk.is_some(), "no usage chunk at message_stop: {stop}");
    if let Some(chunk) = chunk {
        check(
            chunk.get("usage").unwrap_or(&Value::Null),
            n("output_tokens"),
        );
    }
}

/// An OpenAI answer (a JSON body, or an SSE stream cut into chunks) translated for an
/// Anthropic client.
pub fn anthropic_reverse(data: &[u8]) {
    use crate::translate::anthropic_to_openai::{self, Stream};
    use crate::translate::{Direction, ResponseContext, ResponseTranslator, StreamTranslate};
    let mut input = Input::new(data);
    let flags = input.byte();
    let seed = u64::from(input.u16());
    let body = input.rest();
    let ct = if flags & 1 != 0 {
        "text/event-stream"
    } else {
        "application/json"
    };
    let context = ResponseContext {
        status: 200,
        created: 0,
        counted_input: seed,
        nonce: 0,
        model: String::new(),
    };
    let mut r = ResponseTranslator::new(Direction::AnthropicToOpenai, ct, context.clone());
    if r.buffers() {
        let _ = r.chunk(body);
    } else {
        for c in chunks(body, seed, 256) {
            let _ = r.chunk(c);
        }
    }
    let _ = anthropic_to_openai::translate_response(body, &context);
    if let Ok(v) = serde_json::from_slice(body) {
        let _ = anthropic_to_openai::translate_error(&v);
        let _ = crate::translate::usage_to_anthropic(&v);
    }
    let mut s = Stream::new(u64::MAX);
    let _ = s.data(body);
    let _ = s.data(b"[DONE]");
    assert!(s.finished(), "[DONE] did not finish the stream");
}
