# Sourced by the scripts that need `make dev` running in the background
# (schemathesis, the settings page, the smoke test).
#
#   dev_start <admin token>   starts it in its own process group, waits for
#                             "ready"; sets DEV_LOG (its output) and DEV_GROUP
#   dev_stop                  sends SIGTERM to the whole group
#
# The caller sets API_PORT, INSPECTOR_PORT and EMULATOR_PORT (exported) and
# its own EXIT trap.

dev_start() {
  DEV_LOG=$(mktemp)
  ADMIN_TOKEN=$1 setsid make --no-print-directory dev >"$DEV_LOG" 2>&1 &
  DEV_GROUP=$!
  for _ in $(seq 1 600); do
    grep -q '^ready' "$DEV_LOG" && return 0
    kill -0 "$DEV_GROUP" 2>/dev/null || { cat "$DEV_LOG"; echo "make dev exited early"; return 1; }
    sleep 0.5
  done
  cat "$DEV_LOG"
  echo "make dev did not get ready"
  return 1
}

dev_stop() {
  kill -TERM -- "-$DEV_GROUP" 2>/dev/null || true
}
