//! Routing: which consumer is calling, and which provider (and model) serves the request.
//!
//! Rules are tried in order; the first whose every condition holds (model glob, path glob,
//! header presence or glob) wins, else the default route, else 404 `model_not_found`. A weighted
//! split draws once per request. Providers cooling down ([`crate::cooldown`]) are passed over:
//! a split draws among the others, a chain starts at its first provider that is not cooling,
//! a provider's key is drawn among its keys that are not; when none is left the request gets
//! one `429`. The result is a value the shell applies to the request.

use sha2::{Digest, Sha256};

use crate::config::{Config, Dest, HeaderMatch, Provider, Target, ANONYMOUS};
use crate::cooldown::Cooling;
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

/// A provider a request may go to: the model it receives there and the key it uses.
#[derive(Debug, Clone)]
pub struct Hop<'c> {
    pub provider: &'c Provider,
    pub model: String,
    /// The index of the key (`Provider::credentials`).
    pub key: usize,
}

/// Where a request goes.
#[derive(Debug, Clone)]
pub struct Decision<'c> {
    pub provider: &'c Provider,
    /// The model name the provider receives.
    pub upstream_model: String,
    /// The index of the provider's key the request uses.
    pub key: usize,
    /// Name of the matched route (`default` for the default route).
    pub route: &'c str,
    /// The request's `gen_ai_request_model` label: the client's model when the route lists it
    /// (`Route::models`), else the route's `other:<route>`; never another client string.
    pub model_label: String,
    /// For a failover chain: the composite cluster, and every provider in order (the first
    /// being `provider`) with the model it receives and its key.
    pub failover: Option<(&'c str, Vec<Hop<'c>>)>,
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

/// Pick the destination, passing over what is in `cooling`. `draw` returns a number in
/// `0..total` for weighted splits and key choices.
pub fn route<'c>(
    cfg: &'c Config,
    model: &str,
    path: &str,
    get: &dyn Fn(&str) -> Option<String>,
    cooling: &Cooling,
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
    let provider_of = |d: &Dest| {
        cfg.providers
            .get(d.provider)
            .ok_or_else(|| HttpError::model_not_found(model))
    };
    let hop = |d: &Dest, draw: &mut dyn FnMut(u32) -> u32| -> Result<Hop<'c>, HttpError> {
        let p = provider_of(d)?;
        Ok(Hop {
            provider: p,
            model: upstream_model(p, d, model),
            key: key(p, cooling, draw),
        })
    };
    // The earliest end of a cool-down among `dests`, when every one of them is cooling.
    let all_cooling = |dests: &mut dyn Iterator<Item = &Dest>| -> HttpError {
        let earliest = dests
            .filter_map(|d| provider_of(d).ok())
            .filter_map(|p| cooling.provider_until(&p.name, p.keys()))
            .min()
            .unwrap_or(cooling.at_ms);
        HttpError::providers_cooling(earliest.saturating_sub(cooling.at_ms))
    };
    let (first, failover, first_event_timeout_ms, first_event_check) = match target {
        Target::One(d) => {
            if cools(cfg, d, cooling) {
                return Err(all_cooling(&mut std::iter::once(d)));
            }
            (hop(d, draw)?, None, None, false)
        }
        Target::Split { dests, total } => {
            let d = pick(dests, *total, cfg, cooling, draw)
                .ok_or_else(|| all_cooling(&mut dests.iter().map(|(d, _)| d)))?;
            (hop(d, draw)?, None, None, false)
        }
        Target::Chain {
            dests,
            tails,
            first_event_timeout_ms,
            first_event_check,
            ..
        } => {
            let start = dests
                .iter()
                .position(|d| !cools(cfg, d, cooling))
                .ok_or_else(|| all_cooling(&mut dests.iter()))?;
            let hops = dests
                .iter()
                .skip(start)
                .map(|d| hop(d, draw))
                .collect::<Result<Vec<_>, _>>()?;
            let first = hops
                .first()
                .cloned()
                .ok_or_else(|| HttpError::model_not_found(model))?;
            match tails.get(start).and_then(Option::as_deref) {
                Some(cluster) if hops.len() > 1 => (
                    first,
                    Some((cluster, hops)),
                    *first_event_timeout_ms,
                    *first_event_check,
                ),
                // The rest of the chain has no cluster of its own: its first provider alone.
                _ => (first, None, None, false),
            }
        }
    };
    Ok(Decision {
        provider: first.provider,
        upstream_model: first.model,
        key: first.key,
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

/// Whether every key of `d`'s provider is cooling down.
fn cools(cfg: &Config, d: &Dest, cooling: &Cooling) -> bool {
    !cooling.is_empty()
        && cfg
            .providers
            .get(d.provider)
            .is_some_and(|p| cooling.provider_until(&p.name, p.keys()).is_some())
}

/// A weighted draw among the destinations that are not cooling down (their weights alone).
fn pick<'t>(
    dests: &'t [(Dest, u32)],
    total: u32,
    cfg: &Config,
    cooling: &Cooling,
    draw: &mut dyn FnMut(u32) -> u32,
) -> Option<&'t Dest> {
    let open = |d: &Dest| !cools(cfg, d, cooling);
    let total = if cooling.is_empty() {
        total
    } else {
        dests
            .iter()
            .filter(|(d, _)| open(d))
            .fold(0u32, |t, (_, w)| t.saturating_add(*w))
    };
    if total == 0 {
        return None;
    }
    let mut x = draw(total);
    let mut last = None;
    for (d, w) in dests.iter().filter(|(d, _)| open(d)) {
        if x < *w {
            return Some(d);
        }
        x -= w;
        last = Some(d);
    }
    last
}

/// The key of `p` a request uses: drawn among those that are not cooling down (among all
/// when every one is); no draw for a provider with one key.
pub fn key(p: &Provider, cooling: &Cooling, draw: &mut dyn FnMut(u32) -> u32) -> usize {
    let n = p.keys();
    if n == 1 {
        return 0;
    }
    let usable = cooling.usable_keys(&p.name, n);
    let from: Vec<usize> = if usable.is_empty() {
        (0..n).collect()
    } else {
        usable
    };
    let len = u32::try_from(from.len()).unwrap_or(u32::MAX);
    let i = usize::try_from(draw(len)).unwrap_or(0);
    from.get(i).or(from.first()).copied().unwrap_or(0)
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
        route(c, model, path, &headers(h), &Cooling::default(), &mut |_| x)
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
            let d = route(
                &c,
                "gpt-4o",
                "/",
                &headers(&[]),
                &Cooling::default(),
                &mut |t| rng.u32(0..t),
            )
            .unwrap();
            n[usize::from(d.provider.name == "azure")] += 1;
        }
        assert!((8_800..9_200).contains(&n[0]), "{n:?}");
    }

    fn cooling(entries: &[(&str, usize, u64)], at_ms: u64) -> Cooling {
        Cooling {
            entries: entries
                .iter()
                .map(|(p, k, u)| crate::cooldown::Entry {
                    provider: p.to_string(),
                    key: *k,
                    until_ms: *u,
                })
                .collect(),
            at_ms,
        }
    }

    #[test]
    fn a_split_draws_among_the_providers_that_are_not_cooling() {
        let c = cfg(json!({}));
        let cool = cooling(&[("openai", 0, 5_000)], 1_000);
        // Azure alone is left: weight 10 of 10, whatever the draw.
        let mut totals = Vec::new();
        let d = route(&c, "gpt-4o", "/", &headers(&[]), &cool, &mut |t| {
            totals.push(t);
            t - 1
        })
        .unwrap();
        assert_eq!(d.provider.name, "azure");
        assert_eq!(totals, [10], "the weights are re-normalised");
        // Both cooling: one 429 saying when the first of them serves again.
        let both = cooling(&[("openai", 0, 5_000), ("azure", 0, 3_500)], 1_000);
        let e = route(&c, "gpt-4o", "/", &headers(&[]), &both, &mut |_| 0).unwrap_err();
        assert_eq!(
            (e.status, e.code, e.outcome),
            (429, "rate_limit_exceeded", "providers_cooling")
        );
        assert_eq!(e.retry_after_ms, Some(2_500));
        assert!(e.message.contains("retry after 3 s"), "{}", e.message);
        // A single provider cooling: the same 429, nothing sent.
        let e = go_cool(&c, "claude-3", &cooling(&[("local", 0, 9_000)], 1_000)).unwrap_err();
        assert_eq!((e.status, e.retry_after_ms), (429, Some(8_000)));
        // Other providers' cool-downs change nothing.
        assert_eq!(
            go_cool(&c, "claude-3", &cool).unwrap().provider.name,
            "local"
        );
    }

    fn go_cool<'c>(c: &'c Config, model: &str, cool: &Cooling) -> Result<Decision<'c>, HttpError> {
        route(
            c,
            model,
            "/v1/chat/completions",
            &headers(&[]),
            cool,
            &mut |_| 0,
        )
    }

    #[test]
    fn keys_are_drawn_among_those_not_cooling() {
        let env = |k: &str| Some(format!("secret-{k}"));
        let c = Config::parse(
            json!({
                "providers": {"openai": {"cluster": "c", "api_key_env": ["K0", "K1", "K2"]}},
                "default": {"to": {"provider": "openai"}}
            })
            .to_string()
            .as_bytes(),
            &env,
        )
        .unwrap();
        let key = |cool: &Cooling, x: u32| {
            let mut asked = Vec::new();
            let d = route(&c, "m", "/", &headers(&[]), cool, &mut |t| {
                asked.push(t);
                x.min(t - 1)
            })
            .unwrap();
            (d.key, asked, d.provider.credential_header(d.key).unwrap().1)
        };
        let none = Cooling::default();
        assert_eq!(key(&none, 0), (0, vec![3], "Bearer secret-K0".into()));
        assert_eq!(key(&none, 2).0, 2);
        // Key 1 cooling: the draw is over keys 0 and 2.
        let one = cooling(&[("openai", 1, 9_000)], 0);
        assert_eq!(key(&one, 0).0, 0);
        assert_eq!(key(&one, 1), (2, vec![2], "Bearer secret-K2".into()));
        // Two cooling: the last one, no choice left.
        let two = cooling(&[("openai", 1, 9_000), ("openai", 0, 9_000)], 0);
        assert_eq!(key(&two, 0).0, 2);
        // All three: the provider cools, and so the route.
        let all = cooling(
            &[
                ("openai", 1, 9_000),
                ("openai", 0, 7_000),
                ("openai", 2, 8_000),
            ],
            0,
        );
        let e = route(&c, "m", "/", &headers(&[]), &all, &mut |_| 0).unwrap_err();
        assert_eq!(e.retry_after_ms, Some(7_000));
    }

    #[test]
    fn a_chain_starts_at_its_first_provider_that_is_not_cooling() {
        let c = Config::parse(
            json!({
                "providers": {"a": {"cluster": "ca"}, "b": {"cluster": "cb"},
                              "c": {"cluster": "cc"}, "d": {"cluster": "cd"}},
                "routes": [
                    {"match": {"model": "m"}, "to": {"provider": "a"},
                     "fallback": {"cluster": "abcd", "to": [{"provider": "b"}, {"provider": "c"}, {"provider": "d"}],
                                  "tail_clusters": ["bcd"], "first_event_timeout_ms": 500}}
                ]
            })
            .to_string()
            .as_bytes(),
            &|_| None,
        )
        .unwrap();
        let chain = |cool: &Cooling| {
            let d = go_cool(&c, "m", cool).unwrap();
            let hops: Vec<String> = d
                .failover
                .as_ref()
                .map(|(_, h)| h.iter().map(|h| h.provider.name.clone()).collect())
                .unwrap_or_default();
            (
                d.provider.name.as_str(),
                d.failover.as_ref().map(|(c, _)| *c),
                hops,
                d.first_event_timeout_ms,
            )
        };
        assert_eq!(
            chain(&Cooling::default()),
            (
                "a",
                Some("abcd"),
                vec!["a".into(), "b".into(), "c".into(), "d".into()],
                Some(500)
            )
        );
        // a cools: the tail from b, through its own composite cluster.
        assert_eq!(
            chain(&cooling(&[("a", 0, 9)], 0)),
            (
                "b",
                Some("bcd"),
                vec!["b".into(), "c".into(), "d".into()],
                Some(500)
            )
        );
        // A later provider cooling does not move the start.
        assert_eq!(chain(&cooling(&[("b", 0, 9)], 0)).1, Some("abcd"));
        // a and b cool: the tail from c has no cluster listed, so c alone.
        assert_eq!(
            chain(&cooling(&[("a", 0, 9), ("b", 0, 9)], 0)),
            ("c", None, vec![], None)
        );
        // Only the last is left: it alone.
        let three = cooling(&[("a", 0, 9), ("b", 0, 9), ("c", 0, 9)], 0);
        assert_eq!(chain(&three).0, "d");
        let all = cooling(&[("a", 0, 9), ("b", 0, 4), ("c", 0, 9), ("d", 0, 9)], 0);
        assert_eq!(go_cool(&c, "m", &all).unwrap_err().retry_after_ms, Some(4));
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
