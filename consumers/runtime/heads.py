"""The T.history chain heads the ledger carries (consumers/runtime/history.py): per source
partition one key, `!history-head/<topic>/<p>`, whose latest value is the hash that partition's
next history record links to. A head value starts with `!`, never a ledger status byte."""

from __future__ import annotations

HEAD_PREFIX = "!history-head/"
HEAD_MARK = b"!"


def head_key(topic: str, partition: int) -> str:
    return f"{HEAD_PREFIX}{topic}/{partition}"


def encode_head(digest: str) -> bytes:
    return HEAD_MARK + digest.encode()


def decode_head(value: bytes | None) -> str | None:
    if not value or value[:1] != HEAD_MARK or len(value) != 65:
        return None
    text = value[1:].decode("ascii", "replace")
    return text if all(c in "0123456789abcdef" for c in text) else None
