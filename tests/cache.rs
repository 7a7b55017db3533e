//! The response cache in real Envoy (2 workers, the cache in shared data): exact hits served
//! without the provider, a different entry for any change of the request, consumer scopes,
//! nothing stored but complete 200 answers, streamed and JSON answers served to either kind of
//! client (and to the official openai SDK), tool calls, Cache-Control, TTL, size bounds,
//! metrics, the access log and limits; the local semantic cache with the fake provider's
//! bag-of-words embeddings, and an embedding service that is down, slow or failing.

mod support;

use std::io::Read;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// sha256 of the demo consumer's key (`DEMO_KEY`).
const DEMO_KEY_SHA256: &str = "0b006f9beb977623c3f78ec1be7fe09519ecfab87240f4f263e4164f76667e55";

/// The plugin configuration: an OpenAI provider (`openai`), an Anthropic one (`claude`), a
/// `backup` for a failover chain and an `embedder` (its own cluster, so embedding calls are
/// counted apart from chat calls); `routes` first, then an uncached default route to OpenAI.
/// Consumers: the demo key, or the trusted `x-team` header.
fn config(routes: Value, cache: Value) -> Value {
    // A case makes OpenAI answer 429, and the next requests go to it again.
    without_cooldown(json!({
        "providers": {
            "openai": {"cluster": "openai", "api_key_env": "OPENAI_API_KEY"},
            "claude": {"cluster": "backup", "format": "anthropic", "api_key_env": "BACKUP_API_KEY"},
            "backup": {"cluster": "backup", "auth": "api-key", "api_key_env": "BACKUP_API_KEY"},
            "embedder": {"cluster": "embedder", "api_key_env": "OPENAI_API_KEY"},
        },
        "routes": routes,
        // The models and consumers the metrics assert are listed, so they get labels.
        "default": {"to": {"provider": "openai"}, "models": ["gpt-4o-mini"]},
        "consumers": [{"name": "demo", "key_sha256": DEMO_KEY_SHA256},
                      {"name": "team-a"}, {"name": "team-b"}, {"name": "team-c"}],
        "consumer_header": "x-team",
        "tokenizer": {"preload": ["o200k_base"]},
        "cache": cache,
    }))
}

/// A route for the models matching `model` to OpenAI, with `cache`.
/// A glob route lists `gpt-4o-mini` (when it matches it), the model the metrics assert.
fn route(model: &str, cache: Value) -> Value {
    let mut r = json!({"match": {"model": model}, "to": {"provider": "openai"}, "cache": cache});
    if model != "gpt-4o-mini" && wildmatch::WildMatch::new(model).matches("gpt-4o-mini") {
        r["models"] = json!(["gpt-4o-mini"]);
    }
    r
}

/// A gateway (2 workers) with `config`; the `embedder` cluster goes to `embedder_port` (the
/// fake's port when `None`).
fn start(fake: &Fake, config: Value, embedder_port: Option<u16>) -> Gateway {
    let port = embedder_port.unwrap_or(fake.port);
    gateway_with_cluster(fake, config, 2, "embedder", port)
}

/// `config` with local `limits`.
fn with_limits(mut config: Value, limits: Value) -> Value {
    config["limits"] = limits;
    config
}

fn question(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

fn streamed(mut body: Value, include_usage: bool) -> Value {
    body["stream"] = true.into();
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// Chat requests that reached the fake provider through the `openai` cluster.
fn provider_calls(gw: &Gateway) -> u64 {
    gw.counter("cluster.openai.upstream_rq_total")
}

fn cache_header(r: &Resp) -> &str {
    r.header("x-llm-cache").unwrap_or("(absent)")
}

/// Post as consumer `team`, keeping what arrived when the body ends in an error (a stream the
/// provider cut short).
fn post_lenient(gw: &Gateway, team: &str, body: &Value, extra: &[(&str, &str)]) -> Resp {
    let mut headers = vec![("content-type", "application/json"), ("x-team", team)];
    headers.extend_from_slice(extra);
    support::post_lenient(
        &gw.url("/v1/chat/completions"),
        &headers,
        body.to_string().as_bytes(),
    )
}

/// What an answer says, whichever way it came.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    id: String,
    content: String,
    finish_reason: String,
    /// `{"id", "type", "function": {"name", "arguments"}}` per call.
    tool_calls: Vec<Value>,
    usage: Option<Value>,
}

/// The answer of a `chat.completion` JSON body.
fn from_json(r: &Resp) -> Answer {
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        r.headers
    );
    let v = r.json();
    assert_eq!(v["object"], "chat.completion", "{v}");
    let choices = v["choices"].as_array().expect("choices");
    assert_eq!(choices.len(), 1, "{v}");
    let m = &choices[0]["message"];
    assert_eq!(m["role"], "assistant", "{v}");
    Answer {
        id: v["id"].as_str().expect("id").to_string(),
        content: m["content"].as_str().unwrap_or_default().to_string(),
        finish_reason: choices[0]["finish_reason"]
            .as_str()
            .expect("finish_reason")
            .to_string(),
        tool_calls: m["tool_calls"].as_array().cloned().unwrap_or_default(),
        usage: v.get("usage").cloned().filter(|u| !u.is_null()),
    }
}

/// The chunks of a valid `chat.completion.chunk` SSE stream ending in `[DONE]`, and what they
/// add up to. Checks the framing, one id, the role first, one finish reason, tool-call deltas
/// (id, type and name first, then arguments) and that usage comes alone in the last chunk.
fn from_sse(r: &Resp) -> (Answer, Vec<Value>) {
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream")),
        "{:?}",
        r.headers
    );
    let text = r.text();
    assert!(
        text.ends_with("data: [DONE]\n\n"),
        "no [DONE] at the end: {text}"
    );
    let events: Vec<&str> = text
        .trim_end_matches('\n')
        .split("\n\n")
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not one data line: {e:?} in {text}"))
        })
        .collect();
    let (done, events) = events.split_last().expect("events");
    assert_eq!(*done, "[DONE]");
    let chunks: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str(e).unwrap_or_else(|err| panic!("{err}: {e}")))
        .collect();
    assert!(!chunks.is_empty(), "{text}");
    let id = chunks[0]["id"].as_str().expect("id").to_string();
    let mut a = Answer {
        id,
        content: String::new(),
        finish_reason: String::new(),
        tool_calls: Vec::new(),
        usage: None,
    };
    let mut saw_role = false;
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c["object"], "chat.completion.chunk", "{c}");
        assert_eq!(c["id"], a.id.as_str(), "one id: {c}");
        assert!(c["model"].is_string(), "{c}");
        let choices = c["choices"].as_array().expect("choices");
        if let Some(u) = c.get("usage").filter(|u| !u.is_null()) {
            assert!(a.usage.is_none(), "two usage chunks: {text}");
            assert!(choices.is_empty(), "usage in a chunk with choices: {c}");
            assert_eq!(i, chunks.len() - 1, "usage chunk not last: {text}");
            a.usage = Some(u.clone());
        }
        for ch in choices {
            assert_eq!(ch["index"], 0, "{c}");
            let d = &ch["delta"];
            if let Some(role) = d.get("role").filter(|r| !r.is_null()) {
                assert_eq!(role, "assistant");
                saw_role = true;
            }
            assert!(saw_role, "a delta before the role: {text}");
            if let Some(s) = d["content"].as_str() {
                a.content.push_str(s);
            }
            for tc in d["tool_calls"].as_array().into_iter().flatten() {
                let at = tc["index"].as_u64().expect("tool call index") as usize;
                if at == a.tool_calls.len() {
                    assert!(tc["id"].is_string() && tc["type"] == "function", "{c}");
                    assert!(tc["function"]["name"].is_string(), "{c}");
                    a.tool_calls.push(json!({"id": tc["id"], "type": "function",
                        "function": {"name": tc["function"]["name"], "arguments": ""}}));
                }
                let call = a.tool_calls.get_mut(at).expect("tool call index in order");
                let args = tc["function"]["arguments"].as_str().unwrap_or_default();
                let so_far = call["function"]["arguments"].as_str().unwrap_or_default();
                call["function"]["arguments"] = format!("{so_far}{args}").into();
            }
            if let Some(f) = ch["finish_reason"].as_str() {
                assert!(a.finish_reason.is_empty(), "two finish reasons: {text}");
                a.finish_reason = f.to_string();
            }
        }
    }
    assert!(saw_role, "{text}");
    assert!(!a.finish_reason.is_empty(), "no finish reason: {text}");
    (a, chunks)
}

fn usage_total(a: &Answer) -> u64 {
    a.usage.as_ref().expect("usage")["total_tokens"]
        .as_u64()
        .expect("total_tokens")
}

/// An access-log field as a number (Envoy writes filter state as strings).
fn num_field(line: &Value, k: &str) -> Option<u64> {
    match &line[k] {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

fn lookups(prom: &str, result: &str) -> f64 {
    prom_sum(
        prom,
        "llm_gateway_cache_lookups_total",
        &[("result", result)],
    )
}

fn stores(prom: &str, result: &str) -> f64 {
    prom_sum(
        prom,
        "llm_gateway_cache_stores_total",
        &[("result", result)],
    )
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
}

// ------------------------------------------------------------------------------ exact cache

#[test]
fn an_identical_request_is_served_from_the_cache_without_the_provider() {
    let fake = Fake::start(None);
    let gw = start(
        &fake,
        config(json!([route("gpt-4o*", json!({}))]), json!({})),
        None,
    );
    let body = question("gpt-4o-mini", "What does a response cache do?");
    let miss = chat_as(&gw, "team-a", &body, &[("x-fake-id", "chatcmpl-first")]);
    assert_eq!(miss.status, 200, "{}", miss.text());
    assert_eq!(cache_header(&miss), "miss");
    assert_eq!(miss.json()["id"], "chatcmpl-first");
    assert_eq!(provider_calls(&gw), 1);

    // Every later identical request, each on its own connection (so on both workers), is a
    // hit: the same answer, which the provider (answering with another id) never saw.
    for i in 0..8 {
        let id = format!("chatcmpl-again-{i}");
        let hit = chat_as(&gw, "team-a", &body, &[("x-fake-id", &id)]);
        assert_eq!(hit.status, 200, "{}", hit.text());
        assert_eq!(cache_header(&hit), "hit", "request {i}");
        assert_eq!(hit.json(), miss.json(), "request {i}");
        assert_eq!(from_json(&hit), from_json(&miss));
        assert!(
            hit.header("x-fake-received-model").is_none(),
            "{:?}",
            hit.headers
        );
    }
    assert_eq!(provider_calls(&gw), 1, "hits never reach the provider");

    // A route without `cache` is not cached and says nothing.
    let other = question("o3-mini", "What does a response cache do?");
    for i in 0..2 {
        let r = chat_as(&gw, "team-a", &other, &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-llm-cache"), None, "{:?}", r.headers);
        assert_eq!(provider_calls(&gw), 2 + i);
    }
}

#[test]
fn any_change_to_the_request_is_a_different_entry() {
    let fake = Fake::start(None);
    let gw = start(
        &fake,
        config(json!([route("gpt-4o*", json!({}))]), json!({})),
        None,
    );
    let base = json!({"model": "gpt-4o-mini", "temperature": 0.2, "messages": [
        // JSON is named: OpenAI (and the fake) refuse a json_object response_format otherwise.
        {"role": "system", "content": "You are terse, in JSON when asked."},
        {"role": "user", "content": "Name a prime number."}]});
    let ask = |body: &Value, tag: &str| {
        let r = chat_as(&gw, "team-a", body, &[("x-fake-id", tag)]);
        assert_eq!(r.status, 200, "{tag}: {}", r.text());
        r
    };
    let first = ask(&base, "chatcmpl-base");
    assert_eq!(cache_header(&first), "miss");
    let again = ask(&base, "chatcmpl-base-again");
    assert_eq!(cache_header(&again), "hit");
    assert_eq!(again.json()["id"], "chatcmpl-base");

    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let mut extra_turn = base.clone();
    extra_turn["messages"].as_array_mut().unwrap().extend([
        json!({"role": "assistant", "content": "7"}),
        json!({"role": "user", "content": "Name a prime number."}),
    ]);
    let mut other_system = base.clone();
    other_system["messages"][0]["content"] = "You are verbose.".into();
    let mut no_system = base.clone();
    no_system["messages"].as_array_mut().unwrap().remove(0);
    let mut other_question = base.clone();
    other_question["messages"][1]["content"] = "Name a prime number!".into();
    let mut tool_choice = with("tools", weather_tools());
    tool_choice["tool_choice"] = "none".into();
    let variations = [
        ("temperature", with("temperature", json!(0.7))),
        ("no temperature", {
            let mut b = base.clone();
            b.as_object_mut().unwrap().remove("temperature");
            b
        }),
        ("top_p", with("top_p", json!(0.5))),
        ("seed", with("seed", json!(7))),
        ("n", with("n", json!(1))),
        ("max_tokens", with("max_tokens", json!(50))),
        ("stop", with("stop", json!(["\n"]))),
        ("tools", with("tools", weather_tools())),
        ("tool_choice", tool_choice),
        (
            "response_format",
            with("response_format", json!({"type": "json_object"})),
        ),
        ("user", with("user", json!("alice"))),
        ("an extra turn", extra_turn),
        ("another system prompt", other_system),
        ("no system prompt", no_system),
        ("another question", other_question),
        ("another model", with("model", json!("gpt-4o"))),
    ];
    let mut calls = provider_calls(&gw);
    for (name, body) in &variations {
        let tag = format!("chatcmpl-{}", name.replace(' ', "-"));
        let r = ask(body, &tag);
        assert_eq!(cache_header(&r), "miss", "{name} must miss");
        assert_eq!(
            r.json()["id"],
            tag.as_str(),
            "{name}: not the provider's answer"
        );
        calls += 1;
        assert_eq!(provider_calls(&gw), calls, "{name}");
        // The variation is an entry of its own.
        let r = ask(body, "chatcmpl-should-not-be-seen");
        assert_eq!(cache_header(&r), "hit", "{name}, asked again");
        assert_eq!(r.json()["id"], tag.as_str(), "{name}, asked again");
        assert_eq!(provider_calls(&gw), calls, "{name}");
    }
    // The first entry is still there, untouched by its variations.
    assert_eq!(ask(&base, "x").json()["id"], "chatcmpl-base");

    // The key is the canonical body: key order, spacing, how a number is written and the
    // stream flags do not matter.
    let same =
        br#"{ "messages" : [ {"content": "You are terse, in JSON when asked.", "role": "system"},
        {"content": "Name a prime number.", "role": "user"} ],
        "temperature": 0.20, "model": "gpt-4o-mini", "stream": false }"#;
    let r = post(
        &gw.url("/v1/chat/completions"),
        &[
            ("content-type", "application/json"),
            ("x-team", "team-a"),
            ("x-fake-id", "chatcmpl-canonical"),
        ],
        same,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        cache_header(&r),
        "hit",
        "the same request written differently"
    );
    assert_eq!(r.json()["id"], "chatcmpl-base");
    assert_eq!(provider_calls(&gw), calls);
}

#[test]
fn consumers_have_their_own_entries_unless_the_scope_is_shared() {
    let fake = Fake::start(None);
    let gw = start(
        &fake,
        config(
            json!([
                route("gpt-4o-mini", json!({})),
                route("gpt-4o", json!({"scope": "shared"})),
            ]),
            json!({}),
        ),
        None,
    );
    // scope: consumer (the default): two consumers, two entries.
    let body = question("gpt-4o-mini", "What is our refund policy?");
    let a = chat_as(&gw, "team-a", &body, &[("x-fake-id", "chatcmpl-a")]);
    assert_eq!(cache_header(&a), "miss");
    let b = chat_as(&gw, "team-b", &body, &[("x-fake-id", "chatcmpl-b")]);
    assert_eq!(
        cache_header(&b),
        "miss",
        "team-b must not get team-a's answer"
    );
    assert_eq!(b.json()["id"], "chatcmpl-b");
    let demo = chat(&gw, &body, &[("x-fake-id", "chatcmpl-demo")]);
    assert_eq!(
        cache_header(&demo),
        "miss",
        "the demo key is a third consumer"
    );
    assert_eq!(demo.json()["id"], "chatcmpl-demo");
    assert_eq!(provider_calls(&gw), 3);
    for (team, id) in [("team-a", "chatcmpl-a"), ("team-b", "chatcmpl-b")] {
        let r = chat_as(&gw, team, &body, &[("x-fake-id", "chatcmpl-x")]);
        assert_eq!(cache_header(&r), "hit", "{team}");
        assert_eq!(r.json()["id"], id, "{team} gets its own answer");
    }
    let r = chat(&gw, &body, &[]);
    assert_eq!(
        (cache_header(&r), &r.json()["id"]),
        ("hit", &json!("chatcmpl-demo"))
    );
    assert_eq!(provider_calls(&gw), 3);

    // scope: shared: whoever asks first answers for everyone on the route.
    let body = question("gpt-4o", "What is our refund policy?");
    let a = chat_as(&gw, "team-a", &body, &[("x-fake-id", "chatcmpl-shared")]);
    assert_eq!(cache_header(&a), "miss");
    for team in ["team-b", "team-c"] {
        let r = chat_as(&gw, team, &body, &[("x-fake-id", "chatcmpl-x")]);
        assert_eq!(cache_header(&r), "hit", "{team}");
        assert_eq!(r.json()["id"], "chatcmpl-shared");
    }
    let r = chat(&gw, &body, &[("x-fake-id", "chatcmpl-x")]);
    assert_eq!(
        (cache_header(&r), &r.json()["id"]),
        ("hit", &json!("chatcmpl-shared"))
    );
    assert_eq!(provider_calls(&gw), 4);
    // Hits are counted for the consumer that got them.
    let prom = gw.prometheus();
    assert_eq!(
        prom_sum(
            &prom,
            "llm_gateway_cache_lookups_total",
            &[("consumer", "team-c"), ("result", "hit")]
        ),
        1.0,
        "{prom}"
    );
}

#[test]
fn errors_and_cut_short_streams_are_never_stored() {
    let fake = Fake::start(None);
    let gw = start(
        &fake,
        config(
            json!([
                route("gpt-4o-mini", json!({})),
                {"match": {"model": "claude-*"}, "to": {"provider": "claude"}, "cache": {}},
            ]),
            json!({}),
        ),
        None,
    );
    // (case, model, stream with usage, control headers, status the client gets)
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<bool>,
        &'a [(&'a str, &'a str)],
        u16,
    );
    let cases: [Case; 9] = [
        ("500", "gpt-4o-mini", None, &[("x-fake-status", "500")], 500),
        ("429", "gpt-4o-mini", None, &[("x-fake-status", "429")], 429),
        (
            "503 to a stream",
            "gpt-4o-mini",
            Some(true),
            &[("x-fake-status", "503")],
            503,
        ),
        (
            "reset after 4 events",
            "gpt-4o-mini",
            Some(false),
            &[("x-fake-abort-after-events", "4")],
            200,
        ),
        // Role, 16 pieces, the finish reason and usage arrive; only [DONE] is missing.
        (
            "reset before [DONE]",
            "gpt-4o-mini",
            Some(true),
            &[("x-fake-abort-after-events", "19")],
            200,
        ),
        (
            "reset after the finish reason",
            "gpt-4o-mini",
            Some(false),
            &[("x-fake-abort-after-events", "18")],
            200,
        ),
        (
            "in-band error",
            "gpt-4o-mini",
            Some(true),
            &[("x-fake-stream-error-after-events", "5")],
            200,
        ),
        (
            "anthropic in-band error",
            "claude-sonnet-4-5",
            Some(true),
            &[("x-fake-stream-error-after-events", "5")],
            200,
        ),
        (
            "anthropic reset",
            "claude-sonnet-4-5",
            Some(false),
            &[("x-fake-abort-after-events", "5")],
            200,
        ),
    ];
    let chat_calls =
        |gw: &Gateway| provider_calls(gw) + gw.counter("cluster.backup.upstream_rq_total");
    for (i, (case, model, stream, headers, status)) in cases.iter().enumerate() {
        let mut body = json!({"model": model, "max_tokens": 100,
            "messages": [{"role": "user", "content": format!("Question number {i}")}]});
        if let Some(usage) = stream {
            body = streamed(body, *usage);
        }
        let before = chat_calls(&gw);
        let r = post_lenient(&gw, "team-a", &body, headers);
        assert_eq!(r.status, *status, "{case}: {}", r.text());
        assert_eq!(cache_header(&r), "miss", "{case}");
        assert!(!r.text().contains("[DONE]"), "{case}: {}", r.text());
        assert_eq!(chat_calls(&gw), before + 1, "{case}");
        // The same request again reaches the provider: nothing was stored.
        let id = format!("chatcmpl-retry-{i}");
        let r = post_lenient(&gw, "team-a", &body, &[("x-fake-id", &id)]);
        assert_eq!(r.status, 200, "{case}: {}", r.text());
        assert_eq!(
            cache_header(&r),
            "miss",
            "{case}: the failed answer was stored"
        );
        assert_eq!(chat_calls(&gw), before + 2, "{case}");
        let answer = if stream.is_some() {
            from_sse(&r).0
        } else {
            from_json(&r)
        };
        if model.starts_with("gpt") {
            assert_eq!(answer.id, id, "{case}");
        }
        // And the complete answer is stored.
        let r = post_lenient(&gw, "team-a", &body, &[("x-fake-id", "chatcmpl-unseen")]);
        assert_eq!(cache_header(&r), "hit", "{case}: the complete answer");
        assert_eq!(chat_calls(&gw), before + 2, "{case}");
    }
    let prom = gw.prometheus();
    assert_eq!(stores(&prom, "stored"), 9.0, "{prom}");
    assert!(stores(&prom, "error") >= 3.0, "{prom}");
    assert!(stores(&prom, "incomplete") >= 4.0, "{prom}");
    assert_eq!(
        stores(&prom, "error") + stores(&prom, "incomplete"),
        9.0,
        "every failed answer is counted once: {prom}"
    );
}

#[test]
fn a_streamed_miss_is_served_to_json_and_stream_clients() {
    let fake = Fake::start(None);
    let gw = start(
        &fake,
        config(json!([route("gpt-4o*", json!({}))]), json!({})),
        None,
    );
    let q = question("gpt-4o-mini", "Tell me a story about a fox.");
    let miss = chat_as(
        &gw,
        "team-a",
        &streamed(q.clone(), true),
        &[
            ("x-fake-completion-tokens", "9"),
            ("x-fake-id", "chatcmpl-story"),
        ],
    );
    assert_eq!(miss.status, 200, "{}", miss.text());
    assert_eq!(cache_header(&miss), "miss");
    let (told, _) = from_sse(&miss);
    assert_eq!(told.id, "chatcmpl-story");
    assert_eq!(told.finish_reason, "stop");
    assert_eq!(told.usage.as_ref().unwrap()["completion_tokens"], 9);
    assert_eq!(provider_calls(&gw), 1);

    // A JSON client: the same content, finish reason and usage, as a chat.completion.
    // (x-fake-completion-tokens differs: had the provider answered, the text would too.)
    let hit = chat_as(&gw, "team-a", &q, &[("x-fake-completion-tokens", "3")]);
    assert_eq!(hit.status, 200, "{}", hit.text());
    assert_eq!(cache_header(&hit), "hit");
    let got = from_json(&hit);
    assert_eq!(got.content, told.content);
    assert_eq!(got.finish_reason, told.finish_reason);
    assert_eq!(got.usage, told.usage);
    assert_eq!(got.id, told.id);
    assert_eq!(hit.json()["model"], "gpt-4o-mini");

    // A stream client without include_usage: a valid stream, and no usage anywhere.
    let hit = chat_as(
        &gw,
        "team-a",
        &streamed(q.clone(), false),
        &[("x-fake-completion-tokens", "3")],
    );
    assert_eq!(cache_header(&hit), "hit");
    let (got, chunks) = from_sse(&hit);
    assert_eq!(
        (&got.content, &got.finish_reason, &got.usage),
        (&told.content, &told.finish_reason, &None)
    );
    assert!(
        chunks.iter().all(|c| c["usage"].is_null()),
        "usage without include_usage: {}",
        hit.text()
    );
    // With include_usage: the usage chunk last, as the provider sent it.
    let hit = chat_as(&gw, "team-a", &streamed(q.clone(), true), &[]);
    assert_eq!(cache_header(&hit), "hit");
    let (got, chunks) = from_sse(&hit);
    assert_eq!(got.content, told.content);
    assert_eq!(got.usage, told.usage);
    assert_eq!(chunks.last().unwrap()["choices"], json!([]));
    assert_eq!(provider_calls(&gw), 1);

    // A streamed miss without include_usage (the gateway asks the provider for usage and
    // strips it from what the client gets): stored with its usage all the same.
    let q = question("gpt-4o-mini", "Tell me a story about a cat.");
    let miss = chat_as(
        &gw,
        "team-a",
        &streamed(q.clone(), false),
        &[("x-fake-completion-tokens", "6")],
    );
    assert_eq!(cache_header(&miss), "miss");
    let (told, _) = from_sse(&miss);
    assert_eq!(told.usage, None);
    let hit = chat_as(&gw, "team-a", &q, &[]);
    assert_eq!(cache_header(&hit), "hit");
    let got = from_json(&hit);
    assert_eq!(
        (&got.content, &got.finish_reason),
        (&told.content, &told.finish_reason)
    );
    let usage = got.usage.expect("usage in the JSON hit");
    assert_eq!(usage["completion_tokens"], 6, "{usage}");
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(usage["prompt_tokens"].as_u64().unwrap() + 6)
    );
    let hit = chat_as(&gw, "team-a", &streamed(q, true), &[]);
    assert_eq!(from_sse(&hit).0.usage, Some(usage));
    assert_eq!(provider_calls(&gw), 2);

    // A streamed miss reaches the client as the provider sends it: the first event long
    // before the last (8 events, 200 ms apart), and it is stored all the same.
    let paced = streamed(question("gpt-4o-mini", "Tell me a slow story."), true);
    let t = Instant::now();
    let mut r = agent()
        .post(&gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("x-team", "team-a")
        .header("x-fake-chunk-delay-ms", "200")
        .header("x-fake-completion-tokens", "4")
        .send(paced.to_string())
        .expect("POST");
    assert_eq!(r.headers().get("x-llm-cache").unwrap(), "miss");
    let mut reader = r.body_mut().as_reader();
    let mut first = [0u8; 6];
    reader.read_exact(&mut first).expect("first bytes");
    let first_at = t.elapsed();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).expect("the rest");
    let done_at = t.elapsed();
    assert_eq!(&first, b"data: ");
    assert!(
        first_at < Duration::from_millis(600) && done_at >= Duration::from_millis(1400),
        "first event after {first_at:?}, last after {done_at:?}"
    );
    assert!(String::from_utf8_lossy(&rest).ends_with("data: [DONE]\n\n"));
    let r = chat_as(&gw, "team-a", &paced, &[]);
    assert_eq!(cache_header(&r), "hit");
    assert_eq!(provider_calls(&gw), 3);

    // And the other way round: a JSON miss served to a stream client.
    let q = question("gpt-4o", "Tell me a story about a dog.");
    let miss = chat_as(&gw, "team-a", &q, &[("x-fake-completion-tokens", "5")]);
    assert_eq!(cache_header(&miss), "miss");
    let told = from_json(&miss);
    let hit = chat_as(&gw, "team-a", &streamed(q, true), &[]);
    assert_eq!(cache_header(&hit), "hit");
    let (got, _) = from_sse(&hit);
    assert_eq!(
        (&got.content, &got.finish_reason, &got.usage),
        (&told.content, &told.finish_reason, &told.usage)
    );
    assert_eq!(provider_calls(&gw), 4);
}

#[test]
fn the_openai_python_sdk_parses_cache_hits() {
    let fake = Fake::start(None);
    let gw = start(
        &fake,
        config(
            json!([
                route("gpt-4o-mini", json!({})),
                route("gpt-4o", json!({"tool_calls": true})),
            ]),
            json!({}),
        ),
        None,
    );
    run_sdk_script(&gw, "cache_stream_hit.py", "cache stream hit: ok");
    // The script's misses reached the provider, its hits did not.
    let prom = gw.prometheus();
    assert_eq!(lookups(&prom, "miss"), 2.0, "{prom}");
    assert_eq!(lookups(&prom, "hit"), 5.0, "{prom}");
    assert_eq!(provider_calls(&gw), 2);
}

#[test]
fn answers_that_call_tools_are_stored_only_with_tool_calls() {
    let fake = Fake::start(None);
    let gw = start(
        &fake,
        config(
            json!([
                route("gpt-4o-mini", json!({})),
                route("gpt-4o", json!({"tool_calls": true})),
            ]),
            json!({}),
        ),
        None,
    );
    let call = [("x-fake-tool-call", "get_weather")];
    let ask = |model: &str| {
        json!({"model": model, "tools": weather_tools(),
               "messages": [{"role": "user", "content": "What's the weather in Paris?"}]})
    };
    // Off by default: the tool call is answered but not stored.
    for _ in 0..2 {
        let r = chat_as(&gw, "team-a", &ask("gpt-4o-mini"), &call);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(cache_header(&r), "miss");
        let a = from_json(&r);
        assert_eq!(a.finish_reason, "tool_calls");
        assert_eq!(a.tool_calls[0]["function"]["name"], "get_weather");
    }
    assert_eq!(provider_calls(&gw), 2);
    let r = chat_as(&gw, "team-a", &streamed(ask("gpt-4o-mini"), true), &call);
    assert_eq!(cache_header(&r), "miss");
    assert_eq!(from_sse(&r).0.finish_reason, "tool_calls");
    assert_eq!(provider_calls(&gw), 3);
    // A text answer on that route is stored as usual (the tools alone do not stop it).
    let r = chat_as(&gw, "team-a", &ask("gpt-4o-mini"), &[]);
    assert_eq!(
        (cache_header(&r), from_json(&r).finish_reason.as_str()),
        ("miss", "stop")
    );
    let r = chat_as(&gw, "team-a", &ask("gpt-4o-mini"), &[]);
    assert_eq!(cache_header(&r), "hit");
    assert_eq!(provider_calls(&gw), 4);
    let prom = gw.prometheus();
    assert_eq!(stores(&prom, "tool_calls"), 3.0, "{prom}");

    // tool_calls: true: stored, and served with the call intact to either kind of client.
    let miss = chat_as(
        &gw,
        "team-a",
        &ask("gpt-4o"),
        &[
            ("x-fake-tool-call", "get_weather"),
            ("x-fake-id", "chatcmpl-tool"),
        ],
    );
    assert_eq!(cache_header(&miss), "miss");
    let called = from_json(&miss);
    assert_eq!(called.tool_calls.len(), 1);
    assert_eq!(
        called.tool_calls[0]["function"]["arguments"],
        r#"{"city":"Paris"}"#
    );
    let hit = chat_as(&gw, "team-a", &ask("gpt-4o"), &call);
    assert_eq!(cache_header(&hit), "hit");
    assert_eq!(hit.json(), miss.json());
    let hit = chat_as(&gw, "team-a", &streamed(ask("gpt-4o"), true), &call);
    assert_eq!(cache_header(&hit), "hit");
    let (got, _) = from_sse(&hit);
    assert_eq!(got.finish_reason, "tool_calls");
    assert_eq!(got.tool_calls, called.tool_calls, "{}", hit.text());
    assert_eq!(got.usage, called.usage);
    assert_eq!(provider_calls(&gw), 5);

    // A streamed tool call is assembled from its deltas and served as JSON.
    let mut q = ask("gpt-4o");
    q["messages"][0]["content"] = "And the weather in Lyon?".into();
    let miss = chat_as(&gw, "team-a", &streamed(q.clone(), true), &call);
    assert_eq!(cache_header(&miss), "miss");
    let (streamed_call, _) = from_sse(&miss);
    assert_eq!(
        streamed_call.tool_calls[0]["function"]["arguments"],
        r#"{"city":"Paris"}"#
    );
    let hit = chat_as(&gw, "team-a", &q, &call);
    assert_eq!(cache_header(&hit), "hit");
    let got = from_json(&hit);
    assert_eq!(got.tool_calls, streamed_call.tool_calls);
    assert_eq!(got.finish_reason, "tool_calls");
    assert!(
        hit.json()["choices"][0]["message"]["content"].is_null(),
        "{}",
        hit.text()
    );
    assert_eq!(provider_calls(&gw), 6);
}

#[test]
fn cache_control_no_cache_refreshes_and_no_store_leaves_no_trace() {
    let fake = Fake::start(None);
    let gw = start(
        &fake,
        config(json!([route("gpt-4o*", json!({}))]), json!({})),
        None,
    );
    let q = question("gpt-4o-mini", "What changed today?");
    let ask = |id: &str, cc: Option<&str>| {
        let mut h = vec![("x-fake-id", id)];
        if let Some(cc) = cc {
            h.push(("cache-control", cc));
        }
        let r = chat_as(&gw, "team-a", &q, &h);
        assert_eq!(r.status, 200, "{}", r.text());
        (
            cache_header(&r).to_string(),
            r.json()["id"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(
        ask("chatcmpl-old", None),
        ("miss".into(), "chatcmpl-old".into())
    );
    assert_eq!(ask("x", None), ("hit".into(), "chatcmpl-old".into()));
    // no-cache: the provider answers, and its fresh answer replaces the old one.
    assert_eq!(
        ask("chatcmpl-fresh", Some("no-cache")),
        ("bypass".into(), "chatcmpl-fresh".into())
    );
    assert_eq!(ask("x", None), ("hit".into(), "chatcmpl-fresh".into()));
    // no-store: the provider answers, and nothing is stored (the entry stays as it was).
    assert_eq!(
        ask("chatcmpl-private", Some("no-store")),
        ("bypass".into(), "chatcmpl-private".into())
    );
    assert_eq!(ask("x", None), ("hit".into(), "chatcmpl-fresh".into()));
    assert_eq!(provider_calls(&gw), 3);

    // no-store on a new question: it stays uncached.
    let q2 = question("gpt-4o-mini", "Is this private?");
    let r = chat_as(
        &gw,
        "team-a",
        &q2,
        &[("cache-control", "max-age=0, no-store")],
    );
    assert_eq!(cache_header(&r), "bypass");
    let r = chat_as(&gw, "team-a", &q2, &[("x-fake-id", "chatcmpl-q2")]);
    assert_eq!(cache_header(&r), "miss", "no-store stored the answer");
    let r = chat_as(&gw, "team-a", &q2, &[]);
    assert_eq!(
        (cache_header(&r), &r.json()["id"]),
        ("hit", &json!("chatcmpl-q2"))
    );
    // A streamed no-store too.
    let q3 = streamed(question("gpt-4o-mini", "Is this streamed privately?"), true);
    let r = chat_as(&gw, "team-a", &q3, &[("cache-control", "no-store")]);
    assert_eq!(cache_header(&r), "bypass");
    from_sse(&r);
    let r = chat_as(&gw, "team-a", &q3, &[]);
    assert_eq!(
        cache_header(&r),
        "miss",
        "a streamed no-store answer was stored"
    );
    assert_eq!(provider_calls(&gw), 7);

    let prom = gw.prometheus();
    assert_eq!(lookups(&prom, "bypass"), 4.0, "{prom}");
    assert_eq!(stores(&prom, "no_store"), 3.0, "{prom}");
}

#[test]
fn an_entry_expires_after_ttl_s() {
    let fake = Fake::start(None);
    let gw = start(
        &fake,
        config(
            json!([route(
                "gpt-4o*",
                json!({"ttl_s": 1, "semantic": {"threshold": THRESHOLD}})
            )]),
            semantic_cache(embedder()),
        ),
        None,
    );
    let ask = |text: &str, id: &str| {
        let r = chat_as(
            &gw,
            "team-a",
            &question("gpt-4o-mini", text),
            &[("x-fake-id", id)],
        );
        assert_eq!(r.status, 200, "{}", r.text());
        (
            cache_header(&r).to_string(),
            r.json()["id"].as_str().unwrap().to_string(),
        )
    };
    let said = |c: &str, id: &str| (c.to_string(), id.to_string());
    assert_eq!(ask(ASKED, "chatcmpl-t1"), said("miss", "chatcmpl-t1"));
    assert_eq!(ask(ASKED, "x"), said("hit", "chatcmpl-t1"));
    assert_eq!(ask(PARAPHRASE, "x"), said("hit", "chatcmpl-t1"));
    std::thread::sleep(Duration::from_millis(2200));
    // Neither the entry nor its vector serves after the ttl.
    assert_eq!(
        ask(PARAPHRASE, "chatcmpl-t2"),
        said("miss", "chatcmpl-t2"),
        "served after its ttl"
    );
    // The fresh answer is served in its turn (here by meaning).
    assert_eq!(ask(ASKED, "x"), said("hit", "chatcmpl-t2"));
    assert_eq!(provider_calls(&gw), 2);
}

#[test]
fn the_oldest_answers_are_evicted_beyond_max_bytes_and_large_ones_not_stored() {
    let fake = Fake::start(None);
    let gw = start(
        &fake,
        config(
            json!([route("gpt-4o*", json!({}))]),
            json!({"max_bytes": 12000, "max_entry_bytes": 6000}),
        ),
        None,
    );
    let long = [("x-fake-completion-tokens", "300")];
    let q = |i: usize| question("gpt-4o-mini", &format!("Long answer number {i}, please."));
    let mut sizes = Vec::new();
    for i in 0..12 {
        let r = chat_as(&gw, "team-a", &q(i), &long);
        assert_eq!((r.status, cache_header(&r)), (200, "miss"), "{i}");
        sizes.push(r.body.len());
    }
    // Each answer fits on its own, but not twelve of them: even stored as its bare text (300
    // one-token words, over 1400 bytes), 8 fill the 12000 bytes.
    assert!(sizes.iter().all(|s| *s > 1400 && *s < 3000), "{sizes:?}");
    let calls = provider_calls(&gw);
    // The newest is served, the oldest was evicted.
    let r = chat_as(&gw, "team-a", &q(11), &long);
    assert_eq!(cache_header(&r), "hit", "the newest answer");
    assert_eq!(provider_calls(&gw), calls);
    let r = chat_as(&gw, "team-a", &q(0), &long);
    assert_eq!(cache_header(&r), "miss", "the oldest answer survived");
    assert_eq!(provider_calls(&gw), calls + 1);
    let prom = gw.prometheus();
    assert!(
        prom_sum(&prom, "llm_gateway_cache_evictions_total", &[]) >= 4.0,
        "{prom}"
    );

    // An answer larger than max_entry_bytes is never stored.
    let big = question("gpt-4o-mini", "A very long answer, please.");
    for _ in 0..2 {
        let r = chat_as(&gw, "team-a", &big, &[("x-fake-completion-tokens", "1500")]);
        assert_eq!(r.status, 200);
        assert!(r.body.len() > 6000, "{}", r.body.len());
        assert_eq!(cache_header(&r), "miss");
    }
    assert_eq!(stores(&gw.prometheus(), "too_large"), 2.0);
}

#[test]
fn max_entries_bounds_the_answers_kept() {
    let fake = Fake::start(None);
    let gw = start(
        &fake,
        config(
            json!([route("gpt-4o*", json!({}))]),
            json!({"max_entries": 4}),
        ),
        None,
    );
    let q = |i: usize| question("gpt-4o-mini", &format!("Short answer number {i}."));
    for i in 0..12 {
        let r = chat_as(&gw, "team-a", &q(i), &[]);
        assert_eq!((r.status, cache_header(&r)), (200, "miss"), "{i}");
    }
    let prom = gw.prometheus();
    assert_eq!(stores(&prom, "stored"), 12.0, "{prom}");
    // At most 4 of the 12 are kept, so at least 8 were evicted.
    assert!(
        prom_sum(&prom, "llm_gateway_cache_evictions_total", &[]) >= 8.0,
        "{prom}"
    );
    let calls = provider_calls(&gw);
    let r = chat_as(&gw, "team-a", &q(11), &[]);
    assert_eq!(cache_header(&r), "hit", "the newest answer");
    let r = chat_as(&gw, "team-a", &q(0), &[]);
    assert_eq!(cache_header(&r), "miss", "the oldest answer survived");
    assert_eq!(provider_calls(&gw), calls + 1);
}

#[test]
fn max_entries_answers_fit_before_the_oldest_is_evicted() {
    let fake = Fake::start(None);
    let gw = start(
        &fake,
        config(
            json!([route("gpt-4o*", json!({}))]),
            json!({"max_entries": 16}),
        ),
        None,
    );
    let q = |i: usize| question("gpt-4o-mini", &format!("Short answer number {i}."));
    for i in 0..16 {
        let r = chat_as(&gw, "team-a", &q(i), &[]);
        assert_eq!((r.status, cache_header(&r)), (200, "miss"), "{i}");
    }
    let evictions =
        |gw: &Gateway| prom_sum(&gw.prometheus(), "llm_gateway_cache_evictions_total", &[]);
    assert_eq!(evictions(&gw), 0.0, "16 answers with max_entries 16");
    // One more: the oldest, and only it, makes room.
    let r = chat_as(&gw, "team-a", &q(16), &[]);
    assert_eq!(cache_header(&r), "miss");
    assert_eq!(evictions(&gw), 1.0);
    for i in [16, 15, 1] {
        let r = chat_as(&gw, "team-a", &q(i), &[]);
        assert_eq!(cache_header(&r), "hit", "{i}");
    }
    let r = chat_as(&gw, "team-a", &q(0), &[]);
    assert_eq!(cache_header(&r), "miss", "the oldest");
}

#[test]
fn hits_cost_no_tokens_and_are_counted_in_metrics_and_the_access_log() {
    let fake = Fake::start(None);
    let gw = start(
        &fake,
        config(json!([route("gpt-4o*", json!({}))]), json!({})),
        None,
    );
    let q = question("gpt-4o-mini", "How many tokens does a hit cost?");
    let miss = chat_as(&gw, "team-a", &q, &[("x-request-id", "cache-miss")]);
    assert_eq!(cache_header(&miss), "miss");
    let saved = usage_total(&from_json(&miss));
    for i in 0..3 {
        let id = format!("cache-hit-{i}");
        let r = chat_as(&gw, "team-a", &q, &[("x-request-id", &id)]);
        assert_eq!(cache_header(&r), "hit");
    }
    let streamed_hit = chat_as(
        &gw,
        "team-a",
        &streamed(q.clone(), true),
        &[("x-request-id", "cache-hit-stream")],
    );
    assert_eq!(cache_header(&streamed_hit), "hit");
    let bypass = chat_as(
        &gw,
        "team-a",
        &q,
        &[
            ("x-request-id", "cache-bypass"),
            ("cache-control", "no-store"),
        ],
    );
    assert_eq!(cache_header(&bypass), "bypass");
    let bypass_total = usage_total(&from_json(&bypass));

    let prom = gw.prometheus();
    let labels = |result: &'static str| {
        [
            ("gen_ai_request_model", "gpt-4o-mini"),
            ("consumer", "team-a"),
            ("result", result),
        ]
    };
    for (result, n) in [
        ("miss", 1.0),
        ("hit", 4.0),
        ("bypass", 1.0),
        ("semantic_hit", 0.0),
    ] {
        assert_eq!(
            prom_sum(&prom, "llm_gateway_cache_lookups_total", &labels(result)),
            n,
            "{result}: {prom}"
        );
    }
    assert_eq!(
        prom_sum(
            &prom,
            "llm_gateway_cache_tokens_saved_total",
            &[
                ("gen_ai_request_model", "gpt-4o-mini"),
                ("consumer", "team-a")
            ]
        ),
        (4 * saved) as f64,
        "{prom}"
    );
    assert_eq!(stores(&prom, "stored"), 1.0, "{prom}");
    // The provider's tokens are the miss's and the bypass's: hits add none.
    assert_eq!(
        prom_sum(&prom, "llm_gateway_tokens_total", &[("consumer", "team-a")]),
        (saved + bypass_total) as f64,
        "{prom}"
    );
    assert_eq!(
        prom_sum(
            &prom,
            "llm_gateway_requests_total",
            &[("outcome", "cache_hit")]
        ),
        4.0,
        "{prom}"
    );
    assert_eq!(
        prom_sum(&prom, "llm_gateway_requests_total", &[("outcome", "ok")]),
        2.0,
        "{prom}"
    );
    assert_eq!(provider_calls(&gw), 2);

    // The access log: the stored answer's tokens as saved, none used.
    let log = gw.access_log(6);
    assert_eq!(log.len(), 6);
    let line = |id: &str| {
        log.iter()
            .find(|l| l["request_id"] == id)
            .unwrap_or_else(|| panic!("no access-log line {id}: {log:?}"))
            .clone()
    };
    let m = line("cache-miss");
    assert_eq!(m["cache"], "miss", "{m}");
    assert_eq!(m["outcome"], "ok", "{m}");
    assert_eq!(num_field(&m, "total_tokens"), Some(saved), "{m}");
    assert!(num_field(&m, "cache_saved_tokens").unwrap_or(0) == 0, "{m}");
    for id in [
        "cache-hit-0",
        "cache-hit-1",
        "cache-hit-2",
        "cache-hit-stream",
    ] {
        let h = line(id);
        assert_eq!(h["cache"], "hit", "{h}");
        assert_eq!(h["outcome"], "cache_hit", "{h}");
        assert_eq!(num_field(&h, "cache_saved_tokens"), Some(saved), "{h}");
        for k in ["prompt_tokens", "completion_tokens", "total_tokens"] {
            assert!(num_field(&h, k).unwrap_or(0) == 0, "{k}: {h}");
        }
        let cost = h["cost_usd"].as_str().map(|c| c.parse::<f64>().unwrap());
        assert!(cost.unwrap_or(0.0) == 0.0, "{h}");
        assert!(
            !h["upstream_host"].as_str().is_some_and(|u| u.contains(':')),
            "a hit went upstream: {h}"
        );
    }
    let b = line("cache-bypass");
    assert_eq!(
        (b["cache"].as_str(), b["outcome"].as_str()),
        (Some("bypass"), Some("ok"))
    );
}

#[test]
fn what_the_cache_does_not_serve_says_bypass_and_failover_routes_are_cached() {
    let fake = Fake::start(None);
    let mut routes = json!([
        route("gpt-4o-mini", json!({})),
        route("text-embedding-*", json!({}))
    ]);
    if has_composite_cluster() {
        routes.as_array_mut().unwrap().push(json!({
            "match": {"model": "gpt-4.1*"}, "to": {"provider": "openai"},
            "fallback": {"cluster": "failover-openai-backup", "to": [{"provider": "backup"}]},
            "cache": {}}));
    }
    let gw = start(&fake, config(routes, json!({})), None);
    let h = [("content-type", "application/json"), ("x-team", "team-a")];
    // Asked twice, each time answered by the provider (its echo headers) and said `bypass`.
    let twice = |path: &str, extra: &[(&str, &str)], body: Value| {
        let mut headers = h.to_vec();
        headers.extend_from_slice(extra);
        let got: Vec<(u16, String, bool)> = (0..2)
            .map(|_| {
                let r = post(&gw.url(path), &headers, body.to_string().as_bytes());
                let reached = r.header("x-fake-received-path").is_some();
                (r.status, cache_header(&r).to_string(), reached)
            })
            .collect();
        let want = (200, "bypass".to_string(), true);
        assert_eq!(got, [want.clone(), want], "{path} {body}");
    };
    // An Anthropic-API client.
    twice(
        "/v1/messages",
        &[("anthropic-version", "2023-06-01")],
        json!({"model": "gpt-4o-mini", "max_tokens": 50,
               "messages": [{"role": "user", "content": "Hello"}]}),
    );
    // Legacy completions and embeddings.
    twice(
        "/v1/completions",
        &[],
        json!({"model": "gpt-4o-mini", "prompt": "Hello"}),
    );
    twice(
        "/v1/embeddings",
        &[],
        json!({"model": "text-embedding-3-small", "input": "Hello"}),
    );
    // A failover route is cached like any other (keyed on the chain's first provider): a
    // miss that reaches the provider, then a hit that does not.
    let mut cached = 0.0;
    if has_composite_cluster() {
        let body = question("gpt-4.1", "Hello");
        let got: Vec<(u16, String, bool)> = (0..2)
            .map(|_| {
                let r = post(
                    &gw.url("/v1/chat/completions"),
                    &h,
                    body.to_string().as_bytes(),
                );
                let reached = r.header("x-fake-received-path").is_some();
                (r.status, cache_header(&r).to_string(), reached)
            })
            .collect();
        assert_eq!(
            got,
            [
                (200, "miss".to_string(), true),
                (200, "hit".to_string(), false)
            ]
        );
        cached = 1.0;
    }
    let prom = gw.prometheus();
    assert_eq!(lookups(&prom, "bypass"), 6.0, "{prom}");
    assert_eq!(lookups(&prom, "miss"), cached, "{prom}");
    assert_eq!(lookups(&prom, "hit"), cached, "{prom}");
}

#[test]
fn hits_are_not_charged_tokens_unless_charge_hits() {
    let fake = Fake::start(None);
    let (tpd, rpm) = (10_000u64, 100u64);
    let gw = start(
        &fake,
        with_limits(
            config(
                json!([
                    route("gpt-4o-mini", json!({})),
                    route("gpt-4o", json!({"charge_hits": true})),
                ]),
                json!({}),
            ),
            json!({"default": {"tpd": tpd, "rpm": rpm}}),
        ),
        None,
    );
    // Within ±1 token: a daily budget refills 0.12 token a second.
    let near = |got: u64, want: u64, what: &str| {
        assert!(
            got == want || got == want + 1,
            "{what}: remaining {got}, expected {want}"
        );
    };
    for (team, model, charged) in [
        ("team-free", "gpt-4o-mini", false),
        ("team-charged", "gpt-4o", true),
    ] {
        let mut q = question(model, "What is the budget for hits?");
        q["max_tokens"] = 20.into();
        let miss = chat_as(&gw, team, &q, &[]);
        assert_eq!((miss.status, cache_header(&miss)), (200, "miss"), "{team}");
        let used = usage_total(&from_json(&miss));
        assert_eq!(miss.num("x-ratelimit-remaining-requests"), rpm - 1);
        let mut remaining = Vec::new();
        for i in 0..3 {
            let hit = chat_as(&gw, team, &q, &[]);
            assert_eq!((hit.status, cache_header(&hit)), (200, "hit"), "{team}");
            // A hit costs one request.
            assert_eq!(
                hit.num("x-ratelimit-remaining-requests"),
                rpm - 2 - i,
                "{team}"
            );
            remaining.push(hit.num("x-ratelimit-remaining-tokens"));
        }
        if !charged {
            assert!(
                remaining.windows(2).all(|w| w[1] >= w[0]),
                "{team}: hits were charged tokens: {remaining:?}"
            );
        } else {
            for w in remaining.windows(2) {
                near(w[1], w[0] - used, team);
            }
        }
        // The next miss sees what was charged: the first answer (and, with charge_hits, each
        // of the 3 hits) and its own reservation (prompt + max_tokens).
        let mut q2 = question(model, "And what is the budget for misses?");
        q2["max_tokens"] = 20.into();
        let next = chat_as(&gw, team, &q2, &[]);
        assert_eq!((next.status, cache_header(&next)), (200, "miss"));
        let prompt = from_json(&next).usage.unwrap()["prompt_tokens"]
            .as_u64()
            .unwrap();
        let charged_tokens = if charged { 4 * used } else { used };
        near(
            next.num("x-ratelimit-remaining-tokens"),
            tpd - charged_tokens - (prompt + 20),
            team,
        );
        if !charged {
            // A hit reserves no tokens either: what remains is what the first answer left.
            near(
                remaining[0],
                tpd - used,
                "a hit's x-ratelimit-remaining-tokens",
            );
        }
    }
}

#[test]
fn a_hit_is_served_when_the_token_budget_could_not_pay_for_the_request() {
    let fake = Fake::start(None);
    // 60 tokens a day: the first answer (prompt 14 + 16 completion = 30) leaves 30, less than
    // the 14 + 20 a miss reserves; a hit costs no tokens, so it is still served.
    let tpd = 60u64;
    let gw = start(
        &fake,
        with_limits(
            config(json!([route("gpt-4o-mini", json!({}))]), json!({})),
            json!({"default": {"tpd": tpd}}),
        ),
        None,
    );
    let mut q = question("gpt-4o-mini", "What is the budget for hits?");
    q["max_tokens"] = 20.into();
    let miss = chat_as(&gw, "team-a", &q, &[]);
    assert_eq!(
        (miss.status, cache_header(&miss)),
        (200, "miss"),
        "{}",
        miss.text()
    );
    let a = from_json(&miss);
    let prompt = a.usage.as_ref().unwrap()["prompt_tokens"].as_u64().unwrap();
    assert!(tpd - usage_total(&a) < prompt + 20, "{a:?}");
    // A miss no longer fits.
    let mut other = q.clone();
    other["messages"][0]["content"] = "What is the budget for misses?".into();
    let r = chat_as(&gw, "team-a", &other, &[]);
    assert_eq!(r.status, 429, "{}", r.text());
    for _ in 0..3 {
        let r = chat_as(&gw, "team-a", &q, &[]);
        assert_eq!(
            r.status,
            200,
            "a hit refused for tokens it does not cost: {}",
            r.text()
        );
        assert_eq!(cache_header(&r), "hit");
    }
    assert_eq!(provider_calls(&gw), 1);
}

// ---------------------------------------------------------------------------- semantic cache

const THRESHOLD: f64 = 0.8;
const ASKED: &str = "How do I reset my password?";
/// Shares "reset" and "password", adds "explain": cosine 2/√6 ≈ 0.82.
const PARAPHRASE: &str = "Explain how to reset my password";
/// Shares them but adds two words: ≈ 0.71, below the threshold.
const NEAR: &str = "Steps to reset a forgotten password";
const UNRELATED: &str = "What is the capital of France?";

fn semantic_cache(embedder: Value) -> Value {
    json!({"semantic": {"embeddings": embedder}})
}

fn embedder() -> Value {
    json!({"provider": "embedder", "model": "text-embedding-3-small"})
}

#[test]
fn a_paraphrase_is_a_semantic_hit_and_other_questions_are_not() {
    let fake = Fake::start(None);
    // What the threshold means with the fake's vectors.
    let v = fake.embeddings(&[ASKED, PARAPHRASE, NEAR, UNRELATED]);
    let (para, near, unrelated) = (
        cosine(&v[0], &v[1]),
        cosine(&v[0], &v[2]),
        cosine(&v[0], &v[3]),
    );
    assert!(para >= THRESHOLD + 0.01, "paraphrase {para}");
    assert!(near < THRESHOLD - 0.05 && near > 0.5, "near {near}");
    assert!(unrelated < 0.3, "unrelated {unrelated}");

    let gw = start(
        &fake,
        config(
            json!([
                route("gpt-4o-mini", json!({"semantic": {"threshold": THRESHOLD}})),
                route(
                    "gpt-4o",
                    json!({"semantic": {"threshold": THRESHOLD, "multi_turn": true}})
                ),
            ]),
            semantic_cache(embedder()),
        ),
        None,
    );
    let ask = |team: &str, body: &Value, id: &str| {
        let r = chat_as(&gw, team, body, &[("x-fake-id", id), ("x-request-id", id)]);
        assert_eq!(r.status, 200, "{id}: {}", r.text());
        (cache_header(&r).to_string(), r)
    };
    let q = |text: &str| question("gpt-4o-mini", text);

    let (c, r) = ask("team-a", &q(ASKED), "chatcmpl-asked");
    assert_eq!(c, "miss");
    let stored = from_json(&r);
    assert_eq!(provider_calls(&gw), 1);
    // The exact question: an exact hit.
    let (c, r) = ask("team-a", &q(ASKED), "sem-exact");
    assert_eq!(
        (c.as_str(), r.json()["id"].as_str()),
        ("hit", Some("chatcmpl-asked"))
    );
    // The paraphrase: the stored answer, without the provider, on either worker.
    for i in 0..4 {
        let (c, r) = ask("team-a", &q(PARAPHRASE), &format!("sem-paraphrase-{i}"));
        assert_eq!(c, "hit", "{para} >= {THRESHOLD}: {}", r.text());
        assert_eq!(from_json(&r), stored);
    }
    assert_eq!(provider_calls(&gw), 1);
    // To a stream client too.
    let r = chat_as(
        &gw,
        "team-a",
        &streamed(q(PARAPHRASE), true),
        &[("x-request-id", "sem-stream")],
    );
    assert_eq!(cache_header(&r), "hit");
    let (got, _) = from_sse(&r);
    assert_eq!((&got.content, &got.usage), (&stored.content, &stored.usage));
    assert_eq!(provider_calls(&gw), 1);

    // Below the threshold, unrelated, or anything else different: misses.
    let mut hotter = q(PARAPHRASE);
    hotter["temperature"] = json!(0.9);
    let mut with_system = q(PARAPHRASE);
    with_system["messages"].as_array_mut().unwrap().insert(
        0,
        json!({"role": "system", "content": "You are a support agent."}),
    );
    let mut tools = q(PARAPHRASE);
    tools["tools"] = weather_tools();
    let mut multi_turn = q(ASKED);
    multi_turn["messages"].as_array_mut().unwrap().extend([
        json!({"role": "assistant", "content": "Use the reset link."}),
        json!({"role": "user", "content": PARAPHRASE}),
    ]);
    let mut with_image = q(PARAPHRASE);
    with_image["messages"][0]["content"] = json!([
        {"type": "text", "text": PARAPHRASE},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]);
    let mut calls = 1;
    for (what, team, body) in [
        ("near", "team-a", q(NEAR)),
        ("unrelated", "team-a", q(UNRELATED)),
        ("another temperature", "team-a", hotter),
        ("a system prompt", "team-a", with_system),
        ("tools", "team-a", tools),
        ("multi-turn (not eligible by default)", "team-a", multi_turn),
        ("another consumer", "team-b", q(PARAPHRASE)),
        ("another model", "team-a", question("gpt-4o", PARAPHRASE)),
        ("an image (not text only)", "team-a", with_image),
    ] {
        let id = format!("sem-{}", what.replace(' ', "-"));
        let (c, r) = ask(team, &body, &id);
        assert_eq!(c, "miss", "{what}");
        assert_eq!(r.json()["id"], id.as_str(), "{what}");
        calls += 1;
        assert_eq!(provider_calls(&gw), calls, "{what}");
    }

    // multi_turn: true: the last question by meaning, every earlier turn exactly.
    let conv = |first: &str, last: &str| {
        json!({"model": "gpt-4o", "messages": [
            {"role": "system", "content": "You are a support agent."},
            {"role": "user", "content": first},
            {"role": "assistant", "content": "Which account?"},
            {"role": "user", "content": last}]})
    };
    let (c, _) = ask("team-a", &conv("I cannot log in.", ASKED), "chatcmpl-conv");
    assert_eq!(c, "miss");
    let (c, r) = ask(
        "team-a",
        &conv("I cannot log in.", PARAPHRASE),
        "sem-conv-paraphrase",
    );
    assert_eq!(
        (c.as_str(), r.json()["id"].as_str()),
        ("hit", Some("chatcmpl-conv"))
    );
    let (c, _) = ask(
        "team-a",
        &conv("My account is locked.", PARAPHRASE),
        "sem-conv-other",
    );
    assert_eq!(c, "miss", "another earlier turn");
    assert_eq!(provider_calls(&gw), calls + 2);

    // A developer message is a system prompt: eligible, and part of the partition.
    let dev = |text: &str| {
        json!({"model": "gpt-4o-mini", "messages": [
            {"role": "developer", "content": "Be brief."}, {"role": "user", "content": text}]})
    };
    let (c, r) = ask("team-a", &dev(ASKED), "chatcmpl-dev");
    assert_eq!(c, "miss");
    let dev_stored = from_json(&r);
    let (c, r) = ask("team-a", &dev(PARAPHRASE), "sem-dev-paraphrase");
    assert_eq!(
        (c.as_str(), r.json()["id"].as_str()),
        ("hit", Some("chatcmpl-dev"))
    );
    assert_eq!(provider_calls(&gw), calls + 3);

    let prom = gw.prometheus();
    assert_eq!(lookups(&prom, "semantic_hit"), 7.0, "{prom}");
    assert_eq!(lookups(&prom, "hit"), 1.0, "{prom}");
    assert_eq!(
        prom_sum(
            &prom,
            "llm_gateway_cache_tokens_saved_total",
            &[("gen_ai_request_model", "gpt-4o-mini")]
        ),
        (6 * usage_total(&stored) + usage_total(&dev_stored)) as f64,
        "{prom}"
    );
    assert_eq!(
        prom_sum(&prom, "llm_gateway_cache_semantic_failures_total", &[]),
        0.0
    );
    assert!(gw.counter("cluster.embedder.upstream_rq_total") > 0);
    let log = gw.access_log(21);
    assert_eq!(log.len(), 21);
    let line = |id: &str| {
        log.iter()
            .find(|l| l["request_id"] == id)
            .unwrap_or_else(|| panic!("no line {id}"))
            .clone()
    };
    let l = line("sem-paraphrase-0");
    assert_eq!(
        (l["cache"].as_str(), l["outcome"].as_str()),
        (Some("semantic_hit"), Some("cache_hit")),
        "{l}"
    );
    assert_eq!(
        num_field(&l, "cache_saved_tokens"),
        Some(usage_total(&stored)),
        "{l}"
    );
    assert_eq!(line("sem-exact")["cache"], "hit");
    assert_eq!(line("sem-near")["cache"], "miss");
}

#[test]
fn max_vectors_keeps_the_newest_vectors() {
    let fake = Fake::start(None);
    // Three questions on different topics, each with its paraphrase; a paraphrase is close to
    // its own question only.
    let topics = [
        (ASKED, PARAPHRASE),
        (UNRELATED, "Explain what the capital of France is"),
        (
            "How do I cancel my subscription?",
            "Explain how to cancel my subscription",
        ),
    ];
    let texts: Vec<&str> = topics.iter().flat_map(|(a, b)| [*a, *b]).collect();
    let v = fake.embeddings(&texts);
    for i in 0..3 {
        for j in 0..3 {
            let c = cosine(&v[2 * i], &v[2 * j + 1]);
            if i == j {
                assert!(c >= THRESHOLD + 0.01, "{:?}: {c}", topics[i]);
            } else {
                assert!(
                    c < THRESHOLD - 0.1,
                    "{:?} / {:?}: {c}",
                    topics[i],
                    topics[j]
                );
            }
        }
    }
    let mut cache = semantic_cache(embedder());
    cache["semantic"]["max_vectors"] = 2.into();
    let gw = start(
        &fake,
        config(
            json!([route(
                "gpt-4o-mini",
                json!({"semantic": {"threshold": THRESHOLD}})
            )]),
            cache,
        ),
        None,
    );
    for (asked, _) in &topics {
        let r = chat_as(&gw, "team-a", &question("gpt-4o-mini", asked), &[]);
        assert_eq!((r.status, cache_header(&r)), (200, "miss"));
    }
    // The two newest vectors are kept: their paraphrases hit.
    for (_, para) in &topics[1..] {
        let r = chat_as(&gw, "team-a", &question("gpt-4o-mini", para), &[]);
        assert_eq!(cache_header(&r), "hit", "{para}");
    }
    // The oldest was overwritten: its paraphrase misses (its exact entry still hits).
    let r = chat_as(&gw, "team-a", &question("gpt-4o-mini", topics[0].1), &[]);
    assert_eq!(
        cache_header(&r),
        "miss",
        "3 vectors kept with max_vectors 2"
    );
    let r = chat_as(&gw, "team-a", &question("gpt-4o-mini", topics[0].0), &[]);
    assert_eq!(cache_header(&r), "hit");
}

#[test]
fn an_embedding_service_that_is_down_costs_only_the_lookup() {
    let fake = Fake::start(None);
    // Nobody listens on the embedder's port.
    let gw = start(
        &fake,
        config(
            json!([route(
                "gpt-4o-mini",
                json!({"semantic": {"threshold": THRESHOLD}})
            )]),
            semantic_cache(embedder()),
        ),
        Some(free_port()),
    );
    for (i, text) in [ASKED, PARAPHRASE].iter().enumerate() {
        let t = Instant::now();
        let r = chat_as(&gw, "team-a", &question("gpt-4o-mini", text), &[]);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(cache_header(&r), "miss");
        from_json(&r);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert_eq!(provider_calls(&gw), i as u64 + 1);
    }
    // The exact cache works without embeddings.
    let r = chat_as(&gw, "team-a", &question("gpt-4o-mini", ASKED), &[]);
    assert_eq!(cache_header(&r), "hit");
    assert_eq!(provider_calls(&gw), 2);
    let prom = gw.prometheus();
    assert!(
        prom_sum(&prom, "llm_gateway_cache_semantic_failures_total", &[]) >= 2.0,
        "{prom}"
    );
    assert_eq!(
        prom_sum(&prom, "llm_gateway_requests_total", &[("outcome", "ok")]),
        2.0
    );
}

#[test]
fn a_slow_or_failing_embedding_service_costs_only_the_lookup() {
    let fake = Fake::start(None);
    let slow = Fake::start_with(None, &[("x-fake-delay-ms", "3000")]);
    let failing = Fake::start_with(None, &[("x-fake-status", "500")]);
    for (what, port) in [("slow", slow.port), ("failing", failing.port)] {
        let mut e = embedder();
        e["timeout_ms"] = 300.into();
        let gw = start(
            &fake,
            config(
                json!([route(
                    "gpt-4o-mini",
                    json!({"semantic": {"threshold": THRESHOLD}})
                )]),
                semantic_cache(e),
            ),
            Some(port),
        );
        for text in [ASKED, PARAPHRASE] {
            let t = Instant::now();
            let r = chat_as(&gw, "team-a", &question("gpt-4o-mini", text), &[]);
            assert_eq!(r.status, 200, "{what}: {}", r.text());
            assert_eq!(cache_header(&r), "miss", "{what}");
            assert!(
                t.elapsed() < Duration::from_millis(2000),
                "{what}: {:?}",
                t.elapsed()
            );
        }
        assert_eq!(provider_calls(&gw), 2, "{what}");
        let prom = gw.prometheus();
        assert!(
            prom_sum(&prom, "llm_gateway_cache_semantic_failures_total", &[]) >= 2.0,
            "{what}: {prom}"
        );
    }
}
