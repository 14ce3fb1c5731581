"""The manifests of the video preps, assembled from the per-video records of ``OUT/records/``
(:mod:`data_prep.videos` writes those): videos.jsonl, probe.jsonl, quarantine.csv, the
temporal-order or audio-visual pair manifests, and the prep.json card. The format of every file
is documented in ``docs/manifests.md``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from avssl.data.manifest import atomic_write_text, write_manifest

from .av_prep import PAIR_TASKS, PairConfig, pair_rows
from .scan import Scan, write_skipped

#: Version of the manifest rows (the ``"v"`` field of every row); see docs/manifests.md.
FORMAT_VERSION = 1
TASKS = ("shuffle_learn", "odd_one_out", "arrow_of_time")


def record_name(relpath: str) -> str:
    """A flat, readable file name for a video's record: ``Class/v_x.avi`` -> ``Class__v_x.avi``."""
    return relpath.replace("/", "__") + ".json"


@dataclass
class PrepResult:
    out: Path
    counts: dict[str, int]  # processed / reused / quarantined / ...
    seconds: float
    card: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        c = self.card
        lines = [f"{c.get('dataset', 'prep')} manifests in {self.out}"]
        v = c.get("videos", {})
        lines.append(
            f"  videos      {v.get('ok', 0)} ok, {v.get('quarantined', 0)} quarantined "
            f"(see quarantine.csv), {v.get('missing', 0)} listed but missing, "
            f"{v.get('unlisted', 0)} on disk but unlisted; {self.counts.get('processed', 0)} "
            f"processed, {self.counts.get('reused', 0)} reused in {self.seconds:.1f} s"
        )
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(c.get("skipped", {}).items()))
        kinds = f" ({kinds})" if kinds else ""
        lines.append(f"  skipped     {v.get('skipped', 0)} not taken{kinds} (see skipped.csv)")
        if v.get("decode_warnings"):
            lines.append(
                f"  damaged     {v['decode_warnings']} video(s) kept with concealed decode damage;"
                " their damaged frames are never sampled (videos.jsonl damaged_frames; "
                "--strict-decode quarantines them)"
            )
        for name, s in c.get("splits", {}).items():
            counts = ", ".join(f"{t} {n}" for t, n in s["samples"].items())
            videos = "; ".join(f"{s[k]} {k[:-7]} videos" for k in ("train_videos", "test_videos")
                               if k in s)  # fmt: skip
            lines.append(f"  split {name:5s} {videos}; {counts}; manifests in {s['dir']}")
        for name, s in list(c.get("splits", {}).items())[:1]:
            key = "shuffle_learn" if c.get("config_type") == "MineConfig" else "positives"
            items = sorted(s["per_class"].items(), key=lambda kv: kv[1][key])
            named = [(k, d) for k, d in items if k != "(none)"]
            if named:
                few = ", ".join(f"{k} {d[key]}" for k, d in named[:3])
                rest = "; some videos have no class" if len(named) < len(items) else ""
                lines.append(f"  per class   {name}: {len(named)} classes; fewest {key}: {few}"
                             f"{rest} (all counts in prep.json)")  # fmt: skip
            elif items:
                lines.append(f"  per class   {name}: no classes (no video is in a class "
                             "sub-folder)")  # fmt: skip
        lines.append(f"wrote {self.out}: videos.jsonl, prep.json and the manifests above")
        return "\n".join(lines)


def _split_dir(scan: Scan, split: str) -> str:
    """Where a split's temporal manifests go: the output itself for a folder and the built-in
    set (one split, "all"), ``splitK`` for UCF-101."""
    return "." if scan.dataset in ("folder", "synth") else f"split{split}"


def assemble(out: Path, scan: Scan, config: Any, extra: dict[str, Any]) -> dict[str, Any]:
    """Write every manifest of ``out`` from the records of ``scan``'s videos; return the card.

    Raises FileNotFoundError listing videos without a record (e.g. a shard not merged yet).
    """
    records: list[dict[str, Any]] = []
    absent = []
    for e in scan.entries:
        p = out / "records" / record_name(e.relpath)
        try:
            records.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            absent.append(e.relpath)
    if absent:
        raise FileNotFoundError(
            f"{out}: {len(absent)} video(s) have no record yet (first: {absent[0]}); "
            "run the remaining shards or re-run the prep"
        )
    ok = [r for r in records if r["status"] == "ok"]
    bad = [r for r in records if r["status"] != "ok"]
    write_manifest(out / "videos.jsonl", [r["video"] for r in ok])
    write_manifest(out / "probe.jsonl", [{"video": r["relpath"], **r["info"]} for r in ok])
    write_manifest(
        out / "quarantine.csv",
        [{"path": r["relpath"], "reason": r["reason"], "message": r["message"]} for r in bad],
    )
    if scan.dataset in ("ucf101", "audioset"):
        write_manifest(out / "missing.csv", [{"path": p} for p in scan.missing])
        write_manifest(out / "unlisted.csv", [{"path": p} for p in scan.unlisted])
    write_skipped(out / "skipped.csv", scan.skipped)
    if isinstance(config, PairConfig):
        splits = _write_pairs(out, scan, ok, config)
    else:
        splits = _write_temporal(out, scan, ok)
    videos_per_class = Counter(r["video"]["class_name"] or "(none)" for r in ok)
    card = {
        "format": "avssl-prep",
        "version": FORMAT_VERSION,
        "dataset": scan.dataset,
        "root": scan.root,
        "classes": scan.classes,
        "config": asdict(config),
        **extra,
        "videos": {
            "listed": len(scan.entries) + len(scan.missing),
            "ok": len(ok),
            "quarantined": len(bad),
            "missing": len(scan.missing),
            "unlisted": len(scan.unlisted),
            "skipped": len(scan.skipped),
            "decode_warnings": sum(1 for r in ok if r["video"].get("decode_warnings")),
        },
        "skipped": scan.skipped_counts(),
        "quarantine_reasons": dict(Counter(r["reason"] for r in bad)),
        "splits": splits,
        "videos_per_class": dict(sorted(videos_per_class.items())),
    }
    atomic_write_text(out / "scan.json", json.dumps(scan.to_dict(), indent=1) + "\n")
    atomic_write_text(out / "prep.json", json.dumps(card, indent=1) + "\n")
    return card


def _write_temporal(out: Path, scan: Scan, ok: list[dict[str, Any]]) -> dict[str, Any]:
    """Per split: the temporal-order pretext manifests (from its training videos only) and, for
    UCF-101, its train/test video lists."""
    splits: dict[str, Any] = {}
    for split in scan.split_names:
        d = out / _split_dir(scan, split)
        train = [r for r in ok if r["video"]["splits"].get(split) == "train"]
        test = [r for r in ok if r["video"]["splits"].get(split) == "test"]
        counts = {}
        per_class: dict[str, Counter[str]] = {}
        for r in train:
            per_class.setdefault(r["video"]["class_name"] or "(none)", Counter())[
                "train_videos"
            ] += 1
        for task in TASKS:
            rows: list[dict[str, Any]] = []
            for r in train:  # pretext samples of split k: its training videos only
                base = {"v": FORMAT_VERSION, "video": r["relpath"],
                        "class_id": r["video"]["class_id"]}  # fmt: skip
                if "cache_video" in r["video"]:
                    base["cache_video"] = r["video"]["cache_video"]
                rows.extend({**base, **s} for s in r[task])
                per_class[r["video"]["class_name"] or "(none)"][task] += len(r[task])
            write_manifest(d / f"{task}.jsonl", rows)
            counts[task] = len(rows)
        if scan.dataset == "ucf101":
            write_manifest(d / "train.jsonl", [r["video"] for r in train])
            write_manifest(d / "test.jsonl", [r["video"] for r in test])
        splits[split] = {
            "dir": str(d.relative_to(out)) if d != out else ".",
            "train_videos": len(train),
            "test_videos": len(test),
            "samples": counts,
            "per_class": {
                k: {"train_videos": v["train_videos"], **{t: v[t] for t in TASKS}}
                for k, v in sorted(per_class.items())
            },
        }
    return splits


def _write_pairs(
    out: Path, scan: Scan, ok: list[dict[str, Any]], cfg: PairConfig
) -> dict[str, Any]:
    """Per role (train, test): the video list and the avc / sync pair manifests; negatives of
    a role come from videos of the same role only."""
    splits: dict[str, Any] = {}
    for role in ("train", "test"):
        recs = [r for r in ok if role in r["video"]["splits"].values()]
        rows, per_label = pair_rows(recs, cfg, FORMAT_VERSION)
        write_manifest(out / f"{role}.jsonl", [r["video"] for r in recs])
        for task in PAIR_TASKS:
            write_manifest(out / f"{task}_{role}.jsonl", rows[task])
        names = scan.class_names
        splits[role] = {
            "dir": ".",
            "train_videos" if role == "train" else "test_videos": len(recs),
            "samples": {f"{t}_{role}": len(rows[t]) for t in PAIR_TASKS},
            "per_class": {names.get(k, k): {"positives": n} for k, n in sorted(per_label.items())},
        }
    return splits
