"""The worker's runtime: the poll loop (loop.py) and the parts it is made of, named along a
job's path (poll -> decode -> dispatch -> outcomes -> deliver -> ledger -> interval). See
docs/architecture.md."""
