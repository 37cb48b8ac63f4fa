"""Batch completion: counting members' outcomes and running the callback once
(docs/workflows.md)."""
