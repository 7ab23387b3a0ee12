#!/usr/bin/env bash
# Checks that payq's API is what its OpenAPI document says, against a running payq:
#   1. the document validates (openapi-spec-validator);
#   2. schemathesis drives every operation with generated requests, as a merchant and as the
#      admin, and fails on any server error, undocumented status code or content type, or a
#      response that does not match its schema.
# Both tools are installed from PyPI into a throwaway venv (pinned versions). Bounded: about a
# minute here. Usage: scripts/api-contract.sh [path/to/payq] (default target/debug/payq).
set -euo pipefail
cd "$(dirname "$0")/.."
payq=${1:-target/debug/payq}
[ -x "$payq" ] || { echo "FATAL: $payq is not built" >&2; exit 1; }

work=$(mktemp -d)
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check \
    'openapi-spec-validator==0.9.0' 'schemathesis==4.32.5'

admin=contract-check-admin-token
env -u PAYQ_CONFIG PAYQ_ADMIN_TOKEN=$admin PAYQ_LOG=warn PAYQ_WEBHOOK__ALLOW_PRIVATE=true \
    "$payq" serve --listen 127.0.0.1:0 --database-url "sqlite://$work/contract.db" >"$work/serve.out" 2>&1 &
payq_pid=$!
trap 'kill "$payq_pid" 2>/dev/null || true' EXIT
addr=""
for _ in $(seq 1 50); do
    addr=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$work/serve.out" | head -n 1)
    [ -n "$addr" ] && break
    sleep 0.2
done
[ -n "$addr" ] || { cat "$work/serve.out"; echo "FATAL: payq did not start" >&2; exit 1; }

echo "-- openapi-spec-validator"
curl -fsS "$addr/openapi.json" >"$work/openapi.json"
"$work/venv/bin/openapi-spec-validator" "$work/openapi.json"

merchant=$(curl -fsS -X POST "$addr/v1/merchants" -H "Authorization: Bearer $admin" \
    -H 'content-type: application/json' -d '{"name":"contract","webhook_url":"http://127.0.0.1:9/hook"}')
key=$(printf '%s' "$merchant" | python3 -c 'import json, sys; print(json.load(sys.stdin)["api_key"])')

fuzz() { # label bearer-token filter-options...
    local label=$1 token=$2
    shift 2
    echo "-- schemathesis, $label"
    timeout 300 "$work/venv/bin/schemathesis" --no-color run "$addr/openapi.json" \
        -H "Authorization: Bearer $token" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
        --max-examples 100 --workers 1 --seed 20261130 "$@"
}
fuzz "as a merchant" "$key" --exclude-path-regex '^/v1/(admin|merchants)'
fuzz "as the admin" "$admin" --include-path-regex '^/v1/(admin|merchants)|^/(healthz|readyz|metrics|openapi.json)$'
echo "-- the API matches its contract"
