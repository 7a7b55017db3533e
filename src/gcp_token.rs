//! OAuth access tokens from the GCP metadata server, for Vertex AI providers with `auth:
//! gcp-metadata` (GKE workload identity, GCE, Cloud Run): what the server answers, how a token
//! is kept in shared data (every worker's VM and the failover upstream filter read the one
//! token), and when it is refreshed (at half its life, by the VM's root context, never on a
//! request's path). `flow::credentials` does the fetching and the waiting.

use serde::Deserialize;

use crate::limits::Store;

/// The metadata server's token endpoint for the workload's service account.
pub const TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
/// The header the metadata server requires (and its value).
pub const METADATA_FLAVOR: (&str, &str) = ("metadata-flavor", "Google");
/// The metadata server's name.
pub const AUTHORITY: &str = "metadata.google.internal";
/// Shared data key prefix; the provider's name follows.
const KEY_PREFIX: &str = "llm-gateway.gcp-token.";
/// Longest token value kept (Google's access tokens are far shorter).
const MAX_TOKEN_BYTES: usize = 8192;
/// A token is not sent in its last second: it could expire on the way.
const EXPIRY_MARGIN_MS: u64 = 1_000;

/// An access token and its lifetime (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub value: String,
    pub obtained_ms: u64,
    pub expires_ms: u64,
}

#[derive(Deserialize)]
struct Answer {
    access_token: String,
    expires_in: u64,
    #[serde(default)]
    token_type: Option<String>,
}

impl Token {
    /// The metadata server's answer (`{"access_token","expires_in","token_type":"Bearer"}`)
    /// received at `now_ms`; `None` when it is not one, or its token could not be a header.
    pub fn from_answer(body: &[u8], now_ms: u64) -> Option<Token> {
        let a: Answer = serde_json::from_slice(body).ok()?;
        let bearer = a
            .token_type
            .as_deref()
            .is_none_or(|t| t.eq_ignore_ascii_case("bearer"));
        let header_safe = !a.access_token.is_empty()
            && a.access_token.len() <= MAX_TOKEN_BYTES
            && a.access_token.bytes().all(|b| b.is_ascii_graphic());
        (bearer && header_safe && a.expires_in > 0).then(|| Token {
            value: a.access_token,
            obtained_ms: now_ms,
            expires_ms: now_ms.saturating_add(a.expires_in.saturating_mul(1000)),
        })
    }

    /// Whether it may still be sent at `now_ms`.
    pub fn usable(&self, now_ms: u64) -> bool {
        now_ms.saturating_add(EXPIRY_MARGIN_MS) < self.expires_ms
    }

    /// Whether it is time to fetch the next one (half its life has passed).
    pub fn refresh_due(&self, now_ms: u64) -> bool {
        let life = self.expires_ms.saturating_sub(self.obtained_ms);
        now_ms >= self.obtained_ms.saturating_add(life / 2)
    }

    fn encode(&self) -> String {
        format!("{} {} {}", self.obtained_ms, self.expires_ms, self.value)
    }

    fn decode(b: &[u8]) -> Option<Token> {
        let s = std::str::from_utf8(b).ok()?;
        let mut parts = s.splitn(3, ' ');
        let obtained_ms = parts.next()?.parse().ok()?;
        let expires_ms = parts.next()?.parse().ok()?;
        let value = parts.next()?.to_string();
        Some(Token {
            value,
            obtained_ms,
            expires_ms,
        })
    }
}

fn key(provider: &str) -> String {
    format!("{KEY_PREFIX}{provider}")
}

/// The token kept for `provider`, if any (possibly expired).
pub fn read(store: &impl Store, provider: &str) -> Option<Token> {
    let (bytes, _) = store.get(&key(provider))?;
    Token::decode(&bytes)
}

/// Keep `token` for `provider`, unless a token that lives longer is kept already (another
/// worker fetched later).
pub fn write(store: &impl Store, provider: &str, token: &Token) {
    let k = key(provider);
    for _ in 0..4 {
        let (current, cas) = match store.get(&k) {
            Some((b, cas)) => (Token::decode(&b), cas),
            None => (None, 0),
        };
        if current.is_some_and(|c| c.expires_ms >= token.expires_ms) {
            return;
        }
        if store.set(&k, token.encode().as_bytes(), cas).is_ok() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::test_store::MemStore;

    #[test]
    fn reads_the_metadata_servers_answer() {
        let t = Token::from_answer(
            br#"{"access_token":"ya29.abc","expires_in":3599,"token_type":"Bearer"}"#,
            1_000,
        )
        .unwrap();
        assert_eq!(t.value, "ya29.abc");
        assert_eq!(t.expires_ms, 1_000 + 3_599_000);
        assert!(t.usable(1_000));
        assert!(!t.refresh_due(1_000 + 1_799_000));
        assert!(t.refresh_due(1_000 + 1_799_500));
        assert!(!t.usable(t.expires_ms - 1_000));
        for bad in [
            &br#"{"access_token":"","expires_in":10}"#[..],
            br#"{"access_token":"a b","expires_in":10}"#,
            br#"{"access_token":"a\r\nx: y","expires_in":10}"#,
            br#"{"access_token":"a","expires_in":0}"#,
            br#"{"access_token":"a","expires_in":10,"token_type":"mac"}"#,
            br#"{"expires_in":10}"#,
            b"not json",
        ] {
            assert_eq!(
                Token::from_answer(bad, 0),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn shared_data_keeps_the_longest_lived_token() {
        let store = MemStore::default();
        assert_eq!(read(&store, "vertex"), None);
        let a = Token {
            value: "a".into(),
            obtained_ms: 0,
            expires_ms: 10_000,
        };
        let b = Token {
            value: "b".into(),
            obtained_ms: 5_000,
            expires_ms: 15_000,
        };
        write(&store, "vertex", &b);
        write(&store, "vertex", &a);
        assert_eq!(read(&store, "vertex"), Some(b.clone()));
        assert_eq!(read(&store, "other"), None);
    }
}
