#!/usr/bin/env bash
# Throughput of the pre-tokenizers (src/tokens/split.rs) in V8 (node), on the files given or on
# the bench prompt and the corpora: a module of the splitters alone, built with the generated
# Unicode tables of a `cargo build --release` (run one first). A figure, not a check.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(ls -td target/release/build/llm-gateway-*/out | head -1)
wasm=$(mktemp -d)/split.wasm
OUT_DIR="$PWD/$out" rustc --edition 2021 --target wasm32-wasip1 -C opt-level=3 -C codegen-units=1 \
  -C panic=abort -C strip=symbols --crate-type cdylib bench/split-v8/lib.rs -o "$wasm"
[ $# -gt 0 ] || set -- bench/prompt.txt README.md src/tokens.rs k8s/grafana/llm-gateway.json tests/corpus/*.txt
SPLIT_WASM=$wasm node bench/split-v8/run.js "$@"
