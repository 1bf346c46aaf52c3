#!/usr/bin/env bash
# Runs the whole test suite. pytest's exit code 5 ("no tests collected") counts as a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest "$@"
rc=$?
[ $rc -eq 5 ] && { echo "run_tests: pytest collected no tests" >&2; exit 1; }
exit $rc
