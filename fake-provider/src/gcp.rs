//! The OAuth access tokens the fake GCE metadata server issues
//! (`/computeMetadata/v1/instance/service-accounts/default/token`) and Vertex AI accepts while
//! they have not expired. Every call issues a new token valid for the TTL, so a client that
//! refreshes before expiry is seen changing tokens.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Default lifetime of an issued token (what the metadata server gives).
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// One issued token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Issued {
    /// 1 for the first token the process issued, 2 for the next...
    pub serial: u64,
    pub at: Instant,
    pub expires: Instant,
}

/// Why a bearer token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Unknown,
    Expired(Issued),
}

#[derive(Debug, Default)]
struct State {
    issued: HashMap<String, Issued>,
    used: HashSet<String>,
    serial: u64,
}

/// The tokens of one fake process, shared by its metadata server and its Vertex endpoints.
#[derive(Debug, Clone)]
pub struct Tokens {
    state: Arc<Mutex<State>>,
    pub ttl: Duration,
}

impl Default for Tokens {
    fn default() -> Self {
        Self::new(DEFAULT_TTL)
    }
}

/// Tokens expired this long ago are forgotten (then refused as unknown).
const KEEP_EXPIRED: Duration = Duration::from_secs(3600);

impl Tokens {
    pub fn new(ttl: Duration) -> Self {
        Tokens {
            state: Default::default(),
            ttl,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new token (`ya29.c.` and random characters, like Google's) valid for the TTL.
    pub fn issue(&self, now: Instant) -> (String, Issued) {
        let tail: String = std::iter::repeat_with(fastrand::alphanumeric)
            .take(120)
            .collect();
        let token = format!("ya29.c.{tail}");
        let mut state = self.lock();
        state.issued.retain(|_, t| t.expires + KEEP_EXPIRED > now);
        let used: HashSet<String> = state
            .used
            .iter()
            .filter(|t| state.issued.contains_key(*t))
            .cloned()
            .collect();
        state.used = used;
        state.serial += 1;
        let issued = Issued {
            serial: state.serial,
            at: now,
            expires: now + self.ttl,
        };
        state.issued.insert(token.clone(), issued);
        (token, issued)
    }

    /// The token, if issued here and not expired at `now` (then counted as used).
    pub fn check(&self, token: &str, now: Instant) -> Result<Issued, Refused> {
        let mut state = self.lock();
        let Some(issued) = state.issued.get(token).copied() else {
            return Err(Refused::Unknown);
        };
        if now >= issued.expires {
            return Err(Refused::Expired(issued));
        }
        state.used.insert(token.to_owned());
        Ok(issued)
    }

    /// How many tokens were issued, and how many distinct ones were accepted.
    pub fn counts(&self) -> (u64, usize) {
        let state = self.lock();
        (state.serial, state.used.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_expire_after_the_ttl() {
        let tokens = Tokens::new(Duration::from_secs(2));
        let t0 = Instant::now();
        let (a, issued) = tokens.issue(t0);
        assert!(a.starts_with("ya29.c.") && a.len() > 100);
        assert_eq!(issued.serial, 1);
        assert_eq!(
            tokens.check(&a, t0 + Duration::from_millis(1999)),
            Ok(issued)
        );
        assert_eq!(
            tokens.check(&a, t0 + Duration::from_secs(2)),
            Err(Refused::Expired(issued))
        );
        assert_eq!(tokens.check("ya29.c.other", t0), Err(Refused::Unknown));
        let (b, second) = tokens.issue(t0 + Duration::from_secs(1));
        assert_ne!(a, b);
        assert_eq!(second.serial, 2);
        tokens.check(&b, t0 + Duration::from_secs(2)).unwrap();
        tokens.check(&b, t0 + Duration::from_secs(2)).unwrap();
        assert_eq!(tokens.counts(), (2, 2));
        // Long expired tokens are forgotten.
        tokens.issue(t0 + Duration::from_secs(4000));
        assert_eq!(tokens.check(&a, t0), Err(Refused::Unknown));
        assert_eq!(tokens.counts(), (3, 0));
    }
}
