#!/usr/bin/env bash
# limitador 0.13–0.14 does not compile with only its Redis storage: storage/keys.rs calls its
# `bin` key encoding (and a Counter method it uses), both gated on the `disk_storage` (RocksDB)
# feature. Rather than build RocksDB, unpack the published crate and drop those two cfg lines.
# Idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version=0.14.0
dest="$here/target/limitador-$version"
[ -f "$dest/.patched" ] && exit 0
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/src" && touch "$tmp/src/lib.rs"
cat > "$tmp/Cargo.toml" <<TOML
[package]
name = "fetch-limitador"
version = "0.0.0"
edition = "2021"
[dependencies]
limitador = { version = "=$version", default-features = false }
TOML
cargo fetch --quiet --manifest-path "$tmp/Cargo.toml"
crate="$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/limitador-$version.crate | head -n1)"
mkdir -p "$here/target"
rm -rf "$dest"
tar xzf "$crate" -C "$here/target"
python3 - "$dest/src" <<'PY'
import sys
src = sys.argv[1]
# (file, the gated item): the key encoding and the one Counter method it uses.
for rel, item in [("storage/keys.rs", "pub mod bin {"),
                  ("counter.rs", "    pub(crate) fn variables_for_key(")]:
    p = f"{src}/{rel}"
    s = open(p).read()
    gate = ("    " if item.startswith("    ") else "") + '#[cfg(feature = "disk_storage")]\n'
    assert s.count(gate + item) == 1, f"limitador's {rel} changed: revisit prepare-limitador.sh"
    open(p, "w").write(s.replace(gate + item, item))
PY
touch "$dest/.patched"
