//! What a request is looked up by: its exact key and its semantic partition.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::config::RouteSemantic;

pub type Key = [u8; 32];

/// What a request is looked up by.
#[derive(Debug, Clone, PartialEq)]
pub struct Keys {
    pub exact: Key,
    /// The semantic partition and the text to embed, when the route is semantic and the
    /// request is eligible.
    pub semantic: Option<(Key, String)>,
}

/// What the client's `Cache-Control` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Directives {
    /// `no-cache`: do not serve from the cache.
    pub no_cache: bool,
    /// `no-store`: do not store the answer either.
    pub no_store: bool,
}

impl Directives {
    pub fn parse(cache_control: Option<&str>) -> Directives {
        let mut d = Directives::default();
        for part in cache_control.unwrap_or_default().split(',') {
            let name = part.split('=').next().unwrap_or_default().trim();
            if name.eq_ignore_ascii_case("no-cache") {
                d.no_cache = true;
            } else if name.eq_ignore_ascii_case("no-store") {
                d.no_store = true;
                d.no_cache = true;
            }
        }
        d
    }
}

fn digest(domain: &[u8], provider: &str, model: &str, scope: Option<&str>, body: &Value) -> Key {
    let mut h = Sha256::new();
    h.update(domain);
    for part in [provider, model] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    match scope {
        Some(c) => {
            h.update([1]);
            h.update((c.len() as u64).to_le_bytes());
            h.update(c.as_bytes());
        }
        None => h.update([0]),
    }
    // serde_json's maps are sorted (no preserve_order): the serialisation is canonical.
    h.update(body.to_string().as_bytes());
    h.finalize().into()
}

/// The text of a user message whose content is text only (a string or text parts).
fn user_text(m: &Value) -> Option<String> {
    if m.get("role")?.as_str()? != "user" {
        return None;
    }
    match m.get("content")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for p in parts {
                if p.get("type")?.as_str()? != "text" {
                    return None;
                }
                out.push(p.get("text")?.as_str()?);
            }
            Some(out.join("\n"))
        }
        _ => None,
    }
}

/// The cache keys of an OpenAI chat request `body` routed to `provider`/`model`; `consumer`
/// is the scope (`None` when shared). `None` when the body is not a JSON object.
pub fn keys(
    body: &[u8],
    provider: &str,
    model: &str,
    consumer: Option<&str>,
    semantic: Option<&RouteSemantic>,
) -> Option<Keys> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let o = v.as_object_mut()?;
    o.remove("stream");
    o.remove("stream_options");
    o.insert("model".into(), Value::String(model.into()));
    let exact = digest(b"llm-gateway/exact/v1\0", provider, model, consumer, &v);
    let semantic = semantic.and_then(|s| {
        let messages = v.get_mut("messages")?.as_array_mut()?;
        let (last, earlier) = messages.split_last_mut()?;
        let text = user_text(last)?;
        let single_turn = match earlier {
            [] => true,
            [m] => matches!(
                m.get("role").and_then(Value::as_str),
                Some("system" | "developer")
            ),
            _ => false,
        };
        if !(single_turn || s.multi_turn) || text.trim().is_empty() {
            return None;
        }
        // Everything but the question's text must match exactly.
        if let Some(o) = last.as_object_mut() {
            o.remove("content");
        }
        let partition = digest(b"llm-gateway/semantic/v1\0", provider, model, consumer, &v);
        Some((partition, text))
    });
    Some(Keys { exact, semantic })
}
