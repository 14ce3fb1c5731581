"""The one error guard of every avssl command (avssl.errors.run_cli)."""

from __future__ import annotations

import errno

import pytest

from avssl.errors import CorruptMediaError, run_cli


def _raise(e: BaseException):
    def body() -> int:
        raise e

    return body


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EROFS])
def test_full_disk_or_denied_path_is_one_line_that_says_rerun_resumes(capsys, code):
    rc = run_cli("avssl-prep", _raise(OSError(code, "boom", "/data/out/manifest.jsonl")))
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1
    assert err.startswith("avssl-prep: /data/out/manifest.jsonl: boom")
    assert "run the same command again: it resumes" in err


def test_bad_input_is_one_line_without_resume_advice(capsys):
    assert run_cli("avssl-eval", _raise(ValueError("--k must be >= 1, got 0"))) == 2
    assert capsys.readouterr().err == "avssl-eval: --k must be >= 1, got 0\n"
    assert run_cli("avssl-eval", _raise(FileNotFoundError(2, "No such file", "m.jsonl"))) == 2
    assert capsys.readouterr().err == "avssl-eval: m.jsonl: No such file\n"
    assert run_cli("avssl-eval", _raise(CorruptMediaError("a.avi", "bad packet"))) == 2
    assert capsys.readouterr().err == "avssl-eval: a.avi: bad packet\n"


def test_success_and_other_errors_pass_through():
    assert run_cli("x", lambda: 0) == 0
    with pytest.raises(KeyError):
        run_cli("x", _raise(KeyError("bug")))
