#!/usr/bin/env bash
# The README's test command: set up the environment (idempotent), then run the test suite.
#   bash tools/run_tests.sh [pytest args]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
VENV="${CASCADE_CLIP_VENV:-$ROOT/.venv}"
cd "$ROOT"
# the web demo's browser test drives headless Chromium (installed once, as root)
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  bash "$ROOT/tools/install_chromium.sh" || echo "run_tests: no chromium - the browser test will be skipped" >&2
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
set +e
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "${@:-tests}"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "run_tests: pytest collected no tests (exit 5) - treated as a failure" >&2
  exit 1
fi
exit "$rc"
