//! The Responses API (`/v1/responses` and its stored-response endpoints) and Anthropic's
//! `count_tokens`, through the real router.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};

use super::{app, assert_openai_error, o200k_len, post_with, send_to, Reply};

const WEATHER: &str = "get_weather";

fn weather_tool() -> Value {
    json!({"type": "function", "name": WEATHER, "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
            "required": ["city"], "additionalProperties": false}, "strict": true})
}

async fn create(app: &Router, body: &Value, headers: &[(&str, &str)]) -> Reply {
    send_to(app.clone(), post_with("/v1/responses", body, headers)).await
}

async fn get(app: &Router, method: &str, path: &str) -> Reply {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::empty())
        .unwrap();
    send_to(app.clone(), req).await
}

/// The events of a Responses SSE body as (event name, data), checking the framing: every event
/// is `event: NAME\ndata: JSON\n\n`, its JSON's `type` is NAME and the sequence numbers count
/// from 0.
fn events(reply: &Reply) -> Vec<(String, Value)> {
    assert_eq!(
        reply.header("content-type"),
        "text/event-stream; charset=utf-8"
    );
    let text = std::str::from_utf8(&reply.body).unwrap();
    assert!(text.ends_with("\n\n"), "events end with a blank line");
    assert!(!text.contains("[DONE]"));
    let out: Vec<(String, Value)> = text
        .strip_suffix("\n\n")
        .unwrap()
        .split("\n\n")
        .map(|frame| {
            let (name, data) = frame
                .strip_prefix("event: ")
                .and_then(|f| f.split_once("\ndata: "))
                .unwrap_or_else(|| panic!("not an event frame: {frame:?}"));
            let data: Value = serde_json::from_str(data).unwrap();
            assert_eq!(data["type"], name, "{frame}");
            (name.to_owned(), data)
        })
        .collect();
    for (i, (_, data)) in out.iter().enumerate() {
        assert_eq!(data["sequence_number"], i, "{data}");
    }
    out
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

#[tokio::test]
async fn json_response_has_openais_shape_and_tokenizer_usage() {
    let app = app();
    let r = create(&app, &json!({"model": "gpt-4o", "input": "Hello"}), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.header("x-fake-prompt-tokens"), "8");
    let v = r.json();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut expected = vec![
        "id",
        "object",
        "created_at",
        "status",
        "background",
        "error",
        "incomplete_details",
        "instructions",
        "max_output_tokens",
        "max_tool_calls",
        "model",
        "output",
        "parallel_tool_calls",
        "previous_response_id",
        "prompt_cache_key",
        "reasoning",
        "safety_identifier",
        "service_tier",
        "store",
        "temperature",
        "text",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "truncation",
        "usage",
        "user",
        "metadata",
    ];
    expected.sort_unstable();
    assert_eq!(keys, expected);
    // In OpenAI's order on the wire.
    let raw = std::str::from_utf8(&r.body).unwrap();
    assert!(raw.starts_with(r#"{"id":"resp_"#), "{raw}");
    assert!(
        raw.contains(r#""object":"response","created_at":"#),
        "{raw}"
    );
    assert!(raw.ends_with(r#""user":null,"metadata":{}}"#), "{raw}");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["error"], Value::Null);
    assert_eq!(v["incomplete_details"], Value::Null);
    assert_eq!(v["model"], "gpt-4o");
    assert_eq!(v["service_tier"], "default");
    assert_eq!(v["temperature"], 1.0);
    assert_eq!(
        v["text"],
        json!({"format": {"type": "text"}, "verbosity": "medium"})
    );
    let output = v["output"].as_array().unwrap();
    assert_eq!(output.len(), 1);
    let item = &output[0];
    assert!(item["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(
        (&item["type"], &item["status"], &item["role"]),
        (&json!("message"), &json!("completed"), &json!("assistant"))
    );
    let part = &item["content"][0];
    assert_eq!(part["type"], "output_text");
    assert_eq!(part["annotations"], json!([]));
    let text = part["text"].as_str().unwrap();
    assert!(text.starts_with("The quick brown fox"), "{text}");
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 8,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": 16, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 24})
    );
    assert_eq!(o200k_len(text), 16);
}

#[tokio::test]
async fn the_stream_is_openais_event_sequence_ending_in_the_json_response() {
    let app = app();
    let body = json!({"model": "gpt-4o", "input": "Hello", "stream": true});
    let fixed = [
        ("x-fake-id", "resp_fixed"),
        ("x-fake-completion-tokens", "3"),
    ];
    let r = create(&app, &body, &fixed).await;
    assert_eq!(r.status, StatusCode::OK);
    let ev = events(&r);
    assert_eq!(
        names(&ev),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let created = &ev[0].1["response"];
    assert_eq!(created["status"], "in_progress");
    assert_eq!(created["output"], json!([]));
    assert_eq!(created["usage"], Value::Null);
    assert_eq!(created["service_tier"], "auto");
    assert_eq!(ev[2].1["item"]["status"], "in_progress");
    assert_eq!(ev[2].1["item"]["content"], json!([]));
    assert_eq!(
        ev[3].1["part"],
        json!({"type": "output_text", "annotations": [],
        "logprobs": [], "text": ""})
    );
    let deltas: String = ev[4..7]
        .iter()
        .map(|(_, d)| {
            let delta = d["delta"].as_str().unwrap();
            // Obfuscation pads each delta to 16 characters.
            let pad = d["obfuscation"].as_str().unwrap();
            assert_eq!(delta.chars().count() + pad.chars().count(), 16, "{d}");
            assert_eq!(d["logprobs"], json!([]));
            delta.to_owned()
        })
        .collect();
    assert_eq!(deltas, "The quick brown");
    assert_eq!(ev[7].1["text"], deltas);
    assert_eq!(ev[8].1["part"]["text"], deltas);
    let done = &ev[10].1["response"];
    assert_eq!(done["output"][0], ev[9].1["item"]);
    assert_eq!(done["usage"]["output_tokens"], 3);
    // The same request without `stream` answers the completed response, byte for byte.
    let json = create(&app, &json!({"model": "gpt-4o", "input": "Hello"}), &fixed).await;
    let text = std::str::from_utf8(&r.body).unwrap();
    let last = text.trim_end().rsplit("\ndata: ").next().unwrap();
    let completed = serde_json::to_string(&json!({"type": "response.completed",
        "sequence_number": 10, "response": json.json()}))
    .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(last).unwrap(),
        serde_json::from_str::<Value>(&completed).unwrap()
    );
    assert!(last.ends_with(&format!(
        r#""response":{}}}"#,
        std::str::from_utf8(&json.body).unwrap()
    )));
    // Without obfuscation the deltas carry none.
    let body = json!({"model": "gpt-4o", "input": "Hello", "stream": true,
        "stream_options": {"include_obfuscation": false}});
    let ev = events(&create(&app, &body, &[]).await);
    assert!(ev[4].1.get("obfuscation").is_none());
}

#[tokio::test]
async fn max_output_tokens_makes_an_incomplete_response() {
    let app = app();
    let body = json!({"model": "gpt-4o", "input": "Hello", "max_output_tokens": 20});
    let r = create(&app, &body, &[("x-fake-completion-tokens", "40")]).await;
    let v = r.json();
    assert_eq!(v["status"], "incomplete");
    assert_eq!(
        v["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(v["max_output_tokens"], 20);
    assert_eq!(v["output"][0]["status"], "incomplete");
    assert_eq!(v["usage"]["output_tokens"], 20);
    let text = v["output"][0]["content"][0]["text"].as_str().unwrap();
    assert_eq!(o200k_len(text), 20);
    let mut body = body;
    body["stream"] = json!(true);
    let ev = events(&create(&app, &body, &[("x-fake-completion-tokens", "40")]).await);
    let (last, data) = ev.last().unwrap();
    assert_eq!(last, "response.incomplete");
    assert_eq!(data["response"]["status"], "incomplete");
    assert_eq!(data["response"]["usage"]["output_tokens"], 20);
    // Reasoning comes out of the budget first: 16 of reasoning leave 4 for the text.
    let r = create(
        &app,
        &json!({"model": "o3", "input": "Hello", "max_output_tokens": 20}),
        &[("x-fake-reasoning-tokens", "16")],
    )
    .await;
    let v = r.json();
    assert_eq!(v["output"][0]["type"], "reasoning");
    assert_eq!(v["output"][0]["summary"], json!([]));
    assert_eq!(v["usage"]["output_tokens"], 20);
    assert_eq!(v["usage"]["output_tokens_details"]["reasoning_tokens"], 16);
    assert_eq!(v["status"], "incomplete");
    let text = v["output"][1]["content"][0]["text"].as_str().unwrap();
    assert_eq!(text, "The quick brown fox");
}

#[tokio::test]
async fn a_function_call_round_trip() {
    let app = app();
    let user = json!({"role": "user", "content": "Weather in Paris?"});
    let body = json!({"model": "gpt-4o", "input": [user], "tools": [weather_tool()]});
    let call_header = [("x-fake-tool-call", WEATHER)];
    let r = create(&app, &body, &call_header).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    let call = &v["output"][0];
    assert_eq!(call["type"], "function_call");
    assert_eq!(call["status"], "completed");
    assert_eq!(call["name"], WEATHER);
    assert!(call["id"].as_str().unwrap().starts_with("fc_"));
    assert!(call["call_id"].as_str().unwrap().starts_with("call_"));
    let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert!(args["city"].is_string(), "{args}");
    assert_eq!(
        v["usage"]["output_tokens"],
        o200k_len(WEATHER) + o200k_len(call["arguments"].as_str().unwrap())
    );
    assert_eq!(v["tools"][0]["strict"], true);

    // The client runs the function and sends its output (with the same header): the answer
    // is a message about it.
    let output = json!({"type": "function_call_output", "call_id": call["call_id"],
        "output": "sunny, 21C"});
    let body2 = json!({"model": "gpt-4o", "input": [user, call, output],
        "tools": [weather_tool()]});
    let r = create(&app, &body2, &call_header).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    let v2 = r.json();
    assert_eq!(v2["output"][0]["type"], "message");
    let text = v2["output"][0]["content"][0]["text"].as_str().unwrap();
    assert_eq!(text, "The function get_weather returned: sunny, 21C");
    assert_eq!(v2["usage"]["output_tokens"], o200k_len(text));

    // With previous_response_id only the output travels; the chain's tokens still count.
    let body3 = json!({"model": "gpt-4o", "previous_response_id": v["id"],
        "input": [output], "tools": [weather_tool()]});
    let r3 = create(&app, &body3, &call_header).await;
    assert_eq!(r3.status, StatusCode::OK, "{:?}", r3.json());
    assert_eq!(r3.json()["output"][0]["content"][0]["text"], text);
    assert_eq!(r3.json()["previous_response_id"], v["id"]);
    assert_eq!(
        r3.json()["usage"]["input_tokens"],
        v2["usage"]["input_tokens"]
    );

    // Streamed: the arguments arrive in deltas.
    let mut body = body;
    body["stream"] = json!(true);
    let ev = events(&create(&app, &body, &call_header).await);
    let kinds = names(&ev);
    assert_eq!(kinds[2], "response.output_item.added");
    assert_eq!(ev[2].1["item"]["arguments"], "");
    assert_eq!(ev[2].1["item"]["status"], "in_progress");
    let deltas: String = ev
        .iter()
        .filter(|(n, _)| n == "response.function_call_arguments.delta")
        .map(|(_, d)| d["delta"].as_str().unwrap().to_owned())
        .collect();
    let done = ev
        .iter()
        .find(|(n, _)| n == "response.function_call_arguments.done")
        .unwrap();
    assert_eq!(done.1["arguments"], deltas);
    assert_eq!(kinds[kinds.len() - 2], "response.output_item.done");
    assert_eq!(kinds[kinds.len() - 1], "response.completed");

    // tool_choice naming the function calls it without the header; "none" never calls.
    let forced = json!({"model": "gpt-4o", "input": "x", "tools": [weather_tool()],
        "tool_choice": {"type": "function", "name": WEATHER}});
    let r = create(&app, &forced, &[]).await;
    assert_eq!(r.json()["output"][0]["type"], "function_call");
    let none = json!({"model": "gpt-4o", "input": "x", "tools": [weather_tool()],
        "tool_choice": "none"});
    let r = create(&app, &none, &call_header).await;
    assert_eq!(r.json()["output"][0]["type"], "message");
    // A header naming a tool the request does not offer is a 400.
    let r = create(&app, &forced, &[("x-fake-tool-call", "nope")]).await;
    assert_eq!(r.json()["output"][0]["type"], "function_call");
    let plain = json!({"model": "gpt-4o", "input": "x", "tools": [weather_tool()]});
    let r = create(&app, &plain, &[("x-fake-tool-call", "nope")]).await;
    assert_openai_error(&r, 400, "invalid_request_error", Value::Null);
}

#[tokio::test]
async fn text_format_json_schema_answers_an_instance() {
    let schema = json!({"type": "object", "properties": {
        "city": {"type": "string"}, "temp": {"type": "integer", "minimum": -50, "maximum": 60}},
        "required": ["city", "temp"], "additionalProperties": false});
    let body = json!({"model": "gpt-4o", "input": "Weather?", "text": {"format": {
        "type": "json_schema", "name": "weather", "schema": schema, "strict": true}}});
    let r = create(&app(), &body, &[]).await;
    let v = r.json();
    let text = v["output"][0]["content"][0]["text"].as_str().unwrap();
    let instance: Value = serde_json::from_str(text).unwrap();
    assert!(jsonschema::validator_for(&schema)
        .unwrap()
        .is_valid(&instance));
    assert_eq!(v["usage"]["output_tokens"], o200k_len(text));
    assert_eq!(v["text"]["format"]["name"], "weather");
    assert_eq!(v["text"]["format"]["strict"], true);
    let body = json!({"model": "gpt-4o", "input": "Answer in JSON.",
        "text": {"format": {"type": "json_object"}}});
    let v = create(&app(), &body, &[("x-fake-completion-tokens", "2")])
        .await
        .json();
    let text = v["output"][0]["content"][0]["text"].as_str().unwrap();
    assert_eq!(text, r#"{"answer":"The quick"}"#);
}

#[tokio::test]
async fn stream_errors_and_controls() {
    let app = app();
    let body = json!({"model": "gpt-4o", "input": "Hello", "stream": true});
    let r = create(
        &app,
        &body,
        &[
            ("x-fake-stream-error-after-events", "3"),
            ("x-fake-id", "resp_err"),
        ],
    )
    .await;
    let ev = events(&r);
    assert_eq!(
        names(&ev),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "error",
            "response.failed",
        ]
    );
    let error = &ev[3].1;
    assert_eq!(error["error"]["type"], "server_error");
    assert_eq!(error["error"]["code"], "server_error");
    assert_eq!(error["error"]["param"], Value::Null);
    let failed = &ev[4].1["response"];
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["code"], "server_error");
    assert_eq!(failed["usage"], Value::Null);
    // What was stored is the failed response.
    let stored = get(&app, "GET", "/v1/responses/resp_err").await;
    assert_eq!(stored.json(), *failed);

    let r = create(
        &app,
        &json!({"model": "gpt-4o", "input": "Hello"}),
        &[("x-fake-no-usage", "1"), ("x-fake-cached-tokens", "4")],
    )
    .await;
    assert_eq!(r.json()["usage"], Value::Null);
    let r = create(
        &app,
        &json!({"model": "gpt-4o", "input": "Hello"}),
        &[
            ("x-fake-cached-tokens", "4"),
            ("x-fake-cache-creation-tokens", "2"),
        ],
    )
    .await;
    assert_eq!(
        r.json()["usage"]["input_tokens_details"],
        json!({"cached_tokens": 4, "cache_write_tokens": 2})
    );
    let r = create(
        &app,
        &json!({"model": "gpt-4o", "input": "Hello"}),
        &[("x-fake-status", "429")],
    )
    .await;
    assert_openai_error(&r, 429, "requests", json!("rate_limit_exceeded"));
}

#[tokio::test]
async fn stored_responses_are_retrieved_listed_and_deleted() {
    let app = app();
    let body = json!({"model": "gpt-4o", "instructions": "Be brief.", "input": [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi!"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "More"}]}]});
    let created = create(&app, &body, &[]).await;
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let got = get(&app, "GET", &format!("/v1/responses/{id}")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(
        got.body, created.body,
        "retrieve answers the response as created"
    );

    let items = get(&app, "GET", &format!("/v1/responses/{id}/input_items")).await;
    let list = items.json();
    assert_eq!(list["object"], "list");
    assert_eq!(list["has_more"], false);
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    // Newest first by default; every item has an id and a status; strings became parts.
    assert_eq!(data[0]["content"][0]["text"], "More");
    assert_eq!(
        data[1]["content"],
        json!([{"type": "output_text", "text": "Hi!",
        "annotations": []}])
    );
    assert_eq!(
        data[2]["content"],
        json!([{"type": "input_text", "text": "Hello"}])
    );
    for item in data {
        assert!(item["id"].as_str().unwrap().starts_with("msg_"), "{item}");
        assert_eq!(item["status"], "completed");
    }
    assert_eq!(list["first_id"], data[0]["id"]);
    assert_eq!(list["last_id"], data[2]["id"]);
    let page = get(
        &app,
        "GET",
        &format!("/v1/responses/{id}/input_items?order=asc&limit=1"),
    )
    .await
    .json();
    assert_eq!(page["data"][0], data[2]);
    assert_eq!(page["has_more"], true);

    let deleted = get(&app, "DELETE", &format!("/v1/responses/{id}")).await;
    assert_eq!(
        deleted.json(),
        json!({"id": id, "object": "response", "deleted": true})
    );
    for (method, path) in [
        ("GET", format!("/v1/responses/{id}")),
        ("DELETE", format!("/v1/responses/{id}")),
        ("GET", format!("/v1/responses/{id}/input_items")),
    ] {
        let r = get(&app, method, &path).await;
        assert_openai_error(&r, 404, "invalid_request_error", Value::Null);
        assert_eq!(
            r.json()["error"]["message"],
            format!("Response with id '{id}' not found.")
        );
    }
    // store: false keeps nothing, and a previous_response_id must exist.
    let mut unstored = body.clone();
    unstored["store"] = json!(false);
    let r = create(&app, &unstored, &[]).await;
    assert_eq!(r.json()["store"], false);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let r = get(&app, "GET", &format!("/v1/responses/{id}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = create(
        &app,
        &json!({"model": "gpt-4o", "input": "x", "previous_response_id": id}),
        &[],
    )
    .await;
    assert_openai_error(
        &r,
        400,
        "invalid_request_error",
        json!("previous_response_not_found"),
    );
    assert_eq!(r.json()["error"]["param"], "previous_response_id");
}

#[tokio::test]
async fn input_tokens_counts_what_create_reports() {
    let app = app();
    let body = json!({"model": "gpt-4o", "instructions": "Be brief.",
        "input": [{"role": "user", "content": "What is the capital of France?"}],
        "tools": [weather_tool()]});
    let created = create(&app, &body, &[]).await.json();
    let r = send_to(
        app.clone(),
        post_with("/v1/responses/input_tokens", &body, &[]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        std::str::from_utf8(&r.body).unwrap(),
        format!(
            r#"{{"object":"response.input_tokens","input_tokens":{}}}"#,
            created["usage"]["input_tokens"]
        )
    );
    assert_eq!(
        r.header("x-fake-prompt-tokens"),
        created["usage"]["input_tokens"].to_string()
    );
    let r = send_to(
        app.clone(),
        post_with("/v1/responses/input_tokens", &json!({"input": 5}), &[]),
    )
    .await;
    assert_openai_error(&r, 400, "invalid_request_error", json!("invalid_type"));
}

#[tokio::test]
async fn bad_bodies_are_openai_400s() {
    let app = app();
    let r = send_to(
        app.clone(),
        Request::post("/v1/responses")
            .body(Body::from("{not json"))
            .unwrap(),
    )
    .await;
    assert_openai_error(&r, 400, "invalid_request_error", Value::Null);
    let r = create(
        &app,
        &json!({"model": "gpt-4o", "input": [{"role": "tool", "content": "x"}]}),
        &[],
    )
    .await;
    assert_openai_error(&r, 400, "invalid_request_error", json!("invalid_value"));
    assert_eq!(r.json()["error"]["param"], "input[0].role");
    assert_eq!(
        r.json()["error"]["message"],
        "Invalid value: 'tool'. Supported values are: 'assistant', 'system', 'developer', and \
         'user'."
    );
    let r = get(&app, "GET", "/v1/responses").await;
    assert_openai_error(&r, 404, "invalid_request_error", Value::Null);
}

#[tokio::test]
async fn anthropic_count_tokens_answers_the_messages_input_tokens() {
    let app = app();
    let body = json!({"model": "claude-sonnet-4-5", "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hello, Claude"}]});
    let version = ("anthropic-version", "2023-06-01");
    let r = send_to(
        app.clone(),
        post_with("/v1/messages/count_tokens", &body, &[version]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let expected = o200k_len("Hello, Claude") + o200k_len("Be brief.");
    assert_eq!(r.json(), json!({"input_tokens": expected}));
    assert!(r.header("request-id").starts_with("req_011C"));
    let mut with_max = body.clone();
    with_max["max_tokens"] = json!(16);
    let m = send_to(
        app.clone(),
        post_with("/v1/messages", &with_max, &[version]),
    )
    .await;
    assert_eq!(m.json()["usage"]["input_tokens"], expected);
    let r = send_to(
        app.clone(),
        post_with("/v1/messages/count_tokens", &body, &[]),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json()["error"]["message"],
        "anthropic-version: header is required"
    );
}
