#!/usr/bin/env bash
# The whole suite against one broker, in two passes (make test). First tests/unit,
# tests/integration and tests/deploy on JOBSTREAM_TEST_WORKERS pytest-xdist workers (default 3;
# 0 runs them in one process), a module per worker at a time: those tests mostly wait on the
# broker and on worker processes, so they overlap well even on two cores. Then tests/console and
# tests/chaos in one process: the console tests share port ranges and time page loads, the
# fault suite kills workers, restarts the broker and times recoveries.
# Both passes run even when the first fails; the exit status is non-zero if either failed.
set -u
BIN="${BIN:-.venv/bin}"
workers="${JOBSTREAM_TEST_WORKERS:-3}"
rc=0
"$BIN/python" -m pytest tests/unit tests/integration tests/deploy -q -rsx -p no:cacheprovider \
  --durations=15 -n "$workers" --dist loadfile || rc=$?
"$BIN/python" -m pytest tests/console tests/chaos -q -rsx -p no:cacheprovider --durations=15 \
  || rc=$?
exit "$rc"
