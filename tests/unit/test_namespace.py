"""One import namespace (issue 28). The four folders used to install as the global packages
`config`, `schemas`, `producers` and `consumers`, so a service with its own `config.py` broke
`from producers import Publisher` (`No module named 'config.kafka'`), and `from config import
DB_URL` in a job module failed inside jobstream. They are subpackages of `jobstream` now."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SERVICE_JOBS = '''
from config import DB_URL
from schemas.orders import ORDER_FIELDS
from jobstream import JobContext, job

@job("svc.sync")
def sync(payload: dict, ctx: JobContext) -> None:
    assert DB_URL and ORDER_FIELDS
'''


def _service(tmp_path: Path) -> Path:
    (tmp_path / "config.py").write_text('DB_URL = "postgres://db/svc"\n')
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "__init__.py").write_text("")
    (tmp_path / "schemas" / "orders.py").write_text('ORDER_FIELDS = ("id",)\n')
    (tmp_path / "svc_jobs.py").write_text(SERVICE_JOBS)
    avro = tmp_path / "avro" / "svc.sync"
    avro.mkdir(parents=True)
    (avro / "v1.avsc").write_text(json.dumps({
        "type": "record", "name": "Sync", "doc": "A sync.",
        "fields": [{"name": "id", "type": "string", "doc": "What to sync."}],
    }))
    return tmp_path


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("JOBSTREAM_") and k != "PYTHONPATH"}
    env["JOBSTREAM_SCHEMA_DIRS"] = str(tmp_path / "avro")
    return env


def test_a_service_with_its_own_config_and_schemas_imports_jobstream(tmp_path: Path) -> None:
    svc = _service(tmp_path)
    code = (
        "from config import DB_URL; from schemas.orders import ORDER_FIELDS; "
        "from jobstream import Publisher, job, JobContext, PermanentError, RetryAfter; "
        "import jobstream.config.kafka; print(DB_URL, ORDER_FIELDS)"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=svc, env=_env(svc),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "postgres://db/svc ('id',)" in res.stdout


def test_a_job_module_beside_its_own_config_loads_in_jobstream(tmp_path: Path) -> None:
    svc = _service(tmp_path)
    jobstream = Path(sys.executable).parent / "jobstream"
    res = subprocess.run([str(jobstream), "schemas", "check", "--app", "svc_jobs"], cwd=svc,
                         env=_env(svc), capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ok: 1 job types" in res.stdout  # the module loaded (an import error exits 1)
