//! The response cache: exact hits (JSON and SSE), the client's `no-cache`, and the semantic
//! lookup's callouts (embedding, then the local index or Chroma's collection and query).

use serde_json::{json, Value};

use super::support::*;
use crate::cache::{self, RouteSemantic};
use crate::flow::{self, Step};
use crate::host::fake::FakeHost;
use crate::metrics::stat_name;
use crate::names::metric;

/// `config()` with a caching route for gpt-4o-mini first, and `store` as the cache section.
fn caching(route_cache: Value, store: Value) -> Value {
    let mut c = config();
    let route = json!({"name": "cached", "match": {"model": "gpt-4o-mini"}, "to": {"provider": "openai"},
                       "cache": route_cache});
    c["routes"].as_array_mut().unwrap().insert(0, route);
    c["cache"] = store;
    c
}

fn exact() -> Value {
    caching(json!({"ttl_s": 300}), json!({}))
}

fn semantic(store: Value) -> Value {
    let mut s = json!({"embeddings": {"provider": "openai", "model": "text-embedding-3-small"}});
    if !store.is_null() {
        s["store"] = store;
    }
    caching(
        json!({"semantic": {"threshold": 0.9}}),
        json!({"semantic": s}),
    )
}

fn store_metric(result: &str) -> String {
    stat_name(metric::CACHE_STORES, &[(metric::TAG_RESULT, result)])
}

fn lookup_metric(result: &str) -> String {
    stat_name(
        metric::CACHE_LOOKUPS,
        &[
            (metric::TAG_MODEL, "gpt-4o-mini"),
            (metric::TAG_CONSUMER, "team-a"),
            (metric::TAG_RESULT, result),
        ],
    )
}

#[test]
fn a_stored_answer_is_served_to_the_same_request_as_json() {
    let mut h = host(&chat());
    let vm = vm(&h, &exact());
    run(&vm, &mut h, &hello("gpt-4o-mini"), &completion("Hi!"));
    assert_eq!(h.response_header("x-llm-cache").as_deref(), Some("miss"));
    assert_eq!(h.metric_value(&store_metric("stored")), 1);
    assert_eq!(h.metric_value(&lookup_metric("miss")), 1);

    let mut h2 = next(&h, &chat());
    let mut ex = vm.exchange(1).unwrap();
    let r = reply(send(&mut ex, &mut h2, &hello("gpt-4o-mini")));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers,
        vec![
            ("content-type", "application/json".to_string()),
            ("x-llm-cache", "hit".to_string()),
            ("x-llm-gateway-request-id", "req-1".to_string()),
        ]
    );
    assert_eq!(r.body, completion("Hi!"));
    assert_eq!(h2.request_header("x-llm-gateway-cluster"), None);
    ex.finish(&mut h2);
    assert_eq!(h2.prop("llm.outcome").as_deref(), Some("cache_hit"));
    assert_eq!(h2.prop("llm.cache").as_deref(), Some("hit"));
    assert_eq!(h2.prop("llm.cache_saved_tokens").as_deref(), Some("13"));
    assert_eq!(h2.prop("llm.total_tokens").as_deref(), Some("0"));
    assert_eq!(
        counted(&h2),
        vec![requests_metric(
            "gpt-4o-mini",
            "openai",
            "team-a",
            "cache_hit"
        )]
    );
    let saved = stat_name(
        metric::CACHE_TOKENS_SAVED,
        &[
            (metric::TAG_MODEL, "gpt-4o-mini"),
            (metric::TAG_CONSUMER, "team-a"),
        ],
    );
    assert_eq!(h2.metric_value(&saved), 13);
    assert_eq!(h2.metric_value(&lookup_metric("hit")), 1);
}

#[test]
fn a_stored_answer_is_served_to_a_stream_as_sse() {
    let mut h = host(&chat());
    let vm = vm(&h, &exact());
    run(&vm, &mut h, &hello("gpt-4o-mini"), &completion("Hi!"));
    let mut h2 = next(&h, &chat());
    let mut ex = vm.exchange(1).unwrap();
    let mut body = hello("gpt-4o-mini");
    body["stream"] = json!(true);
    let r = reply(send(&mut ex, &mut h2, &body));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers,
        vec![
            ("content-type", "text/event-stream".to_string()),
            ("x-llm-cache", "hit".to_string()),
            ("x-llm-gateway-request-id", "req-1".to_string()),
            ("cache-control", "no-cache".to_string()),
        ]
    );
    assert_eq!(
        Some(r.body.clone()),
        crate::completion::to_sse(&completion("Hi!"), false)
    );
    let text = String::from_utf8(r.body).unwrap();
    assert!(text.starts_with("data: {"), "{text}");
    assert!(text.contains(r#""content":"Hi!""#), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
}

#[test]
fn no_cache_from_the_client_bypasses_the_lookup() {
    let vm = vm(&host(&[]), &semantic(Value::Null));
    let mut h = host(&post(
        "/v1/chat/completions",
        &[("cache-control", "no-cache")],
    ));
    let mut ex = vm.exchange(1).unwrap();
    assert_eq!(send(&mut ex, &mut h, &hello("gpt-4o-mini")), Step::Continue);
    // No embedding asked for: the request went straight on.
    assert!(h.callouts.is_empty());
    assert_eq!(
        h.request_header("x-llm-gateway-cluster").as_deref(),
        Some("openai")
    );
    answer(&mut ex, &mut h, 200, &JSON, &completion("Hi!"));
    assert_eq!(h.response_header("x-llm-cache").as_deref(), Some("bypass"));
    ex.finish(&mut h);
    assert_eq!(h.prop("llm.cache").as_deref(), Some("bypass"));
    assert_eq!(h.metric_value(&lookup_metric("bypass")), 1);
}

fn question(text: &str) -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]})
}

/// The embeddings service's answer: the vector (3, 4), which normalises to (0.6, 0.8).
fn embedding() -> Vec<u8> {
    json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [3.0, 4.0]}]})
        .to_string()
        .into_bytes()
}

fn answer_call(ex: &mut crate::flow::Exchange, h: &mut FakeHost, token: u32, body: &[u8]) -> Step {
    h.answer_call(200, body);
    ex.on_call_answer(h, token, body.len())
}

#[test]
fn a_semantic_miss_asks_for_the_embedding_then_forwards_the_request() {
    let mut h = host(&chat());
    let vm = vm(&h, &semantic(Value::Null));
    let mut ex = vm.exchange(1).unwrap();
    let q = "What is the capital of France?";
    assert_eq!(send(&mut ex, &mut h, &question(q)), Step::Pause);
    let [call] = h.callouts.as_slice() else {
        panic!("one callout: {:?}", h.callouts);
    };
    assert_eq!(
        (call.kind, call.cluster.as_str(), call.path.as_str()),
        ("http", "openai", "/v1/embeddings")
    );
    assert_eq!(call.timeout_ms, 1000);
    assert!(call
        .headers
        .contains(&("authorization".to_string(), "Bearer sk-openai".to_string())));
    assert!(call
        .headers
        .contains(&(":authority".to_string(), "openai".to_string())));
    assert_eq!(
        parsed(&call.body),
        json!({"model": "text-embedding-3-small", "input": q, "encoding_format": "float"})
    );
    // Held: not routed yet.
    assert_eq!(h.request_header("x-llm-gateway-cluster"), None);
    let token = call.token;
    // An answer to some other call changes nothing.
    assert_eq!(
        answer_call(&mut ex, &mut h, token + 7, &embedding()),
        Step::Pause
    );
    // The local index is empty: a miss, and the request goes on.
    let step = answer_call(&mut ex, &mut h, token, &embedding());
    assert_eq!(step, Step::Continue);
    flow::resume(&mut h, step);
    assert_eq!(h.resumed, 1);
    assert!(h.replies.is_empty());
    assert_eq!(
        h.request_header("x-llm-gateway-cluster").as_deref(),
        Some("openai")
    );
    assert_eq!(
        h.request_header("authorization").as_deref(),
        Some("Bearer sk-openai")
    );
    assert_eq!(h.callouts.len(), 1);
    answer(&mut ex, &mut h, 200, &JSON, &completion("Paris."));
    ex.finish(&mut h);
    assert_eq!(h.prop("llm.cache").as_deref(), Some("miss"));
    assert_eq!(h.metric_value(&store_metric("stored")), 1);
    // The prompt was counted once, on the first pass.
    assert_eq!(h.prop("llm.counted_prompt_tokens").as_deref(), Some("14"));

    // A paraphrase with the same vector is a semantic hit.
    let mut h2 = next(&h, &chat());
    let mut ex = vm.exchange(1).unwrap();
    assert_eq!(
        send(&mut ex, &mut h2, &question("What's the capital of France?")),
        Step::Pause
    );
    let token = h2.callouts[0].token;
    let step = answer_call(&mut ex, &mut h2, token, &embedding());
    flow::resume(&mut h2, step);
    assert_eq!(h2.resumed, 0);
    let [r] = h2.replies.as_slice() else {
        panic!("one reply: {:?}", h2.replies);
    };
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-llm-cache"), Some("hit"));
    assert_eq!(r.body, completion("Paris."));
    ex.finish(&mut h2);
    assert_eq!(h2.prop("llm.cache").as_deref(), Some("semantic_hit"));
    assert_eq!(h2.prop("llm.outcome").as_deref(), Some("cache_hit"));
}

#[test]
fn an_embeddings_service_that_fails_lets_the_request_go_on() {
    let mut h = host(&chat());
    let vm = vm(&h, &semantic(Value::Null));
    let mut ex = vm.exchange(1).unwrap();
    assert_eq!(send(&mut ex, &mut h, &question("Why?")), Step::Pause);
    let token = h.callouts[0].token;
    h.answer_call(503, b"no healthy upstream");
    let step = ex.on_call_answer(&mut h, token, 19);
    assert_eq!(step, Step::Continue);
    assert_eq!(
        h.request_header("x-llm-gateway-cluster").as_deref(),
        Some("openai")
    );
    answer(&mut ex, &mut h, 200, &JSON, &completion("Because."));
    ex.finish(&mut h);
    let failures = stat_name(
        metric::CACHE_SEMANTIC_FAILURES,
        &[(metric::TAG_REASON, "embedding_unavailable")],
    );
    assert_eq!(h.metric_value(&failures), 1);
}

#[test]
fn with_chroma_a_miss_asks_for_the_collection_then_queries_it() {
    let chroma =
        json!({"chroma": {"cluster": "chroma", "collection": "gateway-test", "timeout_ms": 2000}});
    let mut h = host(&chat());
    let mut vm = vm(&h, &semantic(chroma));
    let mut ex = vm.exchange(1).unwrap();
    let body = question("What is the capital of France?");
    assert_eq!(send(&mut ex, &mut h, &body), Step::Pause);
    let token = h.callouts[0].token;
    assert_eq!(
        answer_call(&mut ex, &mut h, token, &embedding()),
        Step::Pause
    );
    let collections = "/api/v2/tenants/default_tenant/databases/default_database/collections";
    let call = h.callouts[1].clone();
    assert_eq!(
        (call.cluster.as_str(), call.path.as_str(), call.timeout_ms),
        ("chroma", collections, 2000)
    );
    assert_eq!(
        parsed(&call.body),
        json!({"name": "gateway-test", "get_or_create": true, "configuration": {"hnsw": {"space": "cosine"}}})
    );
    let collection = json!({"id": "0a1b", "name": "gateway-test",
                            "configuration_json": {"hnsw": {"space": "cosine"}}});
    let step = answer_call(
        &mut ex,
        &mut h,
        call.token,
        collection.to_string().as_bytes(),
    );
    assert_eq!(step, Step::Pause);
    let call = h.callouts[2].clone();
    assert_eq!(call.path, format!("{collections}/0a1b/query"));
    let keys = cache::keys(
        body.to_string().as_bytes(),
        "openai",
        "gpt-4o-mini",
        Some("team-a"),
        Some(&RouteSemantic {
            threshold: 0.9,
            multi_turn: false,
        }),
    )
    .unwrap();
    let partition = hex::encode(keys.semantic.unwrap().0);
    assert_eq!(
        parsed(&call.body),
        json!({"query_embeddings": [[0.6, 0.8]], "n_results": 1,
               "where": {"$and": [{"partition": {"$eq": partition}}, {"expires_ms": {"$gt": NOW_MS}}]},
               "include": ["distances", "metadatas", "documents"]})
    );
    // Nothing near: a miss.
    let nothing = json!({"ids": [[]], "distances": [[]], "documents": [[]], "metadatas": [[]]});
    let step = answer_call(&mut ex, &mut h, call.token, nothing.to_string().as_bytes());
    assert_eq!(step, Step::Continue);
    flow::resume(&mut h, step);
    assert_eq!(h.resumed, 1);
    assert_eq!(
        h.request_header("x-llm-gateway-cluster").as_deref(),
        Some("openai")
    );
    answer(&mut ex, &mut h, 200, &JSON, &completion("Paris."));
    ex.finish(&mut h);
    // The answer is added to Chroma from the VM's tick.
    assert_eq!(h.callouts.len(), 3);
    vm.on_tick(&mut h);
    let add = h.callouts[3].clone();
    assert_eq!(
        (add.cluster.as_str(), add.path),
        ("chroma", format!("{collections}/0a1b/upsert"))
    );
    let record = parsed(&add.body);
    assert_eq!(record["ids"], json!([hex::encode(keys.exact)]));
    assert_eq!(record["embeddings"], json!([[0.6, 0.8]]));
    assert_eq!(
        record["documents"],
        json!([String::from_utf8(completion("Paris.")).unwrap()])
    );
    assert_eq!(
        record["metadatas"],
        json!([{"partition": partition, "expires_ms": NOW_MS + 300_000}])
    );
}

#[test]
fn a_traced_semantic_lookup_is_a_span_event_and_its_miss_goes_on_to_one_attempt() {
    let mut cfg = semantic(Value::Null);
    cfg["tracing"] = json!({"export": {"cluster": "otel", "flush_interval_ms": 1}});
    let mut h = host(&chat());
    let mut vm = vm(&h, &cfg);
    let mut ex = vm.exchange(1).unwrap();
    assert_eq!(
        send(&mut ex, &mut h, &question("What is the capital of France?")),
        Step::Pause
    );
    let token = h.callouts[0].token;
    h.advance_ms(3);
    assert_eq!(
        answer_call(&mut ex, &mut h, token, &embedding()),
        Step::Continue
    );
    // The provider gets the traceparent of the one attempt, set when the request finally left.
    let tp = h
        .request_header("traceparent")
        .expect("a traceparent upstream");
    answer(&mut ex, &mut h, 200, &JSON, &completion("Paris."));
    ex.finish(&mut h);
    h.advance_ms(1);
    vm.on_tick(&mut h);
    let spans = posted_spans(&h);
    assert_eq!(spans.len(), 2, "the request and its attempt");
    let event = &spans[0]["events"][0];
    assert_eq!(event["name"], "llm_gateway.semantic_cache.lookup");
    assert_eq!(
        event_attr(event, "llm_gateway.result"),
        Some(json!({"stringValue": "miss"}))
    );
    assert_eq!(
        event_attr(event, "llm_gateway.duration_us"),
        Some(json!({"intValue": "3000"}))
    );
    assert!(tp.contains(spans[1]["spanId"].as_str().unwrap()));
}
