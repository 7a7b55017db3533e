//! The hash of the rank tables, shared by the build script that lays the tables out
//! (`build/ranks.rs`) and the counter that reads them (`src/tokens/bpe.rs`): one source file,
//! included by both, so the two can never disagree.
//!
//! The hash is polynomial over the bytes (each byte plus one, so leading zero bytes count), which
//! makes the hash of a concatenation cheap to get from the hashes of its halves:
//! `H(xy) = H(x)·B^|y| + H(y)` (wrapping). [`finish`] then mixes it into the home slot (top bits).
//!
//! It also fixes the slot format both sides use. A slot is 8 bytes, half what a slot holding a
//! token of up to 12 bytes took: with the longer tokens' bytes, the tables take 4.5 MB where those
//! took 6.4 MB (the data is copied into every VM):
//!
//! - bytes 0..4: a token of up to [`INLINE`] bytes, zero-padded; a longer token's offset (a
//!   little-endian u32) in the table's `bytes`, where its bytes are (a token that begins another
//!   one shares that one's bytes);
//! - bytes 4..8, the meta word (little-endian u32): the rank in bits 0..18, the token's length
//!   minus one in bits 18..25, and in bits 25..32 the slot's distance from the token's home slot
//!   (Robin Hood order: a lookup stops at the first slot nearer its own home than the lookup has
//!   come, since its token would have taken that slot). `EMPTY` is a free slot.

/// The polynomial's base: odd, so multiplying by it is a bijection of `u64`.
pub const BASE: u64 = 0x9e37_79b9_7f4a_7c15;

/// Bytes of a slot.
pub const SLOT_BYTES: usize = 8;
/// Longest token kept whole in its slot.
pub const INLINE: usize = 4;
/// Bits of the meta word holding the rank; both encodings have fewer than 2^18 ranks.
pub const RANK_BITS: u32 = 18;
/// Mask of the rank in the meta word.
pub const RANK_MASK: u32 = (1 << RANK_BITS) - 1;
/// Where the length minus one starts in the meta word (7 bits: tokens of 1..=128 bytes).
pub const LEN_SHIFT: u32 = RANK_BITS;
/// Mask of the length bits in the meta word.
pub const LEN_MASK: u32 = 0x7f << LEN_SHIFT;
/// Where the distance from home starts in the meta word (7 bits).
pub const DISP_SHIFT: u32 = 25;
/// Longest distance from home a slot can record.
#[allow(dead_code)] // the build script's
pub const MAX_DISP: usize = 127;
/// A free slot's meta word (its rank part, 2^18 − 1, is no encoding's rank).
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

/// Mixes a polynomial hash for the table: the home slot is the top bits.
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

/// The meta word of a slot holding `rank`, a token of `len` (1..=128) bytes, `disp` slots past
/// its home.
#[allow(dead_code)] // the build script's
#[inline]
pub fn meta(rank: u32, len: usize, disp: usize) -> u32 {
    rank | ((len as u32).wrapping_sub(1) << LEN_SHIFT) & LEN_MASK | (disp as u32) << DISP_SHIFT
}
