//! The hash of the rank tables, shared by the build script that lays the tables out
//! (`build/ranks.rs`) and the counter that reads them (`src/tokens/bpe.rs`): one source file,
//! included by both, so the two can never disagree.
//!
//! The hash is polynomial over the bytes (each byte plus one, so leading zero bytes count), which
//! makes the hash of a concatenation cheap to get from the hashes of its halves:
//! `H(xy) = H(x)·B^|y| + H(y)` (wrapping). [`finish`] then mixes it into the slot index (top bits)
//! and the tag kept beside the rank in the slot (low bits).

/// The polynomial's base: odd, so multiplying by it is a bijection of `u64`.
pub const BASE: u64 = 0x9e37_79b9_7f4a_7c15;

/// Bits of a slot holding the rank; both encodings have fewer than 2^18 ranks.
pub const RANK_BITS: u32 = 18;
/// Mask of the rank in a slot.
pub const RANK_MASK: u32 = (1 << RANK_BITS) - 1;
/// Mask of the tag (the slot's other 14 bits) within a finished hash.
pub const TAG_MASK: u32 = u32::MAX >> RANK_BITS;
/// An empty slot (its rank part, 2^18 − 1, is no encoding's rank).
pub const EMPTY: u32 = u32::MAX;

/// Longest suffix `concat` takes `BASE^len` of from [`POW`]: a token has at most 128 bytes.
pub const MAX_POW: usize = 256;

/// `POW[k] = BASE^k` (wrapping). Evaluated at compile time: an out-of-bounds index here would be a
/// build error, never a run-time panic.
#[allow(clippy::indexing_slicing)]
pub const POW: [u64; MAX_POW + 1] = {
    let mut p = [1u64; MAX_POW + 1];
    let mut k = 1;
    while k <= MAX_POW {
        p[k] = p[k - 1].wrapping_mul(BASE);
        k += 1;
    }
    p
};

/// The polynomial hash of `bytes`.
#[inline]
pub fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |h, &b| {
        h.wrapping_mul(BASE).wrapping_add(u64::from(b) + 1)
    })
}

/// The hash of `x` followed by `y`, from `hash(x)`, `hash(y)` and `y.len()`.
#[inline]
pub fn concat(hx: u64, hy: u64, len_y: usize) -> u64 {
    let pow = match POW.get(len_y) {
        Some(&p) => p,
        None => (0..len_y).fold(1u64, |p, _| p.wrapping_mul(BASE)),
    };
    hx.wrapping_mul(pow).wrapping_add(hy)
}

/// Mixes a polynomial hash for the table: the slot index is the top bits, the tag the low bits.
#[inline]
pub fn finish(h: u64) -> u64 {
    let h = (h ^ (h >> 32)).wrapping_mul(0xd6e8_feb8_6659_fd93);
    h ^ (h >> 32)
}

/// The home slot of finished hash `f` in a table of `2^(64 - shift)` slots.
#[inline]
pub fn home(f: u64, shift: u32) -> usize {
    (f >> shift) as usize
}

/// The tag of finished hash `f`.
#[inline]
pub fn tag(f: u64) -> u32 {
    (f as u32) & TAG_MASK
}
