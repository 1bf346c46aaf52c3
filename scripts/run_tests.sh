#!/usr/bin/env bash
# scripts/run_tests.sh [fast] [pytest args...]
#
# Every test runs once, in three pytest processes (`make test`):
#   1. the fast tier: pure tests only, no Argilla stack, no model, no server (not even a fake one
#      in a thread) and no subprocess; under a minute, so a broken formula fails first;
#   2. the rest but the local-model tests: markers `stack`, `slow` and `external` (the last set in
#      tests/conftest.py for the files and tests that start a fake server, PostgreSQL, a kernel,
#      a subprocess or the embedding model);
#   3. the tests that load llama.cpp in-process (marker `llm`), apart from the rest, so that
#      llama.cpp never shares a process with torch, Chromium or the Argilla SDK's threads (seen: a
#      segfault in llama_decode after a long mixed run).
# With `fast` (`make test-fast`): the first only.
#
# pytest's exit code 5 ("no tests collected") counts as a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
FAST="not stack and not llm and not slow and not external"
status=0
run() {
  .venv/bin/python -m pytest "$@"
  local rc=$?
  if [ $rc -eq 5 ]; then echo "run_tests: pytest collected no tests for: $*" >&2; rc=1; fi
  [ $rc -ne 0 ] && status=$rc
  return 0
}
fast_tier() {
  local started=$SECONDS
  run -m "$FAST" "$@"
  local took=$((SECONDS - started))
  echo "test-fast: ${took} s"
  [ $took -ge 60 ] && echo "run_tests: the fast tier took ${took} s, over its 60 s budget: mark it or list it in tests/conftest.py" >&2
  return 0
}
if [ "${1:-}" = fast ]; then
  shift
  fast_tier "$@"
  exit $status
fi
fast_tier "$@"
for selection in "not llm and not ($FAST)" "llm"; do
  run -m "$selection" --durations=20 "$@"  # the slowest tests, to keep make test well under 30 minutes
done
exit $status
