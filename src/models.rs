//! `GET /v1/models` and `GET /v1/models/{id}`, answered by the gateway from its routes.
//!
//! A provider's own list would name the provider's models, not the ones this gateway routes,
//! and would need the provider's credential; so the gateway answers itself, with the names a
//! client may put in `model`: every route's [`Route::models`](crate::config::Route::models) (the
//! match's plain model name, then the configured `models` examples; a glob is listed only by its
//! examples), in route order, then the `default` route's examples. A route whose header
//! condition the request does not meet is not listed (it would not serve this caller). A name
//! is listed once, under the first route that lists it, and `owned_by` is the provider of that
//! route's first destination. Only the models the caller's access lists allow are listed
//! (`access`). OpenAI's shape by default; Anthropic's when the request carries
//! `anthropic-version`. The gateway knows no creation date: `created` is 0 (Anthropic:
//! `1970-01-01T00:00:00Z`), and the whole list is one page.

use serde_json::{json, Value};

use crate::config::{Config, Target};
use crate::error::HttpError;
use crate::route;

/// What a models request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// `GET .../models`.
    List,
    /// `GET .../models/{id}`: the candidate ids, percent-decoded (one per `/models/` in the
    /// path, outermost first, as an id may itself contain `/models/`).
    Retrieve(Vec<String>),
}

impl Query {
    /// The models request `method` and `path` make, if any (query and fragment ignored; any
    /// prefix, as for the other endpoints).
    pub fn from_request(method: &str, path: &str) -> Option<Query> {
        if method != "GET" {
            return None;
        }
        let path = path.split(['?', '#']).next().unwrap_or(path);
        let path = path.trim_end_matches('/');
        if path.ends_with("/models") {
            return Some(Query::List);
        }
        let ids: Vec<String> = path
            .match_indices("/models/")
            .filter_map(|(i, m)| path.get(i + m.len()..))
            .filter(|id| !id.is_empty())
            .map(|id| {
                percent_encoding::percent_decode_str(id)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        (!ids.is_empty()).then_some(Query::Retrieve(ids))
    }
}

/// One listed model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed<'c> {
    pub id: &'c str,
    /// The provider of the listing route's first destination.
    pub owned_by: &'c str,
}

fn first_provider(cfg: &Config, t: &Target) -> Option<usize> {
    match t {
        Target::One(d) => Some(d.provider),
        Target::Chain { dests, .. } => dests.first().map(|d| d.provider),
        Target::Split { dests, .. } => dests.first().map(|(d, _)| d.provider),
    }
    .filter(|&i| i < cfg.providers.len())
}

/// The models this request's caller can use (`get` reads its headers), in listing order.
pub fn listed<'c>(cfg: &'c Config, get: &dyn Fn(&str) -> Option<String>) -> Vec<Listed<'c>> {
    let routes = cfg
        .routes
        .iter()
        .filter(|r| {
            r.matcher
                .header
                .as_ref()
                .is_none_or(|h| route::header_holds(h, get))
        })
        .map(|r| (&r.target, &r.models));
    let default = cfg.default.as_ref().map(|d| (d, &cfg.default_models));
    let mut out: Vec<Listed<'c>> = Vec::new();
    for (target, models) in routes.chain(default) {
        let Some(owner) = first_provider(cfg, target).and_then(|i| cfg.providers.get(i)) else {
            continue;
        };
        for m in models {
            if !out.iter().any(|l| l.id == m) {
                out.push(Listed {
                    id: m,
                    owned_by: &owner.name,
                });
            }
        }
    }
    out
}

fn openai_model(l: &Listed) -> Value {
    json!({"id": l.id, "object": "model", "created": 0, "owned_by": l.owned_by})
}

/// The creation time Anthropic's objects carry (the gateway knows none).
const ANTHROPIC_CREATED_AT: &str = "1970-01-01T00:00:00Z";

fn anthropic_model(l: &Listed) -> Value {
    json!({"type": "model", "id": l.id, "display_name": l.id, "created_at": ANTHROPIC_CREATED_AT})
}

/// The answer to `q`: the JSON body, or the 404 for an unknown id (to be sent in the client's
/// format).
pub fn answer(
    cfg: &Config,
    q: &Query,
    anthropic: bool,
    get: &dyn Fn(&str) -> Option<String>,
    allowed: &dyn Fn(&str) -> bool,
) -> Result<Vec<u8>, HttpError> {
    let mut models = listed(cfg, get);
    // Only what the caller's access lists let it call.
    models.retain(|l| allowed(l.id));
    let v = match q {
        Query::List if anthropic => json!({
            "data": models.iter().map(anthropic_model).collect::<Vec<_>>(),
            "has_more": false,
            "first_id": models.first().map(|l| l.id),
            "last_id": models.last().map(|l| l.id),
        }),
        Query::List => json!({
            "object": "list",
            "data": models.iter().map(openai_model).collect::<Vec<_>>(),
        }),
        Query::Retrieve(ids) => {
            let found = ids
                .iter()
                .find_map(|id| models.iter().find(|l| l.id == id))
                .ok_or_else(|| {
                    HttpError::model_not_found(ids.first().map_or("", String::as_str))
                })?;
            if anthropic {
                anthropic_model(found)
            } else {
                openai_model(found)
            }
        }
    };
    Ok(serde_json::to_vec(&v).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(_: &str) -> Option<String> {
        Some("k".into())
    }

    fn cfg() -> Config {
        let v = json!({
            "providers": {
                "openai": {"cluster": "c-openai", "api_key_env": "K"},
                "azure": {"cluster": "c-azure", "format": "azure", "api_key_env": "K"},
                "claude": {"cluster": "c-claude", "format": "anthropic", "api_key_env": "K"}
            },
            "routes": [
                {"name": "team", "match": {"header": {"name": "x-team", "value": "red"}},
                 "to": {"provider": "claude"}, "models": ["red-only"]},
                {"name": "mapped", "match": {"model": "fast"},
                 "to": {"provider": "azure", "model": "gpt-4o-mini"}},
                {"name": "split", "match": {"model": "gpt-4o"},
                 "split": [{"provider": "azure", "weight": 1}, {"provider": "openai", "weight": 1}]},
                {"name": "glob", "match": {"model": "gpt-4.1*"}, "to": {"provider": "openai"},
                 "fallback": {"cluster": "f", "to": [{"provider": "azure"}]},
                 "models": ["gpt-4.1", "gpt-4.1-mini"]},
                {"name": "unlisted-glob", "match": {"model": "claude-*"}, "to": {"provider": "claude"}},
                {"name": "again", "match": {"model": "gpt-4o"}, "to": {"provider": "openai"}},
                {"name": "embed", "match": {"path": "*/embeddings"}, "to": {"provider": "openai"},
                 "models": ["text-embedding-3-small"]}
            ],
            "default": {"to": {"provider": "claude"}, "models": ["claude-sonnet-4-5", "fast"]}
        });
        Config::parse(v.to_string().as_bytes(), &env).unwrap()
    }

    fn headers(h: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |n: &str| h.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string())
    }

    fn ids(v: &[Listed]) -> Vec<(String, String)> {
        v.iter()
            .map(|l| (l.id.to_string(), l.owned_by.to_string()))
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn lists_routes_in_order_under_the_clients_names() {
        let c = cfg();
        let want = [
            ("fast", "azure"),
            ("gpt-4o", "azure"),
            ("gpt-4.1", "openai"),
            ("gpt-4.1-mini", "openai"),
            ("text-embedding-3-small", "openai"),
            ("claude-sonnet-4-5", "claude"),
        ];
        assert_eq!(ids(&listed(&c, &headers(&[]))), pairs(&want));
        // A header route lists only for callers that meet its condition.
        let red = listed(&c, &headers(&[("x-team", "red")]));
        assert_eq!(red[0].id, "red-only");
        assert_eq!(red[0].owned_by, "claude");
        assert_eq!(red.len(), want.len() + 1);
        assert_eq!(
            listed(&c, &headers(&[("x-team", "blue")])).len(),
            want.len()
        );
    }

    #[test]
    fn openai_and_anthropic_shapes() {
        let c = cfg();
        let h = headers(&[]);
        let v: Value =
            serde_json::from_slice(&answer(&c, &Query::List, false, &h, &|_| true).unwrap())
                .unwrap();
        assert_eq!(v["object"], "list");
        assert_eq!(
            v["data"][0],
            json!({"id": "fast", "object": "model", "created": 0, "owned_by": "azure"})
        );
        assert_eq!(v["data"].as_array().unwrap().len(), 6);

        let v: Value =
            serde_json::from_slice(&answer(&c, &Query::List, true, &h, &|_| true).unwrap())
                .unwrap();
        assert_eq!(v["has_more"], false);
        assert_eq!(v["first_id"], "fast");
        assert_eq!(v["last_id"], "claude-sonnet-4-5");
        assert_eq!(
            v["data"][5],
            json!({"type": "model", "id": "claude-sonnet-4-5", "display_name": "claude-sonnet-4-5",
                   "created_at": "1970-01-01T00:00:00Z"})
        );

        let one = |id: &str, anthropic: bool| {
            answer(
                &c,
                &Query::Retrieve(vec![id.to_string()]),
                anthropic,
                &h,
                &|_| true,
            )
            .map(|b| serde_json::from_slice::<Value>(&b).unwrap())
        };
        assert_eq!(one("gpt-4.1-mini", false).unwrap()["owned_by"], "openai");
        assert_eq!(one("gpt-4.1-mini", true).unwrap()["type"], "model");
        let e = one("gpt-4.1-nano", false).unwrap_err();
        assert_eq!((e.status, e.code), (404, "model_not_found"));
        assert!(e.message.contains("gpt-4.1-nano"), "{}", e.message);
        // Routable but not listed (a glob without examples): not found either.
        assert!(one("claude-3-haiku", false).is_err());
    }

    #[test]
    fn empty_list_shapes() {
        let c = Config::parse(
            json!({"providers": {"o": {"cluster": "o"}},
                   "routes": [{"match": {"model": "*"}, "to": {"provider": "o"}}]})
            .to_string()
            .as_bytes(),
            &env,
        )
        .unwrap();
        let h = headers(&[]);
        let v: Value =
            serde_json::from_slice(&answer(&c, &Query::List, true, &h, &|_| true).unwrap())
                .unwrap();
        assert_eq!(
            v,
            json!({"data": [], "has_more": false, "first_id": null, "last_id": null})
        );
        let v: Value =
            serde_json::from_slice(&answer(&c, &Query::List, false, &h, &|_| true).unwrap())
                .unwrap();
        assert_eq!(v, json!({"object": "list", "data": []}));
    }

    #[test]
    fn paths() {
        let q = Query::from_request;
        assert_eq!(q("GET", "/v1/models"), Some(Query::List));
        assert_eq!(q("GET", "/openai/v1/models/?x=1"), Some(Query::List));
        assert_eq!(q("POST", "/v1/models"), None);
        assert_eq!(q("GET", "/v1/chat/completions"), None);
        assert_eq!(q("GET", "/v1/modelsx"), None);
        assert_eq!(
            q("GET", "/v1/models/gpt-4o?beta=true"),
            Some(Query::Retrieve(vec!["gpt-4o".into()]))
        );
        assert_eq!(
            q("GET", "/x/v1/models/meta-llama%2FLlama-3"),
            Some(Query::Retrieve(vec!["meta-llama/Llama-3".into()]))
        );
        assert_eq!(
            q("GET", "/v1/models/org/models/m"),
            Some(Query::Retrieve(vec!["org/models/m".into(), "m".into()]))
        );
    }
}
