"""The built-in set's audio-visual pairs (``avssl-prep synth`` writes them to ``DIR/av``).

Design notes: docs/design/prep_tracking_cli.md, "data_prep/synth_av.py".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from avssl.data.manifest import read_manifest, write_manifest

from .av_prep import PairConfig
from .scan import Entry, Scan

SYNTH_PAIRS = PairConfig(frames_per_s=8.0, min_window_peak_dbfs=-30.0)


def scan_synth(root: str | Path) -> Scan:
    """The synth clips of ``root`` (``manifest.jsonl``) as a scan of ``root/videos`` with the
    roles train (synth split ``train``) and test (``val`` and ``test``)."""
    r = Path(root).resolve()
    rows = read_manifest(r / "manifest.jsonl")
    classes = sorted({row["class_name"] for row in rows}, key=lambda c: [
        row["class_id"] for row in rows if row["class_name"] == c][0])  # fmt: skip
    entries = []
    for row in rows:
        role = "train" if row["split"] == "train" else "test"
        rel = Path(row["file"]).relative_to("videos").as_posix()
        meta = {
            "labels": [row["class_name"]],
            "clip_id": row["clip_id"],
            "synth_split": row["split"],
        }
        entries.append(Entry(rel, row["class_name"], int(row["class_id"]), -1, {"all": role}, meta))
    return Scan("synth", str(r / "videos"), classes, entries, ["all"])


def _localization_rows(root: Path, out: Path) -> list[dict[str, Any]]:
    rows = []
    boxes: dict[str, dict[str, Any]] = {}
    for r in read_manifest(out / "avc_test.jsonl"):
        if int(r["target"]) != 1:
            continue
        clip = Path(r["video"]).stem
        if clip not in boxes:
            boxes[clip] = json.loads((root / "boxes" / f"{clip}.json").read_text())
        gt = boxes[clip]
        sounding = [o for o in gt["objects"] if o["sounding"]][0]
        others = [o["class_name"] for o in gt["objects"] if not o["sounding"]]
        rows.append({**r, "bbox": [sounding["boxes"][r["frame"]]], "distractors": others})
    return rows


def prep_synth_av(
    root: str | Path, out: str | Path | None = None, *, workers: int | None = None,
    progress: bool = True,
) -> Any:  # fmt: skip
    """Mine the pairs of the synth set at ``root`` into ``out`` (default ``root/av``)."""
    from .videos import prep_videos

    r = Path(root).resolve()
    o = Path(out) if out is not None else r / "av"
    result = prep_videos(scan_synth(r), o, config=SYNTH_PAIRS, workers=workers, progress=progress)
    write_manifest(o / "localization_test.jsonl", _localization_rows(r, o))
    return result
