#!/usr/bin/env bash
# Runs the demo: the fake provider on 127.0.0.1:18080 and Envoy with envoy/gateway.yaml on
# 127.0.0.1:10000 (admin 127.0.0.1:9901). Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${ENVOY_BIN:=.venv/bin/envoy}" "${FAKE:=target/release/fake-provider}"

# Demo provider keys: the fake provider insists on them, so a request that got through shows
# the gateway injected the right credential.
export OPENAI_API_KEY=sk-demo-provider-key
export BACKUP_API_KEY=sk-demo-provider-key

"$FAKE" --listen 127.0.0.1:18080 --require-key "$OPENAI_API_KEY" &
fake_pid=$!
envoy_pid=
cleanup() {
  [ -n "$envoy_pid" ] && kill "$envoy_pid" 2>/dev/null || true
  kill "$fake_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$ENVOY_BIN" -c envoy/gateway.yaml --concurrency 2 --log-level warn &
envoy_pid=$!
for _ in $(seq 1 100); do
  curl -fsS 127.0.0.1:9901/ready >/dev/null 2>&1 && break
  sleep 0.1
done
cat <<MSG

llm-gateway demo is up: http://127.0.0.1:10000  (admin http://127.0.0.1:9901)
Try:
  curl -s http://127.0.0.1:10000/v1/chat/completions -H 'authorization: Bearer sk-gateway-demo' \\
       -H 'content-type: application/json' -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}'
The Responses API, passed through, and translated to chat (the x-llm-responses route):
  curl -s http://127.0.0.1:10000/v1/responses -H 'authorization: Bearer sk-gateway-demo' \\
       -H 'content-type: application/json' -d '{"model":"gpt-4o-mini","input":"Hello"}'
  curl -s http://127.0.0.1:10000/v1/responses -H 'authorization: Bearer sk-gateway-demo' \\
       -H 'x-llm-responses: translate' -H 'content-type: application/json' -d '{"model":"gpt-4o-mini","input":"Hello"}'
Ctrl-C stops everything.

MSG
wait "$envoy_pid"
