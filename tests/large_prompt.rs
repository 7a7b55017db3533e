//! A long prompt has a bounded cost on its worker: counted exactly up to
//! `tokenizer.max_exact_bytes`, bounded above beyond it. The real wasm in real Envoy with one
//! worker, so the long prompts and the small requests share it. (Timings are printed, not
//! asserted: performance lives in the bench.)

mod support;

use std::time::{Duration, Instant};

use llm_gateway::tokens::Encoding;
use serde_json::{json, Value};
use support::*;

fn gateway(fake: &Fake, max_exact_bytes: Option<u64>) -> Gateway {
    let mut tokenizer = json!({"preload": ["o200k_base"]});
    if let Some(n) = max_exact_bytes {
        tokenizer["max_exact_bytes"] = n.into();
    }
    Gateway::start(
        fake,
        Options {
            plugin_config: Some(json!({
                "providers": {"openai": {"cluster": "openai", "api_key_env": "OPENAI_API_KEY"}},
                "default": {"to": {"provider": "openai"}},
                "allow_anonymous": true,
                "max_request_body_bytes": 4 << 20,
                "tokenizer": tokenizer,
            })),
            workers: 1,
            ..Options::default()
        },
    )
}

/// About 256 KiB of English-like text with no two lines alike.
fn long_text() -> String {
    let mut s = String::with_capacity(270_000);
    let mut i = 0u64;
    while s.len() < 256 * 1024 {
        s.push_str(&format!(
            "Line {i}: the quarterly report shows revenue of {} units in region {}, up {}%.\n",
            i * 37 % 1000,
            i % 17,
            i % 9
        ));
        i += 1;
    }
    s
}

fn body(text: &str) -> Vec<u8> {
    json!({"model": "gpt-4o-mini", "max_tokens": 16,
           "messages": [{"role": "user", "content": text}]})
    .to_string()
    .into_bytes()
}

fn send(gw: &Gateway, body: &[u8], id: &str) -> (u16, Duration) {
    let t = Instant::now();
    let r = post(
        &gw.url("/v1/chat/completions"),
        &[("content-type", "application/json"), ("x-request-id", id)],
        body,
    );
    (r.status, t.elapsed())
}

fn line(gw: &Gateway, id: &str) -> Value {
    for _ in 0..100 {
        if let Some(l) = gw.access_log(1).into_iter().find(|l| l["request_id"] == id) {
            return l;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no access log line for {id}");
}

fn num(v: &Value) -> u64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Small requests on the worker while long prompts keep arriving: their latencies (sorted).
fn small_latencies_under_long_prompts(gw: &Gateway, text: &str) -> (Vec<Duration>, u64) {
    let long = body(text);
    let url = gw.url("/v1/chat/completions");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    let loader = std::thread::spawn(move || {
        let mut n = 0;
        while !s2.load(std::sync::atomic::Ordering::Relaxed) && n < 200 {
            let r = post(&url, &[("content-type", "application/json")], &long);
            assert_eq!(r.status, 200);
            n += 1;
        }
        n
    });
    std::thread::sleep(Duration::from_millis(200));
    let small = body("Hello");
    let mut lat: Vec<Duration> = (0..60)
        .map(|i| {
            let (status, d) = send(gw, &small, &format!("small-{i}"));
            assert_eq!(status, 200);
            std::thread::sleep(Duration::from_millis(10));
            d
        })
        .collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let n = loader.join().expect("loader");
    lat.sort();
    (lat, n)
}

#[test]
fn a_long_prompt_is_counted_at_a_bounded_cost() {
    let fake = Fake::start(None);
    let text = long_text();
    let gw = gateway(&fake, None);
    let (status, _) = send(&gw, &body(&text), "long-1");
    assert_eq!(status, 200);
    let l = line(&gw, "long-1");
    // One user message: 3 per message, its role, its text bounded by its bytes, 3 to prime.
    let role = Encoding::O200kBase.count("user");
    let bounded = 3 + role + text.len() as u64 + 3;
    assert_eq!(
        num(&l["counted_prompt_tokens"]),
        bounded,
        "bounded, not counted"
    );
    let exact = 3 + role + Encoding::O200kBase.count_uncached(&text) + 3;
    assert!(bounded >= exact, "an upper bound");
    // A prompt within the budget is exact.
    let (status, _) = send(&gw, &body("Hello, world!"), "short-1");
    assert_eq!(status, 200);
    assert_eq!(
        num(&line(&gw, "short-1")["counted_prompt_tokens"]),
        3 + role + Encoding::O200kBase.count("Hello, world!") + 3
    );
    // With the budget raised past the prompt, the same prompt is counted exactly.
    let exact_gw = gateway(&fake, Some(8 << 20));
    let (status, _) = send(&exact_gw, &body(&text), "long-2");
    assert_eq!(status, 200);
    let l = line(&exact_gw, "long-2");
    assert_eq!(num(&l["counted_prompt_tokens"]), exact);

    // What the other requests on the worker see, bounded and exact (printed for the README).
    for (name, g) in [("bounded (64 KiB)", &gw), ("exact (8 MiB)", &exact_gw)] {
        let (lat, n) = small_latencies_under_long_prompts(g, &text);
        let p = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize];
        let tokenize: Vec<u64> = g
            .access_log(1)
            .iter()
            .filter(|l| {
                l["request_id"] != "short-1"
                    && !l["request_id"].as_str().unwrap_or("").starts_with("small-")
            })
            .map(|l| num(&l["tokenize_us"]))
            .collect();
        let max_tok = tokenize.iter().max().copied().unwrap_or(0);
        eprintln!(
            "{name}: {n} long prompts; small requests p50 {:?} p90 {:?} max {:?}; tokenize_us of a long prompt max {max_tok}",
            p(0.5),
            p(0.9),
            p(1.0)
        );
    }
}
