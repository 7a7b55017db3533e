//! Build-time data: the BPE rank tables (build/ranks.rs).

#[path = "build/ranks.rs"]
mod ranks;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build");
    println!("cargo:rerun-if-changed=src/tokens/rank_hash.rs");
    let out = std::env::var_os("OUT_DIR").unwrap_or_else(|| panic!("OUT_DIR unset"));
    ranks::generate(std::path::Path::new(&out));
}
