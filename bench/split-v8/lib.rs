//! The pre-tokenizers and the counter alone in a wasm module, for bench/split-v8/run.sh to time
//! in V8. Not part of the build: rustc compiles it directly, with the tables of a release build.

#![allow(dead_code)]

// `bpe` reaches `Encoding` and `rank_hash` through `super`: the crate root stands in for
// `src/tokens.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    O200kBase,
    Cl100kBase,
}

#[path = "../../src/tokens/bpe.rs"]
mod bpe;
#[path = "../../src/tokens/rank_hash.rs"]
mod rank_hash;
#[path = "../../src/tokens/split.rs"]
mod split;

static mut BUF: [u8; 1 << 20] = [0; 1 << 20];

#[no_mangle]
pub extern "C" fn buf() -> *mut u8 {
    core::ptr::addr_of_mut!(BUF) as *mut u8
}

fn text(len: usize) -> Option<&'static str> {
    let bytes = unsafe { core::slice::from_raw_parts(core::ptr::addr_of!(BUF) as *const u8, len) };
    core::str::from_utf8(bytes).ok()
}

/// Pieces of the text in the buffer (`enc` 0: o200k_base, 1: cl100k_base).
#[no_mangle]
pub extern "C" fn pieces(enc: u32, len: usize) -> usize {
    let Some(text) = text(len) else { return usize::MAX };
    if enc == 0 { split::o200k(text).count() } else { split::cl100k(text).count() }
}

/// Tokens of the text in the buffer.
#[no_mangle]
pub extern "C" fn count(enc: u32, len: usize) -> usize {
    let Some(text) = text(len) else { return usize::MAX };
    let piece = |e| move |p: &str| bpe::count_piece(e, p.as_bytes());
    if enc == 0 {
        split::o200k(text).map(piece(Encoding::O200kBase)).sum()
    } else {
        split::cl100k(text).map(piece(Encoding::Cl100kBase)).sum()
    }
}
