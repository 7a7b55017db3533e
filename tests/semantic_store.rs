//! The semantic cache with an external vector store: a real Chroma server (`chroma run`, from
//! the chromadb package) shared by two Envoy instances. An answer stored through one Envoy is
//! served to a paraphrase through the other; an unrelated question misses; a vector store that
//! is down costs the request nothing but the lookup.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::chroma::Chroma;
use support::*;

const THRESHOLD: f64 = 0.8;

/// A gateway whose semantic cache keeps its vectors in Chroma at `chroma_port`.
fn gateway(fake: &Fake, chroma_port: u16) -> Gateway {
    let config = json!({
        "providers": {"openai": {"cluster": "openai", "api_key_env": "OPENAI_API_KEY"}},
        "default": {"to": {"provider": "openai"},
                    "cache": {"scope": "shared", "semantic": {"threshold": THRESHOLD}}},
        "consumer_header": "x-team",
        "cache": {"semantic": {
            "embeddings": {"provider": "openai", "model": "text-embedding-3-small"},
            "store": {"chroma": {"cluster": "chroma", "collection": "gateway-test", "timeout_ms": 2000}}
        }},
    });
    gateway_with_cluster(fake, config, 2, "chroma", chroma_port)
}

fn ask(text: &str) -> Value {
    json!({"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "Answer in one sentence."},
        {"role": "user", "content": text}
    ]})
}

/// The number of records in the test collection, read through Chroma's own API.
fn records(chroma: &Chroma) -> u64 {
    let r = post(
        &chroma.url("/api/v2/tenants/default_tenant/databases/default_database/collections"),
        &[("content-type", "application/json")],
        br#"{"name": "gateway-test", "get_or_create": true}"#,
    );
    let id = r.json()["id"].as_str().expect("collection id").to_string();
    let (status, body) = get(
        chroma.port(),
        &format!(
            "/api/v2/tenants/default_tenant/databases/default_database/collections/{id}/count"
        ),
    )
    .expect("count");
    assert_eq!(status, 200, "{body}");
    body.trim().parse().expect("a count")
}

#[test]
fn two_envoys_share_semantic_hits_through_chroma() {
    let fake = Fake::start(None);
    let chroma = Chroma::start();
    let a = gateway(&fake, chroma.port());
    let b = gateway(&fake, chroma.port());

    let question = "What is the capital city of France?";
    let paraphrase = "Tell me the capital city of France";
    let unrelated = "How do I reset my password?";
    // The fixture's vectors make the test mean something: the paraphrase is above the
    // threshold, the unrelated question far below.
    let v = fake.embeddings(&[question, paraphrase, unrelated]);
    assert!(cosine(&v[0], &v[1]) >= THRESHOLD + 0.02);
    assert!(cosine(&v[0], &v[2]) < 0.5);

    // Through A: a miss, answered by the provider (its id pinned), then stored in Chroma.
    let first = chat_as(
        &a,
        "team-a",
        &ask(question),
        &[("x-fake-id", "chatcmpl-shared")],
    );
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.header("x-llm-cache"), Some("miss"));
    assert_eq!(first.json()["id"], "chatcmpl-shared");
    let deadline = Instant::now() + Duration::from_secs(5);
    while records(&chroma) < 1 {
        assert!(
            Instant::now() < deadline,
            "the answer never reached Chroma:\n{}",
            a.envoy_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Through B, which never saw the question: the paraphrase is served from Chroma.
    let hit = chat_as(
        &b,
        "team-b",
        &ask(paraphrase),
        &[("x-fake-id", "chatcmpl-fresh")],
    );
    assert_eq!(hit.status, 200, "{}", hit.text());
    assert_eq!(hit.header("x-llm-cache"), Some("hit"), "{}", b.envoy_log());
    assert_eq!(hit.json()["id"], "chatcmpl-shared", "A's stored answer");
    assert_eq!(
        hit.json()["choices"][0]["message"],
        first.json()["choices"][0]["message"]
    );
    // Streamed, the same answer as SSE.
    let mut s = ask(paraphrase);
    s["stream"] = true.into();
    let sse = chat_as(&b, "team-b", &s, &[]);
    assert_eq!(sse.header("x-llm-cache"), Some("hit"));
    assert!(sse.text().contains("chatcmpl-shared") && sse.text().ends_with("data: [DONE]\n\n"));

    // Unrelated, and a different system prompt: misses that reach the provider.
    let miss = chat_as(&b, "team-b", &ask(unrelated), &[]);
    assert_eq!(miss.header("x-llm-cache"), Some("miss"));
    let mut other_system = ask(paraphrase);
    other_system["messages"][0]["content"] = "Answer at length.".into();
    let miss = chat_as(&b, "team-b", &other_system, &[]);
    assert_eq!(miss.header("x-llm-cache"), Some("miss"));

    let log = b.access_log(4);
    let caches: Vec<&str> = log.iter().filter_map(|l| l["cache"].as_str()).collect();
    assert_eq!(caches, ["semantic_hit", "semantic_hit", "miss", "miss"]);
    assert_eq!(log[0]["outcome"], "cache_hit");
    assert_eq!(log[0]["total_tokens"], "0", "a hit used no provider tokens");
    assert!(log[0]["cache_saved_tokens"]
        .as_str()
        .is_some_and(|t| t != "0"));
    let prom = b.prometheus();
    assert_eq!(
        prom_sum(
            &prom,
            "llm_gateway_cache_lookups_total",
            &[("result", "semantic_hit")]
        ),
        2.0
    );
    assert_eq!(
        prom_sum(&prom, "llm_gateway_cache_semantic_failures_total", &[]),
        0.0
    );
}

#[test]
fn a_vector_store_that_is_down_costs_nothing_but_the_lookup() {
    let fake = Fake::start(None);
    let gw = gateway(&fake, free_port());
    for text in [
        "What is the capital city of France?",
        "Capital city of France?",
    ] {
        let t0 = Instant::now();
        let r = chat_as(&gw, "team-a", &ask(text), &[]);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-llm-cache"), Some("miss"));
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    }
    // A streamed question goes on after the failed lookup with the body the filter rewrites
    // (from the callout's callback): include_usage is asked for, and the usage chunk the
    // client did not ask for is taken out again.
    let mut s = ask("Which river flows through Paris?");
    s["stream"] = true.into();
    let r = chat_as(&gw, "team-a", &s, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-fake-received-include-usage"), Some("true"));
    assert!(!r.text().contains("\"usage\":{"), "{}", r.text());
    assert!(r.text().ends_with("data: [DONE]\n\n"));
    // The same question again: the exact cache (in Envoy) still serves it.
    let r = chat_as(&gw, "team-a", &ask("Capital city of France?"), &[]);
    assert_eq!(r.header("x-llm-cache"), Some("hit"));
    let prom = gw.prometheus();
    assert_eq!(
        prom_sum(
            &prom,
            "llm_gateway_cache_semantic_failures_total",
            &[("reason", "store_unavailable")]
        ),
        3.0,
        "{prom}"
    );
}
