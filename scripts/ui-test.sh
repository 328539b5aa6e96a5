#!/usr/bin/env bash
# The settings page in a real browser: start `make dev` on ports of its own,
# run tests/ui/settings_page.py (Playwright, pinned in requirements-dev.txt,
# driving Debian's Chromium), then stop it. Installs Chromium with apt-get
# when it is missing. SCREENSHOTS=<dir> also captures the page there.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null; then
  SUDO=$([ "$(id -u)" -eq 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium
fi

export API_PORT=${UI_API_PORT:-3200}
export INSPECTOR_PORT=${UI_INSPECTOR_PORT:-3201}
export EMULATOR_PORT=${UI_EMULATOR_PORT:-4700}
TOKEN=settings-page-admin-token-0123456789
# shellcheck source=dev-background.sh
. scripts/dev-background.sh
trap 'dev_stop; rm -f "${DEV_LOG:-}"' EXIT
dev_start "$TOKEN"

API="http://127.0.0.1:$API_PORT" INSPECTOR="http://127.0.0.1:$INSPECTOR_PORT" TOKEN=$TOKEN \
  CHROMIUM="$(command -v chromium)" .venv/bin/python tests/ui/settings_page.py
