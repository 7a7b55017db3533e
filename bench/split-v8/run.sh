#!/usr/bin/env bash
# Throughput in V8 (node) of the pre-tokenizers (src/tokens/split.rs) and of the whole counter
# (split + src/tokens/bpe.rs), on the files given or on the bench prompt and the corpora: a module
# of the tokenizer alone, built with the generated tables of a `cargo build --release` (run one
# first). The counter is timed warm (the same text again, its tables' lines in cache) and cold
# (64 MB written first, which empties the caches and the TLB): a worker in Envoy lies between the
# two, since other work evicts some of the tables between requests (the bench's tokenizer rows on
# the corpora are nearer the cold figures than the warm ones). A figure, not a check.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(dirname "$(ls -t target/release/build/llm-gateway-*/out/o200k_base.slots | head -1)")
wasm=$(mktemp -d)/split.wasm
OUT_DIR="$PWD/$out" rustc --edition 2021 --target wasm32-wasip1 -C opt-level=3 -C codegen-units=1 \
  -C panic=abort -C strip=symbols --crate-type cdylib bench/split-v8/lib.rs -o "$wasm"
[ $# -gt 0 ] || set -- bench/prompt.txt bench/corpus/english.txt bench/corpus/code.rs.txt bench/corpus/json.json tests/corpus/*.txt
SPLIT_WASM=$wasm node bench/split-v8/run.js "$@"
