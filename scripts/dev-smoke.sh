#!/usr/bin/env bash
# Smoke test of `make dev`: start it in the background, wait for "ready",
# create a webhook to the inspector, publish an event, see it arrive within
# 5 seconds, run `make invoke` with one sample of each function against it
# (the ingest function's good and malformed events), see an operational
# event on the emulator's bus, then stop it with SIGTERM and check that its
# ports are free.
set -euo pipefail
cd "$(dirname "$0")/.."

API_PORT=${API_PORT:-3000}
INSPECTOR_PORT=${INSPECTOR_PORT:-3001}
EMULATOR_PORT=${EMULATOR_PORT:-4566}
export API_PORT INSPECTOR_PORT EMULATOR_PORT
TOKEN=smoke-admin-token-0123456789
API=http://127.0.0.1:$API_PORT
INSPECTOR=http://127.0.0.1:$INSPECTOR_PORT
# shellcheck source=dev-background.sh
. scripts/dev-background.sh
trap 'dev_stop; echo "--- make dev output ---"; cat "${DEV_LOG:-/dev/null}"' EXIT
dev_start "$TOKEN"
echo "make dev is ready"

curl -fsS "$INSPECTOR/" >/dev/null
curl -fsS -X POST "$API/projects/SMOKE/webhooks" -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' \
  -d "{\"title\": \"smoke\", \"endpoint\": \"$INSPECTOR/smoke\", \"events\": [\"run.completed\"]}" >/dev/null
published=$(curl -fsS -X POST "$API/projects/SMOKE/events" -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' -d '{"event_name": "run.completed", "payload": {"id": 1}}')
echo "published: $published"

delivered=
for _ in $(seq 1 50); do
  if curl -fsS "$INSPECTOR/smoke" | grep -q '"event_name\\":\\"run.completed\\"'; then
    delivered=yes
    break
  fi
  sleep 0.1
done
[ -n "$delivered" ] || { echo "the delivery did not reach the inspector within 5 s"; exit 1; }
echo "delivered to the inspector"

# One sample per function through `make invoke`; the API sample gets this
# stack's admin token, as README tells a user to do.
event=$(mktemp --suffix=.json)
sed "s/replace-with-your-admin-token/$TOKEN/" events/api-publish-event.json >"$event"
invoke() {
  local out
  out=$(make --no-print-directory invoke FUNCTION="$1" EVENT="$2" 2>&1) || { echo "$out"; echo "make invoke $1 failed"; exit 1; }
  echo "$out" | grep -q "$3" || { echo "$out"; echo "make invoke $1: no $3 in the response"; exit 1; }
  echo "make invoke $1: $(echo "$out" | grep -m 1 "$3" | sed "s/^ *//")"
}
invoke ConfigApiFunction "$event" '"statusCode": *202'
invoke SenderFunction events/sqs-delivery.json '"batchItemFailures": *\[\]'
invoke SweeperFunction events/scheduled-sweep.json '"examined"'
rm -f "$event"

# Publishing from EventBridge: the sample event (project DEMO) reaches the
# inspector; the malformed one waits in the ingest dead-letter queue with
# its reason.
curl -fsS -X POST "$API/projects/DEMO/webhooks" -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' \
  -d "{\"title\": \"from the bus\", \"endpoint\": \"$INSPECTOR/from-bus\", \"events\": [\"run.completed\"]}" >/dev/null
invoke IngestFunction events/eventbridge-publish.json '"outcome": *"published"'
wait_for() {
  for _ in $(seq 1 50); do
    curl -fsS "$INSPECTOR/$1" | grep -q "$2" && return 0
    sleep 0.1
  done
  echo "nothing with $2 at the inspector's /$1 within 5 s"; exit 1
}
wait_for from-bus 'passed\\": *14'
echo "the sample EventBridge event reached the inspector"
invoke IngestFunction events/eventbridge-publish-malformed.json '"outcome": *"dead_lettered"'
.venv/bin/python - "$EMULATOR_PORT" <<'PY'
import sys, boto3
sqs = boto3.client("sqs", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", region_name="us-east-1",
                   aws_access_key_id="local", aws_secret_access_key="local")
url = sqs.get_queue_url(QueueName="ingest-dead-letters")["QueueUrl"]
got = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"], WaitTimeSeconds=1).get("Messages", [])
assert got, "the malformed event is not in the dead-letter queue"
reason = got[0]["MessageAttributes"]["reason"]["StringValue"]
assert "unknown field `name`" in reason, reason
print(f"in the ingest dead-letter queue: {reason}")
PY

# Operational events go to the emulator's bus and show in the inspector.
curl -fsS -X POST "$API/projects/SMOKE/webhooks" -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' \
  -d "{\"title\": \"failing\", \"endpoint\": \"$INSPECTOR/failing?status=503\", \"events\": [\"case.created\"]}" >/dev/null
curl -fsS -X POST "$API/projects/SMOKE/events" -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' -d '{"event_name": "case.created", "payload": {"id": 1}}' >/dev/null
wait_for operational-events 'Webhook Failing'
grep -q 'operational event' "$DEV_LOG" || { echo "make dev did not print the operational event"; exit 1; }
echo "the operational event reached the emulator's bus and the inspector"

dev_stop
for _ in $(seq 1 100); do
  kill -0 "$DEV_GROUP" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$DEV_GROUP" 2>/dev/null; then echo "make dev did not stop"; exit 1; fi
grep -q '^stopped' "$DEV_LOG" || { echo "make dev did not stop cleanly"; exit 1; }
for port in "$API_PORT" "$INSPECTOR_PORT" "$EMULATOR_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "port $port still answers"; exit 1; fi
done
trap - EXIT
rm -f "$DEV_LOG"
echo "make dev smoke test passed"
