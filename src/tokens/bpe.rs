//! Count-only byte pair encoding over rank tables compiled into the module.
//!
//! The tables (laid out at build time by `build/ranks.rs` from the ranks tiktoken-rs ships) are
//! static data: an open-addressing hash table of 8-byte slots in Robin Hood order, each holding
//! a rank with its token's length and either the token (up to 4 bytes) or where its bytes are in
//! the table's `bytes` (the format is in `rank_hash.rs`). Looking a byte string up hashes it,
//! probes from its home slot and compares the bytes only where the length matches: a token found
//! near its home costs a cache line or two. The tables are small because every VM gets its own
//! copy of them (2 MB and 1 MB of slots, and the long tokens' bytes). There is nothing to build
//! when a VM starts.
//!
//! [`count_piece`] counts the tokens tiktoken gives one pre-tokenized piece, following tiktoken's
//! rules exactly: a piece that is itself a token is one token; otherwise, starting from single
//! bytes, the adjacent pair of parts whose concatenation has the lowest rank is merged, the
//! leftmost on ties, until no adjacent pair is a token. It counts the parts left without building
//! the tokens. Short pieces (the common case) merge in stack arrays, rescanning for the lowest pair
//! as tiktoken does; longer ones use a heap of candidate pairs with lazy invalidation, ordered by
//! (rank, position) — the same choice at every step, so the same result, in O(n log n); pieces of
//! [`LARGE`] bytes or more (a long text without whitespace) take the same merges in the same
//! order from one bucket of positions per rank, without the heap's cache misses.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::rank_hash::{
    self, DISP_SHIFT, EMPTY, INLINE, LEN_MASK, LEN_SHIFT, RANK_MASK, SLOT_BYTES,
};
use super::Encoding;

/// No rank: the pair is not a token (or there is no pair).
const NONE: u32 = u32::MAX;

/// Pieces up to this many bytes merge in stack arrays; longer ones through the heap.
pub(crate) const SMALL: usize = 128;

/// Pieces of at least this many bytes merge through buckets of ranks ([`Table::merge_buckets`]):
/// its index of buckets by rank (4 bytes per rank) is then small beside the piece's own arrays.
pub(crate) const LARGE: usize = 64 << 10;

/// One encoding's rank table (see the module documentation and `build/ranks.rs`).
pub(crate) struct Table {
    /// The slots, `SLOT_BYTES` each, a power of two of them, starting on a cache line.
    slots: &'static [u8],
    /// The bytes of the tokens longer than `INLINE`.
    bytes: &'static [u8],
    /// `64 - log2(slots)`: the home slot is the finished hash's top bits.
    shift: u32,
    /// Number of (ordinary) ranks: `0..ranks`.
    ranks: usize,
    /// Longest token, in bytes.
    max_len: usize,
    /// Longest distance of a token's slot from its home slot, which bounds every probe.
    max_probe: usize,
}

/// Static data that starts on a cache line (the slots, so that none straddles two).
#[repr(C, align(64))]
struct Aligned<T: ?Sized>(T);

include!(concat!(env!("OUT_DIR"), "/ranks.rs"));

/// Up to 8 bytes as a little-endian integer, zero-padded.
#[inline(always)]
fn word(bytes: &[u8]) -> u64 {
    match bytes.first_chunk::<8>() {
        Some(w) => u64::from_le_bytes(*w),
        None => bytes.iter().rev().fold(0u64, |w, &b| w << 8 | u64::from(b)),
    }
}

/// Slot `i` as one little-endian word: the token or its offset below, the meta word on top.
#[inline(always)]
fn slot_word(slots: &[u8], i: usize) -> Option<u64> {
    let at = i.wrapping_mul(SLOT_BYTES);
    let w = slots.get(at..)?.first_chunk::<SLOT_BYTES>()?;
    Some(u64::from_le_bytes(*w))
}

impl Table {
    pub(crate) fn of(enc: Encoding) -> &'static Table {
        match enc {
            Encoding::O200kBase => &O200K_BASE,
            Encoding::Cl100kBase => &CL100K_BASE,
        }
    }

    /// Number of ordinary ranks (`0..ranks`).
    pub(crate) fn ranks(&self) -> usize {
        self.ranks
    }

    /// Bytes of the data this table adds to the module.
    pub(crate) fn data_bytes(&self) -> usize {
        self.slots.len() + self.bytes.len()
    }

    /// The rank of `bytes`, if they are a token.
    #[inline]
    pub(crate) fn rank(&self, bytes: &[u8]) -> Option<u32> {
        if bytes.len() > self.max_len {
            return None;
        }
        self.find(bytes, rank_hash::hash(bytes))
    }

    /// The rank of `bytes`, whose hash is `h`, if they are a token.
    #[inline]
    fn find(&self, bytes: &[u8], h: u64) -> Option<u32> {
        let n = bytes.len();
        if n == 0 || n > self.max_len {
            return None;
        }
        let len_bits = ((n as u32) - 1) << LEN_SHIFT;
        // A short token's bytes as its slot holds them.
        let inline = if n <= INLINE { word(bytes) } else { 0 };
        let mask = (self.slots.len() / SLOT_BYTES).wrapping_sub(1);
        let mut i = rank_hash::home(rank_hash::finish(h), self.shift);
        // Every token sits at most `max_probe` slots past its home: no need to look further.
        for dist in 0..=self.max_probe as u32 {
            let w = slot_word(self.slots, i)?;
            let meta = (w >> 32) as u32;
            // Robin Hood order: a slot nearer its home than `dist` would have been `bytes`'.
            if meta == EMPTY || meta >> DISP_SHIFT < dist {
                return None;
            }
            if meta & LEN_MASK == len_bits {
                let data = w as u32;
                let found = if n <= INLINE {
                    u64::from(data) == inline
                } else {
                    let at = data as usize;
                    self.bytes.get(at..at.wrapping_add(n)) == Some(bytes)
                };
                if found {
                    return Some(meta & RANK_MASK);
                }
            }
            i = (i + 1) & mask;
        }
        None
    }

    /// Tokens tiktoken gives `piece` (one pre-tokenized piece).
    pub(crate) fn count(&self, piece: &[u8]) -> usize {
        match piece.len() {
            0 => 0,
            // Every single byte is a token.
            1 => 1,
            _ if self.rank(piece).is_some() => 1,
            n if n <= SMALL => self.merge_small(piece),
            n if n < LARGE => self.merge_large(piece),
            _ => self.merge_buckets(piece),
        }
    }

    /// Parts left by merging `piece` (2..=SMALL bytes), in stack arrays: tiktoken's own loop.
    pub(crate) fn merge_small(&self, piece: &[u8]) -> usize {
        let n = piece.len();
        if n < 2 {
            return n;
        }
        if n > SMALL {
            return self.merge_large(piece);
        }
        // Part k is piece[start[k]..start[k + 1]], with hash hash[k]; rank[k] is the rank of
        // parts k and k + 1 together (NONE for the last part). `parts` parts are live.
        let mut start = [0u32; SMALL + 1];
        let mut hash = [0u64; SMALL];
        let mut rank = [NONE; SMALL];
        for (k, s) in start.iter_mut().enumerate().take(n + 1) {
            *s = k as u32;
        }
        for (h, &b) in hash.iter_mut().zip(piece) {
            *h = rank_hash::hash(&[b]);
        }
        let mut parts = n;
        for k in 0..n - 1 {
            set(&mut rank, k, self.pair_small(piece, &start, &hash, k));
        }
        loop {
            let mut best = NONE;
            let mut at = 0;
            for (k, &r) in rank.iter().enumerate().take(parts - 1) {
                if r < best {
                    best = r;
                    at = k;
                }
            }
            if best == NONE {
                return parts;
            }
            // Merge parts `at` and `at + 1`.
            let len_right = get(&start, at + 2).wrapping_sub(get(&start, at + 1)) as usize;
            let merged = rank_hash::concat(get(&hash, at), get(&hash, at + 1), len_right);
            set(&mut hash, at, merged);
            start.copy_within(at + 2..parts + 1, at + 1);
            hash.copy_within(at + 2..parts, at + 1);
            rank.copy_within(at + 2..parts, at + 1);
            parts -= 1;
            let right = if at + 1 < parts {
                self.pair_small(piece, &start, &hash, at)
            } else {
                NONE
            };
            set(&mut rank, at, right);
            if at > 0 {
                set(
                    &mut rank,
                    at - 1,
                    self.pair_small(piece, &start, &hash, at - 1),
                );
            }
        }
    }

    /// The rank of parts `k` and `k + 1` together, in `merge_small`'s arrays.
    #[inline(always)]
    fn pair_small(&self, piece: &[u8], start: &[u32], hash: &[u64], k: usize) -> u32 {
        let (a, b, c) = (get(start, k), get(start, k + 1), get(start, k + 2));
        if (c.wrapping_sub(a)) as usize > self.max_len {
            return NONE;
        }
        let h = rank_hash::concat(get(hash, k), get(hash, k + 1), c.wrapping_sub(b) as usize);
        match piece.get(a as usize..c as usize) {
            Some(bytes) => self.find(bytes, h).unwrap_or(NONE),
            None => NONE,
        }
    }

    /// Parts left by merging `piece`, with a heap of candidate pairs: O(n log n) for any length.
    ///
    /// Position `i` of the piece, while it starts a part, knows where the part ends (`end[i]`),
    /// where the part before starts (`prev[i]`) and the rank of the part joined with the next one
    /// (`rank[i]`). The heap holds (rank, start) of candidate pairs, lowest rank and then leftmost
    /// first; a candidate whose start no longer starts a part, or whose pair has changed since,
    /// no longer has its rank in `rank[start]` (a longer pair is other bytes, so another rank)
    /// and is skipped when it comes off the heap.
    pub(crate) fn merge_large(&self, piece: &[u8]) -> usize {
        let n = piece.len();
        if n < 2 {
            return n;
        }
        let Ok(n32) = u32::try_from(n) else {
            // Pieces are far smaller than 4 GiB (the whole body is); count as bytes, an upper bound.
            return n;
        };
        let mut end: Vec<u32> = (1..=n32).collect();
        let mut prev: Vec<u32> = (0..n32).map(|i| i.wrapping_sub(1)).collect();
        let mut rank: Vec<u32> = vec![NONE; n];
        let mut heap = Vec::with_capacity(n);
        for (i, (pair, r)) in piece.windows(2).zip(rank.iter_mut()).enumerate() {
            if let Some(found) = self.rank(pair) {
                *r = found;
                heap.push(Reverse(key(found, i as u32)));
            }
        }
        let mut heap = BinaryHeap::from(heap);
        let mut parts = n;
        while let Some(Reverse(k)) = heap.pop() {
            let (r, left) = ((k >> 32) as u32, k as u32);
            if get(&rank, left as usize) != r {
                continue;
            }
            // Merge the part at `left` with the next one, at `right`.
            let right = get(&end, left as usize);
            let right_end = get(&end, right as usize);
            set(&mut end, left as usize, right_end);
            set(&mut rank, right as usize, NONE);
            parts -= 1;
            let next = if right_end < n32 {
                set(&mut prev, right_end as usize, left);
                self.pair_large(piece, left, get(&end, right_end as usize))
            } else {
                NONE
            };
            set(&mut rank, left as usize, next);
            if next != NONE {
                heap.push(Reverse(key(next, left)));
            }
            if left > 0 {
                let before = get(&prev, left as usize);
                let joined = self.pair_large(piece, before, right_end);
                set(&mut rank, before as usize, joined);
                if joined != NONE {
                    heap.push(Reverse(key(joined, before)));
                }
            }
        }
        parts
    }

    /// Parts left by merging `piece`, the pairs kept in one bucket per rank: the same merges in
    /// the same order as [`Table::merge_large`] (lowest rank first, then leftmost), without a
    /// heap of candidates. Meant for long pieces (a megabyte with no whitespace), where a heap of
    /// a million candidates spends most of the time on cache misses.
    ///
    /// Position `i`, while it starts a part, has `end`, `prev` and `rank` as in `merge_large`, and
    /// the part's own token in `tok`. A pair that gets a rank appends its position to that rank's
    /// bucket, a plain array; a position a merge takes out (it joined a part on its left, or its
    /// pair grew) stays there and is skipped, its `rank` no longer the bucket's. A position enters
    /// a bucket at most once: its pair only ever grows, and longer bytes are another token. The
    /// ranks whose buckets hold positions wait on a heap, lowest first. A bucket is taken whole,
    /// sorted and merged left to right; a merge's pairs are longer than the merged token, so other
    /// ranks, and the bucket gains nothing meanwhile. They mostly have higher ranks (BPE learns a
    /// token after its parts); one with a lower rank stops the bucket: the rest of it goes back
    /// and waits behind the lower one, so the order is exactly the heap merge's.
    ///
    /// An earlier version kept each bucket as a linked list through the positions: walking one
    /// (a dependent load per position) and unlinking (three positions touched per change) were
    /// most of its time.
    pub(crate) fn merge_buckets(&self, piece: &[u8]) -> usize {
        self.merge_buckets_stopping(piece).0
    }

    /// [`Table::merge_buckets`], with how often a lower rank stopped a bucket.
    ///
    /// Never inlined: folded into `count` and the split loop around it, this made one function
    /// so large that Envoy's V8 ran it 3× slower than alone (330 against 90 ms for bench.py's
    /// 1 MB one-piece prompt).
    #[inline(never)]
    fn merge_buckets_stopping(&self, piece: &[u8]) -> (usize, usize) {
        let n = piece.len();
        if n < 2 {
            return (n, 0);
        }
        let Ok(n32) = u32::try_from(n) else {
            return (n, 0);
        };
        // Every single byte is a token (in tiktoken's encodings; a byte that were not would only
        // go without the memo).
        let mut byte_rank = [NONE; 256];
        for (b, r) in (0..=255u8).zip(byte_rank.iter_mut()) {
            *r = self.rank(&[b]).unwrap_or(NONE);
        }
        let mut b = Buckets {
            node: (0..n32)
                .zip(piece)
                .map(|(i, &byte)| Node {
                    end: i + 1,
                    prev: i.wrapping_sub(1),
                    tok: get(&byte_rank, byte as usize),
                    rank: NONE,
                })
                .collect(),
            bucket_of: vec![NONE; self.ranks],
            buckets: Vec::new(),
            ready: BinaryHeap::new(),
        };
        let mut memo = PairMemo::new();
        for i in 0..n32 - 1 {
            let r = self.pair_memo(&mut memo, piece, &b, i, i + 1, i + 2);
            b.set(i, r);
        }
        let mut todo: Vec<u32> = Vec::new();
        let mut parts = n;
        let mut stops = 0;
        while let Some(Reverse(r)) = b.ready.pop() {
            b.take(r, &mut todo);
            todo.sort_unstable();
            let mut k = 0;
            while let Some(&left) = todo.get(k) {
                k += 1;
                let l = b.get(left);
                if l.rank != r {
                    continue;
                }
                // Merge the part at `left` with the next one, at `right`.
                let right = l.end;
                let right_end = b.get(right).end;
                b.set(right, NONE);
                parts -= 1;
                if let Some(x) = b.node.get_mut(left as usize) {
                    x.end = right_end;
                    x.tok = r;
                }
                let after = if right_end < n32 {
                    if let Some(x) = b.node.get_mut(right_end as usize) {
                        x.prev = left;
                    }
                    let after_end = b.get(right_end).end;
                    self.pair_memo(&mut memo, piece, &b, left, right_end, after_end)
                } else {
                    NONE
                };
                b.set(left, after);
                let before = if left > 0 {
                    let before = l.prev;
                    let joined = self.pair_memo(&mut memo, piece, &b, before, left, right_end);
                    b.set(before, joined);
                    joined
                } else {
                    NONE
                };
                if after < r || before < r {
                    // The rest of this bucket waits for the lower one.
                    stops += 1;
                    b.put_back(r, todo.get(k..).unwrap_or_default());
                    break;
                }
            }
        }
        (parts, stops)
    }

    /// The rank of parts `a` (`piece[a..b]`) and `b` (`piece[b..c]`) together, or NONE: the
    /// parts' tokens decide it, so `memo` keeps it by their ranks.
    #[inline(always)]
    fn pair_memo(
        &self,
        memo: &mut PairMemo,
        piece: &[u8],
        nodes: &Buckets,
        a: u32,
        b: u32,
        c: u32,
    ) -> u32 {
        if (c.wrapping_sub(a)) as usize > self.max_len {
            return NONE;
        }
        let (ta, tb) = (nodes.get(a).tok, nodes.get(b).tok);
        let key = PairMemo::key(ta, tb);
        if let Some(r) = key.and_then(|k| memo.get(k)) {
            return r;
        }
        let r = self.pair_large(piece, a, c);
        if let Some(k) = key {
            memo.put(k, r);
        }
        r
    }

    /// The rank of `piece[a..c]`, or NONE.
    #[inline(always)]
    fn pair_large(&self, piece: &[u8], a: u32, c: u32) -> u32 {
        match piece.get(a as usize..c as usize) {
            Some(bytes) => self.rank(bytes).unwrap_or(NONE),
            None => NONE,
        }
    }
}

/// Position `i` of a piece in [`Table::merge_buckets`], while it starts a part: where the part
/// ends, where the part before starts, the part's own token (its rank) and the rank of the part
/// joined with the next one (NONE: no token, or no next part). One array of these, so that a
/// merge finds each position's fields in one place.
#[derive(Clone, Copy)]
struct Node {
    end: u32,
    prev: u32,
    tok: u32,
    rank: u32,
}

/// [`Table::merge_buckets`]' positions and buckets: for each rank, where its bucket is in
/// `buckets` (NONE: it has none yet), and the ranks whose buckets hold positions, lowest first.
struct Buckets {
    node: Vec<Node>,
    bucket_of: Vec<u32>,
    buckets: Vec<Vec<u32>>,
    ready: BinaryHeap<Reverse<u32>>,
}

impl Buckets {
    /// Position `i` (one past the end: no part, no pair).
    #[inline(always)]
    fn get(&self, i: u32) -> Node {
        self.node.get(i as usize).copied().unwrap_or(Node {
            end: NONE,
            prev: NONE,
            tok: NONE,
            rank: NONE,
        })
    }

    /// Rank `r`'s bucket, made on first use; None for NONE (or a rank past the table's).
    #[inline(always)]
    fn bucket(&mut self, r: u32) -> Option<&mut Vec<u32>> {
        let at = self.bucket_of.get_mut(r as usize)?;
        if *at == NONE {
            *at = self.buckets.len() as u32;
            self.buckets.push(Vec::new());
        }
        self.buckets.get_mut(*at as usize)
    }

    /// Gives the pair at `i` rank `r` (NONE: no pair), adding `i` to `r`'s bucket.
    #[inline(always)]
    fn set(&mut self, i: u32, r: u32) {
        match self.node.get_mut(i as usize) {
            Some(x) if x.rank != r => x.rank = r,
            _ => return,
        }
        if let Some(bucket) = self.bucket(r) {
            bucket.push(i);
            if bucket.len() == 1 {
                self.ready.push(Reverse(r));
            }
        }
    }

    /// Empties rank `r`'s bucket into `into` (whose old contents and buffer go, so that emptied
    /// buckets hold no memory).
    #[inline(always)]
    fn take(&mut self, r: u32, into: &mut Vec<u32>) {
        if let Some(bucket) = self.bucket(r) {
            *into = std::mem::take(bucket);
        }
    }

    /// Puts `rest`, taken from rank `r`'s bucket, back for later.
    #[inline(always)]
    fn put_back(&mut self, r: u32, rest: &[u32]) {
        if rest.is_empty() {
            return;
        }
        if let Some(bucket) = self.bucket(r) {
            let was_empty = bucket.is_empty();
            bucket.extend_from_slice(rest);
            if was_empty {
                self.ready.push(Reverse(r));
            }
        }
    }
}

/// The ranks of pairs of tokens [`Table::merge_buckets`] has looked up: two tokens side by side
/// always join into the same bytes, so the same rank (or none). A direct-mapped cache of
/// `2^MEMO_BITS` words, each the pair's two ranks (18 bits each) above the rank they join into
/// (19 bits, NONE as all ones); a long piece repeats its pairs (a megabyte of one pattern looks
/// up a handful), and a word that holds another pair is a miss, never a wrong rank.
struct PairMemo {
    words: Vec<u64>,
}

const MEMO_BITS: u32 = 14;
const MEMO_EMPTY: u64 = u64::MAX;
const MEMO_NONE: u64 = (1 << 19) - 1;

impl PairMemo {
    fn new() -> PairMemo {
        PairMemo {
            words: vec![MEMO_EMPTY; 1 << MEMO_BITS],
        }
    }

    /// The key of tokens `a` and `b` side by side; None if either is not a rank of 18 bits.
    #[inline(always)]
    fn key(a: u32, b: u32) -> Option<u64> {
        (a < RANK_MASK && b < RANK_MASK).then(|| u64::from(a) << 18 | u64::from(b))
    }

    #[inline(always)]
    fn slot(key: u64) -> usize {
        (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - MEMO_BITS)) as usize
    }

    /// The rank tokens `key` join into (NONE: none), if the memo has it.
    #[inline(always)]
    fn get(&self, key: u64) -> Option<u32> {
        let w = self.words.get(Self::slot(key)).copied()?;
        if w == MEMO_EMPTY || w >> 19 != key {
            return None;
        }
        Some(match w & MEMO_NONE {
            MEMO_NONE => NONE,
            r => r as u32,
        })
    }

    #[inline(always)]
    fn put(&mut self, key: u64, rank: u32) {
        let r = if rank == NONE {
            MEMO_NONE
        } else {
            u64::from(rank)
        };
        set(&mut self.words, Self::slot(key), key << 19 | r);
    }
}

/// A heap key: lower rank first, then lower start.
#[inline(always)]
fn key(rank: u32, start: u32) -> u64 {
    u64::from(rank) << 32 | u64::from(start)
}

#[inline(always)]
fn get<T: Copy + Default>(a: &[T], i: usize) -> T {
    a.get(i).copied().unwrap_or_default()
}

#[inline(always)]
fn set<T>(a: &mut [T], i: usize, v: T) {
    if let Some(x) = a.get_mut(i) {
        *x = v;
    }
}

/// Tokens `enc` gives one pre-tokenized piece (ordinary text), as tiktoken counts them.
pub fn count_piece(enc: Encoding, piece: &[u8]) -> usize {
    Table::of(enc).count(piece)
}

/// Bytes of rank data compiled into the module for `enc`.
pub fn data_bytes(enc: Encoding) -> usize {
    Table::of(enc).data_bytes()
}

/// The rank of `bytes` in `enc`, if they are an (ordinary) token.
pub fn rank(enc: Encoding, bytes: &[u8]) -> Option<u32> {
    Table::of(enc).rank(bytes)
}

/// Number of ordinary ranks of `enc`.
pub fn ranks(enc: Encoding) -> usize {
    Table::of(enc).ranks()
}

/// The build script's layout, for the tests' tables of made-up vocabularies (it brings its own
/// copy of `rank_hash`, the same file).
#[cfg(test)]
#[path = "../../build/ranks.rs"]
#[allow(dead_code, clippy::duplicate_mod)]
mod layout;

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use fancy_regex::Regex;
    use proptest::prelude::*;
    use tiktoken_rs::CoreBPE;

    use super::*;

    const BOTH: [Encoding; 2] = [Encoding::O200kBase, Encoding::Cl100kBase];

    /// cl100k_base's pattern, as `tiktoken_rs::cl100k_base()` (0.12.1) passes it to `CoreBPE::new`
    /// (the crate exports only o200k_base's as a constant).
    const CL100K_BASE_PAT_STR: &str = "'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}++|\\p{N}{1,3}+| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*+|\\s++$|\\s*[\\r\\n]|\\s+(?!\\S)|\\s";

    fn bpe(enc: Encoding) -> &'static CoreBPE {
        match enc {
            Encoding::O200kBase => tiktoken_rs::o200k_base_singleton(),
            Encoding::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
        }
    }

    /// tiktoken's pre-tokenizer (the real one is `split.rs`; here the regex keeps this test to
    /// the ranks and the merge).
    fn regex(enc: Encoding) -> &'static Regex {
        static O200K: OnceLock<Regex> = OnceLock::new();
        static CL100K: OnceLock<Regex> = OnceLock::new();
        let (cell, pat) = match enc {
            Encoding::O200kBase => (&O200K, tiktoken_rs::O200K_BASE_PAT_STR),
            Encoding::Cl100kBase => (&CL100K, CL100K_BASE_PAT_STR),
        };
        cell.get_or_init(|| Regex::new(pat).unwrap())
    }

    /// tiktoken's ranks as the map its `byte_pair_split` (its own merge) takes.
    fn ranks_map(enc: Encoding) -> &'static rustc_hash::FxHashMap<Vec<u8>, u32> {
        static O200K: OnceLock<rustc_hash::FxHashMap<Vec<u8>, u32>> = OnceLock::new();
        static CL100K: OnceLock<rustc_hash::FxHashMap<Vec<u8>, u32>> = OnceLock::new();
        let cell = match enc {
            Encoding::O200kBase => &O200K,
            Encoding::Cl100kBase => &CL100K,
        };
        cell.get_or_init(|| {
            (0..ranks(enc) as u32)
                .map(|r| (bpe(enc).decode_bytes(&[r]).unwrap(), r))
                .collect()
        })
    }

    fn count_text(enc: Encoding, text: &str) -> usize {
        regex(enc)
            .find_iter(text)
            .map(|m| count_piece(enc, m.unwrap().as_str().as_bytes()))
            .sum()
    }

    fn assert_counts_like_tiktoken(enc: Encoding, text: &str) {
        let want = bpe(enc).encode_ordinary(text).len();
        assert_eq!(bpe(enc).count_ordinary(text), want);
        let got = count_text(enc, text);
        if got != want {
            // Name the first piece that differs.
            for m in regex(enc).find_iter(text) {
                let piece = m.unwrap().as_str();
                let (ours, theirs) = (
                    count_piece(enc, piece.as_bytes()),
                    bpe(enc).encode_ordinary(piece).len(),
                );
                assert_eq!(ours, theirs, "{}: piece {piece:?}", enc.name());
            }
            panic!(
                "{}: {got} tokens, tiktoken {want}, for {text:?}",
                enc.name()
            );
        }
    }

    #[test]
    fn every_rank_looks_up_to_itself() {
        for enc in BOTH {
            let table = Table::of(enc);
            let bpe = bpe(enc);
            assert!(table.ranks() > 100_000);
            let map = ranks_map(enc);
            assert_eq!(map.len(), table.ranks());
            // No slot straddles two cache lines.
            assert_eq!(table.slots.as_ptr() as usize % 64, 0, "{}", enc.name());
            for r in 0..table.ranks() as u32 {
                let bytes = bpe.decode_bytes(&[r]).unwrap();
                assert_eq!(table.rank(&bytes), Some(r), "{} {r}: {bytes:?}", enc.name());
                // Byte strings one byte off a token (most are not tokens) look up to what
                // tiktoken's own map has: nothing matches on a part of the bytes only.
                let mut near = vec![
                    bytes[..bytes.len() - 1].to_vec(),
                    [&bytes[..], b"e"].concat(),
                ];
                for k in [0, bytes.len() / 2, bytes.len() - 1] {
                    let mut v = bytes.clone();
                    v[k] ^= 0x20;
                    near.push(v);
                }
                for v in near {
                    assert_eq!(table.rank(&v), map.get(&v).copied(), "{} {v:?}", enc.name());
                }
            }
            // Merging a token's bytes reaches the token, for every token of both encodings: the
            // "a piece that is a token is one token" rule is a fast path, never a different count.
            let unreachable: Vec<u32> = (0..table.ranks() as u32)
                .filter(|&r| {
                    let bytes = bpe.decode_bytes(&[r]).unwrap();
                    bytes.len() > 1 && table.merge_large(&bytes) != 1
                })
                .collect();
            assert_eq!(unreachable, Vec::<u32>::new(), "{}", enc.name());
            // The ranks are exactly 0..ranks: the next one is special or nothing.
            let next = table.ranks() as u32;
            assert!(bpe.decode_bytes(&[next]).is_err() || bpe.special_tokens().len() > 1);
        }
    }

    #[test]
    fn non_tokens_do_not_look_up() {
        for enc in BOTH {
            for s in [
                "<|endoftext|>",
                "qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq",
                "hello world, this is not one token",
                "\u{10ffff}\u{10ffff}",
            ] {
                assert!(bpe(enc).encode_ordinary(s).len() > 1);
                assert_eq!(rank(enc, s.as_bytes()), None, "{s:?}");
            }
            assert_eq!(rank(enc, &[b'a'; 129]), None);
            assert_eq!(rank(enc, b""), None);
        }
    }

    #[test]
    fn known_pieces() {
        assert_eq!(rank(Encoding::O200kBase, b"Hello"), Some(13225));
        assert_eq!(rank(Encoding::Cl100kBase, b"Hello"), Some(9906));
        assert_eq!(rank(Encoding::Cl100kBase, b" world"), Some(1917));
        assert_eq!(count_piece(Encoding::Cl100kBase, b"tiktoken"), 3);
        assert_eq!(count_text(Encoding::Cl100kBase, "tiktoken is great!"), 6);
        assert_eq!(count_text(Encoding::O200kBase, "Hello, world!"), 4);
        assert_eq!(count_piece(Encoding::O200kBase, b""), 0);
    }

    #[test]
    fn corpora_count_like_tiktoken() {
        let corpora = [
            include_str!("../../README.md"),
            include_str!("../../bench/prompt.txt"),
            include_str!("../../tests/corpus/multilingual.txt"),
            include_str!("../../k8s/grafana/llm-gateway.json"),
            include_str!("../tokens.rs"),
            include_str!("bpe.rs"),
            include_str!("../../build/ranks.rs"),
            include_str!("../../envoy/gateway.yaml"),
        ];
        for enc in BOTH {
            for text in corpora {
                assert_counts_like_tiktoken(enc, text);
            }
        }
    }

    #[test]
    fn long_runs_count_like_tiktoken() {
        // One piece each (or digits in threes), long enough for the heap merge.
        let runs = [
            "a".repeat(5000),
            "ab".repeat(3000),
            "Supercalifragilistic".repeat(300),
            "中".repeat(3000),
            "的是不了人我在有他这".repeat(300),
            "1234567890".repeat(500),
            "!".repeat(4000),
            "=-".repeat(2000),
            " ".repeat(5000),
            "\n".repeat(3000),
            "é".repeat(2000),
            "e\u{301}".repeat(2000),
            "👍".repeat(1000),
            "ก".repeat(3000),
            "x".repeat(4000) + " tail",
        ];
        for enc in BOTH {
            let table = Table::of(enc);
            for text in &runs {
                assert_counts_like_tiktoken(enc, text);
                // The bucket merge (for pieces from LARGE bytes) on each as one piece, against
                // tiktoken's own merge.
                let theirs = tiktoken_rs::byte_pair_split(text.as_bytes(), ranks_map(enc)).len();
                assert_eq!(
                    table.merge_buckets(text.as_bytes()),
                    theirs,
                    "{}",
                    enc.name()
                );
            }
        }
    }

    /// A table of the 256 single bytes (ranks 0..256) and then `tokens`, laid out as the build
    /// script lays out the real ones, with the map tiktoken's merge takes.
    fn made_up(tokens: &[Vec<u8>]) -> (Table, rustc_hash::FxHashMap<Vec<u8>, u32>) {
        let mut all: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        for t in tokens {
            if !all.contains(t) {
                all.push(t.clone());
            }
        }
        let laid = super::layout::lay_out(&all);
        let table = Table {
            slots: Box::leak(laid.slots.into_boxed_slice()),
            bytes: Box::leak(laid.bytes.into_boxed_slice()),
            shift: laid.shift,
            ranks: laid.ranks,
            max_len: laid.max_len,
            max_probe: laid.max_probe,
        };
        let map = all.into_iter().zip(0..).collect();
        (table, map)
    }

    #[test]
    fn buckets_stop_for_lower_ranks() {
        // "abc" ranks below "bc", and "ab" is no token: in "abc" the merge of "bc" makes the pair
        // "a" + "bc", of a lower rank than the one just merged, and the bucket of "bc" stops for
        // it. The real vocabularies (learned in order) seldom if ever do this; the made-up one
        // takes the merge down that path.
        let (table, map) = made_up(&[b"abc".to_vec(), b"bc".to_vec(), b"abcbc".to_vec()]);
        for piece in [&b"abc"[..], b"abcabc", b"aabcbcbc", b"abcbcabc"] {
            let theirs = tiktoken_rs::byte_pair_split(piece, &map).len();
            let (parts, stops) = table.merge_buckets_stopping(piece);
            assert_eq!(parts, theirs, "{piece:?}");
            assert!(stops > 0, "{piece:?}");
            assert_eq!(table.merge_large(piece), theirs, "{piece:?}");
        }
    }

    /// A made-up vocabulary over a few letters, its tokens in any rank order (so that a merge
    /// often makes a pair of lower rank), and pieces of those letters.
    fn made_up_case() -> impl Strategy<Value = (Vec<Vec<u8>>, Vec<u8>)> {
        let token = prop::collection::vec(prop::sample::select(b"abcd".to_vec()), 2..6);
        (
            prop::collection::vec(token, 1..40),
            prop::collection::vec(prop::sample::select(b"abcd".to_vec()), 2..300),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// The three merges and tiktoken's on made-up vocabularies, where ranks are in no order.
        #[test]
        fn merges_agree_on_made_up_vocabularies((tokens, piece) in made_up_case()) {
            let (table, map) = made_up(&tokens);
            let theirs = tiktoken_rs::byte_pair_split(&piece, &map).len();
            prop_assert_eq!(table.merge_buckets(&piece), theirs, "buckets");
            prop_assert_eq!(table.merge_large(&piece), theirs, "heap");
            if piece.len() <= SMALL {
                prop_assert_eq!(table.merge_small(&piece), theirs, "stack");
            }
        }
    }

    #[test]
    fn pieces_from_large_merge_through_buckets() {
        // As long as the bench's worst cases (1 MB is bench.py's; 200 KB keeps this quick): the
        // bucket merge and the heap merge leave the same parts, and `count` takes the buckets.
        let n = 200 << 10;
        let rep = |unit: &str| unit.repeat(n / unit.len() + 1)[..n].to_string();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let random: String = (0..n / 2)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                char::from(b"aabeeinorstlcdmu"[(seed >> 60) as usize])
            })
            .collect();
        for text in [
            rep("abcdefghij"),
            "中".repeat(n / 3),
            rep("!?.,;:-"),
            random,
        ] {
            for enc in BOTH {
                let table = Table::of(enc);
                let heap = table.merge_large(text.as_bytes());
                assert_eq!(table.merge_buckets(text.as_bytes()), heap, "{}", enc.name());
                assert_eq!(table.count(text.as_bytes()), heap, "{}", enc.name());
                assert!(text.len() >= LARGE);
            }
        }
    }

    fn sel(v: Vec<&'static str>) -> BoxedStrategy<String> {
        prop::sample::select(v).prop_map(String::from).boxed()
    }

    /// Text weighted to where the pre-tokenizer and the merge have corner cases.
    fn text() -> impl Strategy<Value = String> {
        let frag = prop_oneof![
            3 => sel(vec![
                " ", "  ", "   ", "\n", "\n\n", "\r\n", "\r", "\t", " \n", "\u{a0}", "\u{3000}",
                "\u{2028}", "\u{85}", "\u{b}", "\u{c}",
            ]),
            2 => sel(vec![
                "'", "'s", "'S", "'t", "'re", "'RE", "'ve", "'m", "'ll", "'LL", "'d", "'\u{17f}",
                "\u{17f}", "\u{2019}s", "''", "'x",
            ]),
            2 => sel(vec![
                "0", "7", "12", "123", "4567", "٣", "۴", "८", "๓", "½", "²", "Ⅻ", "ⅷ", "1,000.5",
            ]),
            4 => sel(vec![
                "the", "The", "THE", "hello", "World", "a", "I", "don", "can", "HTTPServer",
                "camelCase", "snake_case", "É", "ß", "ǅ", "ǈ", "ʰ", "ꜰ", "ﬁ", "İ", "ı", "Ω",
                "straße", "Привет", "Ελλάδα", "שלום", "مرحبا", "नमस्ते", "ไทย", "Việt",
            ]),
            2 => sel(vec![
                "\u{301}", "e\u{301}", "a\u{308}\u{301}", "\u{20dd}", "\u{94d}", "\u{e31}",
                "\u{64b}", "\u{302}x",
            ]),
            3 => sel(vec![
                "中", "中文", "文字", "日本語", "の", "です", "한국어", "こんにちは世界",
                "人人生而自由", "。", "，", "、", "ア", "ｱ", "ｶﾞ",
            ]),
            2 => sel(vec![
                "👍", "👍🏽", "👨\u{200d}👩\u{200d}👧", "🇫🇷", "🏳\u{fe0f}\u{200d}🌈", "❤\u{fe0f}",
                "\u{200d}", "\u{fe0f}", "😀😀",
            ]),
            3 => sel(vec![
                "!", "?", ".", ",", ";", ":", "-", "_", "(", ")", "[", "]", "{", "}", "<", ">",
                "/", "\\", "\"", "#", "$", "%", "^", "&", "*", "=", "+", "|", "~", "`", "...",
                "->", "::", "//", "/*", "\"\"", "--", "==", "!=", "{\"a\":",
            ]),
            2 => sel(vec![
                "\u{fffd}", "\u{feff}", "\u{10ffff}", "\u{e000}", "\u{200b}", "\u{0}", "\u{7f}",
                "\u{80}", "\u{ad}", "\u{2060}", "\u{fdd0}", "\u{1d400}", "\u{e0041}",
            ]),
            2 => any::<char>().prop_map(String::from).boxed(),
        ];
        prop::collection::vec(frag, 0..60).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn random_text_counts_like_tiktoken(s in text()) {
            for enc in BOTH {
                assert_counts_like_tiktoken(enc, &s);
            }
        }

        #[test]
        fn any_string_counts_like_tiktoken(s in any::<String>()) {
            for enc in BOTH {
                assert_counts_like_tiktoken(enc, &s);
            }
        }
    }

    /// Long pieces: bytes from a small alphabet (many merges), text fragments, any bytes, runs.
    fn long_piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(prop::sample::select(b"aabeinst ".to_vec()), 2..1500),
            prop::collection::vec(text(), 1..40)
                .prop_map(|v| v.concat().into_bytes())
                .prop_filter("two bytes or more", |b| b.len() >= 2),
            prop::collection::vec(any::<u8>(), 2..600),
            (
                prop::sample::select(vec!["中", "a", "1", "!", " ", "é", "ab", "👍"]),
                1..800usize
            )
                .prop_map(|(s, n)| s.repeat(n).into_bytes())
                .prop_filter("two bytes or more", |b| b.len() >= 2),
        ]
    }

    /// Short pieces, where ties between equal pairs (repeats) are common.
    fn short_piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(prop::sample::select(b"aab ".to_vec()), 2..=SMALL),
            (
                prop::sample::select(vec!["a", "1", "!", " ", "é", "ab", "aba", "中"]),
                1..32usize
            )
                .prop_map(|(s, n)| s.repeat(n).into_bytes())
                .prop_filter("2..=SMALL bytes", |b| (2..=SMALL).contains(&b.len())),
            prop::collection::vec(text(), 1..6)
                .prop_map(|v| v.concat().into_bytes())
                .prop_filter("2..=SMALL bytes", |b| (2..=SMALL).contains(&b.len())),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// The heap merge, the stack merge and tiktoken's own merge (`byte_pair_split`, the
        /// quadratic one) leave the same number of parts, for pieces of any length.
        #[test]
        fn heap_merge_is_the_simple_merge(piece in long_piece()) {
            for enc in BOTH {
                let table = Table::of(enc);
                let theirs = tiktoken_rs::byte_pair_split(&piece, ranks_map(enc)).len();
                prop_assert_eq!(table.merge_large(&piece), theirs, "{} heap", enc.name());
                prop_assert_eq!(table.merge_buckets(&piece), theirs, "{} buckets", enc.name());
                if piece.len() <= SMALL {
                    prop_assert_eq!(table.merge_small(&piece), theirs, "{} stack", enc.name());
                }
            }
        }

        /// Both merges against tiktoken's on short pieces.
        #[test]
        fn short_merges_are_tiktokens(piece in short_piece()) {
            for enc in BOTH {
                let table = Table::of(enc);
                let theirs = tiktoken_rs::byte_pair_split(&piece, ranks_map(enc)).len();
                prop_assert_eq!(table.merge_small(&piece), theirs, "{} stack", enc.name());
                prop_assert_eq!(table.merge_large(&piece), theirs, "{} heap", enc.name());
                prop_assert_eq!(table.merge_buckets(&piece), theirs, "{} buckets", enc.name());
            }
        }
    }
}
