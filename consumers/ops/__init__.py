"""Operator functions: dead letters (list, show, replay, export), the audit trail, the topic
plan and the admission check of job definitions. The CLI (consumers/cli) and the console call
these; the worker runtime does not."""
