//! Native microbenchmarks of the pure core on the same inputs as `make bench`:
//! the request path (parse + identify + route + count + rewrite) and tokenizer throughput.
//! `bench/bench.py` reads the results from target/criterion.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use llm_gateway::config::Config;
use llm_gateway::request::{Endpoint, Request};
use llm_gateway::route;
use llm_gateway::tokens::{encoding_for_model, Encoding};

/// Benchmark prompt sizes, shared with bench/bench.py.
const SIZES: [(&str, usize); 4] = [
    ("1KB", 1 << 10),
    ("16KB", 16 << 10),
    ("128KB", 128 << 10),
    ("1MB", 1 << 20),
];

/// `bench/prompt.txt` repeated to `size` bytes (cut on a char boundary), as bench.py does.
fn prompt(size: usize) -> String {
    let para = include_str!("../bench/prompt.txt");
    let mut s = String::with_capacity(size + para.len());
    while s.len() < size {
        s.push_str(para);
    }
    let mut cut = size;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s
}

/// A chat body whose prompt starts with `nonce`, so the token-count cache never helps.
fn body(text: &str, nonce: u64) -> Vec<u8> {
    serde_json::json!({"model": "gpt-4o-mini", "stream": true,
                       "messages": [{"role": "user", "content": format!("{nonce} {text}")}]})
    .to_string()
    .into_bytes()
}

fn config() -> Config {
    let yaml = include_str!("../envoy/gateway.yaml");
    // The demo plugin configuration is the JSON block under `value: |` in gateway.yaml.
    let start = yaml
        .find("value: |")
        .expect("plugin configuration in gateway.yaml");
    let json: String = yaml[start..]
        .lines()
        .skip(1)
        .take_while(|l| {
            l.trim_start().starts_with(['{', '"', '}', '[', ']']) || l.trim().is_empty()
        })
        .collect::<Vec<_>>()
        .join("\n");
    Config::parse(json.as_bytes(), &|_| Some("sk-bench".into())).expect("demo config parses")
}

fn pipeline(c: &mut Criterion) {
    let cfg = config();
    Encoding::O200kBase.preload();
    let auth = "Bearer sk-gateway-demo".to_string();
    let headers = move |name: &str| (name == "authorization").then(|| auth.clone());
    let mut group = c.benchmark_group("pipeline");
    for (name, size) in SIZES {
        let text = prompt(size);
        group.throughput(Throughput::Bytes(size as u64));
        if size >= 128 << 10 {
            group.sample_size(10);
        }
        let mut nonce = 0u64;
        group.bench_function(BenchmarkId::from_parameter(name), |bench| {
            let mut setup = || {
                nonce += 1;
                body(&text, nonce)
            };
            bench.iter_batched_ref(
                &mut setup,
                |b| {
                    let who = route::identify(&cfg, &headers).expect("demo key");
                    let req = Request::parse(Endpoint::ChatCompletions, b).expect("valid");
                    let d = route::route(
                        &cfg,
                        &req.model,
                        "/v1/chat/completions",
                        &headers,
                        &mut |_| 0,
                    )
                    .expect("route");
                    let (enc, _) =
                        encoding_for_model(&d.upstream_model, &cfg.tokenizer).expect("encoding");
                    let count = req.count_prompt(enc);
                    let out = req.rewrite(Some(&d.upstream_model), true);
                    (who, count, out.map(|o| o.len()))
                },
                criterion::BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

fn tokenizer(c: &mut Criterion) {
    let mut group = c.benchmark_group("tokenizer");
    for enc in [Encoding::O200kBase, Encoding::Cl100kBase] {
        enc.preload();
        let text = prompt(1 << 20);
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.sample_size(10);
        group.bench_with_input(BenchmarkId::new(enc.name(), "1MB"), &text, |b, t| {
            b.iter(|| enc.count_uncached(t))
        });
    }
    group.finish();
}

criterion_group!(benches, pipeline, tokenizer);
criterion_main!(benches);
