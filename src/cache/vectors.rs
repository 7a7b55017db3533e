//! The local vector index: a ring of segments in shared data, mirrored in each VM.

use super::config::MAX_DIMENSIONS;
use super::keys::Key;
use super::shared::{u32_at, u64_at, MAX_CAS};
use crate::limits::Store;

/// Vectors per shared-data segment of the local index.
pub const SEGMENT: u32 = 64;

/// L2-normalise `v` in place; `false` when it is empty, longer than `MAX_DIMENSIONS`, zero or
/// not finite (such a vector is not kept or looked up).
pub fn normalise(v: &mut [f32]) -> bool {
    if v.is_empty() || v.len() > MAX_DIMENSIONS as usize {
        return false;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !norm.is_finite() || norm == 0.0 {
        return false;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    true
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct VecEntry {
    pub(super) partition: Key,
    pub(super) key: Key,
    pub(super) expires_ms: u64,
    pub(super) vector: Vec<f32>,
}

/// A stored vector's header: partition, key, expiry (its length comes before it).
const VEC_HEADER: usize = 32 + 32 + 8;

pub(super) fn encode_segment(entries: &[Option<VecEntry>]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        match e {
            None => b.extend_from_slice(&0u32.to_le_bytes()),
            Some(e) => {
                b.extend_from_slice(&(e.vector.len() as u32).to_le_bytes());
                b.extend_from_slice(&e.partition);
                b.extend_from_slice(&e.key);
                b.extend_from_slice(&e.expires_ms.to_le_bytes());
                for x in &e.vector {
                    b.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
    }
    b
}

pub(super) fn decode_segment(b: &[u8]) -> Vec<Option<VecEntry>> {
    let n = u32_at(b, 0).unwrap_or(0).min(SEGMENT) as usize;
    let mut out = Vec::with_capacity(n);
    let mut at: usize = 4;
    for _ in 0..n {
        let Some(dim) = u32_at(b, at) else { break };
        at += 4;
        if dim == 0 {
            out.push(None);
            continue;
        }
        // A length from shared data: checked, so a corrupt one cannot wrap past the record.
        let Some(end) = usize::try_from(dim)
            .ok()
            .and_then(|d| d.checked_mul(4))
            .and_then(|d| d.checked_add(at + VEC_HEADER))
        else {
            break;
        };
        let (Some(partition), Some(key), Some(expires_ms), Some(raw)) = (
            b.get(at..at + 32).and_then(|s| Key::try_from(s).ok()),
            b.get(at + 32..at + 64).and_then(|s| Key::try_from(s).ok()),
            u64_at(b, at + 64),
            b.get(at + VEC_HEADER..end),
        ) else {
            break;
        };
        let vector = raw
            .chunks_exact(4)
            .filter_map(|c| c.try_into().ok().map(f32::from_le_bytes))
            .collect();
        out.push(Some(VecEntry {
            partition,
            key,
            expires_ms,
            vector,
        }));
        at = end;
    }
    out
}

/// The nearest stored neighbour of a vector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbour {
    /// The exact key the neighbour's answer is stored under.
    pub key: Key,
    pub similarity: f32,
}

/// A ring of `max_vectors` vectors in shared data, mirrored in each VM.
#[derive(Debug)]
pub struct VectorIndex {
    prefix: String,
    max_vectors: u32,
    segments: u32,
    pub(super) mirror: Vec<Option<(u32, Vec<Option<VecEntry>>)>>,
}

impl VectorIndex {
    pub fn new(prefix: &str, max_vectors: u32) -> VectorIndex {
        let max_vectors = max_vectors.max(1);
        let segments = max_vectors.div_ceil(SEGMENT);
        VectorIndex {
            prefix: prefix.to_string(),
            max_vectors,
            segments,
            mirror: vec![None; segments as usize],
        }
    }

    fn meta_key(&self) -> String {
        format!("{}meta", self.prefix)
    }

    fn segment_key(&self, s: u32) -> String {
        format!("{}s.{s}", self.prefix)
    }

    /// meta: next position, then one version per segment.
    pub(super) fn decode_meta(&self, b: &[u8]) -> (u64, Vec<u32>) {
        let next = u64_at(b, 0).unwrap_or(0);
        let versions = (0..self.segments as usize)
            .map(|i| u32_at(b, 8 + i * 4).unwrap_or(0))
            .collect();
        (next, versions)
    }

    pub(super) fn encode_meta(next: u64, versions: &[u32]) -> Vec<u8> {
        let mut b = Vec::with_capacity(8 + versions.len() * 4);
        b.extend_from_slice(&next.to_le_bytes());
        for v in versions {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Add a vector (normalised) for the answer stored under `key`, overwriting the oldest
    /// once the ring is full.
    pub fn insert(
        &mut self,
        store: &dyn Store,
        partition: &Key,
        key: &Key,
        expires_ms: u64,
        vector: &[f32],
    ) -> bool {
        if vector.is_empty() || vector.len() > MAX_DIMENSIONS as usize {
            return false;
        }
        let meta_key = self.meta_key();
        // Claim a position. The stored one is kept inside the ring, so it cannot overflow
        // whatever shared data says.
        let ring = u64::from(self.max_vectors);
        let mut pos = None;
        for _ in 0..MAX_CAS {
            let (bytes, cas) = store.get(&meta_key).unwrap_or_default();
            let (next, versions) = self.decode_meta(&bytes);
            let at = next % ring;
            if store
                .set(
                    &meta_key,
                    &Self::encode_meta((at + 1) % ring, &versions),
                    cas,
                )
                .is_ok()
            {
                pos = Some(at);
                break;
            }
        }
        let Some(at) = pos else { return false };
        let seg = (at / u64::from(SEGMENT)) as u32;
        let slot = (at % u64::from(SEGMENT)) as usize;
        let entry = VecEntry {
            partition: *partition,
            key: *key,
            expires_ms,
            vector: vector.to_vec(),
        };
        let seg_key = self.segment_key(seg);
        let mut written = false;
        for _ in 0..MAX_CAS {
            let (bytes, cas) = store.get(&seg_key).unwrap_or_default();
            let mut entries = decode_segment(&bytes);
            if entries.len() <= slot {
                entries.resize(slot + 1, None);
            }
            if let Some(e) = entries.get_mut(slot) {
                *e = Some(entry.clone());
            }
            if store.set(&seg_key, &encode_segment(&entries), cas).is_ok() {
                written = true;
                break;
            }
        }
        if !written {
            return false;
        }
        // Only now tell the mirrors: a reader never caches a version without its vector.
        for _ in 0..MAX_CAS {
            let (bytes, cas) = store.get(&meta_key).unwrap_or_default();
            let (next, mut versions) = self.decode_meta(&bytes);
            if let Some(v) = versions.get_mut(seg as usize) {
                // 0 means "never written": a wrapped version skips it.
                *v = v.wrapping_add(1).max(1);
            }
            if store
                .set(&meta_key, &Self::encode_meta(next, &versions), cas)
                .is_ok()
            {
                return true;
            }
        }
        false
    }

    /// The nearest unexpired neighbour of `vector` (normalised) in `partition`.
    pub fn nearest(
        &mut self,
        store: &dyn Store,
        partition: &Key,
        vector: &[f32],
        now_ms: u64,
    ) -> Option<Neighbour> {
        let (bytes, _) = store.get(&self.meta_key()).unwrap_or_default();
        let (_, versions) = self.decode_meta(&bytes);
        for (s, version) in versions.iter().enumerate() {
            let fresh = matches!(self.mirror.get(s), Some(Some((v, _))) if v == version);
            if !fresh && *version != 0 {
                let (seg, _) = store.get(&self.segment_key(s as u32)).unwrap_or_default();
                if let Some(m) = self.mirror.get_mut(s) {
                    *m = Some((*version, decode_segment(&seg)));
                }
            }
        }
        let mut best: Option<Neighbour> = None;
        for (_, entries) in self.mirror.iter().flatten() {
            for e in entries.iter().flatten() {
                if &e.partition != partition
                    || e.expires_ms <= now_ms
                    || e.vector.len() != vector.len()
                {
                    continue;
                }
                let similarity = dot(&e.vector, vector);
                if best.is_none_or(|b| similarity > b.similarity) {
                    best = Some(Neighbour {
                        key: e.key,
                        similarity,
                    });
                }
            }
        }
        best
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_sums(a, b)
}

/// In the filter the vector search is compiled with wasm SIMD (128-bit lanes): about 2× faster
/// in V8 at 10,000 vectors (`make bench`). Only this function: the rest of the module is built
/// without SIMD.
#[cfg(target_arch = "wasm32")]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[target_feature(enable = "simd128")]
    unsafe fn simd(a: &[f32], b: &[f32]) -> f32 {
        dot_sums(a, b)
    }
    // SAFETY: nothing here depends on the feature at run time: a module with SIMD instructions
    // is refused whole by an engine without them, at load time (V8, which Envoy uses, and
    // Wasmtime have them).
    unsafe { simd(a, b) }
}

/// Dot product with eight independent sums, so the compiler can keep several multiply-adds in
/// flight (and vectorise them); a single running sum would wait on each addition.
#[inline(always)]
fn dot_sums(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    acc.iter().sum::<f32>() + tail
}
