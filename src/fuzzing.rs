//! The bodies of the fuzz targets (`fuzz/`, cargo-fuzz and libFuzzer on nightly), here so the
//! stable test suite can replay every input the fuzzers ever crashed on
//! (`fuzz/regressions/<target>/`, run by `tests/fuzz_replay.rs`).
//!
//! Each target takes bytes from the wire, from shared data or from the configuration and runs
//! them through the parsers and decoders the filter uses on them. A target must never panic:
//! any panic is a finding (so the few properties checked here are assertions, which panic when
//! they do not hold). Inputs that need more than one value (a body and the sizes of the chunks it arrives
//! in, a sequence of operations on shared data) are read from the front of the input with
//! [`Input`]; what is left is the body.
//!
//! The targets are grouped by where their bytes come from, one module each: request bodies
//! (`requests`), providers' answers (`responses`, `anthropic`), the configuration
//! (`configuration`), other services (`services`) and shared data (`shared_data`).

use crate::tokens::Encoding;

mod anthropic;
mod configuration;
mod requests;
mod responses;
mod services;
mod shared_data;

pub use anthropic::{anthropic_request, anthropic_reverse, anthropic_translation};
pub use configuration::config;
pub use requests::{cache_keys, request, split};
pub use responses::{completion, meter, sse};
pub use services::{chroma, failover, rls};
pub use shared_data::{cache_store, limits_store};

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/fuzz_targets/<name>.rs` calls it and the replay test finds
/// its regressions under `fuzz/regressions/<name>/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("request", request),
    ("cache_keys", cache_keys),
    ("sse", sse),
    ("meter", meter),
    ("anthropic_request", anthropic_request),
    ("anthropic_translation", anthropic_translation),
    ("anthropic_reverse", anthropic_reverse),
    ("completion", completion),
    ("config", config),
    ("chroma", chroma),
    ("rls", rls),
    ("failover", failover),
    ("cache_store", cache_store),
    ("limits_store", limits_store),
    ("split", split),
];

/// Reads structured values from the front of a fuzz input; past its end, zeros.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }

    /// A number that is often a boundary (0, 1, small, the type's maximum) and otherwise any.
    pub fn number(&mut self) -> u64 {
        match self.byte() % 8 {
            0 => 0,
            1 => 1,
            2 => u64::from(self.byte()),
            3 => u64::from(self.u16()),
            4 => u64::MAX,
            5 => u64::MAX - u64::from(self.byte()),
            6 => u64::from(u32::MAX),
            _ => self.u64(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// `body` cut into consecutive pieces whose lengths come from a generator seeded by `seed`
/// (1 to `max` bytes each; some pieces are empty, as a proxy may deliver them).
pub fn chunks(body: &[u8], seed: u64, max: usize) -> Vec<&[u8]> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let n = if rng.u8(..) < 16 {
            0
        } else {
            rng.usize(1..=max.max(1))
        };
        let (head, tail) = rest.split_at(n.min(rest.len()));
        out.push(head);
        rest = tail;
    }
    out
}

fn encoding(b: u8) -> Option<Encoding> {
    match b % 3 {
        0 => None,
        1 => Some(Encoding::O200kBase),
        _ => Some(Encoding::Cl100kBase),
    }
}
