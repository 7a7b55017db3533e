//! The Responses API's request: parsing, checks, counting, rewrite, the counting endpoint, and
//! the recognizer of its paths.

use serde_json::json;

use super::super::{responses_path, Endpoint, Request, ResponsesPath};
use super::input_tokens_answer;
use crate::tokens::{Count, Encoding};

const O200K: Encoding = Encoding::O200kBase;

fn body(v: serde_json::Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

fn parse(b: &[u8]) -> Request<'_> {
    match Request::parse(Endpoint::Responses, b) {
        Ok(r) => r,
        Err(e) => panic!("refused ({e:?}): {}", String::from_utf8_lossy(b)),
    }
}

fn count(v: serde_json::Value) -> Count {
    let b = body(v);
    parse(&b).count_prompt(O200K)
}

fn exact(tokens: u64) -> Count {
    Count {
        tokens,
        estimated: false,
    }
}

fn estimated(tokens: u64) -> Count {
    Count {
        tokens,
        estimated: true,
    }
}

/// The token counts of the texts the counting tests use, in o200k_base: the figures the
/// expected counts below are summed from.
#[test]
fn texts_of_the_counting_tests() {
    for (text, n) in [
        ("Hello", 1),
        ("Hello, world!", 4),
        ("Be brief.", 3),
        ("What is the weather in Paris?", 7),
        ("get_weather", 2),
        ("{\"city\":\"Paris\"}", 5),
        ("{\"temp\":21}", 5),
        ("It is 21°C.", 6),
    ] {
        assert_eq!(O200K.count_uncached(text), n, "{text:?}");
    }
}

#[test]
fn a_string_input_is_one_user_message() {
    // 3 framing + 1 role + 1 ("Hello") + 3 priming, as chat's "Hello".
    let c = count(json!({"model": "gpt-4o", "input": "Hello"}));
    assert_eq!(c, exact(8));
    let chat = body(json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}]}));
    let chat = Request::parse(Endpoint::ChatCompletions, &chat).unwrap();
    assert_eq!(chat.count_prompt(O200K), c);
    // An empty string is still a message; no input at all is none.
    assert_eq!(count(json!({"model": "m", "input": ""})), exact(3 + 1 + 3));
    assert_eq!(count(json!({"model": "m"})), exact(3));
    assert_eq!(count(json!({"model": "m", "input": null})), exact(3));
    assert_eq!(count(json!({"model": "m", "input": []})), exact(3));
}

#[test]
fn instructions_are_a_system_message() {
    // (3 + 1 + 3 "Be brief.") + (3 + 1 + 1 "Hello") + 3.
    let c = count(json!({"model": "m", "instructions": "Be brief.", "input": "Hello"}));
    assert_eq!(c, exact(7 + 5 + 3));
    // The chat request it is: the same count.
    let chat = body(json!({"model": "m", "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]}));
    let chat = Request::parse(Endpoint::ChatCompletions, &chat).unwrap();
    assert_eq!(chat.count_prompt(O200K), c);
    // Empty instructions insert nothing.
    let c = count(json!({"model": "m", "instructions": "", "input": "Hello"}));
    assert_eq!(c, exact(8));
}

#[test]
fn message_items_with_strings_and_parts() {
    let c = count(json!({"model": "m", "input": [
        // 3 + 1 + 4
        {"role": "developer", "content": "Hello, world!"},
        // 3 + 1 + 1 + 4
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Hello"},
            {"type": "input_text", "text": "Hello, world!"}]},
        // 3 + 1 + 1: an earlier answer, as the API returned it
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "content": [{"type": "output_text", "text": "Hello", "annotations": []}]},
        // 3 + 1 + 1
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "Hello"}]}
    ]}));
    assert_eq!(c, exact(8 + 9 + 5 + 5 + 3));
}

#[test]
fn a_function_call_round_trip() {
    let items = json!([
        // 3 + 1 + 7
        {"role": "user", "content": "What is the weather in Paris?"},
        // One assistant message for both calls: 3 + 1, then each 2 + 5 + 1.
        {"type": "function_call", "call_id": "c1", "name": "get_weather",
         "arguments": "{\"city\":\"Paris\"}", "id": "fc_1", "status": "completed"},
        {"type": "function_call", "call_id": "c2", "name": "get_weather",
         "arguments": "{\"city\":\"Paris\"}"},
        // Each a tool message: 3 + 1 + 5
        {"type": "function_call_output", "call_id": "c1", "output": "{\"temp\":21}"},
        {"type": "function_call_output", "call_id": "c2",
         "output": [{"type": "input_text", "text": "{\"temp\":21}"}]},
        // 3 + 1 + 6
        {"role": "assistant", "content": "It is 21°C."},
        // A call after a message: a new assistant message, 3 + 1 + (2 + 5 + 1)
        {"type": "function_call", "call_id": "c3", "name": "get_weather",
         "arguments": "{\"city\":\"Paris\"}"}
    ]);
    let c = count(json!({"model": "m", "input": items}));
    assert_eq!(c, estimated(11 + 4 + 8 + 8 + 9 + 9 + 10 + 4 + 8 + 3));
    // A custom tool call counts its name and input the same way.
    let c = count(json!({"model": "m", "input": [
        {"type": "custom_tool_call", "call_id": "c", "name": "get_weather",
         "input": "{\"city\":\"Paris\"}"},
        {"type": "custom_tool_call_output", "call_id": "c", "output": "{\"temp\":21}"}]}));
    assert_eq!(c, estimated(4 + 8 + 9 + 3));
}

#[test]
fn tools_count_their_json_as_chat_does() {
    let tools = json!([{"type": "function", "name": "get_weather", "description": "Weather.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": true}]);
    let c = count(json!({"model": "m", "input": "Hello", "tools": tools}));
    let json_tokens = O200K.count_uncached(&tools.to_string());
    assert_eq!(c, estimated(8 + json_tokens + 1));
    // The chat request with the same `tools` member counts it the same.
    let chat = body(
        json!({"model": "m", "messages": [{"role": "user", "content": "Hello"}],
        "tools": tools}),
    );
    let chat = Request::parse(Endpoint::ChatCompletions, &chat).unwrap();
    assert_eq!(chat.count_prompt(O200K), c);
    // No tools, nothing counted.
    let c = count(json!({"model": "m", "input": "Hello", "tools": []}));
    assert_eq!(c, exact(8));
}

#[test]
fn images_files_and_hidden_context_are_estimated() {
    let c = count(json!({"model": "m", "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "Hello"},
        {"type": "input_image", "image_url": "https://x/y.png", "detail": "auto"}]}]}));
    assert_eq!(c, estimated(3 + 1 + 1 + 85 + 3));
    let c = count(json!({"model": "m", "input": [{"role": "user", "content": [
        {"type": "input_file", "file_id": "file-1"}]}]}));
    assert_eq!(c, estimated(3 + 1 + 3));
    // Reasoning items, references and hosted tools' items are not counted.
    let c = count(json!({"model": "m", "input": [
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "abc"},
        {"type": "item_reference", "id": "msg_1"},
        {"type": "computer_call_output", "call_id": "c", "output": {"type": "computer_screenshot"}},
        {"role": "user", "content": "Hello"}]}));
    assert_eq!(c, estimated(8));
    for key in ["previous_response_id", "conversation", "prompt"] {
        let mut b = json!({"model": "m", "input": "Hello"});
        b[key] = json!("resp_1");
        assert_eq!(count(b), estimated(8), "{key}");
        let mut b = json!({"model": "m", "input": "Hello"});
        b[key] = json!(null);
        assert_eq!(count(b), exact(8), "{key} null");
    }
}

#[test]
fn counts_in_cl100k_and_within_the_budget() {
    let b = body(json!({"model": "gpt-4", "instructions": "Be brief.", "input": "Hello, world!"}));
    let r = parse(&b);
    let cl = Encoding::Cl100kBase;
    let expected = 4 + cl.count_uncached("Be brief.") + 4 + cl.count_uncached("Hello, world!") + 3;
    assert_eq!(r.count_prompt(cl), exact(expected));
    // No budget: every text is bounded by its bytes, flagged.
    let bounded = r.count_prompt_within(O200K, 0);
    assert_eq!(bounded, estimated(4 + 9 + 4 + 13 + 3));
}

fn refusal(b: &[u8]) -> (u32, &'static str, Option<&'static str>) {
    match Request::parse(Endpoint::Responses, b) {
        Ok(_) => panic!("accepted {}", String::from_utf8_lossy(b)),
        Err(e) => (e.status, e.code, e.param),
    }
}

#[test]
fn bad_bodies_are_openai_400s_naming_the_field() {
    let param = |v: serde_json::Value| refusal(&body(v)).2;
    assert_eq!(refusal(b"{"), (400, "invalid_json", None));
    assert_eq!(refusal(b"[]"), (400, "invalid_json", None));
    assert_eq!(
        refusal(br#"{"input":"x"}"#),
        (400, "missing_required_parameter", Some("model"))
    );
    assert_eq!(param(json!({"model": 5, "input": "x"})), Some("model"));
    assert_eq!(
        param(json!({"model": "m", "input": "x", "stream": "yes"})),
        Some("stream")
    );
    let input = Some("input");
    for bad in [
        json!(5),
        json!({"role": "user"}),
        json!(true),
        json!(["Hello"]),
        json!([5]),
        json!([{"content": "no role, no type"}]),
        json!([{"type": "message", "content": "no role"}]),
        json!([{"role": 5, "content": "x"}]),
        json!([{"role": "user", "content": 5}]),
        json!([{"role": "user", "content": {"type": "input_text"}}]),
        json!([{"role": "user", "content": [{"text": "a part without a type"}]}]),
        json!([{"role": "user", "content": ["x"]}]),
        json!([{"type": 5}]),
        json!([{"type": "function_call", "name": 5, "arguments": "{}"}]),
        json!([{"type": "function_call", "name": "f", "arguments": {"a": 1}}]),
        json!([{"type": "custom_tool_call", "name": "f", "input": 5}]),
        json!([{"type": "function_call_output", "call_id": "c", "output": {"a": 1}}]),
        json!([{"type": "function_call_output", "call_id": "c", "output": 5}]),
    ] {
        assert_eq!(param(json!({"model": "m", "input": bad})), input, "{bad}");
    }
    let e = Request::parse(
        Endpoint::Responses,
        &body(json!({"model": "m", "input": [{"role": "user", "content": "x"}, {"role": 1}]})),
    )
    .err()
    .unwrap();
    assert!(e.message.contains("'input[1]'"), "{}", e.message);
    for bad in [json!(5), json!(["x"]), json!({"a": 1})] {
        let v = json!({"model": "m", "input": "x", "instructions": bad});
        assert_eq!(param(v), Some("instructions"), "{bad}");
    }
    for bad in [
        json!({"type": "function"}),
        json!([{"name": "f"}]),
        json!([5]),
    ] {
        let v = json!({"model": "m", "input": "x", "tools": bad});
        assert_eq!(param(v), Some("tools"), "{bad}");
    }
    for bad in [
        json!(0),
        json!(-1),
        json!(1.5),
        json!("16"),
        json!(true),
        json!(1e30),
    ] {
        let v = json!({"model": "m", "input": "x", "max_output_tokens": bad});
        assert_eq!(
            refusal(&body(v)),
            (400, "invalid_value", Some("max_output_tokens")),
            "{bad}"
        );
    }
}

#[test]
fn what_is_accepted() {
    let r = |v: serde_json::Value| {
        let b = body(v);
        let r = parse(&b);
        (
            r.stream,
            r.include_usage,
            r.max_output_tokens(),
            r.choices(),
        )
    };
    assert_eq!(
        r(json!({"model": "m", "input": "x"})),
        (false, true, None, 1)
    );
    // `n` is no Responses parameter; `stream_options` is not read.
    assert_eq!(
        r(
            json!({"model": "m", "input": "x", "stream": true, "max_output_tokens": 100, "n": 3,
                 "stream_options": {"include_obfuscation": false}})
        ),
        (true, true, Some(100), 1)
    );
    assert_eq!(
        r(json!({"model": "m", "input": "x", "max_output_tokens": null})),
        (false, true, None, 1)
    );
    // Items the gateway does not count, members it does not read, tools of any type.
    r(json!({"model": "m", "input": [
        {"type": "local_shell_call", "id": "x", "call_id": "c", "status": "completed",
         "action": {"type": "exec", "command": ["ls"], "env": {}}},
        {"type": "mcp_call", "id": "x", "name": "n", "arguments": "{}", "server_label": "s"},
        {"type": "message", "role": "user", "content": null},
        {"type": "function_call", "call_id": "c"},
        {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x"}}]}],
        "tools": [{"type": "web_search"}, {"type": "function", "name": "f"}], "tool_choice": "auto",
        "text": {"format": {"type": "json_schema", "name": "x", "schema": {}}},
        "reasoning": {"effort": "low"}, "store": false, "metadata": {"a": "b"}, "user": "u",
        "parallel_tool_calls": true, "instructions": null, "tools_extra": 1}));
}

#[test]
fn the_rewrite_replaces_only_the_model() {
    let b = r#"{"model":"gpt-4o","input":[{"role":"user","content":"hi \"you\""}],"stream":true,"stream_options":{"include_obfuscation":false},"max_output_tokens":50,"temperature":0.5}"#;
    let r = parse(b.as_bytes());
    assert!(r.stream && r.include_usage);
    // Nothing to change, even when asked to add include_usage.
    assert!(r.rewrite(None, true).is_none());
    assert!(r.rewrite(Some("gpt-4o"), true).is_none());
    let out = r.rewrite(Some("gpt-4o-2024-08-06"), true).unwrap();
    let expected = b.replace(r#""model":"gpt-4o""#, r#""model":"gpt-4o-2024-08-06""#);
    assert_eq!(String::from_utf8(out).unwrap(), expected);
    // Duplicates resolve to the last, as for chat; the rewrite carries one model.
    let b = br#"{"model":"a","input":"x","model":"b"}"#;
    let r = parse(b);
    assert_eq!(r.model, "b");
    assert_eq!(
        r.rewrite(Some("c"), true).unwrap(),
        br#"{"model":"c","input":"x"}"#
    );
}

#[test]
fn the_counting_endpoint_answers_in_openais_shape() {
    let answer = |v: serde_json::Value| input_tokens_answer(&body(v), O200K, usize::MAX);
    assert_eq!(
        answer(json!({"model": "gpt-4o", "input": "Hello"})).unwrap(),
        br#"{"object":"response.input_tokens","input_tokens":8}"#
    );
    // `model` is optional there; the same counting as for a response.
    let v = json!({"instructions": "Be brief.", "input": "Hello"});
    assert_eq!(
        answer(v).unwrap(),
        br#"{"object":"response.input_tokens","input_tokens":15}"#
    );
    let e = answer(json!({"model": "m", "input": 5})).unwrap_err();
    assert_eq!((e.status, e.param), (400, Some("input")));
    assert_eq!(
        answer(json!({"model": 5})).unwrap_err().param,
        Some("model")
    );
    assert_eq!(
        input_tokens_answer(b"{", O200K, 64).unwrap_err().code,
        "invalid_json"
    );
    // Bounded past the budget: still an answer, an upper bound.
    let v = json!({"input": "Hello, world!"});
    assert_eq!(
        answer(v.clone()).unwrap(),
        br#"{"object":"response.input_tokens","input_tokens":11}"#
    );
    assert_eq!(
        input_tokens_answer(&body(v), O200K, 0).unwrap(),
        br#"{"object":"response.input_tokens","input_tokens":20}"#
    );
}

#[test]
fn the_exact_count_is_answered_and_an_estimate_refused() {
    let b = body(json!({"model": "gpt-4o", "input": "Hello"}));
    assert_eq!(
        parse(&b)
            .exact_input_tokens_answer(O200K, usize::MAX)
            .unwrap(),
        br#"{"object":"response.input_tokens","input_tokens":8}"#
    );
    // Past the exact budget, or with tools (only ever estimated): refused on `input`.
    let e = parse(&b).exact_input_tokens_answer(O200K, 0).unwrap_err();
    assert_eq!((e.status, e.param), (400, Some("input")));
    let b = body(json!({"model": "gpt-4o", "input": "Hello",
                        "tools": [{"type": "function", "name": "f", "parameters": {}}]}));
    let e = parse(&b)
        .exact_input_tokens_answer(O200K, usize::MAX)
        .unwrap_err();
    assert_eq!((e.status, e.param), (400, Some("input")));
}

#[test]
fn the_create_endpoint() {
    for p in [
        "/v1/responses",
        "/openai/v1/responses",
        "/v1/responses/",
        "/v1/responses?api-version=2025-04-01-preview",
        "/responses",
    ] {
        assert_eq!(
            Endpoint::from_request("POST", p),
            Some(Endpoint::Responses),
            "{p}"
        );
        assert_eq!(
            responses_path("POST", p),
            Some(ResponsesPath::Create),
            "{p}"
        );
    }
    for p in [
        "/v1/responses/input_tokens",
        "/v1/responses/resp_1",
        "/v1/responses/resp_1/cancel",
        "/v1/responsesx",
    ] {
        assert_eq!(Endpoint::from_request("POST", p), None, "{p}");
    }
    assert_eq!(Endpoint::from_request("GET", "/v1/responses"), None);
    assert_eq!(Endpoint::Responses.as_str(), "responses");
    assert_eq!(Endpoint::Responses.path_suffix(), "responses");
}

#[test]
fn the_other_paths_and_their_ids() {
    use ResponsesPath::*;
    let id = "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b";
    let cases: Vec<(&str, String, Option<ResponsesPath>)> = vec![
        (
            "POST",
            "/v1/responses/input_tokens".into(),
            Some(InputTokens),
        ),
        (
            "POST",
            "/openai/v1/responses/input_tokens?x=1".into(),
            Some(InputTokens),
        ),
        (
            "GET",
            format!("/v1/responses/{id}"),
            Some(Retrieve(id.into())),
        ),
        (
            "GET",
            format!("/v1/responses/{id}?include[]=x&stream=true"),
            Some(Retrieve(id.into())),
        ),
        (
            "DELETE",
            format!("/gw/v1/responses/{id}/"),
            Some(Delete(id.into())),
        ),
        (
            "GET",
            format!("/v1/responses/{id}/input_items?limit=5"),
            Some(InputItems(id.into())),
        ),
        (
            "POST",
            format!("/v1/responses/{id}/cancel"),
            Some(Cancel(id.into())),
        ),
        (
            "GET",
            "/v1/responses/a-B_9".into(),
            Some(Retrieve("a-B_9".into())),
        ),
        (
            "GET",
            format!("/v1/responses/{}", "x".repeat(128)),
            Some(Retrieve("x".repeat(128))),
        ),
        // Refused: ids out of bounds or with other characters, other methods, other paths.
        ("GET", format!("/v1/responses/{}", "x".repeat(129)), None),
        ("GET", "/v1/responses/resp.1".into(), None),
        ("GET", "/v1/responses/resp%2F1".into(), None),
        ("GET", "/v1/responses/..".into(), None),
        ("GET", "/v1/responses/r%C3%A9sp".into(), None),
        ("GET", "/v1/responses/rés".into(), None),
        ("GET", "/v1/responses//input_items".into(), None),
        ("POST", "/v1/responses//cancel".into(), None),
        ("GET", "/v1/responses".into(), None),
        ("PUT", format!("/v1/responses/{id}"), None),
        ("POST", format!("/v1/responses/{id}"), None),
        ("GET", format!("/v1/responses/{id}/cancel"), None),
        ("DELETE", format!("/v1/responses/{id}/input_items"), None),
        ("POST", format!("/v1/responses/{id}/input_items"), None),
        ("GET", "/v1/responses/input_tokens/x".into(), None),
        ("POST", "/v1/responses/cancel".into(), None),
        ("POST", format!("/v1/responses/{id}/x/cancel"), None),
        ("GET", format!("/v1/other/{id}"), None),
        ("POST", "responses".into(), None),
        ("POST", "".into(), None),
        ("GET", "/".into(), None),
    ];
    for (method, path, expected) in cases {
        assert_eq!(responses_path(method, &path), expected, "{method} {path}");
    }
}

proptest::proptest! {
    #[test]
    fn create_is_the_endpoint(path in "(/[a-z_0-9.%-]{0,8}){0,4}(/responses(/input_tokens|/[a-z0-9_]{1,6}(/cancel|/input_items)?)?)?/?(\\?[a-z=&]{0,6})?") {
        let create = responses_path("POST", &path) == Some(ResponsesPath::Create);
        let endpoint = Endpoint::from_request("POST", &path) == Some(Endpoint::Responses);
        proptest::prop_assert_eq!(create, endpoint, "{}", path);
        for m in ["GET", "DELETE", "POST"] {
            if let Some(ResponsesPath::Retrieve(id) | ResponsesPath::Delete(id)
                | ResponsesPath::InputItems(id) | ResponsesPath::Cancel(id)) = responses_path(m, &path) {
                proptest::prop_assert!(!id.is_empty() && id.len() <= 128);
                proptest::prop_assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
                let sub = format!("/responses/{}", id);
                proptest::prop_assert!(path.contains(&sub));
            }
        }
    }

    #[test]
    fn never_panics_on_responses_shapes(s in r#"\{("(model|input|instructions|tools|max_output_tokens|stream|type|role|content|output|name|arguments)":(null|true|1|-1|"x"|\[\]|\{\}|\[\{"role":"user","content":\[\{"type":"input_text","text":"t"\}\]\}\]|\[\{"type":"function_call","name":"f","arguments":"a"\}\]),?){0,7}\}"#) {
        if let Ok(r) = Request::parse(Endpoint::Responses, s.as_bytes()) {
            let _ = r.count_prompt(O200K);
            let _ = r.max_output_tokens();
            if let Some(out) = r.rewrite(Some("y"), true) {
                let again = Request::parse(Endpoint::Responses, &out);
                proptest::prop_assert!(again.is_ok(), "{}", String::from_utf8_lossy(&out));
            }
        }
        let _ = input_tokens_answer(s.as_bytes(), O200K, 16);
    }
}
