//! Metric labels no client can forge (issue: a model name picked other consumers' labels out of
//! the shipped `stats_tags`): the real wasm in real Envoy with each shipped set of tags.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use llm_gateway::names::metric;
use serde_json::{json, Value};
use support::*;

/// The demo's routes plus a default route, so glob, header and default routes all accept a
/// client-chosen model.
fn plugin_config(with_default: bool) -> Value {
    let mut c = json!({
        "providers": {"openai": {"cluster": "openai", "api_key_env": "OPENAI_API_KEY"}},
        "routes": [
            {"name": "fast", "match": {"header": {"name": "x-llm-tier", "value": "fast"}},
             "to": {"provider": "openai", "model": "gpt-4o-mini"}},
            {"name": "gpt-4o-mini", "match": {"model": "gpt-4o-mini"}, "to": {"provider": "openai"}},
            {"name": "gpt-4.1", "match": {"model": "gpt-4.1*"}, "to": {"provider": "openai"}}
        ],
        "consumers": [
            {"name": "demo", "key_sha256": "0b006f9beb977623c3f78ec1be7fe09519ecfab87240f4f263e4164f76667e55"}
        ],
        "tokenizer": {"preload": ["o200k_base"]}
    });
    if with_default {
        c["default"] = json!({"to": {"provider": "openai"}});
    }
    c
}

fn stats_tags(file: &str) -> Value {
    let text = std::fs::read_to_string(repo().join(file)).expect("bootstrap");
    let b: Value = serde_norway::from_str(&text).expect("YAML");
    b["stats_config"]["stats_tags"].clone()
}

/// The tags an Istio proxy defines (its bootstrap's fixed tags, one `name=.=value;.;` tag for
/// each of Istio's own metric labels) plus the `extraStatTags` the shipped gateway patch asks
/// for, built the way Istio's bootstrap template builds them.
fn istio_stats_tags() -> Value {
    let text = std::fs::read_to_string(repo().join("k8s/istio/gateway-patch.yaml")).unwrap();
    let patch: Value = serde_norway::from_str(&text).unwrap();
    let proxy_config = patch["spec"]["template"]["metadata"]["annotations"]
        ["proxy.istio.io/config"]
        .as_str()
        .expect("the patch sets proxy.istio.io/config");
    let proxy_config: Value = serde_norway::from_str(proxy_config).unwrap();
    let extra: Vec<String> = proxy_config["extraStatTags"]
        .as_array()
        .expect("extraStatTags")
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    let ours: BTreeSet<&str> = metric::ALL_TAGS.into_iter().collect();
    assert_eq!(
        extra.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        ours,
        "the Istio patch names every label the filter uses"
    );
    let mut tags = vec![
        json!({"tag_name": "cluster_name", "regex": "^cluster\\.((.+?(\\..+?\\.svc\\.cluster\\.local)?)\\.)"}),
        json!({"tag_name": "tcp_prefix", "regex": "^tcp\\.((.*?)\\.)\\w+?$"}),
        json!({"tag_name": "response_code", "regex": "(response_code=\\.=(.+?);\\.;)|_rq(_(\\d{3}))$"}),
        json!({"tag_name": "response_code_class", "regex": "_rq(_(\\dxx))$"}),
        json!({"tag_name": "http_conn_manager_listener_prefix", "regex": "^listener(?=\\.).*?\\.http\\.(((?:[_.[:digit:]]*|[_\\[\\]aAbBcCdDeEfF[:digit:]]*))\\.)"}),
        json!({"tag_name": "http_conn_manager_prefix", "regex": "^http\\.(((?:[_.[:digit:]]*|[_\\[\\]aAbBcCdDeEfF[:digit:]]*))\\.)"}),
        json!({"tag_name": "listener_address", "regex": "^listener\\.(((?:[_.[:digit:]]*|[_\\[\\]aAbBcCdDeEfF[:digit:]]*))\\.)"}),
        json!({"tag_name": "mongo_prefix", "regex": "^mongo\\.(.+?)\\.(collection|cmd|cx_|op_|delays_|decoding_)(.*?)$"}),
    ];
    let istio_labels = [
        "reporter",
        "source_namespace",
        "source_workload",
        "source_workload_namespace",
        "source_principal",
        "source_app",
        "source_version",
        "source_cluster",
        "destination_namespace",
        "destination_workload",
        "destination_workload_namespace",
        "destination_principal",
        "destination_app",
        "destination_version",
        "destination_service",
        "destination_service_name",
        "destination_service_namespace",
        "destination_port",
        "destination_cluster",
        "request_protocol",
        "request_operation",
        "request_host",
        "response_flags",
        "grpc_response_status",
        "connection_security_policy",
        "source_canonical_service",
        "destination_canonical_service",
        "source_canonical_revision",
        "destination_canonical_revision",
    ];
    for t in istio_labels.iter().map(|s| s.to_string()).chain(extra) {
        tags.push(json!({"tag_name": t, "regex": format!("({t}=\\.=(.*?);\\.;)")}));
    }
    Value::Array(tags)
}

/// Model names that tried to forge labels, names or values.
fn adversarial() -> Vec<String> {
    let mut v: Vec<String> = [
        "=.=",
        ".",
        "_",
        ";",
        "=",
        ";.;",
        "x;.;consumer=.=victim;.;",
        "-consumer=.=victim",
        "-gen_ai_provider_name=.=evil;.;outcome=.=ok",
        "-reporter=.=source;.;",
        "-response_code=.=200;.;",
        "_rq_200",
        ".wasmcustom.x",
        "-模型-ü-🙂",
        "-line\nbreak",
        "-tab\tand\"quote",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    v.extend(metric::ALL_TAGS.iter().map(|t| format!("-{t}=.=forged;.;")));
    v.push(format!("-{}", "x".repeat(10 * 1024)));
    v
}

fn demo_key() -> [(&'static str, &'static str); 1] {
    [("authorization", "Bearer sk-gateway-demo")]
}

fn send(gw: &Gateway, model: &str, headers: &[(&str, &str)]) -> u16 {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "Hello"}]});
    let mut h = demo_key().to_vec();
    h.extend_from_slice(headers);
    h.push(("content-type", "application/json"));
    post_lenient(
        &gw.url("/v1/chat/completions"),
        &h,
        body.to_string().as_bytes(),
    )
    .status
}

/// Every sample of the filter's metrics: (name, labels).
fn series(gw: &Gateway) -> Vec<(String, BTreeMap<String, String>)> {
    let text = gw.prometheus();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("/stats/prometheus parses");
    scrape
        .samples
        .into_iter()
        .filter(|s| s.metric.starts_with("llm_gateway_") || s.metric.starts_with("gen_ai_"))
        .map(|s| {
            let labels = s
                .labels
                .iter()
                .filter(|(k, _)| *k != "le" && *k != "quantile")
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            (s.metric, labels)
        })
        .collect()
}

/// The metric names the filter defines (a histogram adds its `_bucket`/`_sum`/`_count`).
fn known_metric(name: &str) -> bool {
    let base = name
        .strip_suffix("_bucket")
        .or_else(|| name.strip_suffix("_sum"))
        .or_else(|| name.strip_suffix("_count"))
        .unwrap_or(name);
    [
        metric::REQUESTS,
        metric::TOKENS,
        metric::TOKEN_USAGE,
        metric::DURATION,
        metric::TTFT,
        metric::ESTIMATED,
        metric::PROMPT_ESTIMATED,
        metric::CREDENTIAL_REFRESHES,
        metric::FILTER_TIME,
        metric::VM_MEMORY,
        metric::COST,
        metric::UNPRICED,
    ]
    .contains(&base)
        || [metric::REQUESTS, metric::TOKENS].contains(&name)
}

fn check_labels(tags: Value, what: &str) {
    let fake = Fake::start(None);
    let gw = Gateway::start(
        &fake,
        Options {
            plugin_config: Some(plugin_config(true)),
            edit: Some(Box::new(move |b: &mut Value| {
                b["stats_config"]["stats_tags"] = tags;
            })),
            ..Options::default()
        },
    );
    let mut sent = 0u64;
    for name in adversarial() {
        // A glob route, a header route and the default route each accept it.
        assert_eq!(
            send(&gw, &format!("gpt-4.1{name}"), &[]),
            200,
            "{what}: glob {name:?}"
        );
        assert_eq!(
            send(&gw, &name, &[("x-llm-tier", "fast")]),
            200,
            "{what}: header {name:?}"
        );
        assert_eq!(
            send(&gw, &format!("zz{name}"), &[]),
            200,
            "{what}: default {name:?}"
        );
        sent += 3;
    }
    // A model the configuration lists keeps its own label.
    assert_eq!(send(&gw, "gpt-4o-mini", &[]), 200);
    sent += 1;
    gw.access_log(sent as usize);

    let allowed: BTreeMap<&str, BTreeSet<&str>> = [
        (
            metric::TAG_MODEL,
            [
                "gpt-4o-mini",
                "other:gpt-4.1",
                "other:fast",
                "other:default",
            ]
            .into(),
        ),
        (metric::TAG_CONSUMER, ["demo"].into()),
        // `vertex`: the demo's Vertex AI provider, whose token the VMs fetch at start.
        (metric::TAG_PROVIDER, ["openai", "vertex"].into()),
        (metric::TAG_OUTCOME, ["ok"].into()),
        (
            metric::TAG_TOKEN_TYPE,
            ["input", "output", "cached_input", "reasoning"].into(),
        ),
    ]
    .into();
    let all = series(&gw);
    assert!(!all.is_empty(), "{what}: no series");
    for (name, labels) in &all {
        assert!(
            known_metric(name),
            "{what}: a forged metric name {name:?} ({labels:?})"
        );
        for (k, v) in labels {
            let ok = allowed
                .get(k.as_str())
                .is_some_and(|vs| vs.contains(v.as_str()));
            assert!(ok, "{what}: {name} has {k}={v:?} ({labels:?})");
        }
    }
    let text = gw.prometheus();
    let requests = prom_sum(&text, metric::REQUESTS, &[(metric::TAG_CONSUMER, "demo")]);
    assert_eq!(
        requests as u64, sent,
        "{what}: every request counted under its consumer"
    );
    for (label, n) in [
        ("other:gpt-4.1", adversarial().len()),
        ("other:fast", adversarial().len()),
        ("other:default", adversarial().len()),
        ("gpt-4o-mini", 1),
    ] {
        let got = prom_sum(&text, metric::REQUESTS, &[(metric::TAG_MODEL, label)]);
        assert_eq!(got as usize, n, "{what}: requests labelled {label}");
    }
    // The access log still has the client's own string, as a JSON value of its own.
    let log = gw.access_log(sent as usize);
    assert!(log
        .iter()
        .any(|l| l["request_model"] == "gpt-4.1x;.;consumer=.=victim;.;"));
}

#[test]
fn client_model_names_never_forge_labels_with_the_demo_tags() {
    check_labels(stats_tags("envoy/gateway.yaml"), "envoy/gateway.yaml");
}

#[test]
fn client_model_names_never_forge_labels_with_the_kubernetes_tags() {
    assert_eq!(
        stats_tags("k8s/standalone/base/envoy.yaml"),
        stats_tags("envoy/gateway.yaml"),
        "the k8s bootstrap ships the demo's tags"
    );
    check_labels(
        stats_tags("k8s/standalone/base/envoy.yaml"),
        "k8s/standalone",
    );
}

#[test]
fn client_model_names_never_forge_labels_with_istios_tags() {
    check_labels(istio_stats_tags(), "istio");
}

#[test]
fn unknown_and_glob_routed_models_add_no_series() {
    let fake = Fake::start(None);
    let gw = Gateway::start(
        &fake,
        Options {
            plugin_config: Some(plugin_config(false)),
            ..Options::default()
        },
    );
    // Warm up: one of each kind defines its series.
    assert_eq!(send(&gw, "m-warm", &[]), 404);
    assert_eq!(send(&gw, "gpt-4.1-warm", &[]), 200);
    assert_eq!(send(&gw, "gpt-4o-mini", &[]), 200);
    gw.access_log(3);
    let before = series(&gw).len();
    for i in 0..2000 {
        assert_eq!(send(&gw, &format!("m-{i}"), &[]), 404);
        assert_eq!(send(&gw, &format!("gpt-4.1-{i}"), &[]), 200);
    }
    assert_eq!(send(&gw, "gpt-4o-mini", &[]), 200);
    gw.access_log(4004);
    let after = series(&gw);
    assert_eq!(after.len(), before, "series count stays flat");
    let text = gw.prometheus();
    let no_route = prom_sum(
        &text,
        metric::REQUESTS,
        &[
            (metric::TAG_MODEL, "none"),
            (metric::TAG_OUTCOME, "no_route"),
        ],
    );
    assert_eq!(no_route as u64, 2001);
    let glob = prom_sum(
        &text,
        metric::REQUESTS,
        &[(metric::TAG_MODEL, "other:gpt-4.1")],
    );
    assert_eq!(glob as u64, 2001);
    let real = prom_sum(
        &text,
        metric::REQUESTS,
        &[(metric::TAG_MODEL, "gpt-4o-mini")],
    );
    assert_eq!(real as u64, 2, "a real model keeps its label");
    assert!(
        !text.contains("gen_ai_request_model=\"other\""),
        "nothing folded into other"
    );
}
