#!/usr/bin/env bash
# scripts/run_tests.sh [fast] [pytest args...]
#
# Without `fast`: the whole test suite in two pytest processes: the tests that load llama.cpp
# in-process (marker `llm`) run apart from the rest, so that llama.cpp never shares a process with
# torch, Chromium or the Argilla SDK's threads (seen: a segfault in llama_decode after a long mixed
# run).
#
# With `fast` (`make test-fast`): the pure tests only, no Argilla stack, no model, no server (not
# even a fake one in a thread) and no subprocess; under a minute, so they run first. The
# selection is the markers `stack`, `llm` and `slow` plus the files and tests below, which start a
# fake LLM or Hub server, PostgreSQL, a notebook kernel, a benchmark, llama.cpp or the embedding
# model without one of those markers. A new test file is in the fast tier unless it is listed here
# or marked.
#
# pytest's exit code 5 ("no tests collected") counts as a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
NOT_PURE=(
  tests/test_active_learning_bench.py  # runs the benchmark script end to end
  tests/test_backends_batch.py         # fake OpenAI batch server
  tests/test_backends_faults.py        # fake OpenAI server
  tests/test_inputs.py                 # fake OpenAI server, the CLI end to end
  tests/test_notebooks.py              # a Jupyter kernel per notebook
  tests/test_pipeline_distilabel.py    # fake OpenAI server, a distilabel pipeline
  tests/test_postgres.py               # a PostgreSQL cluster
  tests/test_prelabel_cli.py           # fake OpenAI server, the CLI end to end
  tests/test_prompt_safety.py          # fake OpenAI servers
  tests/test_retrieval_prelabel.py     # fake OpenAI server, the MiniLM embedding model
  tests/test_publish.py                # a local Hugging Face Hub server
  tests/test_reasoning_on_demand.py    # fake OpenAI server
  tests/test_triage_cli.py             # subprocesses, llama.cpp
)
NOT_PURE_TESTS=(
  tests/test_triage_student.py::test_embed_texts_normalised_and_cached  # the MiniLM embedding model
  tests/test_student_labels.py::test_student_label_then_publish        # the MiniLM embedding model
  tests/test_student_labels.py::test_student_label_errors_name_the_fix # the MiniLM embedding model
)
status=0
run() {
  .venv/bin/python -m pytest "$@"
  local rc=$?
  if [ $rc -eq 5 ]; then echo "run_tests: pytest collected no tests for: $*" >&2; rc=1; fi
  [ $rc -ne 0 ] && status=$rc
  return 0
}
if [ "${1:-}" = fast ]; then
  shift
  started=$SECONDS
  run -m "not stack and not llm and not slow" "${NOT_PURE[@]/#/--ignore=}" "${NOT_PURE_TESTS[@]/#/--deselect=}" "$@"
  took=$((SECONDS - started))
  echo "test-fast: ${took} s"
  [ $took -ge 60 ] && echo "run_tests: the fast tier took ${took} s, over its 60 s budget: mark or list the slow test" >&2
  exit $status
fi
for selection in "not llm" "llm"; do
  run -m "$selection" --durations=20 "$@"  # the slowest tests, to keep make test well under 30 minutes
done
exit $status
