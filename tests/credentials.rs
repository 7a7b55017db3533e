//! No client credential reaches a provider, on any path, in real Envoy: the fake provider echoes
//! every header it received (`x-fake-received-headers`, and `x-fake-received-*`), raw or as a
//! fingerprint `sha256:<first 16 hex of sha256(value)>`, and neither form of any credential the
//! client sent may appear, nor the credential header names it sent (unless the provider's own
//! credential uses that name, with the provider's value).

mod support;

use base64::Engine;
use serde_json::{json, Value};
use support::*;

const CLAUDE_KEY: &str = "sk-ant-credentials-test";
const CONSUMER_HEADER: &str = "x-consumer-id";

/// An `own` credential value the gateway obtains itself (Vertex AI's access token): any value
/// that is none of the client's.
const ANY: &str = "(the gateway's own)";

/// Every credential header a client may send, with the demo key in each.
fn client_credentials() -> Vec<(&'static str, String)> {
    vec![
        ("authorization", format!("Bearer {DEMO_KEY}")),
        ("proxy-authorization", format!("Basic {DEMO_KEY}")),
        ("api-key", DEMO_KEY.to_string()),
        ("x-api-key", DEMO_KEY.to_string()),
        ("x-goog-api-key", DEMO_KEY.to_string()),
    ]
}

/// Everything the provider says it received, as (name, value) pairs: the decoded
/// `x-fake-received-headers` map and every other `x-fake-received-*` header. `None` when the
/// response did not come from the provider.
fn received(r: &Resp) -> Option<Vec<(String, String)>> {
    let b64 = r.header("x-fake-received-headers")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    let map: serde_json::Map<String, Value> = serde_json::from_slice(&raw).expect("json");
    let mut out: Vec<(String, String)> = map
        .into_iter()
        .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string()))
        .collect();
    out.extend(
        r.headers
            .iter()
            .filter(|(k, _)| k.starts_with("x-fake-received-") && k != "x-fake-received-headers")
            .map(|(k, v)| (format!("echo:{k}"), v.clone())),
    );
    Some(out)
}

/// The provider received none of `sent` (raw or fingerprinted), and none of their header names
/// but `own` (the provider's credential header and value, if it has one).
fn assert_clean(what: &str, r: &Resp, sent: &[(&str, String)], own: Option<(&str, &str)>) {
    let got = received(r).unwrap_or_else(|| {
        panic!(
            "{what}: expected the provider's answer (status {}): {}",
            r.status,
            r.text()
        )
    });
    for (name, value) in sent {
        let secrets = [value.clone(), fingerprint(value), fingerprint(DEMO_KEY)];
        for (k, v) in &got {
            for s in &secrets {
                assert!(
                    !v.contains(s.as_str()),
                    "{what}: the client's {name} reached the provider in {k}: {v}"
                );
            }
            if v.contains(DEMO_KEY) {
                panic!("{what}: the client's key reached the provider in {k}: {v}");
            }
        }
        let present = got.iter().find(|(k, _)| k == name);
        match (present, own) {
            (None, _) => {}
            (Some((_, v)), Some((own_name, own_value))) if *name == own_name => assert!(
                v == own_value || *v == fingerprint(own_value) || own_value == ANY,
                "{what}: {name} upstream is {v}, not the provider's own credential"
            ),
            (Some((_, v)), _) => panic!("{what}: {name} reached the provider ({v})"),
        }
    }
}

fn headers<'a>(
    sent: &'a [(&'static str, String)],
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut h: Vec<(&str, &str)> = sent.iter().map(|(k, v)| (*k, v.as_str())).collect();
    h.push(("content-type", "application/json"));
    h.extend_from_slice(extra);
    h
}

/// A gateway with every kind of route (direct, Anthropic provider, failover through a dead
/// first provider, cache) and a pass-through route for `/v1/files` an operator might add.
fn gateway(fake: &Fake, dead_port: u16) -> Gateway {
    let config = json!({
        "providers": {
            "openai": {"cluster": "openai", "api_key_env": "OPENAI_API_KEY"},
            "backup": {"cluster": "backup", "auth": "api-key", "api_key_env": "BACKUP_API_KEY"},
            "claude": {"cluster": "backup", "format": "anthropic", "api_key_env": "ANTHROPIC_API_KEY"},
            "dead": {"cluster": "dead", "api_key_env": "OPENAI_API_KEY"},
            "gemini": {"cluster": "gemini", "format": "gemini", "api_key_env": "GEMINI_API_KEY"},
            "vertex": {"cluster": "vertex", "format": "vertex",
                       "vertex": {"project": "p-1", "location": "us-central1"},
                       "token_cluster": "gcp-metadata"}
        },
        "routes": [
            {"match": {"model": "gemini-*"}, "to": {"provider": "gemini"}},
            {"match": {"model": "vertex-gemini"}, "to": {"provider": "vertex", "model": "gemini-2.5-flash"}},
            {"match": {"model": "vertex-claude"}, "to": {"provider": "vertex", "model": "claude-sonnet-4-5@20250929"}},
            {"match": {"model": "claude-*"}, "to": {"provider": "claude"}},
            {"match": {"model": "chain"}, "to": {"provider": "dead"},
             "fallback": {"cluster": "failover-dead-backup", "to": [{"provider": "backup"}]}},
            {"match": {"model": "cached"}, "to": {"provider": "openai", "model": "gpt-4o-mini"},
             "cache": {"ttl_s": 60}},
            {"match": {"model": "*"}, "to": {"provider": "openai"}}
        ],
        "consumers": [{"name": "demo", "key_sha256": "0b006f9beb977623c3f78ec1be7fe09519ecfab87240f4f263e4164f76667e55"}],
        "consumer_header": CONSUMER_HEADER
    });
    let mut opts = Options {
        plugin_config: Some(config),
        workers: 1,
        ..Options::default()
    };
    opts.edit = Some(Box::new(move |b: &mut Value| {
        let hcm = &mut b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"];
        // An operator's pass-through route, before the catch-all 404.
        let routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
            .as_array_mut()
            .unwrap();
        let at = routes.len() - 1;
        routes.insert(
            at,
            json!({"match": {"prefix": "/v1/files"}, "route": {"cluster": "openai", "timeout": "30s"}}),
        );
        let clusters = b["static_resources"]["clusters"].as_array_mut().unwrap();
        let chain = chain_cluster(clusters, "failover-dead-backup", &["dead", "backup"]);
        clusters.push(chain);
        clusters.push(http_cluster("dead", dead_port));
    }));
    with_env_key(&mut opts, "ANTHROPIC_API_KEY", CLAUDE_KEY);
    Gateway::start(fake, opts)
}

#[test]
fn no_client_credential_reaches_a_provider_on_any_path() {
    let fake = Fake::start(None);
    let gw = gateway(&fake, free_port());
    let mut sent = client_credentials();
    sent.push((CONSUMER_HEADER, "demo".to_string()));
    let h = headers(&sent, &[]);
    let openai = format!("Bearer {OPENAI_KEY}");
    let openai_own = Some(("authorization", openai.as_str()));

    // The model list is the gateway's own answer: nothing goes upstream.
    let r = get_with(&gw.url("/v1/models"), &h);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        received(&r).is_none(),
        "GET /v1/models reached the provider: {:?}",
        r.headers
    );
    assert_eq!(r.json()["object"], "list");
    let r = get_with(&gw.url("/v1/models/gpt-4o-mini"), &h);
    assert!(
        received(&r).is_none(),
        "GET /v1/models/{{id}} reached the provider"
    );

    // A path the filter does not handle, passed through by the operator's route.
    let r = get_with(&gw.url("/v1/files"), &h);
    assert_clean("GET /v1/files", &r, &sent, None);

    // Every endpoint the filter routes.
    let chat = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]});
    for (path, body) in [
        ("/v1/chat/completions", chat.clone()),
        (
            "/v1/completions",
            json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Hello"}),
        ),
        (
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": "Hello"}),
        ),
    ] {
        let r = post(&gw.url(path), &h, body.to_string().as_bytes());
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_clean(path, &r, &sent, openai_own);
    }

    // The cache's miss goes upstream like any request.
    let body = json!({"model": "cached", "messages": [{"role": "user", "content": "Hello"}]});
    let r = post(
        &gw.url("/v1/chat/completions"),
        &h,
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_clean("cache miss", &r, &sent, openai_own);

    // A failover chain: the first provider is down, the second (api-key) serves. (Envoy
    // before 1.40 has no composite cluster: the harness leaves the chain out there.)
    if has_composite_cluster() {
        let body = json!({"model": "chain", "messages": [{"role": "user", "content": "Hello"}]});
        let r = post(
            &gw.url("/v1/chat/completions"),
            &h,
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_clean("failover", &r, &sent, Some(("api-key", BACKUP_KEY)));
        assert_eq!(gw.access_log(8).last().unwrap()["attempts"], "2");
    }

    // Anthropic clients, to an OpenAI provider (translated) and an Anthropic one (passed on).
    let ah = headers(&sent, &[("anthropic-version", "2023-06-01")]);
    for (model, own) in [
        ("gpt-4o-mini", openai_own),
        ("claude-sonnet-4-5", Some(("x-api-key", CLAUDE_KEY))),
    ] {
        let body = json!({"model": model, "max_tokens": 32,
                          "messages": [{"role": "user", "content": "Hello"}]});
        let r = post(&gw.url("/v1/messages"), &ah, body.to_string().as_bytes());
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        assert_clean(&format!("messages {model}"), &r, &sent, own);
    }

    // Google Gemini (its API key) and Vertex AI (the metadata server's token), from chat and
    // Messages clients.
    let vertex_own = Some(("authorization", ANY));
    for (model, own) in [
        ("gemini-2.5-flash", Some(("x-goog-api-key", GEMINI_KEY))),
        ("vertex-gemini", vertex_own),
        ("vertex-claude", vertex_own),
    ] {
        let body = json!({"model": model, "max_tokens": 32,
                          "messages": [{"role": "user", "content": "Hello"}]});
        let r = post(
            &gw.url("/v1/chat/completions"),
            &h,
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, 200, "chat {model}: {}", r.text());
        assert_clean(&format!("chat {model}"), &r, &sent, own);
        let r = post(&gw.url("/v1/messages"), &ah, body.to_string().as_bytes());
        assert_eq!(r.status, 200, "messages {model}: {}", r.text());
        assert_clean(&format!("messages {model}"), &r, &sent, own);
    }
}

#[test]
fn no_client_credential_reaches_a_provider_without_body_routing() {
    let fake = Fake::start(None);
    let config = json!({
        "body_routing": false,
        "providers": {"openai": {"cluster": "openai", "api_key_env": "OPENAI_API_KEY"}},
        "routes": [],
        "default": {"to": {"provider": "openai"}},
        "consumers": [{"name": "demo", "key_sha256": "0b006f9beb977623c3f78ec1be7fe09519ecfab87240f4f263e4164f76667e55"}],
        "consumer_header": CONSUMER_HEADER
    });
    let gw = Gateway::start(
        &fake,
        Options {
            plugin_config: Some(config),
            workers: 1,
            ..Options::default()
        },
    );
    let mut sent = client_credentials();
    sent.push((CONSUMER_HEADER, "demo".to_string()));
    let h = headers(&sent, &[]);
    let openai = format!("Bearer {OPENAI_KEY}");
    for (path, body) in [
        (
            "/v1/chat/completions",
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}),
        ),
        (
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": "Hello"}),
        ),
    ] {
        let r = post(&gw.url(path), &h, body.to_string().as_bytes());
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_clean(path, &r, &sent, Some(("authorization", openai.as_str())));
    }
    let r = get_with(&gw.url("/v1/models"), &h);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        received(&r).is_none(),
        "GET /v1/models reached the provider"
    );
}
