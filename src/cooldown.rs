//! Provider cool-down: a provider's key that answered `429` (or `503` with `Retry-After`) gets
//! no requests until the time the provider gave, capped by `providers.<name>.cooldown.max_ms`
//! (a `429` that gave none: `cooldown.default_ms`).
//!
//! Every worker's VM and the failover upstream filter read and write one table in shared data,
//! so a `429` seen on one worker cools the key on all of them. Routing reads it once per
//! request ([`Cooling::read`]): a weighted split draws among the providers that have a key
//! that is not cooling (the weights of the others left out), a chain starts at its first such
//! provider, and a provider's requests spread over its keys that are not cooling. When every
//! provider a request could go to is cooling, the client gets one `429` with the earliest
//! `Retry-After` and nothing is sent.
//!
//! The table is a few short lines, `provider key until_ms`, changed by compare-and-swap;
//! each VM's tick sweeps it ([`Cooling::sweep`]): the gauge of an expired key goes back to 0
//! and its line is dropped.

use std::time::{Duration, UNIX_EPOCH};

use crate::limits::Store;

/// The shared data key of the table.
pub const KEY: &str = "llm-gateway.cooldown";
/// Compare-and-swap attempts before a mark is given up (another worker keeps writing).
const CAS_ATTEMPTS: usize = 8;
/// Lines kept at most (providers × keys of any sane configuration fit many times over).
const MAX_ENTRIES: usize = 1024;

/// One cooling key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub provider: String,
    pub key: usize,
    pub until_ms: u64,
}

/// The keys cooling at the time the table was read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cooling {
    pub entries: Vec<Entry>,
    /// When it was read (ms since the Unix epoch).
    pub at_ms: u64,
}

/// How long a provider asked to be left alone, from its answer's headers (`get` reads one):
/// `retry-after-ms` (Azure OpenAI, OpenAI), else `retry-after` in seconds or as an HTTP date,
/// relative to `now_ms`.
pub fn requested_wait(get: &dyn Fn(&str) -> Option<String>, now_ms: u64) -> Option<Duration> {
    if let Some(ms) = get(crate::names::RETRY_AFTER_MS)
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
    {
        return Some(Duration::from_millis(ms.ceil().min(u64::MAX as f64) as u64));
    }
    let v = get(crate::names::RETRY_AFTER)?;
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    let now = UNIX_EPOCH + Duration::from_millis(now_ms);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// How long a provider's key cools after an answer with `status` (as the client gets it)
/// that asked for `asked`: a `429` cools for what it asked or `default`, a `503` only when it
/// asked; never longer than `max` (zero: cool-down off).
pub fn duration_for(
    status: u32,
    asked: Option<Duration>,
    default: Duration,
    max: Duration,
) -> Option<Duration> {
    let d = match (status, asked) {
        (429, a) => a.unwrap_or(default),
        (503, Some(a)) => a,
        _ => return None,
    };
    (!max.is_zero() && !d.is_zero()).then(|| d.min(max))
}

/// The stat name of metric `name` for `provider`'s key `key` (its index, never its value).
pub fn key_stat(name: &str, provider: &str, key: usize) -> String {
    let key = key.to_string();
    crate::metrics::stat_name(
        name,
        &[
            (crate::names::metric::TAG_PROVIDER, provider),
            (crate::names::metric::TAG_PROVIDER_KEY, key.as_str()),
        ],
    )
}

impl Cooling {
    /// Nothing cooling, at `at_ms`.
    pub fn empty(at_ms: u64) -> Cooling {
        Cooling {
            entries: Vec::new(),
            at_ms,
        }
    }

    /// The table as it is at `now_ms` (expired keys left out; an unreadable table is empty).
    pub fn read(store: &impl Store, now_ms: u64) -> Cooling {
        match store.get(KEY) {
            Some((v, _)) => Self::decode(&v, Some(now_ms)),
            None => Cooling::empty(now_ms),
        }
    }

    /// Make the table exist, so that every later write is a compare-and-swap (shared data
    /// writes a key that is not there unconditionally). Called when a VM is configured.
    pub fn init(store: &impl Store) {
        if store.get(KEY).is_none() {
            let _ = store.set(KEY, b"", 0);
        }
    }

    /// The table in `b`; with `now_ms`, its keys still cooling then.
    fn decode(b: &[u8], now_ms: Option<u64>) -> Cooling {
        let text = String::from_utf8_lossy(b);
        let entries = text
            .lines()
            .filter_map(|l| {
                let mut parts = l.split(' ');
                let provider = parts.next()?.to_string();
                let key = parts.next()?.parse().ok()?;
                let until_ms: u64 = parts.next()?.parse().ok()?;
                let live = now_ms.is_none_or(|now| until_ms > now);
                (live && !provider.is_empty()).then_some(Entry {
                    provider,
                    key,
                    until_ms,
                })
            })
            .take(MAX_ENTRIES)
            .collect();
        Cooling {
            entries,
            at_ms: now_ms.unwrap_or(0),
        }
    }

    fn encode(&self) -> String {
        let mut s = String::with_capacity(self.entries.len() * 32);
        for e in &self.entries {
            s.push_str(&format!("{} {} {}\n", e.provider, e.key, e.until_ms));
        }
        s
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Until when `provider`'s key `key` cools, if it does.
    pub fn until(&self, provider: &str, key: usize) -> Option<u64> {
        self.entries
            .iter()
            .find(|e| e.key == key && e.provider == provider)
            .map(|e| e.until_ms)
    }

    /// Until when `provider` cools: every one of its `keys` keys cooling, the earliest of
    /// their ends; `None` while one of them may serve.
    pub fn provider_until(&self, provider: &str, keys: usize) -> Option<u64> {
        if self.entries.is_empty() {
            return None;
        }
        (0..keys.max(1))
            .map(|k| self.until(provider, k))
            .try_fold(u64::MAX, |earliest, u| u.map(|u| earliest.min(u)))
    }

    /// The keys of `provider` (of `keys`) that may serve now.
    pub fn usable_keys(&self, provider: &str, keys: usize) -> Vec<usize> {
        (0..keys.max(1))
            .filter(|k| self.until(provider, *k).is_none())
            .collect()
    }

    /// Cool `provider`'s key `key` until `until_ms` (a longer cool-down already there stays),
    /// for every worker. `false` when the table could not be written (another worker kept
    /// winning, or shared data refused it). Expired lines stay until [`Cooling::sweep`] has
    /// seen them, so their gauges go back to 0.
    pub fn mark(store: &impl Store, provider: &str, key: usize, until_ms: u64) -> bool {
        for _ in 0..CAS_ATTEMPTS {
            let (mut table, cas) = match store.get(KEY) {
                Some((v, cas)) => (Self::decode(&v, None), cas),
                None => (Cooling::default(), 0),
            };
            let full = table.entries.len() >= MAX_ENTRIES;
            match table
                .entries
                .iter_mut()
                .find(|e| e.key == key && e.provider == provider)
            {
                Some(e) if e.until_ms >= until_ms => return true,
                Some(e) => e.until_ms = until_ms,
                None if full => return false,
                None => table.entries.push(Entry {
                    provider: provider.to_string(),
                    key,
                    until_ms,
                }),
            }
            if store.set(KEY, table.encode().as_bytes(), cas).is_ok() {
                return true;
            }
        }
        false
    }

    /// Every key in the table at `now_ms`, with whether it still cools; the expired ones are
    /// dropped from it (once the caller has their gauges set back). Nothing when the table is
    /// empty, which is the common case and costs one read.
    pub fn sweep(store: &impl Store, now_ms: u64) -> Vec<(Entry, bool)> {
        let Some((raw, cas)) = store.get(KEY) else {
            return Vec::new();
        };
        if raw.is_empty() {
            return Vec::new();
        }
        let all = Self::decode(&raw, None);
        let seen: Vec<(Entry, bool)> = all
            .entries
            .into_iter()
            .map(|e| {
                let live = e.until_ms > now_ms;
                (e, live)
            })
            .collect();
        if seen.iter().any(|(_, live)| !live) {
            let kept = Cooling {
                entries: seen
                    .iter()
                    .filter(|(_, live)| *live)
                    .map(|(e, _)| e.clone())
                    .collect(),
                at_ms: now_ms,
            };
            // Lost to a writer: the next sweep drops them.
            let _ = store.set(KEY, kept.encode().as_bytes(), cas);
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::test_store::MemStore;

    fn headers(h: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let h: Vec<(String, String)> = h
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone())
    }

    #[test]
    fn the_wait_a_provider_asks_for() {
        let now = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        let w = |h: &[(&str, &str)]| requested_wait(&headers(h), now);
        assert_eq!(w(&[("retry-after", "7")]), Some(Duration::from_secs(7)));
        assert_eq!(w(&[("retry-after", " 0 ")]), Some(Duration::ZERO));
        assert_eq!(
            w(&[("retry-after-ms", "1500.2"), ("retry-after", "9")]),
            Some(Duration::from_millis(1501))
        );
        assert_eq!(
            w(&[("retry-after", "Thu, 01 Jan 2026 00:00:30 GMT")]),
            Some(Duration::from_secs(30))
        );
        // A date already past asks for nothing; rubbish is no answer.
        assert_eq!(
            w(&[("retry-after", "Wed, 31 Dec 2025 23:00:00 GMT")]),
            Some(Duration::ZERO)
        );
        assert_eq!(w(&[("retry-after", "soon")]), None);
        assert_eq!(w(&[("retry-after-ms", "-5")]), None);
        assert_eq!(w(&[]), None);
    }

    #[test]
    fn what_cools_and_for_how_long() {
        let s = Duration::from_secs;
        let (def, max) = (s(1), s(60));
        assert_eq!(duration_for(429, None, def, max), Some(s(1)));
        assert_eq!(duration_for(429, Some(s(5)), def, max), Some(s(5)));
        assert_eq!(duration_for(429, Some(s(3600)), def, max), Some(s(60)));
        assert_eq!(duration_for(503, Some(s(5)), def, max), Some(s(5)));
        assert_eq!(duration_for(503, None, def, max), None);
        assert_eq!(duration_for(500, Some(s(5)), def, max), None);
        assert_eq!(duration_for(200, Some(s(5)), def, max), None);
        // Off, and a provider asking for no wait.
        assert_eq!(duration_for(429, Some(s(5)), def, Duration::ZERO), None);
        assert_eq!(duration_for(429, Some(Duration::ZERO), def, max), None);
    }

    #[test]
    fn marks_are_shared_kept_longest_and_expire() {
        let store = MemStore::default();
        assert!(Cooling::read(&store, 0).is_empty());
        Cooling::init(&store);
        assert!(Cooling::mark(&store, "openai", 1, 5_000));
        assert!(Cooling::mark(&store, "openai", 0, 3_000));
        // A shorter cool-down does not shorten a longer one; a longer one extends it.
        assert!(Cooling::mark(&store, "openai", 1, 4_000));
        assert!(Cooling::mark(&store, "azure", 0, 9_000));
        let c = Cooling::read(&store, 2_000);
        assert_eq!(c.until("openai", 1), Some(5_000));
        assert_eq!(c.provider_until("openai", 2), Some(3_000));
        assert_eq!(c.provider_until("openai", 3), None, "key 2 may serve");
        assert_eq!(c.usable_keys("openai", 3), vec![2]);
        assert_eq!(c.provider_until("azure", 1), Some(9_000));
        assert_eq!(c.provider_until("local", 1), None);
        // Time passes: key 0 of openai serves again.
        let c = Cooling::read(&store, 3_000);
        assert_eq!(c.until("openai", 0), None);
        assert_eq!(c.usable_keys("openai", 2), vec![0]);
        // A sweep tells what expired, once, and drops it.
        let swept = |now| -> Vec<(String, usize, bool)> {
            Cooling::sweep(&store, now)
                .into_iter()
                .map(|(e, live)| (e.provider, e.key, live))
                .collect()
        };
        assert_eq!(
            swept(6_000),
            vec![
                ("openai".into(), 1, false),
                ("openai".into(), 0, false),
                ("azure".into(), 0, true)
            ]
        );
        assert_eq!(swept(6_000), vec![("azure".into(), 0, true)]);
        assert!(Cooling::mark(&store, "azure", 0, 10_000));
        let (raw, _) = store.get(KEY).unwrap();
        assert_eq!(String::from_utf8(raw).unwrap(), "azure 0 10000\n");
        assert_eq!(swept(10_000), vec![("azure".into(), 0, false)]);
        assert!(swept(10_000).is_empty());
    }

    #[test]
    fn a_damaged_table_reads_as_what_it_still_says() {
        let store = MemStore::default();
        store
            .set(
                KEY,
                b"openai 0 9000\ngarbage\n 1 9000\nazure x 9\nazure 0\n\xff\n",
                0,
            )
            .unwrap();
        let c = Cooling::read(&store, 0);
        assert_eq!(
            c.entries,
            vec![Entry {
                provider: "openai".into(),
                key: 0,
                until_ms: 9_000
            }]
        );
        assert!(Cooling::mark(&store, "azure", 0, 9_000));
        assert_eq!(Cooling::read(&store, 0).entries.len(), 2);
    }
}
