#!/usr/bin/env bash
# Run a command with the local Kafka broker up. Starts it only when nothing answers, and stops
# only a broker this script started, so running `make test` twice (or beside a dev broker) works.
#
# JOBSTREAM_FRESH_BROKER=1 (make test): a broker this script starts gets a new temporary data dir
# under ${TMPDIR:-/tmp}, removed at the end (thousands of leftover test topics make a broker take
# minutes to start). A JOBSTREAM_BROKER__DATA_DIR you set is used as it is and never deleted.
set -u
JOBSTREAM="${JOBSTREAM:-.venv/bin/jobstream}"
started=0
fresh=""
stop_ours() {
  if [ "$started" = 1 ]; then
    started=0
    if ! "$JOBSTREAM" broker stop; then  # never delete a running broker's data
      echo "warning: the test broker did not stop; its data stays in ${fresh:-its data dir}" >&2
      fresh=""
    fi
  fi
  if [ -n "$fresh" ]; then rm -rf "$fresh"; fresh=""; fi
}
trap 'stop_ours' EXIT
trap 'exit 130' INT TERM
if [ -n "${JOBSTREAM_TEST_BOOTSTRAP:-}" ]; then
  echo "using the broker at JOBSTREAM_TEST_BOOTSTRAP=$JOBSTREAM_TEST_BOOTSTRAP"
elif ! "$JOBSTREAM" broker status -q; then
  if [ -n "${JOBSTREAM_FRESH_BROKER:-}" ] && [ -z "${JOBSTREAM_BROKER__DATA_DIR:-}" ]; then
    fresh="$(mktemp -d "${TMPDIR:-/tmp}/jobstream-test-broker.XXXXXX")" || exit 1
    export JOBSTREAM_BROKER__DATA_DIR="$fresh"
  fi
  if ! "$JOBSTREAM" broker start; then
    echo "error: could not start the local Kafka broker" >&2
    # The data dir goes at exit: show its logs first.
    if [ -n "$fresh" ]; then tail -n 30 "$fresh/broker.out" "$fresh/broker.log" >&2 2>/dev/null; fi
    exit 1
  fi
  started=1
else
  "$JOBSTREAM" broker status
fi
"$@"
