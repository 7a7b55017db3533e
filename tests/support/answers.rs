//! The client APIs of the gateway (OpenAI chat, Responses, Anthropic Messages): requests in
//! each API's shape, and answers (JSON and stream) and errors read the way each API says.

use serde_json::{json, Value};

use super::usage::Figures;
use super::{post_lenient, Gateway, Resp, DEMO_KEY};

/// A client API of the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Chat,
    Responses,
    Messages,
}

pub const APIS: [Api; 3] = [Api::Chat, Api::Responses, Api::Messages];

/// What a client got, read the way its API says.
#[derive(Debug, Default)]
pub struct Answer {
    pub text: String,
    /// A tool call: id, name, arguments (JSON text).
    pub call: Option<(String, String, String)>,
    pub usage: Option<Figures>,
}

pub fn weather_schema() -> Value {
    json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
}

/// One tool round trip through `model`: the fake (told by `headers` to call `weather`) answers
/// a call, which `check_first` may look at further; the client hands the result back; the model
/// answers in text. The fake's answer to the second request is text even though told to call.
pub fn tool_round_trip(
    gw: &Gateway,
    api: Api,
    model: &str,
    stream: bool,
    headers: &[(&str, &str)],
    case: &str,
    check_first: impl Fn(&Resp),
) {
    let first = api.ask(model, "Weather in Oslo?", stream, true);
    let r = api.send(gw, &first, headers);
    let a = api.read(&r, stream);
    check_first(&r);
    let call = a
        .call
        .unwrap_or_else(|| panic!("{case}: no tool call in {}", r.text()));
    assert_eq!(call.1, "weather", "{case}");
    assert!(!call.0.is_empty(), "{case}: {call:?}");
    let args: Value = serde_json::from_str(&call.2)
        .unwrap_or_else(|e| panic!("{case}: arguments {:?}: {e}", call.2));
    assert!(args["city"].is_string(), "{case}: {args}");
    let next = api.hand_back(&first, &call, "sunny, 21 C");
    let r = api.send(gw, &next, headers);
    let a = api.read(&r, stream);
    assert!(a.call.is_none() && !a.text.is_empty(), "{case}: {a:?}");
}

/// The in-band error a stream of `api` ended in, as that API says it: chat's last data event's
/// `error`, the Responses `error` event (the stream ending in `response.failed`, with no
/// `response.completed`), the Messages `event: error`'s `error` (with no `message_stop`).
/// Whether chat's `[DONE]` follows is the caller's to check.
pub fn stream_error(api: Api, text: &str, case: &str) -> Value {
    let json = |d: &str| -> Value {
        serde_json::from_str(d).unwrap_or_else(|e| panic!("{case}: {e}: {d}"))
    };
    match api {
        Api::Chat => data_lines(text)
            .into_iter()
            .rfind(|d| *d != "[DONE]")
            .map(json)
            .unwrap_or_else(|| panic!("{case}: no events: {text}"))["error"]
            .clone(),
        Api::Responses => {
            let events: Vec<Value> = data_lines(text).into_iter().map(json).collect();
            let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
            assert_eq!(types.last(), Some(&"response.failed"), "{case}: {text}");
            assert!(!types.contains(&"response.completed"), "{case}: {text}");
            events
                .into_iter()
                .find(|e| e["type"] == "error")
                .unwrap_or_else(|| panic!("{case}: no error event: {text}"))
        }
        Api::Messages => {
            assert!(!text.contains("event: message_stop"), "{case}: {text}");
            let error = text
                .split("\n\n")
                .find(|e| e.starts_with("event: error"))
                .and_then(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
                .map(json)
                .unwrap_or_else(|| panic!("{case}: no error event: {text}"));
            assert_eq!(error["type"], "error", "{case}: {text}");
            error["error"].clone()
        }
    }
}

impl Api {
    pub fn path(self) -> &'static str {
        match self {
            Api::Chat => "/v1/chat/completions",
            Api::Responses => "/v1/responses",
            Api::Messages => "/v1/messages",
        }
    }

    /// A request for `model` asking `text`, with the weather tool when `tools`.
    pub fn ask(self, model: &str, text: &str, stream: bool, tools: bool) -> Value {
        let mut b = match self {
            Api::Chat => json!({"model": model, "stream": stream,
                                "messages": [{"role": "system", "content": "Be brief."},
                                             {"role": "user", "content": text}]}),
            Api::Responses => json!({"model": model, "stream": stream, "instructions": "Be brief.",
                                     "input": text}),
            Api::Messages => json!({"model": model, "stream": stream, "max_tokens": 256,
                                    "system": "Be brief.",
                                    "messages": [{"role": "user", "content": text}]}),
        };
        if stream && self == Api::Chat {
            b["stream_options"] = json!({"include_usage": true});
        }
        if tools {
            b["tools"] = match self {
                Api::Chat => json!([{"type": "function", "function": {"name": "weather",
                    "description": "Weather in a city", "parameters": weather_schema()}}]),
                Api::Responses => json!([{"type": "function", "name": "weather",
                    "description": "Weather in a city", "parameters": weather_schema()}]),
                Api::Messages => json!([{"name": "weather", "description": "Weather in a city",
                                         "input_schema": weather_schema()}]),
            };
        }
        b
    }

    /// `first` (asked with tools) followed by the tool `call` and its result.
    pub fn hand_back(self, first: &Value, call: &(String, String, String), result: &str) -> Value {
        let (id, name, args) = call;
        let mut b = first.clone();
        match self {
            Api::Chat => {
                let m = b["messages"].as_array_mut().expect("messages");
                m.push(json!({"role": "assistant", "content": null, "tool_calls": [
                    {"id": id, "type": "function", "function": {"name": name, "arguments": args}}]}));
                m.push(json!({"role": "tool", "tool_call_id": id, "content": result}));
            }
            Api::Responses => {
                let text = b["input"].clone();
                b["input"] = json!([
                    {"role": "user", "content": text},
                    {"type": "function_call", "call_id": id, "name": name, "arguments": args},
                    {"type": "function_call_output", "call_id": id, "output": result}]);
            }
            Api::Messages => {
                let input: Value = serde_json::from_str(args).expect("tool input JSON");
                let m = b["messages"].as_array_mut().expect("messages");
                m.push(json!({"role": "assistant", "content": [
                    {"type": "tool_use", "id": id, "name": name, "input": input}]}));
                m.push(json!({"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": id, "content": result}]}));
            }
        }
        b
    }

    pub fn send(self, gw: &Gateway, body: &Value, extra: &[(&str, &str)]) -> Resp {
        let auth = format!("Bearer {DEMO_KEY}");
        let mut h: Vec<(&str, &str)> = match self {
            Api::Messages => vec![("x-api-key", DEMO_KEY), ("anthropic-version", "2023-06-01")],
            _ => vec![("authorization", &auth)],
        };
        h.push(("content-type", "application/json"));
        h.extend_from_slice(extra);
        post_lenient(&gw.url(self.path()), &h, body.to_string().as_bytes())
    }

    /// The answer of a successful response, checked to be what this API answers.
    pub fn read(self, r: &Resp, stream: bool) -> Answer {
        let case = format!("{self:?}, stream {stream}");
        assert_eq!(r.status, 200, "{case}: {}", r.text());
        let ct = r.header("content-type").unwrap_or_default();
        if stream {
            assert!(ct.starts_with("text/event-stream"), "{case}: {ct}");
            match self {
                Api::Chat => read_chat_stream(&r.text()),
                Api::Responses => read_responses_stream(&r.text()),
                Api::Messages => read_messages_stream(&r.text()),
            }
        } else {
            assert!(ct.starts_with("application/json"), "{case}: {ct}");
            let v = r.json();
            match self {
                Api::Chat => read_chat(&v),
                Api::Responses => read_response(&v),
                Api::Messages => read_message(&v),
            }
        }
    }
}

pub fn chat_figures(u: &Value) -> Figures {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    Figures {
        input: n(&u["prompt_tokens"]),
        output: n(&u["completion_tokens"]),
        cached: n(&u["prompt_tokens_details"]["cached_tokens"]),
        reasoning: n(&u["completion_tokens_details"]["reasoning_tokens"]),
    }
}

pub fn read_chat(v: &Value) -> Answer {
    assert_eq!(v["object"], "chat.completion", "{v}");
    let choice = &v["choices"][0];
    let m = &choice["message"];
    assert_eq!(m["role"], "assistant", "{v}");
    let call = m["tool_calls"].get(0).map(|c| {
        assert_eq!(choice["finish_reason"], "tool_calls", "{v}");
        assert_eq!(c["type"], "function", "{v}");
        let f = &c["function"];
        let s = |v: &Value| v.as_str().expect("a string").to_string();
        (s(&c["id"]), s(&f["name"]), s(&f["arguments"]))
    });
    if call.is_none() {
        assert_eq!(choice["finish_reason"], "stop", "{v}");
    }
    let u = &v["usage"];
    assert_eq!(
        u["total_tokens"].as_u64(),
        Some(chat_figures(u).input + chat_figures(u).output),
        "{v}"
    );
    Answer {
        text: m["content"].as_str().unwrap_or_default().to_string(),
        call,
        usage: Some(chat_figures(u)),
    }
}

pub fn data_lines(text: &str) -> Vec<&str> {
    text.split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .collect()
}

pub fn read_chat_stream(text: &str) -> Answer {
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let chunks: Vec<Value> = data_lines(text)
        .into_iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{d}: {e}")))
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk"),
        "{text}"
    );
    let mut a = Answer::default();
    let mut finish = None;
    for c in &chunks {
        let delta = &c["choices"][0]["delta"];
        a.text
            .push_str(delta["content"].as_str().unwrap_or_default());
        if let Some(t) = delta["tool_calls"].get(0) {
            let call = a.call.get_or_insert_with(Default::default);
            if let Some(id) = t["id"].as_str() {
                call.0 = id.into();
            }
            if let Some(name) = t["function"]["name"].as_str() {
                call.1 = name.into();
            }
            call.2
                .push_str(t["function"]["arguments"].as_str().unwrap_or_default());
        }
        if let Some(f) = c["choices"][0]["finish_reason"].as_str() {
            finish = Some(f.to_string());
        }
        if c["usage"].is_object() {
            assert_eq!(c["choices"], json!([]), "the usage chunk: {c}");
            a.usage = Some(chat_figures(&c["usage"]));
        }
    }
    let want = if a.call.is_some() {
        "tool_calls"
    } else {
        "stop"
    };
    assert_eq!(finish.as_deref(), Some(want), "{text}");
    a
}

pub fn read_response(v: &Value) -> Answer {
    assert_eq!(v["object"], "response", "{v}");
    assert_eq!(v["status"], "completed", "{v}");
    let mut a = Answer::default();
    for item in v["output"].as_array().expect("output") {
        match item["type"].as_str() {
            Some("message") => {
                for part in item["content"].as_array().expect("content") {
                    assert_eq!(part["type"], "output_text", "{v}");
                    a.text.push_str(part["text"].as_str().unwrap_or_default());
                }
            }
            Some("function_call") => {
                let s = |k: &str| item[k].as_str().expect("a string").to_string();
                a.call = Some((s("call_id"), s("name"), s("arguments")));
            }
            _ => panic!("unexpected output item {item}"),
        }
    }
    let u = &v["usage"];
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let f = Figures {
        input: n(&u["input_tokens"]),
        output: n(&u["output_tokens"]),
        cached: n(&u["input_tokens_details"]["cached_tokens"]),
        reasoning: n(&u["output_tokens_details"]["reasoning_tokens"]),
    };
    assert_eq!(n(&u["total_tokens"]), f.input + f.output, "{v}");
    a.usage = Some(f);
    a
}

pub fn read_responses_stream(text: &str) -> Answer {
    let events: Vec<Value> = data_lines(text)
        .into_iter()
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{d}: {e}")))
        .collect();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["sequence_number"], i, "{text}");
    }
    assert_eq!(
        events.first().map(|e| &e["type"]),
        Some(&json!("response.created"))
    );
    let done = events.last().expect("events");
    assert_eq!(done["type"], "response.completed", "{text}");
    let a = read_response(&done["response"]);
    let deltas: String = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .filter_map(|e| e["delta"].as_str())
        .collect();
    assert_eq!(deltas, a.text, "the deltas make the text: {text}");
    a
}

pub fn message_figures(u: &Value) -> Figures {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    Figures {
        input: n(&u["input_tokens"])
            + n(&u["cache_read_input_tokens"])
            + n(&u["cache_creation_input_tokens"]),
        output: n(&u["output_tokens"]),
        cached: n(&u["cache_read_input_tokens"]),
        reasoning: 0,
    }
}

pub fn read_message(v: &Value) -> Answer {
    assert_eq!(v["type"], "message", "{v}");
    assert_eq!(v["role"], "assistant", "{v}");
    let mut a = Answer::default();
    for block in v["content"].as_array().expect("content") {
        match block["type"].as_str() {
            Some("text") => a.text.push_str(block["text"].as_str().unwrap_or_default()),
            Some("tool_use") => {
                let s = |k: &str| block[k].as_str().expect("a string").to_string();
                a.call = Some((s("id"), s("name"), block["input"].to_string()));
            }
            _ => panic!("unexpected block {block}"),
        }
    }
    let want = if a.call.is_some() {
        "tool_use"
    } else {
        "end_turn"
    };
    assert_eq!(v["stop_reason"], want, "{v}");
    a.usage = Some(message_figures(&v["usage"]));
    a
}

pub fn read_messages_stream(text: &str) -> Answer {
    let events: Vec<(String, Value)> = text
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_else(|| panic!("no event name: {e}"));
            let data = e
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .expect("data");
            let v: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("{data}: {e}"));
            assert_eq!(v["type"], name, "{text}");
            (name.to_string(), v)
        })
        .collect();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"), "{text}");
    assert_eq!(names.last(), Some(&"message_stop"), "{text}");
    let mut a = Answer::default();
    let mut stop = None;
    for (name, v) in &events {
        match name.as_str() {
            "content_block_start" if v["content_block"]["type"] == "tool_use" => {
                let b = &v["content_block"];
                let s = |k: &str| b[k].as_str().expect("a string").to_string();
                a.call = Some((s("id"), s("name"), String::new()));
            }
            "content_block_delta" => {
                let d = &v["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => a.text.push_str(d["text"].as_str().unwrap_or_default()),
                    Some("input_json_delta") => a
                        .call
                        .as_mut()
                        .expect("a tool_use block")
                        .2
                        .push_str(d["partial_json"].as_str().unwrap_or_default()),
                    _ => panic!("unexpected delta {v}"),
                }
            }
            "message_delta" => {
                stop = v["delta"]["stop_reason"].as_str().map(str::to_string);
                a.usage = Some(message_figures(&v["usage"]));
            }
            _ => {}
        }
    }
    let want = if a.call.is_some() {
        "tool_use"
    } else {
        "end_turn"
    };
    assert_eq!(stop.as_deref(), Some(want), "{text}");
    a
}

/// An error answer: its status, and its `error.type` in the client's format (Anthropic's
/// shape for Messages, OpenAI's for chat and Responses).
pub fn error_type(api: Api, r: &Resp) -> (u16, String) {
    let v = r.json();
    if api == Api::Messages {
        assert_eq!(v["type"], "error", "{v}");
    }
    let kind = v["error"]["type"].as_str().unwrap_or_else(|| panic!("{v}"));
    assert!(v["error"]["message"].is_string(), "{v}");
    (r.status, kind.to_string())
}
