//! Routing: which consumer is calling, and which provider (and model) serves the request.
//!
//! Rules are tried in order; the first whose every condition holds (model glob, path glob,
//! header presence or glob) wins, else the default route, else 404 `model_not_found`. A weighted
//! split draws once per request. The result is a value the shell applies to the request.

use sha2::{Digest, Sha256};

use crate::config::{Config, Dest, HeaderMatch, Provider, Target, ANONYMOUS};
use crate::error::HttpError;
use crate::names;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
}

/// Identify the caller from the request headers (`get` returns a header's value).
///
/// A configured trusted header (set by an earlier filter such as jwt_authn) wins; otherwise the
/// key in `Authorization: Bearer`, `api-key` or `x-api-key` is hashed and looked up. A key that
/// is presented but unknown is always refused, even when anonymous callers are allowed.
pub fn identify(cfg: &Config, get: &dyn Fn(&str) -> Option<String>) -> Result<Identity, HttpError> {
    if let Some(h) = &cfg.consumer_header {
        if let Some(v) = get(h)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
        {
            return Ok(Identity { name: v });
        }
    }
    let key = get(names::AUTHORIZATION)
        .and_then(|v| bearer(&v).map(str::to_string))
        .or_else(|| get(names::API_KEY))
        .or_else(|| get(names::X_API_KEY))
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty());
    match key {
        Some(k) => {
            let digest: [u8; 32] = Sha256::digest(k.as_bytes()).into();
            match cfg.keys.get(&digest).and_then(|&i| cfg.consumers.get(i)) {
                Some(c) => Ok(Identity {
                    name: c.name.clone(),
                }),
                None => Err(HttpError::invalid_key()),
            }
        }
        None if cfg.allow_anonymous => Ok(Identity {
            name: ANONYMOUS.to_string(),
        }),
        None => Err(HttpError::missing_key()),
    }
}

fn bearer(v: &str) -> Option<&str> {
    let v = v.trim();
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// Where a request goes.
#[derive(Debug, Clone)]
pub struct Decision<'c> {
    pub provider: &'c Provider,
    /// The model name the provider receives.
    pub upstream_model: String,
    /// Name of the matched route (`default` for the default route).
    pub route: &'c str,
    /// The request's `gen_ai_request_model` label: the client's model when the route lists it
    /// (`Route::models`), else the route's `other:<route>`; never another client string.
    pub model_label: String,
    /// For a failover chain: the composite cluster, and every provider in order (the first
    /// being `provider`) with the model it receives.
    pub failover: Option<(&'c str, Vec<(&'c Provider, String)>)>,
    /// The chain's `first_event_timeout_ms`.
    pub first_event_timeout_ms: Option<u64>,
    /// The chain's `first_event_check`.
    pub first_event_check: bool,
    /// The route's response cache settings, when it caches.
    pub cache: Option<&'c crate::cache::RouteCache>,
}

/// The model `provider` receives for `dest` and the client's `model`.
fn upstream_model(provider: &Provider, dest: &Dest, model: &str) -> String {
    let routed = dest.model.as_deref().unwrap_or(model);
    provider
        .models
        .get(routed)
        .cloned()
        .unwrap_or_else(|| routed.to_string())
}

/// Whether a route's header condition holds for the request's headers.
pub fn header_holds(h: &HeaderMatch, get: &dyn Fn(&str) -> Option<String>) -> bool {
    match (get(&h.name), &h.value) {
        (Some(v), Some(p)) => p.matches(&v),
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Pick the destination. `draw` returns a number in `0..total` for weighted splits.
pub fn route<'c>(
    cfg: &'c Config,
    model: &str,
    path: &str,
    get: &dyn Fn(&str) -> Option<String>,
    draw: &mut dyn FnMut(u32) -> u32,
) -> Result<Decision<'c>, HttpError> {
    let path = path.split('?').next().unwrap_or(path);
    let matched = cfg.routes.iter().find(|r| {
        let m = &r.matcher;
        m.model.as_ref().is_none_or(|p| p.matches(model))
            && m.path.as_ref().is_none_or(|p| p.matches(path))
            && m.header.as_ref().is_none_or(|h| header_holds(h, get))
    });
    let (target, route, cache, model_label) = match (matched, &cfg.default) {
        (Some(r), _) => {
            let label = if r.models.iter().any(|m| m == model) {
                model.to_string()
            } else {
                r.other_label.clone()
            };
            (&r.target, r.name.as_str(), r.cache.as_ref(), label)
        }
        (None, Some(d)) => {
            let label = if cfg.default_models.iter().any(|m| m == model) {
                model.to_string()
            } else {
                DEFAULT_OTHER_LABEL.to_string()
            };
            (d, "default", cfg.default_cache.as_ref(), label)
        }
        (None, None) => return Err(HttpError::model_not_found(model)),
    };
    let dest = pick(target, draw).ok_or_else(|| HttpError::model_not_found(model))?;
    let provider = cfg
        .providers
        .get(dest.provider)
        .ok_or_else(|| HttpError::model_not_found(model))?;
    let (failover, first_event_timeout_ms, first_event_check) = match target {
        Target::Chain {
            dests,
            cluster,
            first_event_timeout_ms,
            first_event_check,
        } => (
            Some((
                cluster.as_str(),
                dests
                    .iter()
                    .filter_map(|d| {
                        let p = cfg.providers.get(d.provider)?;
                        Some((p, upstream_model(p, d, model)))
                    })
                    .collect(),
            )),
            *first_event_timeout_ms,
            *first_event_check,
        ),
        _ => (None, None, false),
    };
    Ok(Decision {
        provider,
        upstream_model: upstream_model(provider, dest, model),
        route,
        model_label,
        failover,
        first_event_timeout_ms,
        first_event_check,
        cache,
    })
}

/// The model label of every request the default route serves.
pub const DEFAULT_OTHER_LABEL: &str = "other:default";

fn pick<'t>(target: &'t Target, draw: &mut dyn FnMut(u32) -> u32) -> Option<&'t Dest> {
    match target {
        Target::One(d) => Some(d),
        Target::Chain { dests, .. } => dests.first(),
        Target::Split { dests, total } => {
            let mut x = draw(*total);
            for (d, w) in dests {
                if x < *w {
                    return Some(d);
                }
                x -= w;
            }
            dests.last().map(|(d, _)| d)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(_: &str) -> Option<String> {
        Some("k".into())
    }

    fn sha(k: &str) -> String {
        hex::encode(Sha256::digest(k.as_bytes()))
    }

    fn cfg(extra: serde_json::Value) -> Config {
        let mut v = json!({
            "providers": {
                "openai": {"cluster": "c-openai", "api_key_env": "K"},
                "azure": {"cluster": "c-azure", "auth": "api-key", "api_key_env": "K",
                          "models": {"gpt-4o": "gpt4o-deployment"}},
                "local": {"cluster": "c-local"}
            },
            "routes": [
                {"name": "fast", "match": {"header": {"name": "X-LLM-Tier", "value": "fast"}},
                 "to": {"provider": "local", "model": "llama-3-8b"}},
                {"name": "pathy", "match": {"path": "/v1/embeddings"}, "to": {"provider": "openai"}},
                {"name": "claude", "match": {"model": "claude-*"}, "to": {"provider": "local"}},
                {"name": "both", "match": {"model": "gpt-4.1*", "header": {"name": "x-team"}}, "to": {"provider": "azure"}},
                {"name": "split", "match": {"model": "gpt-4o"}, "split": [
                    {"provider": "openai", "weight": 90}, {"provider": "azure", "weight": 10}]}
            ],
            "consumers": [{"name": "team-a", "key_sha256": [sha("sk-a"), sha("sk-a2")]},
                          {"name": "team-b", "key_sha256": sha("sk-b")}],
            "consumer_header": "x-consumer"
        });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            for (k, val) in e {
                o.insert(k.clone(), val.clone());
            }
        }
        Config::parse(v.to_string().as_bytes(), &env).unwrap()
    }

    fn headers(h: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let h: Vec<(String, String)> = h
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| h.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn go<'c>(
        c: &'c Config,
        model: &str,
        path: &str,
        h: &[(&str, &str)],
        x: u32,
    ) -> Result<Decision<'c>, HttpError> {
        route(c, model, path, &headers(h), &mut |_| x)
    }

    #[test]
    fn rules_in_order() {
        let c = cfg(json!({}));
        let d = go(
            &c,
            "gpt-4o",
            "/v1/chat/completions",
            &[("x-llm-tier", "fast")],
            0,
        )
        .unwrap();
        assert_eq!(
            (d.provider.name.as_str(), d.upstream_model.as_str(), d.route),
            ("local", "llama-3-8b", "fast")
        );
        let d = go(&c, "anything", "/v1/embeddings", &[], 0).unwrap();
        assert_eq!(d.route, "pathy");
        let d = go(&c, "claude-3-5-sonnet", "/v1/chat/completions", &[], 0).unwrap();
        assert_eq!(d.provider.name, "local");
        assert_eq!(d.upstream_model, "claude-3-5-sonnet");
        // All conditions of a rule must hold.
        assert!(go(&c, "gpt-4.1", "/v1/chat/completions", &[], 0).is_err());
        assert_eq!(
            go(&c, "gpt-4.1", "/v1/chat/completions", &[("x-team", "z")], 0)
                .unwrap()
                .route,
            "both"
        );
        let e = go(&c, "gpt-9", "/v1/chat/completions", &[], 0).unwrap_err();
        assert_eq!((e.status, e.code), (404, "model_not_found"));
    }

    #[test]
    fn weighted_split_and_provider_model_map() {
        let c = cfg(json!({}));
        let d = go(&c, "gpt-4o", "/v1/chat/completions", &[], 89).unwrap();
        assert_eq!(d.provider.name, "openai");
        let d = go(&c, "gpt-4o", "/v1/chat/completions", &[], 90).unwrap();
        assert_eq!(d.provider.name, "azure");
        assert_eq!(d.upstream_model, "gpt4o-deployment");
        let mut n = [0u32; 2];
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..10_000 {
            let d = route(&c, "gpt-4o", "/", &headers(&[]), &mut |t| rng.u32(0..t)).unwrap();
            n[usize::from(d.provider.name == "azure")] += 1;
        }
        assert!((8_800..9_200).contains(&n[0]), "{n:?}");
    }

    #[test]
    fn default_route() {
        let c = cfg(json!({"default": {"to": {"provider": "openai"}}}));
        let d = go(&c, "gpt-9", "/v1/chat/completions", &[], 0).unwrap();
        assert_eq!((d.route, d.provider.name.as_str()), ("default", "openai"));
        assert_eq!(d.model_label, "other:default");
    }

    #[test]
    fn model_labels_come_from_the_configuration() {
        let c = cfg(json!({}));
        let label = |model: &str, h: &[(&str, &str)]| {
            go(&c, model, "/v1/chat/completions", h, 0)
                .unwrap()
                .model_label
        };
        // An exact match lists its model; a glob and a header route only their overflow.
        assert_eq!(label("gpt-4o", &[]), "gpt-4o");
        assert_eq!(label("claude-3-5-sonnet", &[]), "other:claude");
        assert_eq!(label("claude-consumer=.=victim;.;", &[]), "other:claude");
        assert_eq!(label("gpt-4o", &[("x-llm-tier", "fast")]), "other:fast");
    }

    #[test]
    fn identity() {
        let c = cfg(json!({}));
        let id = |h: &[(&str, &str)]| identify(&c, &headers(h));
        assert_eq!(
            id(&[("authorization", "Bearer sk-a")]).unwrap().name,
            "team-a"
        );
        assert_eq!(
            id(&[("authorization", "bearer  sk-a2 ")]).unwrap().name,
            "team-a"
        );
        assert_eq!(id(&[("api-key", "sk-b")]).unwrap().name, "team-b");
        assert_eq!(id(&[("x-api-key", "sk-b")]).unwrap().name, "team-b");
        assert_eq!(
            id(&[("authorization", "Bearer sk-nope")]).unwrap_err().code,
            "invalid_api_key"
        );
        assert_eq!(
            id(&[("authorization", "Basic abc")]).unwrap_err().code,
            "missing_api_key"
        );
        assert_eq!(id(&[]).unwrap_err().code, "missing_api_key");
        assert_eq!(
            id(&[("x-consumer", "svc-7"), ("authorization", "Bearer bad")])
                .unwrap()
                .name,
            "svc-7"
        );

        let open = cfg(json!({"allow_anonymous": true}));
        assert_eq!(identify(&open, &headers(&[])).unwrap().name, "anonymous");
        assert_eq!(
            identify(&open, &headers(&[("authorization", "Bearer wrong")]))
                .unwrap_err()
                .status,
            401
        );
    }
}
