#!/usr/bin/env bash
# Run a command with the local Kafka broker up. Starts it only when nothing answers, and stops
# only a broker this script started, so running `make test` twice (or beside a dev broker) works.
set -u
JOBSTREAM="${JOBSTREAM:-.venv/bin/jobstream}"
started=0
stop_ours() {
  if [ "$started" = 1 ]; then "$JOBSTREAM" broker stop; fi
}
trap 'stop_ours; exit 130' INT TERM
if [ -n "${JOBSTREAM_TEST_BOOTSTRAP:-}" ]; then
  echo "using the broker at JOBSTREAM_TEST_BOOTSTRAP=$JOBSTREAM_TEST_BOOTSTRAP"
elif ! "$JOBSTREAM" broker status -q; then
  # A fresh data dir for a test run: thousands of leftover test topics make a broker take
  # minutes to start and answer slowly.
  if [ -n "${JOBSTREAM_FRESH_BROKER:-}" ] && [ -n "${JOBSTREAM_BROKER__DATA_DIR:-}" ]; then
    rm -rf "$JOBSTREAM_BROKER__DATA_DIR"
  fi
  "$JOBSTREAM" broker start || { echo "error: could not start the local Kafka broker" >&2; exit 1; }
  started=1
else
  "$JOBSTREAM" broker status
fi
"$@"
rc=$?
stop_ours
exit $rc
