"""Bad-media survival: every prep command on a generated corpus of broken files.

    python -m benchmarks.bad_media [--keep DIR] [--json PATH]     # ~30 s on 2 cores

Builds the corpus of tests/badmedia.py in a temporary folder (over 20 kinds of bad media --
empty, cut, mislabelled, stream-less, corrupt mid-stream, FIFOs, folders and broken links named
like media -- and good files with awkward names, sizes and timing), runs each prep command that
reads media on it (``folder``, ``ucf101`` and ``audioset`` on the video group laid out as each
expects, ``esc50`` and ``audio-folder`` on the audio group, ``images`` on the image group; one
worker, in this process, under a deadline), then runs it again on the same output. Prints per
command: cases tried, bad ones quarantined with an expected reason, good ones kept with the
expected manifest fields, data lost (good files missing from the manifest), whether the re-run
gave identical manifests, and the wall time of the first run. Exits 1 if any case is wrong, a
run fails or hangs, or a re-run changes a byte. docs/manifests.md ("Bad-media corpus") quotes
the table.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # tests/ is not an installed package
    sys.path.insert(0, str(REPO))

from tests.badmedia import (  # noqa: E402
    COMMANDS,
    KEEP,
    Case,
    PrepHang,
    build_bad_corpus,
    compare,
    make_layout,
    outputs,
    run_cli,
    skipped_kinds,
)

RUN_TIMEOUT_S = 300.0


def run_command(command: str, corpus: Path, cases: list[Case], work: Path) -> dict[str, Any]:
    """One command: first run, comparison, second run; a row of the table."""
    layout = make_layout(command, corpus, cases, work / f"layout-{command}")
    out = work / f"out-{command}"
    argv = [*layout.argv, "--out", str(out)]
    log = io.StringIO()
    row: dict[str, Any] = {"command": command, "tried": len(layout.cases)}
    t0 = time.monotonic()
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            rc = run_cli(argv, RUN_TIMEOUT_S)
    except (Exception, PrepHang) as e:  # noqa: BLE001 - reported as a failed row
        row.update(seconds=time.monotonic() - t0, ok=False, problems=[f"run failed: {e!r}"])
        row["log"] = log.getvalue()[-2000:]
        return row
    row["seconds"] = time.monotonic() - t0
    res = compare(layout, out) if rc == 0 else None
    problems = [f"exit code {rc}"] if rc != 0 else list(res.problems if res else [])
    if res is not None:
        row.update(
            bad=res.bad,
            quarantined_right=res.quarantined_right,
            good=res.good,
            good_kept=res.good_kept,
            data_lost=res.data_lost,
            reasons=res.reasons,
        )
        first = outputs(out)
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            rc2 = run_cli(argv, RUN_TIMEOUT_S)
        row["rerun_identical"] = rc2 == 0 and outputs(out) == first
        if not row["rerun_identical"]:
            problems.append(f"re-run exit code {rc2} or changed manifests")
    row["problems"] = problems
    row["ok"] = not problems
    if problems:
        row["log"] = log.getvalue()[-2000:]
    return row


def table(rows: list[dict[str, Any]]) -> str:
    head = ("command", "cases tried", "quarantined, right reason", "good kept", "data lost",
            "re-run identical", "wall time")  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "bad" not in r:
            lines.append(f"| {r['command']} | {r['tried']} | FAILED | | | | {r['seconds']:.1f} s |")
            continue
        lines.append(
            f"| {r['command']} | {r['tried']} | {r['quarantined_right']}/{r['bad']} | "
            f"{r['good_kept']}/{r['good']} | {r['data_lost']} | "
            f"{'yes' if r.get('rerun_identical') else 'NO'} | {r['seconds']:.1f} s |"
        )
    tried = sum(r["tried"] for r in rows)
    survived = sum(r.get("quarantined_right", 0) + r.get("good_kept", 0) for r in rows)
    lost = sum(r.get("data_lost", 0) for r in rows)
    lines.append(f"| **all** | {tried} | | | {lost} | | |")
    lines.append("")
    lines.append(f"cases tried {tried}, handled as expected {survived}, data lost {lost}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", type=Path, default=None, metavar="DIR",
                    help="build and run in DIR (kept) instead of a temporary folder")  # fmt: skip
    ap.add_argument("--json", type=Path, default=None, metavar="PATH",
                    help="also write the rows as JSON")  # fmt: skip
    ap.add_argument("--commands", nargs="+", choices=COMMANDS, default=list(COMMANDS))
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    work = args.keep or Path(tempfile.mkdtemp(prefix="bad-media-"))
    try:
        t0 = time.monotonic()
        cases = build_bad_corpus(work / "corpus")
        kinds = {c.kind for c in cases if c.expected != KEEP}
        print(f"corpus: {len(cases)} entries ({len(kinds)} bad kinds) built in "
              f"{time.monotonic() - t0:.1f} s under {work / 'corpus'}")  # fmt: skip
        for kind, why in skipped_kinds():
            print(f"not built: {kind} -- {why}")
        rows = [run_command(c, work / "corpus", cases, work) for c in args.commands]
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(table(rows))
    failed = [r for r in rows if not r["ok"]]
    for r in failed:
        print(f"\n{r['command']}: FAILED")
        for p in r["problems"]:
            print(f"  {p}")
        if r.get("log"):
            print("  last output:\n    " + r["log"].replace("\n", "\n    "))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
