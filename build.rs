//! Build-time data: the BPE rank tables (build/ranks.rs) and the pre-tokenizers' Unicode
//! tables (build/unicode.rs).

#[path = "build/ranks.rs"]
mod ranks;
#[path = "build/unicode.rs"]
mod unicode;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build");
    println!("cargo:rerun-if-changed=src/tokens/rank_hash.rs");
    let out = std::env::var_os("OUT_DIR").unwrap_or_else(|| panic!("OUT_DIR unset"));
    ranks::generate(std::path::Path::new(&out));
    unicode::generate();
}
