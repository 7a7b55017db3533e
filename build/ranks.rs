//! Build-time rank tables for the count-only BPE (`src/tokens/bpe.rs`): for o200k_base and
//! cl100k_base, the ranks tiktoken-rs ships, read through its public API (`decode_bytes` of every
//! ordinary rank), laid out as static data the module carries with no start-up work:
//!
//! - `NAME.slots`: a power-of-two open-addressing table of 8-byte slots in Robin Hood order,
//!   placed by the shared hash, each holding a rank, its token's length and distance from home,
//!   and the token itself when it is short, else where its bytes are (the format is in
//!   `src/tokens/rank_hash.rs`);
//! - `NAME.bytes`: the bytes of every token longer than a slot holds, a token that begins
//!   another one stored once, as the other's beginning.
//!
//! and `ranks.rs`, the `Table` statics that `include_bytes!` them.

use std::fmt::Write as _;
use std::path::Path;

#[path = "../src/tokens/rank_hash.rs"]
#[allow(dead_code)]
mod rank_hash;

/// Highest load of a slot table: the table has the next power of two of `ranks / MAX_LOAD` slots.
/// At 0.8, 2^18 slots for o200k_base and 2^17 for cl100k_base, loads 0.76: 2 MB and 1 MB. Robin Hood
/// order keeps the probes short at that load, for the tokens found and for the pairs that are
/// not tokens alike.
const MAX_LOAD: f64 = 0.8;

/// One laid-out table (public for `src/tokens/bpe.rs`' tests, which lay out made-up ones).
pub struct Laid {
    pub slots: Vec<u8>,
    pub bytes: Vec<u8>,
    pub shift: u32,
    pub ranks: usize,
    pub max_len: usize,
    pub max_probe: usize,
}

pub fn lay_out(ranks: &[Vec<u8>]) -> Laid {
    use rank_hash::{EMPTY, INLINE, MAX_DISP, SLOT_BYTES};
    assert!(
        ranks.len() < rank_hash::RANK_MASK as usize,
        "too many ranks for an 18-bit rank"
    );
    let mut bits = 1u32;
    while (1usize << bits) as f64 * MAX_LOAD < ranks.len() as f64 {
        bits += 1;
    }
    let shift = 64 - bits;
    let mask = (1usize << bits) - 1;
    // Robin Hood insertion: (rank, distance from its home) per slot.
    let mut table: Vec<Option<(usize, usize)>> = vec![None; 1 << bits];
    for (rank, token) in ranks.iter().enumerate() {
        assert!(
            (1..=128).contains(&token.len()),
            "rank {rank}: {} bytes",
            token.len()
        );
        let mut i = rank_hash::home(rank_hash::finish(rank_hash::hash(token)), shift);
        let (mut cur, mut disp) = (rank, 0usize);
        loop {
            match table[i] {
                None => {
                    table[i] = Some((cur, disp));
                    break;
                }
                Some((other, d)) if d < disp => {
                    table[i] = Some((cur, disp));
                    (cur, disp) = (other, d);
                }
                Some(_) => {}
            }
            i = (i + 1) & mask;
            disp += 1;
        }
    }
    let max_probe = table.iter().flatten().map(|&(_, d)| d).max().unwrap_or(0);
    assert!(max_probe <= MAX_DISP, "a slot {max_probe} past its home");
    // The long tokens' bytes: in descending byte order a token that begins others comes right
    // after the least of them, whose bytes begin with it.
    let mut long: Vec<usize> = (0..ranks.len())
        .filter(|&r| ranks[r].len() > INLINE)
        .collect();
    long.sort_by(|&a, &b| ranks[b].cmp(&ranks[a]));
    let mut bytes = Vec::new();
    let mut offset = vec![0u32; ranks.len()];
    let mut prev: Option<usize> = None;
    for &r in &long {
        let at = match prev {
            Some(p) if ranks[p].starts_with(&ranks[r]) => offset[p],
            _ => {
                let at = bytes.len() as u32;
                bytes.extend_from_slice(&ranks[r]);
                at
            }
        };
        offset[r] = at;
        prev = Some(r);
    }
    let mut slots = Vec::with_capacity(table.len() * SLOT_BYTES);
    for entry in &table {
        let mut slot = [0u8; SLOT_BYTES];
        match *entry {
            None => slot[4..].copy_from_slice(&EMPTY.to_le_bytes()),
            Some((rank, disp)) => {
                let token = &ranks[rank];
                let meta = rank_hash::meta(rank as u32, token.len(), disp);
                assert_ne!(meta, EMPTY);
                slot[4..].copy_from_slice(&meta.to_le_bytes());
                if token.len() <= INLINE {
                    slot[..token.len()].copy_from_slice(token);
                } else {
                    let at = offset[rank] as usize;
                    assert_eq!(&bytes[at..at + token.len()], &token[..]);
                    slot[..4].copy_from_slice(&offset[rank].to_le_bytes());
                }
            }
        }
        slots.extend_from_slice(&slot);
    }
    Laid {
        slots,
        bytes,
        shift,
        ranks: ranks.len(),
        max_len: ranks.iter().map(Vec::len).max().unwrap_or(0),
        max_probe,
    }
}

/// The ordinary tokens of `bpe`, by rank: every rank `decode_bytes` knows that is not a special
/// token, which must be exactly `0..n`.
fn ordinary_ranks(bpe: &tiktoken_rs::CoreBPE) -> Vec<Vec<u8>> {
    let special: std::collections::HashSet<u32> = bpe
        .special_tokens()
        .iter()
        .flat_map(|s| bpe.encode_with_special_tokens(s))
        .collect();
    let mut ranks = Vec::new();
    for rank in 0..=rank_hash::RANK_MASK {
        if special.contains(&rank) {
            continue;
        }
        if let Ok(token) = bpe.decode_bytes(&[rank]) {
            assert_eq!(rank as usize, ranks.len(), "ordinary ranks are not 0..n");
            ranks.push(token);
        }
    }
    ranks
}

pub fn generate(out_dir: &Path) {
    let encodings = [
        ("O200K_BASE", "o200k_base", tiktoken_rs::o200k_base()),
        ("CL100K_BASE", "cl100k_base", tiktoken_rs::cl100k_base()),
    ];
    let mut rust = String::from("// Generated by build/ranks.rs.\n");
    for (stat, name, bpe) in encodings {
        let bpe = bpe.unwrap_or_else(|e| panic!("tiktoken-rs {name}: {e}"));
        let laid = lay_out(&ordinary_ranks(&bpe));
        let mut paths = Vec::new();
        for (ext, data) in [("slots", &laid.slots), ("bytes", &laid.bytes)] {
            let path = out_dir.join(format!("{name}.{ext}"));
            std::fs::write(&path, data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            paths.push(path.display().to_string());
        }
        let _ = write!(
            rust,
            "/// {name}: {ranks} ranks, {s} slots (longest probe {p}), {t} bytes of long tokens.\n\
             pub(super) static {stat}: Table = Table {{\n    \
             slots: &Aligned(*include_bytes!({s_path:?})).0,\n    \
             bytes: include_bytes!({t_path:?}),\n    \
             shift: {shift},\n    ranks: {ranks},\n    max_len: {max_len},\n    max_probe: {p},\n}};\n",
            ranks = laid.ranks,
            s = laid.slots.len() / rank_hash::SLOT_BYTES,
            t = laid.bytes.len(),
            p = laid.max_probe,
            s_path = paths[0],
            t_path = paths[1],
            shift = laid.shift,
            max_len = laid.max_len,
        );
    }
    let path = out_dir.join("ranks.rs");
    std::fs::write(&path, rust).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}
