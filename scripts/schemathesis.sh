#!/usr/bin/env bash
# The API matches its own description: start `make dev` on ports of its own,
# run schemathesis (pinned in requirements-dev.txt) against GET /openapi.json
# with every check, the stateful phase included, as the admin, then stop it.
# Exits non-zero on any failure schemathesis reports.
set -euo pipefail
cd "$(dirname "$0")/.."

export API_PORT=${SCHEMATHESIS_API_PORT:-3100}
export INSPECTOR_PORT=${SCHEMATHESIS_INSPECTOR_PORT:-3101}
export EMULATOR_PORT=${SCHEMATHESIS_EMULATOR_PORT:-4600}
TOKEN=schemathesis-admin-token-0123456789
MAX_TIME=${SCHEMATHESIS_MAX_TIME:-75}
# A fixed seed keeps CI repeatable; set SCHEMATHESIS_SEED to explore others.
log=$(mktemp)

ADMIN_TOKEN=$TOKEN setsid make --no-print-directory dev >"$log" 2>&1 &
group=$!
stop() { kill -TERM -- "-$group" 2>/dev/null || true; }
trap 'stop; rm -f "$log"' EXIT
for _ in $(seq 1 600); do
  grep -q '^ready' "$log" && break
  kill -0 "$group" 2>/dev/null || { cat "$log"; echo "make dev exited early"; exit 1; }
  sleep 0.5
done
grep -q '^ready' "$log" || { cat "$log"; echo "make dev did not get ready"; exit 1; }

.venv/bin/st run "http://127.0.0.1:$API_PORT/openapi.json" \
  --header "Authorization: Bearer $TOKEN" \
  --checks all \
  --phases examples,coverage,fuzzing,stateful \
  --max-time "$MAX_TIME" \
  --workers 1 \
  --seed "${SCHEMATHESIS_SEED:-20261129}" \
  --no-color \
  --warnings off
