use super::*;
use crate::limits::Spec;
use crate::tokens::Encoding;

fn env(name: &str) -> Option<String> {
    match name {
        "OPENAI_API_KEY" => Some("sk-provider".into()),
        "AZURE_KEY" => Some("az-key".into()),
        _ => None,
    }
}

fn parse(v: serde_json::Value) -> Result<Config, ConfigError> {
    Config::parse(v.to_string().as_bytes(), &env)
}

fn base() -> serde_json::Value {
    serde_json::json!({
        "providers": {
            "openai": {"cluster": "openai", "api_key_env": "OPENAI_API_KEY"},
            "azure": {"cluster": "azure", "auth": "api-key", "api_key_env": "AZURE_KEY",
                      "models": {"gpt-4o": "my-gpt4o-deployment"}}
        },
        "routes": [
            {"match": {"model": "gpt-4o*"}, "to": {"provider": "openai"}},
            {"match": {"model": "split-me"}, "split": [
                {"provider": "openai", "weight": 90}, {"provider": "azure", "weight": 10}]}
        ],
        "consumers": [{"name": "team-a", "key_sha256":
            "3c8e4ff4d9e5a8fa1ec0c8b0b2a5d1b2f0b1d0b3e1a2c3d4e5f60718293a4b5c"}]
    })
}

#[test]
fn valid_config() {
    let c = parse(base()).unwrap();
    assert_eq!(c.cluster_header, "x-llm-gateway-cluster");
    assert_eq!(c.providers.len(), 2);
    let az = c.providers.iter().find(|p| p.name == "azure").unwrap();
    assert_eq!(
        az.credential_header(0),
        Some(("api-key", "az-key".to_string()))
    );
    let oa = c.providers.iter().find(|p| p.name == "openai").unwrap();
    assert_eq!(oa.auth, AuthStyle::Bearer);
    assert_eq!(
        oa.credential_header(0),
        Some(("authorization", "Bearer sk-provider".to_string()))
    );
    assert!(matches!(
        c.routes[1].target,
        Target::Split { total: 100, .. }
    ));
    assert_eq!(c.keys.len(), 1);
    assert_eq!(c.tokenizer.fallback, Some(Encoding::O200kBase));
    assert_eq!(c.max_request_body_bytes, DEFAULT_MAX_REQUEST_BODY_BYTES);
}

fn field_of(v: serde_json::Value) -> String {
    match parse(v) {
        Ok(_) => panic!("config was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn names_that_become_labels_cannot_spell_a_tag() {
    for bad in ["a=.=b", "x;y", "a b", "", "é", "a,b", &"x".repeat(129)] {
        let mut v = base();
        v["consumers"][0]["name"] = bad.into();
        assert!(field_of(v).starts_with("consumers[0].name: "), "{bad:?}");
        let mut v = base();
        v["routes"][0]["name"] = bad.into();
        if !bad.is_empty() {
            assert!(field_of(v).starts_with("routes[0].name: "), "{bad:?}");
        }
        let mut v = base();
        v["routes"][1]["match"]["model"] = format!("m{bad}").into();
        if bad.contains(['=', ';', ' ', ',']) || bad.len() > 127 || !bad.is_ascii() {
            assert!(field_of(v).starts_with("routes[1].models: "), "{bad:?}");
        }
    }
    let mut v = base();
    v["providers"]["bad=.=name"] = serde_json::json!({"cluster": "c"});
    assert!(field_of(v).starts_with("providers.bad=.=name: "));
    // Fine: the characters real model and consumer names use.
    let mut v = base();
    v["routes"][1]["match"]["model"] = "meta-llama/Llama-3.1-8B@v1:0+x_y".into();
    v["consumers"][0]["name"] = "alice@example.com".into();
    let c = parse(v).unwrap();
    assert_eq!(c.routes[1].models, ["meta-llama/Llama-3.1-8B@v1:0+x_y"]);
    assert_eq!(c.routes[0].other_label, "other:route-0");
}

#[test]
fn only_listed_consumers_get_a_label() {
    let mut v = base();
    v["consumer_header"] = "x-team".into();
    v["limits"] = serde_json::json!({"consumers": {"team-b": {"rpm": 1}}});
    let c = parse(v).unwrap();
    assert_eq!(c.consumer_label("team-a"), "team-a");
    assert_eq!(c.consumer_label("team-b"), "team-b");
    assert_eq!(c.consumer_label("consumer=.=victim"), "other");
    assert_eq!(c.consumer_label("anonymous"), "other");
}

#[test]
fn the_exact_counting_budget_is_bounded() {
    let mut v = base();
    v["tokenizer"] = serde_json::json!({"max_exact_bytes": crate::tokens::MAX_EXACT_BYTES_LIMIT});
    assert_eq!(
        parse(v).unwrap().tokenizer.max_exact_bytes,
        crate::tokens::MAX_EXACT_BYTES_LIMIT
    );
    let mut v = base();
    v["tokenizer"] =
        serde_json::json!({"max_exact_bytes": crate::tokens::MAX_EXACT_BYTES_LIMIT + 1});
    assert!(field_of(v).starts_with("tokenizer.max_exact_bytes: must be at most"));
    let mut v = base();
    v["tokenizer"] = serde_json::json!({"max_exact_bytes": 0});
    assert!(field_of(v).starts_with("tokenizer.max_exact_bytes: "));
    assert_eq!(
        parse(base()).unwrap().tokenizer.max_exact_bytes,
        crate::tokens::DEFAULT_MAX_EXACT_BYTES
    );
}

#[test]
fn errors_name_the_field() {
    let mut v = base();
    v["routes"][1]["split"][1]["provider"] = "nope".into();
    assert!(field_of(v).starts_with("routes[1].split[1].provider: unknown provider"));

    let mut v = base();
    v["providers"]["openai"]["api_key_env"] = "MISSING_VAR".into();
    let e = field_of(v);
    assert!(
        e.starts_with("providers.openai.api_key_env: environment variable MISSING_VAR"),
        "{e}"
    );

    let mut v = base();
    v["providers"]["openai"]["auth"] = "basic".into();
    let e = field_of(v);
    assert!(e.starts_with("providers.openai.auth"), "{e}");

    let mut v = base();
    v["routes"][0]["mtach"] = serde_json::json!({});
    let e = field_of(v);
    assert!(e.contains("mtach"), "{e}");

    let mut v = base();
    v["consumers"][0]["key_sha256"] = "sk-plaintext-key".into();
    assert!(field_of(v).starts_with("consumers[0].key_sha256[0]"));

    let mut v = base();
    v["routes"][1]["split"][0]["weight"] = 0.into();
    assert!(field_of(v).starts_with("routes[1].split[0].weight"));

    let mut v = base();
    v["routes"][0] = serde_json::json!({"match": {"model": "x"}});
    assert!(field_of(v).starts_with("routes[0]: needs"));

    let mut v = base();
    v["max_request_body_bytes"] = (-1).into();
    assert!(field_of(v).starts_with("max_request_body_bytes"));

    let mut v = base();
    v["tokenizer"] = serde_json::json!({"fallback": "p99k"});
    assert!(field_of(v).starts_with("tokenizer.fallback"));

    let mut v = base();
    v["routes"][0]["fallback"] = serde_json::json!(
        {"cluster": "failover-x", "to": [{"provider": "openai"}], "first_event_timeout_ms": 0});
    assert!(field_of(v).starts_with("routes[0].fallback.first_event_timeout_ms"));

    let mut v = base();
    v["cluster_header"] = "bad header".into();
    assert!(field_of(v).starts_with("cluster_header"));

    let mut v = base();
    v["consumers"] = serde_json::json!([{"name": "a"}, {"name": "a"}]);
    assert!(field_of(v).starts_with("consumers[1].name"));

    assert!(field_of(serde_json::json!({"providers": {}})).starts_with("providers"));

    // Without body routing, nothing may depend on the body.
    let mut v = base();
    v["body_routing"] = false.into();
    assert!(field_of(v).starts_with("routes[0].match.model"));
    let headers_only = |extra: serde_json::Value| {
        let mut v = serde_json::json!({
            "body_routing": false,
            "providers": {"openai": {"cluster": "openai", "api_key_env": "OPENAI_API_KEY"}},
            "routes": [{"match": {"header": {"name": "x-tier"}}, "to": {"provider": "openai"}}],
            "default": {"to": {"provider": "openai"}}
        });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            for (k, val) in e {
                o.insert(k.clone(), val.clone());
            }
        }
        parse(v)
    };
    assert!(!headers_only(serde_json::json!({})).unwrap().body_routing);
    let e =
        headers_only(serde_json::json!({"default": {"to": {"provider": "openai", "model": "x"}}}));
    assert!(e
        .unwrap_err()
        .to_string()
        .starts_with("default: a model rewrite"));
    assert!(Config::parse(b"not json", &env).is_err());
    assert!(Config::parse(b"", &env).is_err());
}

#[test]
fn limits_inherit_override_and_unlimit() {
    let mut v = base();
    v["consumers"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "team-b"}));
    v["limits"] = serde_json::json!({
        "default": {"rpm": 60, "tpm": 1000, "concurrent": 4,
                    "models": [{"model": "gpt-4o*", "tpm": 100}]},
        "consumers": {"team-a": {"tpm": 5000, "concurrent": null, "models": []}},
        "default_max_tokens": 256
    });
    let c = parse(v).unwrap();
    let l = c.limits.unwrap();
    assert_eq!(l.default_max_tokens, 256);
    assert_eq!(l.reservation(10, None, 1), 266);
    assert_eq!(l.reservation(10, Some(5), 1), 15);
    // Without a cap, each of n choices may take the default.
    assert_eq!(l.reservation(10, None, 3), 10 + 3 * 256);
    assert_eq!(l.reservation(10, Some(15), 3), 25);
    let a = l.scopes("team-a", None, Some("gpt-4o"));
    assert_eq!(a.len(), 1);
    assert_eq!(
        a[0].spec,
        Spec {
            rpm: Some(60),
            tpm: Some(5000),
            tpd: None,
            concurrent: None,
            budget: Default::default(),
        }
    );
    let b = l.scopes("team-b", None, Some("gpt-4o-mini"));
    assert_eq!(b.len(), 2);
    assert_eq!(b[1].name, "team-b / gpt-4o*");
    assert_eq!(b[1].spec.tpm, Some(100));
    assert_eq!(l.scopes("team-b", None, None).len(), 1);
    assert!(l.global.is_none());
}

#[test]
fn limits_errors_name_the_field() {
    let mut v = base();
    v["limits"] = serde_json::json!({"consumers": {"team-x": {"rpm": 1}}});
    assert!(field_of(v).starts_with("limits.consumers.team-x: unknown consumer"));

    let mut v = base();
    v["limits"] = serde_json::json!({"default": {"rpm": "ten"}});
    assert!(field_of(v).starts_with("limits.default.rpm"));

    let mut v = base();
    v["limits"] = serde_json::json!({"default": {"models": [{"model": "x"}]}});
    assert!(field_of(v).starts_with("limits.default.models[0]: sets no limit"));

    let mut v = base();
    v["limits"] = serde_json::json!({"global": {"cluster": "rls", "failure_mode": "maybe"}});
    assert!(field_of(v).starts_with("limits.global.failure_mode"));

    let mut v = base();
    v["routes"] = serde_json::json!([]);
    v["default"] = serde_json::json!({"to": {"provider": "openai"}});
    v["body_routing"] = false.into();
    v["providers"]["azure"]["models"] = serde_json::json!({});
    v["limits"] = serde_json::json!({"default": {"models": [{"model": "x", "rpm": 1}]}});
    assert!(field_of(v).starts_with("limits.default.models: per-model limits need body_routing"));

    let mut v = base();
    v["limits"] = serde_json::json!({"global": {"cluster": "rls"}});
    let g = parse(v).unwrap().limits.unwrap().global.unwrap();
    assert_eq!(g.failure_mode, FailureMode::Open);
    assert_eq!(g.domain, "llm-gateway");
    assert_eq!(g.timeout_ms, DEFAULT_GLOBAL_TIMEOUT_MS);
}

#[test]
fn route_models_are_the_plain_name_then_the_examples() {
    let mut v = base();
    v["routes"][0]["models"] = serde_json::json!(["gpt-4o", "gpt-4o-mini"]);
    v["routes"][1]["models"] = serde_json::json!([]);
    v["routes"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"match": {"header": {"name": "x-tier"}},
                                 "to": {"provider": "openai"}, "models": ["any-1"]}));
    v["default"] = serde_json::json!({"to": {"provider": "openai"}, "models": ["d-1", "d-2"]});
    let c = parse(v).unwrap();
    assert_eq!(c.routes[0].models, ["gpt-4o", "gpt-4o-mini"]);
    assert_eq!(c.routes[1].models, ["split-me"]);
    assert_eq!(c.routes[2].models, ["any-1"]);
    assert_eq!(c.default_models, ["d-1", "d-2"]);
    assert!(is_glob("a*") && is_glob("a?") && is_glob("a[bc]") && !is_glob("gpt-4.1"));

    for (i, models, want) in [
        (
            0,
            serde_json::json!(["gpt-5"]),
            "routes[0].models[0]: \"gpt-5\" is not matched",
        ),
        (
            0,
            serde_json::json!(["gpt-4o", "gpt-4o"]),
            "routes[0].models[1]: duplicate",
        ),
        (
            0,
            serde_json::json!([""]),
            "routes[0].models[0]: must not be empty",
        ),
        (
            1,
            serde_json::json!(["split-me"]),
            "routes[1].models[0]: duplicate",
        ),
        (
            1,
            serde_json::json!(["other"]),
            "routes[1].models[0]: \"other\" is not matched",
        ),
        (1, serde_json::json!("split-me"), "routes[1].models"),
    ] {
        let mut v = base();
        v["routes"][i]["models"] = models;
        let e = field_of(v);
        assert!(e.starts_with(want), "{e}");
    }
    let mut v = base();
    v["default"] = serde_json::json!({"to": {"provider": "openai"}, "models": ["d", "d"]});
    assert!(field_of(v).starts_with("default.models[1]: duplicate"));
}

#[test]
fn provider_formats_and_paths() {
    let mut v = base();
    v["providers"]["az"] =
        serde_json::json!({"cluster": "az", "format": "azure", "api_key_env": "AZURE_KEY"});
    v["providers"]["claude"] =
        serde_json::json!({"cluster": "c", "format": "anthropic", "api_key_env": "AZURE_KEY"});
    let c = parse(v).unwrap();
    let az = c.providers.iter().find(|p| p.name == "az").unwrap();
    assert_eq!(az.auth, AuthStyle::ApiKey);
    assert_eq!(
        az.path("chat/completions", "gpt 4o/x", false).as_deref(),
        Some("/openai/deployments/gpt%204o%2Fx/chat/completions?api-version=2024-10-21")
    );
    let claude = c.providers.iter().find(|p| p.name == "claude").unwrap();
    assert_eq!(claude.credential_header(0).unwrap().0, "x-api-key");
    assert_eq!(
        claude.path("chat/completions", "m", false).as_deref(),
        Some("/v1/messages")
    );

    let mut v = base();
    v["providers"]["openai"]["api_version"] = "1".into();
    assert!(field_of(v).starts_with("providers.openai.api_version: applies to azure"));
}

fn vertex_wire(c: &Config) -> super::providers::Wire {
    let p = c.providers.iter().find(|p| p.name == "vertex").unwrap();
    p.wire("gemini-2.5-pro")
}

#[test]
fn cloud_providers_paths_and_credentials() {
    use super::providers::Wire;
    let mut v = base();
    v["providers"]["bedrock"] = serde_json::json!({"cluster": "bedrock", "format": "bedrock"});
    v["providers"]["bedrock-key"] =
        serde_json::json!({"cluster": "bedrock", "format": "bedrock", "api_key_env": "AZURE_KEY"});
    v["providers"]["gemini"] =
        serde_json::json!({"cluster": "gemini", "format": "gemini", "api_key_env": "AZURE_KEY"});
    v["providers"]["vertex"] = serde_json::json!({"cluster": "vertex", "format": "vertex",
        "vertex": {"project": "p 1", "location": "us-east5"}, "token_cluster": "metadata"});
    let c = parse(v).unwrap();
    let p = |n: &str| c.providers.iter().find(|p| p.name == n).unwrap();
    let bedrock = p("bedrock");
    assert_eq!(bedrock.auth, AuthStyle::AwsSigv4);
    assert_eq!(bedrock.credential_header(0), None, "Envoy's signer signs");
    assert_eq!(
        bedrock
            .path(
                "chat/completions",
                "anthropic.claude-sonnet-4-5-20250929-v1:0",
                true
            )
            .as_deref(),
        Some("/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse-stream")
    );
    assert_eq!(
        bedrock
            .path("chat/completions", "us.amazon.nova-pro-v1:0", false)
            .as_deref(),
        Some("/model/us.amazon.nova-pro-v1%3A0/converse")
    );
    assert_eq!(
        p("bedrock-key").credential_header(0),
        Some(("authorization", "Bearer az-key".to_string()))
    );
    let gemini = p("gemini");
    assert_eq!(
        gemini.credential_header(0),
        Some(("x-goog-api-key", "az-key".to_string()))
    );
    assert_eq!(
        gemini
            .path("chat/completions", "models/gemini-2.5-flash", true)
            .as_deref(),
        Some("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse")
    );
    assert_eq!(
        gemini.wire("gemini-2.5-flash"),
        Wire::Gemini { vertex: false }
    );
    assert_eq!(vertex_wire(&c), Wire::Gemini { vertex: true });
    let vertex = p("vertex");
    assert_eq!(vertex.auth, AuthStyle::GcpMetadata);
    assert_eq!(vertex.token_cluster.as_deref(), Some("metadata"));
    assert_eq!(
        vertex.path("chat/completions", "gemini-2.5-pro", false).as_deref(),
        Some("/v1/projects/p%201/locations/us-east5/publishers/google/models/gemini-2.5-pro:generateContent")
    );
    assert_eq!(
        vertex.path("chat/completions", "claude-sonnet-4-5@20250929", true).as_deref(),
        Some("/v1/projects/p%201/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict")
    );
    assert_eq!(
        vertex.wire("claude-sonnet-4-5@20250929"),
        Wire::Anthropic { vertex: true }
    );
    for p in ["bedrock", "gemini", "vertex"] {
        assert_eq!(
            c.providers.iter().find(|x| x.name == p).unwrap().responses,
            ResponsesApi::Translate
        );
    }

    for (provider, want) in [
        (
            serde_json::json!({"cluster": "v", "format": "vertex", "token_cluster": "m"}),
            "providers.x.vertex: is required",
        ),
        (
            serde_json::json!({"cluster": "v", "format": "vertex", "vertex": {"project": "p", "location": "l"}}),
            "providers.x.token_cluster: is required",
        ),
        (
            serde_json::json!({"cluster": "v", "format": "vertex", "vertex": {"project": "", "location": "l"},
                            "token_cluster": "m"}),
            "providers.x.vertex.project",
        ),
        (
            serde_json::json!({"cluster": "v", "vertex": {"project": "p", "location": "l"}}),
            "providers.x.vertex: applies to vertex",
        ),
        (
            serde_json::json!({"cluster": "v", "auth": "aws-sigv4"}),
            "providers.x.auth: applies to bedrock",
        ),
        (
            serde_json::json!({"cluster": "v", "format": "gemini", "auth": "gcp-metadata", "token_cluster": "m"}),
            "providers.x.auth: applies to vertex",
        ),
        (
            serde_json::json!({"cluster": "v", "format": "bedrock", "auth": "aws-sigv4", "api_key_env": "AZURE_KEY"}),
            "providers.x.api_key_env: is set but",
        ),
        (
            serde_json::json!({"cluster": "v", "format": "gemini", "responses": "native", "api_key_env": "AZURE_KEY"}),
            "providers.x.responses: only OpenAI-format",
        ),
        (
            serde_json::json!({"cluster": "v", "api_key_env": "AZURE_KEY", "token_cluster": "m"}),
            "providers.x.token_cluster: applies with",
        ),
    ] {
        let mut v = base();
        v["providers"]["x"] = provider;
        let e = field_of(v);
        assert!(e.starts_with(want), "{e}");
    }
}

/// A configuration with every size and count at its maximum (what tests/bounds.rs loads
/// in Envoy).
fn at_maxima() -> serde_json::Value {
    use crate::{cache, usage};
    let mut v = base();
    v["max_request_body_bytes"] = MAX_BODY_BYTES.into();
    v["max_response_body_bytes"] = MAX_BODY_BYTES.into();
    v["limits"] = serde_json::json!({
        "default": {"rpm": 1000},
        "max_tracked": MAX_TRACKED,
        "default_max_tokens": MAX_DEFAULT_MAX_TOKENS,
        "global": {"cluster": "rls", "timeout_ms": MAX_TIMEOUT_MS}
    });
    v["usage_export"] = serde_json::json!({
        "cluster": "usage",
        "batch_size": usage::MAX_BATCH_SIZE,
        "max_buffered_events": usage::MAX_BUFFERED_EVENTS,
        "flush_interval_ms": usage::MAX_FLUSH_INTERVAL_MS,
        "max_retries": usage::MAX_RETRIES,
        "timeout_ms": MAX_TIMEOUT_MS
    });
    v["cache"] = serde_json::json!({
        "max_entries": cache::MAX_ENTRIES,
        "max_bytes": cache::MAX_BYTES,
        "max_entry_bytes": cache::MAX_ENTRY_BYTES,
        "semantic": {
            "embeddings": {"provider": "openai", "model": "e", "timeout_ms": MAX_TIMEOUT_MS,
                           "dimensions": cache::MAX_DIMENSIONS},
            "max_vectors": cache::MAX_VECTORS
        }
    });
    v["routes"][0]["cache"] =
        serde_json::json!({"ttl_s": cache::MAX_TTL_S, "semantic": {"threshold": 0.9}});
    v
}

#[test]
fn every_size_has_a_maximum_named_in_its_error() {
    use crate::{cache, usage};
    let at_max = at_maxima();
    let c = parse(at_max.clone()).unwrap();
    assert_eq!(c.max_request_body_bytes, MAX_BODY_BYTES);
    assert_eq!(c.limits.as_ref().unwrap().max_tracked, MAX_TRACKED);
    assert_eq!(
        c.usage_export.as_ref().unwrap().batch_size,
        usage::MAX_BATCH_SIZE
    );
    assert_eq!(c.cache.as_ref().unwrap().max_entries, cache::MAX_ENTRIES);
    let mut chroma = at_max.clone();
    chroma["cache"]["semantic"]["store"] =
        serde_json::json!({"chroma": {"cluster": "chroma", "timeout_ms": MAX_TIMEOUT_MS}});
    assert!(parse(chroma.clone()).is_ok());
    let over = |v: &serde_json::Value, path: &[&str], max: u64| {
        let mut v = v.clone();
        let mut at = &mut v;
        for p in path {
            at = match p.parse::<usize>() {
                Ok(i) => &mut at[i],
                Err(_) => &mut at[*p],
            };
        }
        assert_eq!(*at, serde_json::json!(max), "{path:?} is at its maximum");
        *at = (max + 1).into();
        match parse(v) {
            Ok(_) => panic!("{path:?} = {} accepted", max + 1),
            Err(e) => e,
        }
    };
    let body = MAX_BODY_BYTES as u64;
    for (path, max, field) in [
        (
            &["max_request_body_bytes"][..],
            body,
            "max_request_body_bytes",
        ),
        (
            &["max_response_body_bytes"],
            body,
            "max_response_body_bytes",
        ),
        (
            &["limits", "max_tracked"],
            u64::from(MAX_TRACKED),
            "limits.max_tracked",
        ),
        (
            &["limits", "default_max_tokens"],
            MAX_DEFAULT_MAX_TOKENS,
            "limits.default_max_tokens",
        ),
        (
            &["limits", "global", "timeout_ms"],
            MAX_TIMEOUT_MS,
            "limits.global.timeout_ms",
        ),
        (
            &["usage_export", "max_buffered_events"],
            usage::MAX_BUFFERED_EVENTS as u64,
            "usage_export.max_buffered_events",
        ),
        (
            &["usage_export", "flush_interval_ms"],
            usage::MAX_FLUSH_INTERVAL_MS,
            "usage_export.flush_interval_ms",
        ),
        (
            &["usage_export", "max_retries"],
            u64::from(usage::MAX_RETRIES),
            "usage_export.max_retries",
        ),
        (
            &["usage_export", "timeout_ms"],
            MAX_TIMEOUT_MS,
            "usage_export.timeout_ms",
        ),
        (
            &["cache", "max_entries"],
            u64::from(cache::MAX_ENTRIES),
            "cache.max_entries",
        ),
        (&["cache", "max_bytes"], cache::MAX_BYTES, "cache.max_bytes"),
        (
            &["cache", "max_entry_bytes"],
            cache::MAX_ENTRY_BYTES as u64,
            "cache.max_entry_bytes",
        ),
        (
            &["cache", "semantic", "max_vectors"],
            u64::from(cache::MAX_VECTORS),
            "cache.semantic.max_vectors",
        ),
        (
            &["cache", "semantic", "embeddings", "timeout_ms"],
            MAX_TIMEOUT_MS,
            "cache.semantic.embeddings.timeout_ms",
        ),
        (
            &["cache", "semantic", "embeddings", "dimensions"],
            u64::from(cache::MAX_DIMENSIONS),
            "cache.semantic.embeddings.dimensions",
        ),
        (
            &["routes", "0", "cache", "ttl_s"],
            cache::MAX_TTL_S,
            "routes[0].cache.ttl_s",
        ),
    ] {
        let e = over(&at_max, path, max);
        assert_eq!(e.field, field, "{path:?}");
        assert_eq!(e.message, format!("must be at most {max}"), "{path:?}");
    }
    // batch_size: at most its maximum, and max_buffered_events at least batch_size.
    let mut small = at_max.clone();
    small["usage_export"]["max_buffered_events"] = (usage::MAX_BATCH_SIZE * 2).into();
    assert!(parse(small.clone()).is_ok());
    let e = over(
        &small,
        &["usage_export", "batch_size"],
        usage::MAX_BATCH_SIZE as u64,
    );
    assert_eq!(e.field, "usage_export.batch_size");
    assert_eq!(
        e.message,
        format!("must be at most {}", usage::MAX_BATCH_SIZE)
    );
    let e = over(
        &chroma,
        &["cache", "semantic", "store", "chroma", "timeout_ms"],
        MAX_TIMEOUT_MS,
    );
    assert_eq!(e.field, "cache.semantic.store.chroma.timeout_ms");
    // The issue's values: refused at configuration, not an abort at the first flush.
    for (path, v) in [
        (&["usage_export", "batch_size"][..], 1_000_000u64),
        (&["cache", "max_entries"], 4_000_000_000),
        (&["cache", "semantic", "max_vectors"], 4_000_000_000),
        (&["limits", "max_tracked"], 10_000_000),
    ] {
        let mut b = at_max.clone();
        let mut at = &mut b;
        for p in path {
            at = &mut at[*p];
        }
        *at = v.into();
        assert_eq!(parse(b).unwrap_err().field, path.join("."));
    }
}

#[test]
fn teams_budgets_and_access_lists_parse_and_scope() {
    let mut v = base();
    v["consumers"][0]["team"] = "eng".into();
    v["limits"] = serde_json::json!({
        "default": {"budget": {"day": 5}},
        "consumers": {"team-a": {"budget": {"month": 100.5, "rolling": {"usd": 2, "hours": 0.5}}}},
        "teams": {"eng": {"rpm": 10, "budget": {"month": 500}}},
        "budgets": {"utc_offset": "-08:00", "alerts": [10, 90]},
    });
    v["access"] = serde_json::json!({"teams": {"eng": {"deny": ["o3*"]}}});
    let c = parse(v).unwrap();
    assert_eq!(c.team_of("team-a"), Some("eng"));
    assert!(!c.access.allows("team-a", Some("eng"), "o3-mini"));
    let l = c.limits.as_ref().unwrap();
    assert!(l.budgets);
    let s = l.scopes("team-a", c.team_of("team-a"), Some("gpt-4o"));
    let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["team-a", "team:eng"]);
    let own = s[0].spec.budget;
    // The consumer's budget replaces the default's.
    assert_eq!((own.day, own.month), (None, Some(100_500_000_000_000)));
    let r = own.rolling.unwrap();
    assert_eq!(
        (r.limit, r.period),
        (2_000_000_000_000, std::time::Duration::from_secs(1800))
    );
    assert_eq!(own.calendar.offset_s, -8 * 3600);
    assert_eq!(own.alerts[..3], [100_000, 900_000, 0]);
    assert_eq!(s[1].spec.rpm, Some(10));
    assert_eq!(s[1].spec.budget.month, Some(500_000_000_000_000));
    // Another consumer has the default's own day budget; a consumer named like a team scope
    // never shares the team's counters.
    assert_eq!(
        l.scopes("x", None, None)[0].spec.budget.day,
        Some(5_000_000_000_000)
    );
    assert_eq!(
        l.scopes("team:eng", None, None)[0].name,
        "consumer:team:eng"
    );
}

#[test]
fn budget_and_access_errors_name_the_field() {
    let with = |limits: serde_json::Value| {
        let mut v = base();
        v["consumers"][0]["team"] = "eng".into();
        v["limits"] = limits;
        field_of(v)
    };
    let cases = [
        (
            serde_json::json!({"teams": {"ops": {"rpm": 1}}}),
            "limits.teams.ops: unknown team",
        ),
        (
            serde_json::json!({"default": {"budget": {}}}),
            "limits.default.budget: sets no budget",
        ),
        (
            serde_json::json!({"default": {"budget": {"day": -1}}}),
            "limits.default.budget.day: must be",
        ),
        (
            serde_json::json!({"default": {"budget": {"day": 2e6}}}),
            "limits.default.budget.day: must be",
        ),
        (
            serde_json::json!({"default": {"budget": {"rolling": {"usd": 1, "hours": 0}}}}),
            "limits.default.budget.rolling.hours",
        ),
        (
            serde_json::json!({"budgets": {"utc_offset": "+25:00"}}),
            "limits.budgets.utc_offset",
        ),
        (
            serde_json::json!({"budgets": {"utc_offset": "0530"}}),
            "limits.budgets.utc_offset",
        ),
        (
            serde_json::json!({"budgets": {"alerts": [50, 40]}}),
            "limits.budgets.alerts[1]",
        ),
        (
            serde_json::json!({"budgets": {"alerts": [0]}}),
            "limits.budgets.alerts[0]",
        ),
        (
            serde_json::json!({"global": {"cluster": "rls", "budgets": ["week"]}}),
            "limits.global.budgets[0]",
        ),
        (
            serde_json::json!({"global": {"cluster": "rls", "budget_unit_usd": 0}}),
            "limits.global.budget_unit_usd",
        ),
    ];
    for (limits, want) in cases {
        let got = with(limits.clone());
        assert!(got.starts_with(want), "{limits}: {got}");
    }
    let mut v = base();
    v["consumers"][0]["team"] = "bad team".into();
    assert!(field_of(v).starts_with("consumers[0].team"));
    let mut v = base();
    v["access"] = serde_json::json!({"consumers": {"nobody": {"allow": ["x"]}}});
    assert!(field_of(v).starts_with("access.consumers.nobody: unknown consumer"));
    // Budgets need the body.
    let mut v = base();
    v["body_routing"] = false.into();
    v["providers"].as_object_mut().unwrap().remove("azure");
    v["routes"] = serde_json::json!([]);
    v["default"] = serde_json::json!({"to": {"provider": "openai"}});
    v["limits"] = serde_json::json!({"default": {"budget": {"day": 1}}});
    let got = field_of(v);
    assert!(
        got.starts_with("limits.budgets: dollar budgets need body_routing"),
        "{got}"
    );
}

#[test]
fn several_keys_cool_downs_and_chain_tails_are_checked() {
    use serde_json::json;
    let env = |k: &str| (k != "UNSET").then(|| format!("v-{k}"));
    let parse = |v: serde_json::Value| {
        Config::parse(v.to_string().as_bytes(), &env).map_err(|e| e.to_string())
    };
    let with = |provider: serde_json::Value| {
        parse(json!({
            "providers": {"p": provider, "q": {"cluster": "q"}},
            "routes": [{"to": {"provider": "p"},
                        "fallback": {"cluster": "pq", "to": [{"provider": "q"}]}}]
        }))
    };
    let c = with(json!({"cluster": "p", "api_key_env": ["A", "B"]})).unwrap();
    let p = &c.providers[0];
    assert_eq!(p.credentials, ["v-A", "v-B"]);
    assert_eq!((p.keys(), p.key_env(1)), (2, Some("B")));
    assert_eq!(p.cooldown, crate::config::Cooldown::default());
    assert_eq!(c.providers[1].keys(), 1, "a keyless provider is one key");
    assert_eq!(
        with(json!({"cluster": "p", "api_key_env": ["A", "UNSET"]})).unwrap_err(),
        "providers.p.api_key_env[1]: environment variable UNSET is not set in the Wasm VM (list it in vm_config.environment_variables.host_env_keys)"
    );
    assert_eq!(
        with(json!({"cluster": "p", "api_key_env": ["A", "A"]})).unwrap_err(),
        "providers.p.api_key_env[1]: A is listed twice"
    );
    assert!(with(json!({"cluster": "p", "api_key_env": []}))
        .unwrap_err()
        .starts_with("providers.p.api_key_env: lists 1 to 16"));
    let c = with(json!({"cluster": "p", "cooldown": {"default_ms": 0, "max_ms": 5000}})).unwrap();
    assert_eq!(c.providers[0].cooldown.max.as_millis(), 5000);
    assert!(
        with(json!({"cluster": "p", "cooldown": {"default_ms": 6000, "max_ms": 5000}}))
            .unwrap_err()
            .starts_with("providers.p.cooldown.default_ms")
    );
    assert!(
        with(json!({"cluster": "p", "cooldown": {"max_ms": 86_400_001}}))
            .unwrap_err()
            .starts_with("providers.p.cooldown.max_ms")
    );
    assert!(with(json!({"cluster": "p", "cooldown": {"nope": 1}})).is_err());
    // A tail of one provider is its own cluster: nothing to list for a chain of two.
    let chain = |tails: serde_json::Value| {
        parse(json!({
            "providers": {"p": {"cluster": "p"}, "q": {"cluster": "q"}, "r": {"cluster": "r"}},
            "routes": [{"to": {"provider": "p"},
                        "fallback": {"cluster": "pqr", "to": [{"provider": "q"}, {"provider": "r"}],
                                     "tail_clusters": tails}}]
        }))
    };
    assert!(chain(json!(["qr"])).is_ok());
    assert!(chain(json!([null])).is_ok());
    assert!(chain(json!(["qr", "r"]))
        .unwrap_err()
        .starts_with("routes[0].fallback.tail_clusters: has one entry per fallback but the last"));
    assert!(chain(json!([" "]))
        .unwrap_err()
        .starts_with("routes[0].fallback.tail_clusters[0]: must not be empty"));
}
