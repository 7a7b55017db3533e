//! `access`: which models a consumer and its team may call.
//!
//! Each list is a set of model globs matched against the model the client asks for (the name it
//! sees in `GET /v1/models`): `allow` (when given, the model must match one of them) and `deny`
//! (a match refuses, whatever `allow` says). A consumer without an entry of its own has the
//! `default` entry; a team's entry applies to all its members on top of their own, so a request
//! must pass both. A refused request gets OpenAI's answer for a model the caller cannot use
//! (404 `model_not_found`, "does not exist or you do not have access to it"), is counted with
//! the outcome `model_denied`, and costs nothing.

use std::collections::BTreeMap;

use serde::Deserialize;
use wildmatch::WildMatch;

use crate::config::check::{err, pattern, ConfigError};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAccess {
    #[serde(default)]
    default: Option<RawList>,
    #[serde(default)]
    consumers: BTreeMap<String, RawList>,
    #[serde(default)]
    teams: BTreeMap<String, RawList>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawList {
    #[serde(default)]
    allow: Option<Vec<String>>,
    #[serde(default)]
    deny: Vec<String>,
}

/// One allow/deny pair.
#[derive(Debug, Clone, Default)]
pub struct List {
    allow: Option<Vec<WildMatch>>,
    deny: Vec<WildMatch>,
}

impl List {
    pub fn allows(&self, model: &str) -> bool {
        let allowed = self
            .allow
            .as_ref()
            .is_none_or(|a| a.iter().any(|p| p.matches(model)));
        allowed && !self.deny.iter().any(|p| p.matches(model))
    }
}

#[derive(Debug, Clone, Default)]
pub struct Access {
    default: List,
    consumers: hashbrown::HashMap<String, List>,
    teams: hashbrown::HashMap<String, List>,
}

impl Access {
    /// Validate `access`. `known` and `team_known` say whether a consumer or team may be named.
    pub fn parse(
        raw: RawAccess,
        known: &dyn Fn(&str) -> bool,
        team_known: &dyn Fn(&str) -> bool,
    ) -> Result<Access, ConfigError> {
        let default = match raw.default {
            Some(l) => list("access.default", l)?,
            None => List::default(),
        };
        let mut consumers = hashbrown::HashMap::new();
        for (name, l) in raw.consumers {
            let field = format!("access.consumers.{name}");
            if !known(&name) {
                return Err(err(field, format!("unknown consumer \"{name}\"")));
            }
            consumers.insert(name, list(&field, l)?);
        }
        let mut teams = hashbrown::HashMap::new();
        for (name, l) in raw.teams {
            let field = format!("access.teams.{name}");
            if !team_known(&name) {
                return Err(err(
                    field,
                    format!("unknown team \"{name}\" (no consumer in consumers has it)"),
                ));
            }
            teams.insert(name, list(&field, l)?);
        }
        Ok(Access {
            default,
            consumers,
            teams,
        })
    }

    /// Whether `consumer` (of `team`) may call `model`.
    pub fn allows(&self, consumer: &str, team: Option<&str>, model: &str) -> bool {
        let own = self.consumers.get(consumer).unwrap_or(&self.default);
        let team = team.and_then(|t| self.teams.get(t));
        own.allows(model) && team.is_none_or(|t| t.allows(model))
    }
}

fn list(field: &str, raw: RawList) -> Result<List, ConfigError> {
    let globs = |what: &str, v: Vec<String>| -> Result<Vec<WildMatch>, ConfigError> {
        v.into_iter()
            .enumerate()
            .map(|(i, p)| {
                pattern(&format!("{field}.{what}[{i}]"), Some(p))
                    .map(|p| p.unwrap_or_else(|| WildMatch::new("")))
            })
            .collect()
    };
    Ok(List {
        allow: raw.allow.map(|a| globs("allow", a)).transpose()?,
        deny: globs("deny", raw.deny)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn access(v: serde_json::Value) -> Result<Access, ConfigError> {
        let raw: RawAccess = serde_json::from_value(v).unwrap();
        Access::parse(raw, &|n| n != "ghost", &|t| t != "ghosts")
    }

    #[test]
    fn a_request_must_pass_the_consumers_list_and_its_teams() {
        let a = access(json!({
            "default": {"allow": ["gpt-4o-mini"]},
            "consumers": {"alice": {"allow": ["gpt-*", "claude-*"], "deny": ["gpt-4o-realtime*"]}},
            "teams": {"eng": {"deny": ["claude-opus*"]}},
        }))
        .unwrap();
        assert!(a.allows("alice", None, "gpt-4o"));
        assert!(!a.allows("alice", None, "gpt-4o-realtime-preview"));
        assert!(a.allows("alice", None, "claude-opus-4"));
        assert!(!a.allows("alice", Some("eng"), "claude-opus-4"));
        assert!(a.allows("alice", Some("eng"), "claude-sonnet-4-5"));
        assert!(!a.allows("alice", None, "llama-3"));
        // Without an entry of its own: the default.
        assert!(a.allows("bob", None, "gpt-4o-mini"));
        assert!(!a.allows("bob", None, "gpt-4o"));
        // A team without an entry adds nothing.
        assert!(a.allows("bob", Some("ops"), "gpt-4o-mini"));
        // No access block at all: everything.
        assert!(Access::default().allows("x", Some("y"), "anything"));
    }

    #[test]
    fn unknown_names_and_empty_globs_are_refused() {
        let e = access(json!({"consumers": {"ghost": {"allow": ["x"]}}})).unwrap_err();
        assert_eq!(e.field, "access.consumers.ghost");
        let e = access(json!({"teams": {"ghosts": {"deny": ["x"]}}})).unwrap_err();
        assert_eq!(e.field, "access.teams.ghosts");
        let e = access(json!({"default": {"allow": ["ok", ""]}})).unwrap_err();
        assert_eq!(e.field, "access.default.allow[1]");
        // An empty allow list allows nothing.
        let a = access(json!({"default": {"allow": []}})).unwrap();
        assert!(!a.allows("bob", None, "gpt-4o"));
    }
}
