"""``avssl doctor``: what this install can decode, and whether it decodes the right frames.

Design notes: docs/design/prep_tracking_cli.md, "avssl/doctor.py".
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from avssl.data import decode, selftest


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _err(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


def _binary(name: str) -> dict[str, Any]:
    path = shutil.which(name)
    if path is None:
        return {"found": False, "detail": "not on PATH"}
    try:
        res = subprocess.run(
            [path, "-version"], capture_output=True, text=True, timeout=20, check=False
        )
        text = (res.stdout or res.stderr).strip()
        first = text.splitlines()[0].split(" Copyright")[0] if text else ""
        return {"found": True, "path": path, "version": first}
    except (OSError, subprocess.SubprocessError) as e:
        return {"found": True, "path": path, "version": None, "detail": _err(e)}


def decoders() -> dict[str, Any]:
    """Which decoders import, their versions and the FFmpeg each one uses."""
    out: dict[str, Any] = {}
    import av

    libs = {k: ".".join(map(str, v)) for k, v in av.library_versions.items()}
    out["pyav"] = {
        "found": True,
        "version": av.__version__,
        "ffmpeg": getattr(av, "ffmpeg_version_info", None),
        "libraries": libs,
    }
    try:
        import decord

        out["decord"] = {"found": True, "version": getattr(decord, "__version__", None)}
    except Exception as e:  # noqa: BLE001 - any import failure means "not usable"
        out["decord"] = {"found": False, "detail": _err(e)}
    try:
        import cv2

        build = cv2.getBuildInformation().splitlines()
        keys = ("FFMPEG:", "avcodec:", "avformat:")
        ff = [" ".join(ln.split()) for ln in build if ln.strip().startswith(keys)]
        out["opencv"] = {"found": True, "version": cv2.__version__, "ffmpeg": "; ".join(ff)}
    except Exception as e:  # noqa: BLE001
        out["opencv"] = {"found": False, "detail": _err(e)}
    tc: dict[str, Any] = {"found": _version("torchcodec") is not None}
    tc["version"] = _version("torchcodec")
    if tc["found"]:
        try:
            from torchcodec.decoders import VideoDecoder  # noqa: F401 - loads FFmpeg

            tc["ffmpeg_loads"] = True
            try:
                from torchcodec import _core

                tc["ffmpeg"] = dict(_core.get_ffmpeg_library_versions())
            except Exception:  # noqa: BLE001 - a private helper; the load above is what counts
                pass
        except Exception as e:  # noqa: BLE001
            tc["ffmpeg_loads"] = False
            tc["detail"] = _err(e)
    else:
        tc["detail"] = "not installed (pip install 'avssl[torchcodec]')"
    out["torchcodec"] = tc
    out["ffmpeg_binary"] = _binary("ffmpeg")
    out["ffprobe_binary"] = _binary("ffprobe")
    return out


def gpu() -> dict[str, Any]:
    import torch

    ok = torch.cuda.is_available()
    return {
        "cuda_available": ok,
        "torch_cuda": torch.version.cuda,
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if ok
        else [],
    }


def nvdec(video: Path, cuda: bool) -> dict[str, Any]:
    """Decode frame 1 of a self-test video with torchcodec on the GPU (NVDEC)."""
    if not cuda:
        return {"status": "not checked: no GPU"}
    try:
        from torchcodec.decoders import VideoDecoder

        dec = VideoDecoder(str(video), device="cuda", seek_mode="exact")
        frame = dec.get_frame_at(1).data.cpu().numpy()
        got = selftest.read_index(frame)
        return {"status": "ok" if got == 1 else "FAIL", "detail": f"asked frame 1, got {got}"}
    except Exception as e:  # noqa: BLE001 - no NVDEC, no CUDA torchcodec build, ...
        return {"status": "unavailable", "detail": _err(e)}


def collect(backends: list[str], reads: int) -> dict[str, Any]:
    """The whole report (see the design notes)."""
    import torch

    report: dict[str, Any] = {
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "packages": {
            "avssl": _version("avssl"),
            "numpy": _version("numpy"),
            "torch": torch.__version__,
            "torchvision": _version("torchvision"),
            "torchaudio": _version("torchaudio"),
        },
        "decoders": decoders(),
        "available_backends": list(decode.available_backends()),
    }
    report["gpu"] = gpu()
    with tempfile.TemporaryDirectory(prefix="avssl-doctor-") as tmp:
        checks = selftest.run_selftest(tmp, backends, reads=reads)
        report["nvdec"] = nvdec(Path(tmp) / "h264_bframes.mp4", report["gpu"]["cuda_available"])
    rows = [c.as_dict() for c in checks]
    default = [r for r in rows if r["backend"] == "auto"]
    report["selftest"] = {
        "files": {name: note for name, (_, _, note) in selftest.SELFTEST_VIDEOS.items()},
        "results": rows,
    }
    report["default_backend_passes"] = bool(default) and all(r["status"] == "pass" for r in default)
    return report


def render(report: dict[str, Any]) -> str:
    """The report as readable text."""
    lines = [f"Python {report['python']['version']} ({report['python']['executable']})"]
    lines += [f"  {k:<12} {v or 'not installed'}" for k, v in report["packages"].items()]
    lines.append("")
    lines.append("Decoders")
    d = report["decoders"]
    py = d["pyav"]
    lines.append(f"  {'pyav':<12} {py['version']}, FFmpeg {py['ffmpeg']}")
    lines.append(f"  {'':<12} " + ", ".join(f"{k} {v}" for k, v in py["libraries"].items()))
    for name in ("decord", "opencv", "torchcodec"):
        e = d[name]
        if not e["found"]:
            lines.append(f"  {name:<12} not found ({e.get('detail', '')})")
            continue
        extra = ""
        if name == "opencv":
            extra = f", {e['ffmpeg'] or 'no FFmpeg'}"
        if name == "torchcodec":
            if e.get("ffmpeg_loads"):
                ff = e.get("ffmpeg") or {}
                extra = ", FFmpeg libraries load" + (f" ({ff.get('ffmpeg_version')})" if ff else "")
            else:
                extra = f", FFmpeg libraries do NOT load: {e.get('detail', '')}"
        lines.append(f"  {name:<12} {e['version']}{extra}")
    for name in ("ffmpeg_binary", "ffprobe_binary"):
        e = d[name]
        what = f"{e['path']}: {e.get('version')}" if e["found"] else e.get("detail", "not found")
        lines.append(f"  {name.split('_')[0]:<12} {what}")
    lines.append("")
    lines.append("Exact-frame self-test (random reads through read_frames vs a sequential decode)")
    for name, note in report["selftest"]["files"].items():
        lines.append(f"  {name}: {note}")
        for r in report["selftest"]["results"]:
            if r["file"] != name:
                continue
            what = f"{r['frames_checked']} frames in {r['reads']} reads" if r["reads"] else ""
            if r["wrong"]:
                w = r["wrong"][0]
                what += f"; e.g. asked {w['asked']}, got {w['got']}"
            if r["detail"]:
                what += ("; " if what else "") + r["detail"]
            lines.append(f"    {r['backend']:<11} {r['status']:<12} {what}")
    g = report["gpu"]
    lines.append("")
    gpus = ", ".join(g["devices"]) if g["cuda_available"] else "none (torch.cuda not available)"
    lines.append(f"GPU     {gpus}; torch built with CUDA {g['torch_cuda']}")
    nv = report["nvdec"]
    lines.append(f"NVDEC   {nv['status']}" + (f" ({nv['detail']})" if nv.get("detail") else ""))
    lines.append("")
    verdict = "passes" if report["default_backend_passes"] else "FAILS"
    lines.append(f"Default backend (auto) {verdict} the exact-frame self-test.")
    return "\n".join(lines)


def doctor(args: argparse.Namespace) -> int:
    backends = ["auto", *(args.backends or decode.BACKENDS)]
    report = collect(backends, args.reads)
    print(json.dumps(report, indent=1) if args.json else render(report))
    return 0 if report["default_backend_passes"] else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="avssl",
        description="avssl tools. The work is done by avssl-prep, avssl-train, avssl-eval, "
        "avssl-localize and avssl-track; 'avssl doctor' checks that this install can do it.",
    )
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "doctor",
        help="check the install: versions, decoders, exact-frame test, GPU",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Check this install: Python and torch versions, the video decoders found "
        "(PyAV, decord, OpenCV, torchcodec) with their FFmpeg builds, the ffmpeg programs, an "
        "exact-frame self-test of every backend (two small videos with B-frames whose frames "
        "spell their own index, read at random and compared with a sequential decode), the GPU "
        "and NVDEC.\n\n"
        "Reading it: 'pass' = exact frames; 'refused' = avssl never gives that backend this "
        "kind of file (it is known to return wrong frames there), which is fine; 'FAIL' on a "
        "backend = do not force it with a backend= argument; 'FAIL' on auto (exit status 1) = "
        "this install returns wrong frames: reinstall the pinned set (pip install -e . -c "
        "constraints.txt) and run again. A missing decoder only narrows the choice; torchcodec "
        "needs the system FFmpeg libraries (apt-get install ffmpeg).",
    )
    p.add_argument(
        "--json", action="store_true", help="print the report as JSON (for scripts and CI logs)"
    )
    p.add_argument(
        "--backends",
        nargs="+",
        choices=decode.BACKENDS,
        help="backends to self-test besides auto (default: all)",
    )
    p.add_argument(
        "--reads",
        type=int,
        default=12,
        metavar="N",
        help="random reads per backend and file (default 12; more reads, a longer and stricter "
        "test)",
    )
    p.set_defaults(func=doctor)
    args = ap.parse_args(argv)
    return int(args.func(args))


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
