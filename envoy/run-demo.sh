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
export GEMINI_API_KEY=demo-gemini-key
# Envoy's SigV4 signer signs the Bedrock requests with these; the fake verifies the signature.
export AWS_ACCESS_KEY_ID=AKIDEXAMPLE AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
unset AWS_SESSION_TOKEN AWS_REGION

"$FAKE" --listen 127.0.0.1:18080 --require-key "$OPENAI_API_KEY" --gemini-api-key "$GEMINI_API_KEY" \
  --gcp-project demo-project &
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
The same chat request to AWS Bedrock (signed by Envoy), Gemini and Vertex AI (Gemini and Claude):
  for m in bedrock-claude-sonnet-4-5 gemini-2.5-flash vertex-gemini-2.5-flash vertex-claude-sonnet-4-5; do
    curl -s http://127.0.0.1:10000/v1/chat/completions -H 'authorization: Bearer sk-gateway-demo' \
         -H 'content-type: application/json' -d "{\"model\":\"\$m\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}"; echo
  done
The Responses API, passed through, and translated to chat (the x-llm-responses route):
  curl -s http://127.0.0.1:10000/v1/responses -H 'authorization: Bearer sk-gateway-demo' \\
       -H 'content-type: application/json' -d '{"model":"gpt-4o-mini","input":"Hello"}'
  curl -s http://127.0.0.1:10000/v1/responses -H 'authorization: Bearer sk-gateway-demo' \\
       -H 'x-llm-responses: translate' -H 'content-type: application/json' -d '{"model":"gpt-4o-mini","input":"Hello"}'
Ctrl-C stops everything.

MSG
wait "$envoy_pid"
