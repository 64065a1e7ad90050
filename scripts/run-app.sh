#!/usr/bin/env bash
# `make run`: the app on the workspace, and — while the integrations in use are this repository's own
# (integrations/, the demo credit union's) — the demo's messaging gateway beside it: a real SMTP server on
# loopback (demo/gateway.py) where integrations/messaging.yaml points (RUNLEDGER_MESSAGING_PORT, default
# 2525), keeping to the outages the seed left beside the workspace. Both stop together.
set -euo pipefail
PY="${1:?the venv python}"
DB="${2:?the workspace}"
ours="$(cd "$(dirname "$0")/.." && pwd)/integrations"
chosen="$(cd "${RUNLEDGER_INTEGRATIONS:-integrations}" 2>/dev/null && pwd || true)"
if [ "$chosen" = "$ours" ]; then
  "$PY" -m demo.gateway --workspace "$DB" &
  gateway=$!
  trap 'kill "$gateway" 2>/dev/null || true; wait "$gateway" 2>/dev/null || true' EXIT
  sleep 0.5
  if ! kill -0 "$gateway" 2>/dev/null; then
    echo "The demo's messaging gateway did not start (see above): set RUNLEDGER_MESSAGING_PORT to a free port." >&2
    exit 1
  fi
fi
RUNLEDGER_DB="$DB" "$(dirname "$PY")/streamlit" run app.py
