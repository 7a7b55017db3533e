//! Fuzz targets for shared data: the cache's and the limiter's records, written by the code,
//! then overwritten or corrupted, then read and updated again.

use std::cell::RefCell;

use super::Input;
use crate::limits::test_store::MemStore;
use crate::limits::{Conflict, Store};

/// A `Store` in memory that remembers every key written, so the fuzzer can overwrite or
/// corrupt records without knowing their names.
#[derive(Default)]
struct Recording {
    inner: MemStore,
    keys: RefCell<Vec<String>>,
}

impl Recording {
    fn key(&self, b: u8) -> Option<String> {
        let keys = self.keys.borrow();
        keys.get(usize::from(b) % keys.len().max(1)).cloned()
    }

    /// Overwrite a recorded key with other bytes: random ones, a cut, a flipped byte, an
    /// extension, or a zero-length record, as a dead worker or another version may leave them.
    fn corrupt(&self, input: &mut Input<'_>) {
        let Some(key) = self.key(input.byte()) else {
            return;
        };
        let mut value = self.inner.get(&key).map(|(v, _)| v).unwrap_or_default();
        match input.byte() % 5 {
            0 => {
                let n = usize::from(input.byte());
                value = input.bytes(n).to_vec();
            }
            1 => value.truncate(usize::from(input.u16()) % (value.len() + 1)),
            2 => {
                let at = usize::from(input.u16());
                let x = input.byte();
                let len = value.len().max(1);
                if let Some(b) = value.get_mut(at % len) {
                    *b ^= x.max(1);
                }
            }
            3 => {
                let n = usize::from(input.byte());
                value.extend_from_slice(input.bytes(n));
            }
            _ => value.clear(),
        }
        let _ = self.inner.set(&key, &value, 0);
    }
}

impl Store for Recording {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.inner.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), Conflict> {
        let r = self.inner.set(key, value, cas);
        let mut keys = self.keys.borrow_mut();
        if r.is_ok() && !keys.iter().any(|k| k == key) {
            keys.push(key.to_string());
        }
        r
    }
}

fn cache_key(b: u8) -> crate::cache::Key {
    // Few distinct prefixes and buckets, so keys collide in a bucket and on a prefix.
    let mut k = [0u8; 32];
    k[0] = b & 3;
    k[8] = (b >> 2) & 3;
    k[31] = b >> 4;
    k
}

fn vector(input: &mut Input<'_>) -> Vec<f32> {
    let dim = usize::from(input.byte() % 5);
    (0..dim)
        .map(|_| match input.byte() % 4 {
            0 => 1.0,
            1 => -0.5,
            2 => f32::from_bits(input.u32()),
            _ => 0.0,
        })
        .collect()
}

/// The response cache's shared records (index, directory buckets, entries, vector segments and
/// their versions) written by the cache itself, then overwritten or corrupted, then read and
/// updated again, by two VMs' worth of vector mirrors.
pub fn cache_store(data: &[u8]) {
    use crate::cache::{CacheConfig, Entries, VectorIndex};
    let mut input = Input::new(data);
    let store = Recording::default();
    let cfg = CacheConfig {
        max_entries: u32::from(input.byte() % 16) + 1,
        max_bytes: (u64::from(input.byte()) + 1) * 32,
        ..CacheConfig::default()
    };
    let max_vectors = u32::from(input.byte()) + 1;
    let entries = Entries::new("c.", &cfg);
    let mut vms = [
        VectorIndex::new("v.", max_vectors),
        VectorIndex::new("v.", max_vectors),
    ];
    let mut now = 1_000u64;
    let mut ops = 0;
    while !input.is_empty() && ops < 256 {
        ops += 1;
        now = now.saturating_add(u64::from(input.byte()));
        match input.byte() % 8 {
            0 => {
                let key = cache_key(input.byte());
                let n = usize::from(input.byte());
                let body = input.bytes(n).to_vec();
                let expires = match input.byte() % 3 {
                    0 => now,
                    1 => u64::MAX,
                    _ => now.saturating_add(u64::from(input.byte())),
                };
                let _ = entries.put(&store, &key, &body, expires, now);
            }
            1 => {
                let key = cache_key(input.byte());
                let _ = entries.get(&store, &key, now);
            }
            2 => store.corrupt(&mut input),
            3 => {
                let vm = usize::from(input.byte() % 2);
                let partition = cache_key(input.byte());
                let key = cache_key(input.byte());
                let v = vector(&mut input);
                let expires = now.saturating_add(u64::from(input.byte()));
                if let Some(index) = vms.get_mut(vm) {
                    let _ = index.insert(&store, &partition, &key, expires, &v);
                }
            }
            4 => {
                let vm = usize::from(input.byte() % 2);
                let partition = cache_key(input.byte());
                let v = vector(&mut input);
                if let Some(index) = vms.get_mut(vm) {
                    let _ = index.nearest(&store, &partition, &v, now);
                }
            }
            5 => {
                let _ = entries.total_bytes(&store);
            }
            6 => {
                // A record under a name the cache did not write (another version's layout).
                let name = match input.byte() % 4 {
                    0 => "c.index".to_string(),
                    1 => "v.meta".to_string(),
                    2 => format!("c.e.{}", input.byte() % 17),
                    _ => format!("v.s.{}", input.byte() % 5),
                };
                let n = usize::from(input.byte());
                let _ = store.inner.set(&name, input.bytes(n), 0);
                store.keys.borrow_mut().push(name);
            }
            _ => now = now.saturating_add(input.number()),
        }
    }
}

/// Three scopes, two of them nested, with limits read from the input.
fn limit_scopes(input: &mut Input<'_>) -> Vec<crate::limits::Scope> {
    use crate::limits::{Budget, Calendar, Rolling, Scope, Spec};
    let limit = |input: &mut Input<'_>| {
        let b = input.byte();
        (b & 1 != 0).then(|| input.number())
    };
    ["team-a", "team:eng", "team-a / gpt-4o*"]
        .iter()
        .map(|name| Scope {
            name: name.to_string(),
            spec: Spec {
                rpm: limit(input),
                tpm: limit(input),
                tpd: limit(input),
                concurrent: {
                    let b = input.byte();
                    (b & 1 != 0).then_some(u32::from(b >> 1))
                },
                budget: {
                    let (day, month) = (limit(input), limit(input));
                    let rolling = limit(input).map(|limit| Rolling {
                        limit,
                        period: std::time::Duration::from_secs(u64::from(input.byte()) + 1),
                    });
                    let mut alerts = [0; crate::limits::budget::MAX_ALERTS];
                    for (i, a) in alerts.iter_mut().take(3).enumerate() {
                        *a = 250_000 * (i as u32 + 1);
                    }
                    Budget {
                        day,
                        month,
                        rolling,
                        calendar: Calendar {
                            offset_s: i32::from(input.byte() as i8) * 600,
                            skew_s: 0,
                        },
                        alerts,
                    }
                },
            },
        })
        .collect()
}

/// The limiter's shared slots and claim lock: admissions, settlements and cancellations by
/// two VMs, with slots and the lock overwritten or corrupted in between.
pub fn limits_store(data: &[u8]) {
    use crate::limits::{Cost, Held, Limiter};
    let mut input = Input::new(data);
    let store = Recording::default();
    let slots = u32::from(input.byte() % 8) + 1;
    let scopes = limit_scopes(&mut input);
    let mut vms = [Limiter::new("l.", slots), Limiter::new("l.", slots)];
    vms[0].init(&store);
    let mut held: Vec<(usize, Held)> = Vec::new();
    let mut now = 1_700_000_000_000_000_000u64;
    let mut ops = 0;
    while !input.is_empty() && ops < 256 {
        ops += 1;
        let op = input.byte();
        let vm = usize::from(op >> 7);
        match op % 8 {
            0 | 1 => {
                let from = usize::from(input.byte()) % scopes.len();
                let cost = Cost {
                    requests: input.number(),
                    tokens: input.number(),
                    pico_usd: input.number(),
                };
                let from = scopes.get(from..).unwrap_or_default();
                if let Some(Ok(Ok(h))) = vms.get_mut(vm).map(|l| l.admit(&store, from, cost, now)) {
                    held.push((vm, h));
                }
            }
            2 => {
                if !held.is_empty() {
                    let (vm, h) = held.remove(usize::from(input.byte()) % held.len());
                    if let Some(l) = vms.get_mut(vm) {
                        let _ = l.settle(&store, &h, input.number(), input.number(), now);
                    }
                }
            }
            3 => {
                if !held.is_empty() {
                    let (vm, h) = held.remove(usize::from(input.byte()) % held.len());
                    if let Some(l) = vms.get_mut(vm) {
                        let _ = l.cancel(&store, &h, now);
                    }
                }
            }
            4 => {
                if let Some((l, h)) = held
                    .last_mut()
                    .and_then(|(vm, h)| Some((vms.get_mut(*vm)?, h)))
                {
                    let _ = l.add_tokens(&store, h, input.number(), now);
                }
            }
            5 => store.corrupt(&mut input),
            6 => now = now.wrapping_add(input.number()),
            _ => {
                // A fresh VM (a reload) initialising over whatever is there.
                if let Some(l) = vms.get_mut(vm) {
                    *l = Limiter::new("l.", slots);
                    l.init(&store);
                }
            }
        }
    }
}
