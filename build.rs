//! Build-time tables: see build/*.rs.

#[path = "build/unicode.rs"]
mod unicode;

fn main() {
    unicode::generate();
}
