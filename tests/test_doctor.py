"""``avssl doctor``: the report's structure, and a self-test that catches a wrong frame."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from avssl import doctor
from avssl.data import decode
from avssl.data.selftest import SELFTEST_VIDEOS, read_index

STATUSES = {"pass", "FAIL", "refused", "unavailable", "error"}


def _command() -> list[str]:
    """The ``avssl`` script of this Python's environment (not another one's on PATH)."""
    beside = Path(sys.executable).parent / "avssl"
    exe = str(beside) if beside.is_file() else shutil.which("avssl")
    return [exe] if exe else [sys.executable, "-m", "avssl.doctor"]


def test_doctor_json_reports_versions_decoders_and_selftest() -> None:
    res = subprocess.run(
        [*_command(), "doctor", "--json"], capture_output=True, text=True, timeout=600
    )
    report = json.loads(res.stdout)
    assert res.returncode == (0 if report["default_backend_passes"] else 1), res.stderr
    assert report["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    for pkg in ("torch", "torchvision", "torchaudio"):
        assert report["packages"][pkg], pkg
    d = report["decoders"]
    assert d["pyav"]["found"] and d["pyav"]["libraries"]["libavcodec"].count(".") == 2
    for name in ("decord", "opencv", "torchcodec", "ffmpeg_binary", "ffprobe_binary"):
        assert isinstance(d[name]["found"], bool), name
    assert report["available_backends"] == list(decode.available_backends())
    rows = report["selftest"]["results"]
    # every backend (and auto) on every self-test file, exactly once
    want = {(b, f) for b in ("auto", *decode.BACKENDS) for f in SELFTEST_VIDEOS}
    assert sorted((r["backend"], r["file"]) for r in rows) == sorted(want)
    for r in rows:
        assert r["status"] in STATUSES, r
        if r["status"] == "pass":
            assert r["frames_checked"] > r["reads"] > 0 and not r["wrong"]
        if r["backend"] not in ("auto", *decode.available_backends()):
            assert r["status"] == "unavailable", r
    # the Xvid packed-B file is one that decord and torchcodec are refused on (decode.py table)
    refused = {r["backend"] for r in rows if r["status"] == "refused"}
    assert refused <= {"decord", "torchcodec", "opencv"}
    assert report["nvdec"]["status"] in ("not checked: no GPU", "ok", "FAIL", "unavailable")
    assert report["gpu"]["cuda_available"] == (report["nvdec"]["status"] != "not checked: no GPU")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = doctor.main(["doctor", "--json", "--reads", "4", *argv])
    return code, json.loads(capsys.readouterr().out)


def _shifted(i: int, n: int) -> int:
    return i + 1 if i + 1 < n else i - 1


def test_selftest_catches_a_backend_returning_the_next_frame(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if "opencv" not in decode.available_backends():
        pytest.skip("OpenCV is not installed")
    real = decode._read_pyav

    def off_by_one(p: Path, info: Any, wanted: list[int]) -> dict[int, np.ndarray]:
        out = {}
        for i in wanted:
            j = _shifted(i, info.num_frames)
            out[i] = real(p, info, [j], float("inf"), None)[j]
        return out

    monkeypatch.setitem(decode._OTHER_READERS, "opencv", off_by_one)
    code, report = _run(capsys, "--backends", "opencv")
    rows = {(r["backend"], r["file"]): r for r in report["selftest"]["results"]}
    for f in SELFTEST_VIDEOS:
        bad = rows[("opencv", f)]
        assert bad["status"] == "FAIL" and bad["wrong"], bad
        assert all(w["got"] != w["asked"] for w in bad["wrong"])
        assert rows[("auto", f)]["status"] == "pass"
    assert code == 0  # the default backend is unaffected


def test_exit_status_1_when_the_default_backend_returns_wrong_frames(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = decode._read_pyav

    def off_by_one(
        p: Path, info: Any, wanted: list[int], deadline: float, buf: np.ndarray | None
    ) -> dict[int, np.ndarray]:
        out = {}
        for k, i in enumerate(wanted):
            j = _shifted(i, info.num_frames)
            out[i] = real(p, info, [j], deadline, None)[j]
            if buf is not None:
                buf[k] = out[i]
        return out

    monkeypatch.setattr(decode, "_read_pyav", off_by_one)
    code, report = _run(capsys, "--backends", "pyav")
    auto = [r for r in report["selftest"]["results"] if r["backend"] == "auto"]
    assert auto and all(r["status"] == "FAIL" for r in auto)
    assert not report["default_backend_passes"] and code == 1


def test_text_report_names_every_backend(capsys: pytest.CaptureFixture[str]) -> None:
    report = {
        "python": {"version": "3.11.0", "executable": "python"},
        "packages": {"torch": "2.0"},
        "decoders": {
            "pyav": {"version": "1", "ffmpeg": "8", "libraries": {"libavcodec": "62.1.2"}},
            "decord": {"found": False, "detail": "No module named 'decord'"},
            "opencv": {"found": True, "version": "5", "ffmpeg": ""},
            "torchcodec": {"found": True, "version": "0.17", "ffmpeg_loads": False, "detail": "x"},
            "ffmpeg_binary": {"found": False, "detail": "not on PATH"},
            "ffprobe_binary": {"found": False, "detail": "not on PATH"},
        },
        "selftest": {
            "files": {"a.mp4": "note"},
            "results": [
                {"backend": "auto", "file": "a.mp4", "status": "FAIL", "reads": 2,
                 "frames_checked": 5, "wrong": [{"asked": 3, "got": 4, "mean_diff": 40.0}],
                 "detail": ""},
            ],
        },
        "gpu": {"cuda_available": False, "torch_cuda": None, "devices": []},
        "nvdec": {"status": "not checked: no GPU"},
        "default_backend_passes": False,
    }  # fmt: skip
    text = doctor.render(report)
    assert "decord       not found" in text and "do NOT load" in text
    assert "asked 3, got 4" in text and "FAILS the exact-frame self-test" in text


def test_read_index_spells_the_frame_number() -> None:
    from avssl.data.selftest import index_frame

    for i in (0, 1, 77, 4095):
        assert read_index(index_frame(i)) == i
        assert read_index(index_frame(i).transpose(2, 0, 1)) == i
