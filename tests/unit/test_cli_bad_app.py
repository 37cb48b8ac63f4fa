"""Issue 26 item 17: a job module that failed to import was reported as jobstream's own
`internal error: SyntaxError ...` (exit 70) with the user's traceback hidden, and `sys.exit(3)`
at import time exited 3, which means "fenced". Now the user's traceback is shown under a header
that names the module, and the worker exits 1, the documented code for an error (`worker
--help` lists the codes). Bootstrap points at a closed port: the job module is loaded before
any connection, so a broken app is reported at once even with the brokers away."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.harness import free_port, run_cli


def _worker(tmp_path: Path, source: str, *, app: str = "userjobs") -> tuple[int, str]:
    (tmp_path / "userjobs.py").write_text(source)
    proc = run_cli(
        "worker",
        "--app",
        app,
        cwd=tmp_path,
        env={"JOBSTREAM_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"},
    )
    return proc.returncode, proc.stderr


def test_a_syntax_error_shows_the_users_file_and_line(tmp_path: Path) -> None:
    rc, err = _worker(tmp_path, "from consumers import job\n\n\ndef handler(p, ctx)\n    pass\n")
    assert rc == 1, err
    assert "internal error" not in err
    assert err.startswith("error: job module 'userjobs' failed to import"), err
    assert "userjobs.py" in err and "line 4" in err and "SyntaxError" in err


def test_an_exception_at_import_shows_the_users_traceback_not_jobstreams(
    tmp_path: Path,
) -> None:
    source = "def load():\n    raise RuntimeError('no config for the mailer')\n\nload()\n"
    rc, err = _worker(tmp_path, source)
    assert rc == 1, err
    assert "Traceback (most recent call last)" in err
    assert "userjobs.py\", line 4" in err and "userjobs.py\", line 2, in load" in err
    assert "RuntimeError: no config for the mailer" in err
    assert "importlib" not in err and "consumers/jobs.py" not in err  # our frames, not theirs


@pytest.mark.parametrize("code", [0, 3, 4])
def test_sys_exit_at_import_is_a_bad_app_not_fenced_or_a_clean_stop(
    tmp_path: Path, code: int
) -> None:
    rc, err = _worker(tmp_path, f"import sys\nsys.exit({code})\n")
    assert rc == 1, err
    assert f"sys.exit({code})" in err
    assert "userjobs.py\", line 2" in err


def test_a_missing_dependency_of_the_module_is_shown_with_its_traceback(
    tmp_path: Path,
) -> None:
    rc, err = _worker(tmp_path, "import mailer_sdk_not_installed\n")
    assert rc == 1, err
    assert "failed to import" in err
    assert "mailer_sdk_not_installed" in err and "userjobs.py\", line 1" in err


def test_a_module_that_does_not_exist_is_one_line(tmp_path: Path) -> None:
    rc, err = _worker(tmp_path, "", app="no_such_jobs")
    assert rc == 1, err
    assert err.strip() == "error: cannot import job module 'no_such_jobs': " \
        "No module named 'no_such_jobs'"


def test_worker_help_documents_the_exit_codes() -> None:
    out = run_cli("worker", "--help").stdout
    for line in ("0 ", "1 ", "3 ", "4 ", "70 "):
        assert any(row.strip(" │").startswith(line) for row in out.splitlines()), out
