#!/usr/bin/env bash
# Runs the whole test suite in two pytest processes: the tests that load llama.cpp in-process
# (marker `llm`) run apart from the rest, so that llama.cpp never shares a process with torch,
# Chromium or the Argilla SDK's threads (seen: a segfault in llama_decode after a long mixed run).
# pytest's exit code 5 ("no tests collected") counts as a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
for selection in "not llm" "llm"; do
  .venv/bin/python -m pytest -m "$selection" "$@"
  rc=$?
  if [ $rc -eq 5 ]; then echo "run_tests: pytest collected no tests for -m '$selection'" >&2; rc=1; fi
  [ $rc -ne 0 ] && status=$rc
done
exit $status
