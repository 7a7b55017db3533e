//! Native microbenchmarks of the pure core on the same inputs as `make bench`:
//! the request path (the flow's request stages: identify, parse, route, count, limits, rewrite,
//! run against the stand-in host), tokenizer throughput, and the
//! usage events (one event made and priced per request, a batch of 100 encoded per post), and
//! the response cache (exact key, exact lookup, semantic lookup among 10,000 vectors).
//! `bench/bench.py` reads the results from target/criterion.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use llm_gateway::flow::vm::Vm;
use llm_gateway::flow::Step;
use llm_gateway::host::fake::FakeHost;
use llm_gateway::tokens::Encoding;

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

/// The demo plugin configuration: the JSON block under `value: |` in gateway.yaml.
fn config_json() -> String {
    let yaml = include_str!("../envoy/gateway.yaml");
    let start = yaml
        .find("value: |")
        .expect("plugin configuration in gateway.yaml");
    yaml[start..]
        .lines()
        .skip(1)
        .take_while(|l| {
            l.trim_start().starts_with(['{', '"', '}', '[', ']']) || l.trim().is_empty()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A host whose environment holds a key for every `*_env` variable the configuration names.
fn host(json: &str) -> FakeHost {
    fn keys(v: &serde_json::Value, h: &mut FakeHost) {
        match v {
            serde_json::Value::Object(o) => {
                for (k, v) in o {
                    match v.as_str() {
                        Some(name) if k.ends_with("_env") => {
                            h.env.insert(name.to_string(), "sk-bench".to_string());
                        }
                        _ => keys(v, h),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| keys(v, h)),
            _ => {}
        }
    }
    let mut h = FakeHost::new(&[
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        ("authorization", "Bearer sk-gateway-demo"),
        ("content-type", "application/json"),
    ]);
    keys(
        &serde_json::from_str(json).expect("demo config is JSON"),
        &mut h,
    );
    h
}

/// The request path as the filter runs it: the flow's request-headers and request-body stages
/// (identify, parse, route, count, limits, rewrite) against the stand-in host.
fn pipeline(c: &mut Criterion) {
    let json = config_json();
    let (vm, _) = Vm::configure(&host(&json), json.as_bytes()).expect("demo config parses");
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
                let mut h = host(&json);
                h.request_body = body(&text, nonce);
                (h, vm.exchange(1).expect("the gateway role"))
            };
            bench.iter_batched_ref(
                &mut setup,
                |(h, x)| {
                    assert_eq!(x.on_request_headers(h, false), Step::Pause);
                    let size = h.request_body.len();
                    let step = x.on_request_body(h, size, true);
                    assert_eq!(step, Step::Continue);
                    h.request_body.len()
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
        let text = prompt(1 << 20);
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.sample_size(10);
        group.bench_with_input(BenchmarkId::new(enc.name(), "1MB"), &text, |b, t| {
            b.iter(|| enc.count_uncached(t))
        });
        // The counter the filter used before (tiktoken-rs), on the same text: the before/after.
        let tiktoken = match enc {
            Encoding::O200kBase => tiktoken_rs::o200k_base_singleton(),
            Encoding::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
        };
        group.bench_with_input(
            BenchmarkId::new(format!("{}-tiktoken-rs", enc.name()), "1MB"),
            &text,
            |b, t| b.iter(|| tiktoken.count_ordinary(t)),
        );
        // The texts bench.py sends through the filter (its rows put the two side by side).
        for (key, text) in tokenizer_texts() {
            group.throughput(Throughput::Bytes(text.len() as u64));
            group.bench_with_input(BenchmarkId::new(enc.name(), key), &text, |b, t| {
                b.iter(|| enc.count_uncached(t))
            });
        }
    }
    group.finish();
}

/// bench.py's tokenizer texts: the 16 KB bench prompt, the corpora in bench/corpus/, and the
/// worst cases (1 MB each; 64 KB when BENCH_SMOKE is set, as in bench.py's smoke run).
fn tokenizer_texts() -> Vec<(&'static str, String)> {
    let size = if std::env::var_os("BENCH_SMOKE").is_some() {
        64 << 10
    } else {
        1 << 20
    };
    let rep = |unit: &str, n: usize| unit.repeat(n / unit.len() + 1)[..n].to_string();
    vec![
        ("prompt", prompt(16 << 10)),
        (
            "english",
            include_str!("../bench/corpus/english.txt").to_string(),
        ),
        (
            "code",
            include_str!("../bench/corpus/code.rs.txt").to_string(),
        ),
        (
            "json",
            include_str!("../bench/corpus/json.json").to_string(),
        ),
        ("worst-one-piece", rep("abcdefghij", size)),
        ("worst-cjk-run", "\u{4e2d}".repeat(size / 3)),
        ("worst-digits", rep("1234567890", size)),
        ("worst-punct", rep("!?.,;:-", size)),
    ]
}

/// A finished chat request of 250 + 60 tokens, as `on_log` sees it.
fn finished() -> llm_gateway::record::Record {
    use llm_gateway::meter::{Learned, Usage};
    llm_gateway::record::Record {
        consumer: Some("team-a".into()),
        request_model: Some("gpt-4o-mini".into()),
        upstream_model: Some("gpt-4o-mini".into()),
        provider: Some("openai".into()),
        endpoint: Some("chat.completions"),
        status: 200,
        duration_ms: 350,
        learned: Learned {
            usage: Some(Usage {
                prompt_tokens: Some(250),
                completion_tokens: Some(60),
                total_tokens: Some(310),
                ..Default::default()
            }),
            model: Some("gpt-4o-mini-2024-07-18".into()),
            complete: true,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn usage(c: &mut Criterion) {
    use llm_gateway::usage::{self, Event, Export};
    let prices = llm_gateway::cost::Prices::parse(Default::default()).expect("shipped prices");
    let record = finished();
    let mut group = c.benchmark_group("usage");
    for format in ["otlp", "json"] {
        let cfg = Export::parse(
            serde_json::from_value(serde_json::json!({"cluster": "c", "format": format}))
                .expect("shape"),
        )
        .expect("valid");
        let x = usage::exporter(cfg, Some("node-1".into()));
        // What `on_log` does per request: price, build the event, encode it.
        group.bench_function(BenchmarkId::new("per request", format), |b| {
            b.iter(|| {
                let mut r = record.clone();
                r.price(&prices);
                let e = Event::new(
                    &r,
                    Some("0b7c8a36-6a1e-4a5e-9f57-3c1f1b2a9d10".into()),
                    1,
                    2,
                );
                e.encode(x.cfg.format)
            })
        });
    }
    for format in ["otlp", "json"] {
        let cfg = Export::parse(
            serde_json::from_value(serde_json::json!({"cluster": "c", "format": format}))
                .expect("shape"),
        )
        .expect("valid");
        let x = usage::exporter(cfg, Some("node-1".into()));
        let mut r = record.clone();
        r.price(&prices);
        let events: Vec<Event> = (0..100)
            .map(|i| Event::new(&r, Some(format!("req-{i}")), 1, 2))
            .collect();
        group.bench_function(BenchmarkId::new("encode 100", format), |b| {
            b.iter(|| usage::encode(&x, &events))
        });
    }
    group.finish();
}

/// What tracing adds in `on_log`: the request's span and its attempt's, built and encoded.
fn trace(c: &mut Criterion) {
    use llm_gateway::meter::Learned;
    use llm_gateway::record::Record;
    use llm_gateway::trace::span::{self, Attempt, State};
    use llm_gateway::trace::Context;
    let record = Record {
        request_id: Some("0b7c8a36-6a1e-4a5e-9f57-3c1f1b2a9d10".into()),
        cost: Some(45_000_000),
        learned: Learned {
            id: Some("chatcmpl-AbCdEf0123456789".into()),
            finish_reasons: vec!["stop"],
            ..finished().learned
        },
        ..finished()
    };
    let mut bits = [0x4bf9_2f35_77b3_4da6u64, 0xa3ce_929d_0e0e_4736, 7]
        .into_iter()
        .cycle();
    let ctx = Context::start(None, None, 1.0, &mut || bits.next().unwrap_or(1));
    let st = State::new(ctx, 1_767_225_600_000_000_000);
    let attempt = Attempt {
        n: 1,
        provider: "openai".into(),
        model: Some("gpt-4o-mini".into()),
        outcome: "200".into(),
        start_ns: 1_767_225_600_000_100_000,
        end_ns: 1_767_225_600_300_000_000,
    };
    let mut group = c.benchmark_group("trace");
    group.bench_function("spans per request (build, encode OTLP)", |b| {
        b.iter(|| {
            let spans = span::spans(
                &st,
                &record,
                1_767_225_600_350_000_000,
                std::slice::from_ref(&attempt),
                None,
            );
            spans.iter().map(|s| s.encode().len()).sum::<usize>()
        })
    });
    group.finish();
}

fn cache(c: &mut Criterion) {
    use llm_gateway::cache::{self, CacheConfig, Entries, VectorIndex};
    use llm_gateway::limits::test_store::MemStore;
    let mut g = c.benchmark_group("cache");
    let b = body(&prompt(1 << 10), 7);
    g.bench_function("exact key/1KB", |bench| {
        bench.iter(|| cache::keys(&b, "openai", "gpt-4o-mini", Some("team-a"), None))
    });
    let store = MemStore::default();
    let entries = Entries::new("b.", &CacheConfig::default());
    let key = cache::keys(&b, "openai", "gpt-4o-mini", Some("team-a"), None)
        .map(|k| k.exact)
        .unwrap_or_default();
    let answer = vec![b'x'; 1 << 10];
    entries.put(&store, &key, &answer, u64::MAX, 0);
    g.bench_function("entry get/1KB answer", |bench| {
        bench.iter(|| entries.get(&store, &key, 1))
    });
    // 10,000 vectors in one partition (the worst case: every vector is compared), pseudo-random
    // and normalised; the index's mirror is filled by the first lookup, as in a warm VM.
    for dim in [256usize, 1536] {
        let store = MemStore::default();
        let mut index = VectorIndex::new("v.", 10_000);
        let partition = [1u8; 32];
        let mut rng = fastrand::Rng::with_seed(42);
        let vector = |rng: &mut fastrand::Rng| {
            let mut v: Vec<f32> = (0..dim).map(|_| rng.f32() - 0.5).collect();
            cache::normalise(&mut v);
            v
        };
        for i in 0..10_000u32 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_le_bytes());
            index.insert(&store, &partition, &k, u64::MAX, &vector(&mut rng));
        }
        let q = vector(&mut rng);
        let mut reader = VectorIndex::new("v.", 10_000);
        reader.nearest(&store, &partition, &q, 0);
        g.bench_function(format!("nearest/10000x{dim}"), |bench| {
            bench.iter(|| reader.nearest(&store, &partition, &q, 0))
        });
    }
    g.finish();
}

criterion_group!(benches, pipeline, tokenizer, usage, trace, cache);
criterion_main!(benches);
