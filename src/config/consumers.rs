//! `consumers`: who calls the gateway, and the sha256 of each key they may present.

use hashbrown::HashMap;
use serde::Deserialize;

use super::check::{err, label_name, ConfigError};

/// Name used for callers let in without a key when `allow_anonymous` is on.
pub const ANONYMOUS: &str = "anonymous";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConsumer {
    name: String,
    #[serde(default)]
    key_sha256: KeyList,
    /// The team it belongs to: the team's limits, budgets and access list apply on top of its
    /// own, and metrics, the access log and usage events carry it.
    #[serde(default)]
    team: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum KeyList {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    pub name: String,
    pub team: Option<String>,
}

/// sha256 (raw bytes) of an accepted key → index into the consumers.
pub(super) type Keys = HashMap<[u8; 32], usize>;

/// Validate `consumers`: unique names that can be labels, keys given as their sha256.
pub(super) fn parse(raw: Vec<RawConsumer>) -> Result<(Vec<Consumer>, Keys), ConfigError> {
    let mut consumers = Vec::with_capacity(raw.len());
    let mut keys = HashMap::new();
    for (i, c) in raw.into_iter().enumerate() {
        let field = format!("consumers[{i}]");
        if c.name.trim().is_empty() {
            return Err(err(format!("{field}.name"), "must not be empty"));
        }
        if consumers.iter().any(|x: &Consumer| x.name == c.name) {
            return Err(err(
                format!("{field}.name"),
                format!("duplicate consumer \"{}\"", c.name),
            ));
        }
        let list = match c.key_sha256 {
            KeyList::None => Vec::new(),
            KeyList::One(k) => vec![k],
            KeyList::Many(ks) => ks,
        };
        for (j, k) in list.iter().enumerate() {
            let f = format!("{field}.key_sha256[{j}]");
            let mut digest = [0u8; 32];
            hex::decode_to_slice(k.trim(), &mut digest).map_err(|_| {
                err(
                    &f,
                    "must be the 64 hex digits of the key's sha256 (never the key itself)",
                )
            })?;
            if keys.insert(digest, i).is_some() {
                return Err(err(f, "the same key is listed twice"));
            }
        }
        label_name(&format!("{field}.name"), &c.name)?;
        if let Some(t) = &c.team {
            // It becomes a team label, and `team:<name>` a limit scope.
            label_name(&format!("{field}.team"), t)?;
        }
        consumers.push(Consumer {
            name: c.name,
            team: c.team,
        });
    }
    Ok((consumers, keys))
}
