#!/usr/bin/env bash
# `make invoke FUNCTION=<logical id> EVENT=<file>`: runs one function's handler
# on one event against the running `make dev`, and prints its response.
#
# With a Docker engine, through `sam local invoke` (Lambda's own runtime image);
# without one, through cargo-lambda's runtime emulator (`cargo lambda watch`),
# which runs the function's binary on this machine. Either way the function's
# environment comes from local/sam-env.json, pointed at make dev's emulator.
set -euo pipefail
cd "$(dirname "$0")/.."

FUNCTION=${FUNCTION:?"set FUNCTION=ConfigApiFunction, SenderFunction, SweeperFunction or IngestFunction"}
EVENT=${EVENT:?"set EVENT=events/<file>.json"}
EMULATOR_PORT=${EMULATOR_PORT:-4566}
ENV_FILE=local/sam-env.json
VENV=.venv

case "$FUNCTION" in
  ConfigApiFunction) binary=config-api ;;
  SenderFunction) binary=sender ;;
  SweeperFunction) binary=sweeper ;;
  IngestFunction) binary=ingest ;;
  *) echo "unknown FUNCTION $FUNCTION: ConfigApiFunction, SenderFunction, SweeperFunction or IngestFunction" >&2; exit 2 ;;
esac
[ -f "$EVENT" ] || { echo "no event file $EVENT" >&2; exit 2; }
curl -fsS -o /dev/null "http://127.0.0.1:$EMULATOR_PORT/moto-api/" 2>/dev/null \
  || { echo "no AWS emulator on 127.0.0.1:$EMULATOR_PORT: start \`make dev\` first" >&2; exit 1; }

if docker info >/dev/null 2>&1 && [ -z "${INVOKE_WITHOUT_DOCKER:-}" ]; then
  # The function runs in a container: on Linux it shares the host's network,
  # on macOS Docker Desktop forwards host.docker.internal to this machine.
  if [ "$(uname -s)" = Linux ]; then
    network=(--docker-network host) endpoint=http://127.0.0.1:$EMULATOR_PORT
  else
    network=() endpoint=http://host.docker.internal:$EMULATOR_PORT
  fi
  [ -d .aws-sam/build ] || make build
  exec "$VENV/bin/sam" local invoke "$FUNCTION" --event "$EVENT" --env-vars "$ENV_FILE" \
    --parameter-overrides "LocalEndpointUrl=$endpoint" "${network[@]}" --region us-east-1
fi

# Without Docker: the function's environment, then the runtime emulator on a
# free port, one invocation, and the emulator stopped again.
env_file=$(mktemp)
"$VENV/bin/python" - "$ENV_FILE" "$FUNCTION" >"$env_file" <<'PY'
import json, sys
env = json.load(open(sys.argv[1]))[sys.argv[2]]
print("\n".join(f"{k}={v}" for k, v in env.items() if v != ""))
PY
port=$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
env -u AWS_PROFILE -u AWS_SESSION_TOKEN \
  AWS_ENDPOINT_URL="http://127.0.0.1:$EMULATOR_PORT" AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_EC2_METADATA_DISABLED=true \
  setsid "$VENV/bin/cargo-lambda" lambda watch --quiet --ignore-changes \
  --invoke-address 127.0.0.1 --invoke-port "$port" --env-file "$env_file" >"$log" 2>&1 &
watcher=$!
trap 'kill -TERM -- "-$watcher" 2>/dev/null || true; rm -f "$log" "$env_file"' EXIT
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$watcher" 2>/dev/null || { cat "$log"; echo "the runtime emulator exited" >&2; exit 1; }
  sleep 0.2
done
if ! "$VENV/bin/cargo-lambda" lambda invoke "$binary" --invoke-address 127.0.0.1 --invoke-port "$port" \
  --data-file "$EVENT" --output-format json; then
  echo "--- function output ---" >&2; cat "$log" >&2
  exit 1
fi
echo
