#!/usr/bin/env bash
# mypy cannot follow setuptools' package-dir mapping (config/ -> jobstream.config, ...): lay
# the folders out as the installed package is, as links, under .typecheck/jobstream.
set -eu
cd "$(dirname "$0")/.."
rm -rf .typecheck
mkdir -p .typecheck/jobstream
ln -s ../../jobstream/__init__.py .typecheck/jobstream/__init__.py
for d in config schemas producers consumers; do ln -s "../../$d" ".typecheck/jobstream/$d"; done
