"""The test sink: one JSON line per handler run appended to the file named by
JOBSTREAM_TEST_SINK (tests/support/harness.py reads it)."""

from __future__ import annotations

import json
import os
from typing import Any

_SINK = os.environ.get("JOBSTREAM_TEST_SINK", "/dev/null")


def append(fields: dict[str, Any]) -> None:
    line = json.dumps(fields)
    fd = os.open(_SINK, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())  # one write: atomic for lines this short
    finally:
        os.close(fd)
