//! The pre-tokenizers alone in a wasm module, for bench/split-v8/run.sh to time in V8.
//! Not part of the build: rustc compiles it directly.

#[path = "../../src/tokens/split.rs"]
#[allow(dead_code)]
mod split;

static mut BUF: [u8; 1 << 20] = [0; 1 << 20];

#[no_mangle]
pub extern "C" fn buf() -> *mut u8 {
    core::ptr::addr_of_mut!(BUF) as *mut u8
}

#[no_mangle]
pub extern "C" fn pieces(enc: u32, len: usize) -> usize {
    let bytes = unsafe { core::slice::from_raw_parts(core::ptr::addr_of!(BUF) as *const u8, len) };
    let Ok(text) = core::str::from_utf8(bytes) else { return usize::MAX };
    if enc == 0 { split::o200k(text).count() } else { split::cl100k(text).count() }
}
