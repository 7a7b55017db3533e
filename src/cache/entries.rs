//! The entry store: the answers in shared data, bounded in count and size.

use super::config::CacheConfig;
use super::keys::Key;
use super::shared::{u32_at, u64_at, MAX_CAS};
use crate::limits::Store;

const ENTRY_MAGIC: &[u8; 4] = b"LGC2";
pub(super) const ENTRY_HEADER: usize = 4 + 32 + 8 + 8 + 8;
/// One index record: slot, size, sequence number, expiry, key prefix.
pub(super) const INDEX_RECORD: usize = 4 + 4 + 8 + 8 + 8;
/// One directory reference: key prefix, slot, sequence number.
pub(super) const DIR_RECORD: usize = 8 + 4 + 8;
/// Entries per directory bucket on average, and references a bucket keeps at most.
const BUCKET_LOAD: u32 = 4;
const BUCKET_REFS: usize = 16;

/// The first eight bytes of a key, as a number.
fn prefix(key: &Key) -> u64 {
    u64_at(key, 0).unwrap_or(0)
}

pub(super) struct EntryHeader {
    key: Key,
    seq: u64,
    expires_ms: u64,
}

/// An entry's header (magic, key, sequence, expiry, store time); `None` unless the whole
/// header is there, so the answer after it can always be split off.
pub(super) fn entry_header(b: &[u8]) -> Option<EntryHeader> {
    let h = b.get(..ENTRY_HEADER)?;
    if h.get(..4)? != ENTRY_MAGIC {
        return None;
    }
    Some(EntryHeader {
        key: h.get(4..36)?.try_into().ok()?,
        seq: u64_at(h, 36)?,
        expires_ms: u64_at(h, 44)?,
    })
}

/// The answer stored after an entry's header.
fn entry_body(b: &[u8]) -> Option<&[u8]> {
    b.get(ENTRY_HEADER..)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IndexRecord {
    pub(super) slot: u32,
    pub(super) size: u32,
    pub(super) seq: u64,
    pub(super) expires_ms: u64,
    pub(super) key: u64,
}

/// Every stored entry, oldest first: what holds the count and size bounds.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Index {
    pub(super) next_seq: u64,
    pub(super) records: Vec<IndexRecord>,
}

impl Index {
    pub(super) fn decode(b: &[u8]) -> Index {
        let mut idx = Index {
            next_seq: u64_at(b, 0).unwrap_or(0),
            records: Vec::new(),
        };
        let mut at = 8;
        while let (Some(slot), Some(size), Some(seq), Some(expires_ms), Some(key)) = (
            u32_at(b, at),
            u32_at(b, at + 4),
            u64_at(b, at + 8),
            u64_at(b, at + 16),
            u64_at(b, at + 24),
        ) {
            idx.records.push(IndexRecord {
                slot,
                size,
                seq,
                expires_ms,
                key,
            });
            at += INDEX_RECORD;
        }
        idx
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(8 + self.records.len() * INDEX_RECORD);
        b.extend_from_slice(&self.next_seq.to_le_bytes());
        for r in &self.records {
            b.extend_from_slice(&r.slot.to_le_bytes());
            b.extend_from_slice(&r.size.to_le_bytes());
            b.extend_from_slice(&r.seq.to_le_bytes());
            b.extend_from_slice(&r.expires_ms.to_le_bytes());
            b.extend_from_slice(&r.key.to_le_bytes());
        }
        b
    }

    pub(super) fn total(&self) -> u64 {
        self.records
            .iter()
            .fold(0u64, |t, r| t.saturating_add(u64::from(r.size)))
    }

    /// Record an entry of key prefix `kp` and `size` bytes in a table of `slots` slots and
    /// `max_bytes`: expired entries and an older answer to the same key leave without counting
    /// as evictions, then the oldest until it fits. `None` when no slot is free.
    fn admit(
        &mut self,
        slots: u32,
        max_bytes: u64,
        kp: u64,
        size: u64,
        expires_ms: u64,
        now_ms: u64,
    ) -> Option<Claim> {
        let mut dropped: Vec<IndexRecord> = Vec::new();
        let mut evicted = 0;
        self.records.retain(|r| {
            let keep = r.expires_ms > now_ms && r.key != kp && r.slot < slots;
            if !keep {
                dropped.push(*r);
            }
            keep
        });
        while !self.records.is_empty()
            && (self.records.len() >= slots as usize
                || self.total().saturating_add(size) > max_bytes)
        {
            dropped.push(self.records.remove(0));
            evicted += 1;
        }
        // The slots in use, as many as there are entries (not one per slot).
        let mut used: Vec<u32> = self.records.iter().map(|r| r.slot).collect();
        used.sort_unstable();
        let seq = self.next_seq.wrapping_add(1);
        // Start the search where the sequence points, so slots are used round the table;
        // fewer entries than slots are left, so one of the next `used.len() + 1` is free.
        let start = seq % u64::from(slots);
        let slot = (0..=used.len() as u64)
            .map(|i| ((start + i) % u64::from(slots)) as u32)
            .find(|s| used.binary_search(s).is_err())?;
        self.next_seq = seq;
        self.records.push(IndexRecord {
            slot,
            size: size as u32,
            seq,
            expires_ms,
            key: kp,
        });
        Some(Claim {
            slot,
            seq,
            dropped,
            evicted,
        })
    }
}

/// A slot claimed in the index for a new entry, and the entries that made room for it.
struct Claim {
    slot: u32,
    seq: u64,
    dropped: Vec<IndexRecord>,
    /// Entries evicted by the bounds (not expired ones, nor an older answer to the key).
    evicted: u32,
}

/// A directory bucket: which slots may hold keys with these prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DirRef {
    pub(super) key: u64,
    pub(super) slot: u32,
    pub(super) seq: u64,
}

pub(super) fn decode_dir(b: &[u8]) -> Vec<DirRef> {
    b.chunks_exact(DIR_RECORD)
        .filter_map(|c| {
            Some(DirRef {
                key: u64_at(c, 0)?,
                slot: u32_at(c, 8)?,
                seq: u64_at(c, 12)?,
            })
        })
        .collect()
}

pub(super) fn encode_dir(refs: &[DirRef]) -> Vec<u8> {
    let mut b = Vec::with_capacity(refs.len() * DIR_RECORD);
    for r in refs {
        b.extend_from_slice(&r.key.to_le_bytes());
        b.extend_from_slice(&r.slot.to_le_bytes());
        b.extend_from_slice(&r.seq.to_le_bytes());
    }
    b
}

/// What a store did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stored {
    pub stored: bool,
    /// Entries evicted to make room (by count or size), not counting expired ones.
    pub evicted: u32,
}

/// The answers, in shared data: `max_entries` slots, one index (every entry, oldest first,
/// which the bounds are kept on), and directory buckets that say which slot may hold a key, so
/// a lookup reads one small bucket and one slot.
#[derive(Debug, Clone)]
pub struct Entries {
    prefix: String,
    slots: u32,
    buckets: u32,
    max_bytes: u64,
}

impl Entries {
    pub fn new(prefix: &str, cfg: &CacheConfig) -> Entries {
        let slots = cfg.max_entries.max(1);
        Entries {
            prefix: prefix.to_string(),
            slots,
            buckets: slots.div_ceil(BUCKET_LOAD),
            max_bytes: cfg.max_bytes,
        }
    }

    fn slot_key(&self, slot: u32) -> String {
        format!("{}e.{slot}", self.prefix)
    }

    fn index_key(&self) -> String {
        format!("{}index", self.prefix)
    }

    fn bucket_key(&self, key: &Key) -> String {
        let b = u64_at(key, 8).unwrap_or(0) % u64::from(self.buckets);
        format!("{}d.{b}", self.prefix)
    }

    /// The stored answer for `key`, unless absent or expired.
    pub fn get(&self, store: &dyn Store, key: &Key, now_ms: u64) -> Option<Vec<u8>> {
        let (dir, _) = store.get(&self.bucket_key(key))?;
        let mut refs: Vec<DirRef> = decode_dir(&dir)
            .into_iter()
            .filter(|r| r.key == prefix(key))
            .collect();
        refs.sort_by_key(|r| std::cmp::Reverse(r.seq));
        for r in refs {
            let Some((value, _)) = store.get(&self.slot_key(r.slot)) else {
                continue;
            };
            let Some(h) = entry_header(&value) else {
                continue;
            };
            if &h.key == key && h.seq == r.seq {
                if h.expires_ms <= now_ms {
                    return None;
                }
                return entry_body(&value).map(<[u8]>::to_vec);
            }
        }
        None
    }

    /// Store `body` for `key` until `expires_ms`, evicting the oldest entries beyond the count
    /// and size bounds (and the entry it replaces).
    pub fn put(
        &self,
        store: &dyn Store,
        key: &Key,
        body: &[u8],
        expires_ms: u64,
        now_ms: u64,
    ) -> Stored {
        let size = (ENTRY_HEADER + body.len()) as u64;
        if size > self.max_bytes || size > u64::from(u32::MAX) {
            return Stored::default();
        }
        let kp = prefix(key);
        let Some(Claim {
            slot,
            seq,
            dropped,
            evicted,
        }) = self.claim(store, kp, size, expires_ms, now_ms)
        else {
            return Stored::default();
        };
        let mut value = Vec::with_capacity(size as usize);
        value.extend_from_slice(ENTRY_MAGIC);
        value.extend_from_slice(key);
        value.extend_from_slice(&seq.to_le_bytes());
        value.extend_from_slice(&expires_ms.to_le_bytes());
        value.extend_from_slice(&now_ms.to_le_bytes());
        value.extend_from_slice(body);
        let _ = store.set(&self.slot_key(slot), &value, 0);
        for r in dropped.iter().filter(|r| r.slot != slot) {
            self.blank(store, r.slot, r.seq);
        }
        self.point(store, key, slot, seq);
        // Another writer may have evicted this entry before it was written: then it must not
        // stay behind untracked.
        let (bytes, _) = store.get(&self.index_key()).unwrap_or_default();
        let still = Index::decode(&bytes)
            .records
            .iter()
            .any(|r| r.slot == slot && r.seq == seq);
        if !still {
            self.blank(store, slot, seq);
        }
        Stored {
            stored: still,
            evicted,
        }
    }

    /// Claim a slot and `size` bytes in the index for an entry of key prefix `kp`.
    fn claim(
        &self,
        store: &dyn Store,
        kp: u64,
        size: u64,
        expires_ms: u64,
        now_ms: u64,
    ) -> Option<Claim> {
        let index_key = self.index_key();
        for _ in 0..MAX_CAS {
            let (bytes, cas) = store.get(&index_key).unwrap_or_default();
            let mut idx = Index::decode(&bytes);
            let claim = idx.admit(self.slots, self.max_bytes, kp, size, expires_ms, now_ms)?;
            if store.set(&index_key, &idx.encode(), cas).is_ok() {
                return Some(claim);
            }
        }
        None
    }

    /// Point the key's bucket at `slot` (replacing what it said of this key).
    fn point(&self, store: &dyn Store, key: &Key, slot: u32, seq: u64) {
        let bucket = self.bucket_key(key);
        let kp = prefix(key);
        for _ in 0..MAX_CAS {
            let (bytes, cas) = store.get(&bucket).unwrap_or_default();
            let mut refs = decode_dir(&bytes);
            refs.retain(|r| r.key != kp);
            if refs.len() >= BUCKET_REFS {
                // References to evicted entries linger until a bucket fills: drop the oldest.
                refs.sort_by_key(|r| r.seq);
                refs.drain(..=refs.len() - BUCKET_REFS);
            }
            refs.push(DirRef { key: kp, slot, seq });
            if store.set(&bucket, &encode_dir(&refs), cas).is_ok() {
                break;
            }
        }
    }

    /// Empty `slot` if it still holds the entry numbered `seq`.
    fn blank(&self, store: &dyn Store, slot: u32, seq: u64) {
        let k = self.slot_key(slot);
        if let Some((value, cas)) = store.get(&k) {
            if entry_header(&value).is_some_and(|h| h.seq == seq) {
                let _ = store.set(&k, &[], cas);
            }
        }
    }

    /// Bytes the index accounts for (for tests and the bench).
    pub fn total_bytes(&self, store: &dyn Store) -> u64 {
        let (bytes, _) = store.get(&self.index_key()).unwrap_or_default();
        Index::decode(&bytes).total()
    }
}
