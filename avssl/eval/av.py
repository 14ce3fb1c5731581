"""Evaluations of two-tower audio-visual models: sound-source localization, audio-visual
correspondence and cross-modal retrieval (``avssl-eval localization | correspondence``);
docs/audio_visual.md tells the protocols.
Design notes: docs/design/models_tasks_eval.md, "avssl/eval/av.py".
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avssl.data.dataset import FrameReader, load_probe_infos
from avssl.data.manifest import read_manifest
from avssl.eval import metrics
from avssl.eval.image_sets import spread
from avssl.eval.loading import LoadedAV, load_av_model
from avssl.eval.pictures import write_heatmaps
from avssl.eval.results import write_result

CONDITIONS = ("matched", "silent", "mismatched")
#: Heatmap sheets written by default: one trial each of this many held-out clips.
PICTURES = 12


def trial_reader(manifest: Path, model: LoadedAV, frame_size: int | None = None) -> FrameReader:
    """A reader for the trials of ``manifest``: its prep card's root, probes and cache."""
    card_path = manifest.parent / "prep.json"
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    cache_dir = card.get("cache_dir")
    if not cache_dir or not Path(cache_dir).is_dir():
        cache_dir = str(manifest.parent)
    size = frame_size or int(model.cfg.data.frame_size)
    return FrameReader(
        Path(card.get("root") or manifest.parent), (size, size),
        infos=load_probe_infos(manifest.parent / "probe.jsonl"), cache_mb=512,
        sample_rate=model.model.sample_rate, cache_dir=cache_dir,
    )  # fmt: skip


def _sound(row: dict[str, Any], reader: FrameReader) -> np.ndarray:
    from avssl.tasks.av import read_sound

    seconds = float(row.get("audio_s", 1.0))
    if "cache_audio" in row and "cache_audio_start_s" not in row:
        return reader.cached_audio(row["cache_audio"], int(row["cache_audio_sample"]), seconds)
    return read_sound(row, float(row["audio_start_s"]), seconds, reader)


def _other(rows: list[dict[str, Any]], i: int) -> int:
    """The next trial (cyclically) whose labels differ from trial ``i``'s."""
    mine = set(rows[i].get("labels", []))
    for k in range(1, len(rows)):
        j = (i + k) % len(rows)
        if not mine or not mine & set(rows[j].get("labels", [])):
            return j
    raise ValueError("mismatched trials need trials of at least two different labels")


def picture_trials(rows: list[dict[str, Any]], n: int) -> list[int]:
    """Indices of up to ``n`` trials to draw: one per clip (its middle trial), the clips spread
    evenly over the manifest's order -- not the first ``n`` trials, which are few clips'."""
    if n <= 0:
        return []
    by_clip: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_clip.setdefault(str(r.get("video")), []).append(i)
    return sorted(spread([ix[len(ix) // 2] for ix in by_clip.values()], n))


def _keep_trial(
    kept: dict[str, Any], rows: list[dict[str, Any]], i: int, clip: torch.Tensor
) -> None:
    r = rows[i]
    kept["frames"].append(clip[clip.shape[0] // 2].permute(1, 2, 0).numpy())
    kept["boxes"].append(r["bbox"])
    kept["ids"].append(str(r.get("id", f"{r.get('video')}@{r.get('frame', 0)}")))
    kept["trials"].append({"index": i, "of": len(rows), **r})
    kept["other_labels"].append(list(rows[_other(rows, i)].get("labels", [])))


@torch.no_grad()
def evaluate_localization(
    loaded: LoadedAV,
    rows: list[dict[str, Any]],
    reader: FrameReader,
    *,
    batch_size: int = 64,
    keep_maps: int = 0,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Metrics over ``rows`` under the three conditions, and (``keep_maps`` > 0) the frames,
    heatmaps and match probabilities of up to that many trials, one per clip
    (:func:`picture_trials`), for pictures (:func:`write_heatmaps`)."""
    from avssl.data.transforms import to_float_normalized
    from avssl.tasks.av import read_frames

    if not rows:
        raise ValueError("no localization trials")
    model, aug = loaded.model, loaded.cfg.aug
    out: dict[str, dict[str, list[float]]] = {c: {} for c in CONDITIONS}
    keep = set(picture_trials(rows, keep_maps))
    kept: dict[str, Any] = {k: [] for k in ("frames", "boxes", "ids", "trials", "other_labels")}
    kept |= {k: [] for c in CONDITIONS for k in (c, f"{c}_p")}
    chance = []
    for lo in range(0, len(rows), batch_size):
        part = list(range(lo, min(lo + batch_size, len(rows))))
        clips = torch.stack([read_frames(rows[i], reader, loaded.frames, loaded.frame_step)
                             for i in part])  # fmt: skip
        x = to_float_normalized(clips, aug)
        sounds = {
            "matched": [_sound(rows[i], reader) for i in part],
            "mismatched": [_sound(rows[_other(rows, i)], reader) for i in part],
        }
        sounds["silent"] = [np.zeros_like(s) for s in sounds["matched"]]
        h, w = clips.shape[-2:]
        for k, i in enumerate(part):
            if i in keep:
                _keep_trial(kept, rows, i, clips[k])
        for cond in CONDITIONS:
            audio = torch.from_numpy(np.stack(sounds[cond]))
            maps = model.localize(x, audio).numpy()
            prob = torch.sigmoid(model.match_logit(x, audio).float()).numpy()
            rec = out[cond]
            for k, i in enumerate(part):
                boxes = rows[i]["bbox"]
                gt = metrics.boxes_to_mask(boxes, h, w)
                rec.setdefault("ciou", []).append(metrics.ciou(maps[k], gt))
                rec.setdefault("pointing", []).append(metrics.pointing_game(maps[k], boxes, (h, w)))
                rec.setdefault("match", []).append(float(prob[k] > 0.5))
                rec.setdefault("prob", []).append(float(prob[k]))
                if cond == "matched":
                    chance.append(float(gt.mean()))
                if i in keep:
                    kept[cond].append(maps[k])
                    kept[f"{cond}_p"].append(float(prob[k]))
    res: dict[str, float] = {}
    summ = metrics.localization_summary(out["matched"]["ciou"])
    res["cIoU@0.5"], res["AUC"], res["mean_cIoU"] = summ["cIoU@0.5"], summ["AUC"], summ["mean_cIoU"]
    for cond in CONDITIONS:
        res[f"pointing_{cond}"] = float(np.mean(out[cond]["pointing"]))
        res[f"match_rate_{cond}"] = float(np.mean(out[cond]["match"]))
        res[f"mean_match_prob_{cond}"] = float(np.mean(out[cond]["prob"]))
    res["cIoU@0.5_mismatched"] = float(np.mean(np.asarray(out["mismatched"]["ciou"]) >= 0.5))
    res["chance_pointing"] = float(np.mean(chance))
    res["trials"] = float(len(rows))
    return res, kept


def localization_report(
    loaded: LoadedAV, manifest: Path, out_dir: Path | None, *, frame_size: int | None = None,
    max_trials: int | None = None, pictures: int = PICTURES,
) -> dict[str, Any]:  # fmt: skip
    """Evaluate on a trials manifest; with ``out_dir``, write its heatmap sheets there."""
    rows = spread([r for r in read_manifest(manifest) if r.get("bbox")], max_trials)
    reader = trial_reader(manifest, loaded, frame_size)
    t0 = time.monotonic()
    res, kept = evaluate_localization(loaded, rows, reader, keep_maps=pictures if out_dir else 0)
    pics = write_heatmaps(kept, out_dir) if out_dir is not None and kept["frames"] else []
    return {"metrics": res, "manifest": str(manifest), "pictures": pics,
            "seconds": round(time.monotonic() - t0, 2)}  # fmt: skip


@torch.no_grad()
def embed_pairs(
    loaded: LoadedAV, image_rows: list[dict[str, Any]], sound_rows: list[dict[str, Any]],
    reader: FrameReader, batch_size: int = 128,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The two towers' L2-normalised embeddings of image rows and sound rows."""
    from avssl.data.transforms import to_float_normalized
    from avssl.tasks.av import read_frames

    model, v, a = loaded.model, [], []
    for lo in range(0, len(image_rows), batch_size):
        clips = torch.stack([read_frames(r, reader, loaded.frames, loaded.frame_step)
                             for r in image_rows[lo : lo + batch_size]])  # fmt: skip
        v.append(model.encode_video(to_float_normalized(clips, loaded.cfg.aug)).numpy())
    for lo in range(0, len(sound_rows), batch_size):
        audio = np.stack([_sound(r, reader) for r in sound_rows[lo : lo + batch_size]])
        a.append(model.encode_audio(torch.from_numpy(audio)).numpy())
    return np.concatenate(v), np.concatenate(a)


def unique_sounds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per distinct sound (positives of a pair manifest repeat a recording)."""
    seen, out = set(), []
    for r in rows:
        if int(r.get("target", 1)) != 1:
            continue
        key = ((r["cache_audio"], r.get("cache_audio_sample")) if "cache_audio" in r
               else (r.get("audio_video", r.get("video")), r.get("audio_start_s")))  # fmt: skip
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def _label(row: dict[str, Any]) -> str:
    labels = row.get("labels") or [str(row.get("class_id", ""))]
    return "|".join(sorted(str(x) for x in labels))


@torch.no_grad()
def correspondence_accuracy(
    loaded: LoadedAV, rows: list[dict[str, Any]], reader: FrameReader, *, seed: int = 1,
    batch_size: int = 128, grid: bool | None = None,
) -> dict[str, float]:  # fmt: skip
    """Held-out correspondence: every positive of ``rows`` shown with its own sound or, with
    probability 1/2, with another video's sound cut on its grid (av_sync: the same video's,
    shifted) -- the examples ``avssl-train`` validates on (same maker, same seed) -- scored by
    ``match_logit > 0``. ``grid``: cut the negatives on the frame grid or anywhere (default:
    as the run trained). Accuracy and balanced accuracy."""
    import dataclasses

    from avssl.data.dataset import ManifestDataset
    from avssl.data.transforms import to_float_normalized
    from avssl.tasks.av import pair_maker, positives

    cfg = loaded.cfg
    if grid is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, av_grid=grid))
    pos = positives(rows)
    maker = pair_maker(cfg, pos, train=False)
    ds = ManifestDataset(pos, maker, reader, seed=seed)
    right = np.zeros(2)
    total = np.zeros(2)
    for lo in range(0, len(ds), batch_size):
        exs = [ds[(0, i)] for i in range(lo, min(lo + batch_size, len(ds)))]
        x = to_float_normalized(torch.stack([e["frames"] for e in exs]), cfg.aug)
        audio = torch.stack([e["audio"] for e in exs])
        y = np.array([int(e["target"]) for e in exs])
        pred = (loaded.model.match_logit(x, audio) > 0).numpy().astype(int)
        for c in (0, 1):
            right[c] += ((pred == y) & (y == c)).sum()
            total[c] += (y == c).sum()
    return {"accuracy": float(right.sum() / total.sum()),
            "balanced_accuracy": float(np.mean(right / np.maximum(total, 1))),
            "pairs": float(total.sum())}  # fmt: skip


def default_out(spec: str) -> Path:
    """Where an evaluation of ``spec`` writes without ``--out``: ``RUN/eval`` for a run directory
    (a checkpoint file: its directory's), ``RUN/eval/random`` for the ``random:RUN`` baseline --
    never over the trained model's own results."""
    if spec.startswith("random:"):
        return default_out(spec.split(":", 1)[1]) / "random"
    p = Path(spec)
    return (p if p.is_dir() or not p.suffix else p.parent) / "eval"


def _default_trials(loaded: LoadedAV) -> Path:
    m = loaded.cfg.data.val_manifest or loaded.cfg.data.manifest
    if m is None:
        from avssl.train import default_manifest

        m = str(default_manifest(loaded.cfg.task))
    p = Path(m).parent / "localization_test.jsonl"
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no trials beside the run's manifest; pass --trials")
    return p


def _model(spec: str, loaded: LoadedAV) -> dict[str, Any]:
    """The result's "model" of an audio-visual command."""
    return {"spec": spec, "path": loaded.path, "task": loaded.cfg.task}


def _print_metrics(kind: str, res: dict[str, float]) -> None:
    print(f"{kind}:")
    for k, v in res.items():
        print(f"  {k:<26} {v:.4f}" if k != "trials" else f"  {k:<26} {int(v)}")


def run_localization(
    model: str, *, trials: str | None = None, out: str | None = None,
    frame_size: int | None = None, max_trials: int | None = None, pictures: int = PICTURES,
    argv: Sequence[str] = (),
) -> int:  # fmt: skip
    """``avssl-eval localization``: OUT/localization.json and heatmap sheets in OUT/heatmaps."""
    t0 = time.monotonic()
    loaded = load_av_model(model)
    manifest = Path(trials) if trials else _default_trials(loaded)
    out_dir = Path(out) if out else default_out(model)
    rep = localization_report(loaded, manifest, out_dir / "heatmaps", frame_size=frame_size,
                              max_trials=max_trials, pictures=pictures)  # fmt: skip
    path = out_dir / "localization.json"
    write_result(path, "localization", argv, t0, model=_model(model, loaded),
                 dataset={"name": str(manifest), "trials": int(rep["metrics"]["trials"])},
                 metrics=rep["metrics"],
                 extra={"pictures": rep["pictures"], "conditions": list(CONDITIONS)})  # fmt: skip
    _print_metrics("localization", rep["metrics"])
    print(f"wrote {path} and {len(rep['pictures'])} heatmap sheets in {out_dir / 'heatmaps'}")
    return 0


def run_correspondence(
    model: str, pairs: str, *, max_pairs: int | None = None, grid: bool | None = None,
    out: str | None = None, argv: Sequence[str] = (),
) -> int:  # fmt: skip
    """``avssl-eval correspondence``: OUT/correspondence.json (accuracy, balanced accuracy)."""
    loaded = load_av_model(model)
    manifest = Path(pairs)
    rows = spread(read_manifest(manifest), max_pairs)
    t0 = time.monotonic()
    res = correspondence_accuracy(loaded, rows, trial_reader(manifest, loaded), grid=grid)
    path = (Path(out) if out else default_out(model)) / "correspondence.json"
    write_result(path, "correspondence", argv, t0, model=_model(model, loaded),
                 dataset={"name": str(manifest)}, metrics=res)  # fmt: skip
    _print_metrics("correspondence", res)
    print(f"wrote {path}")
    return 0


def run_cross_modal(
    model: str, images: str, sounds: str, *, ks: Sequence[int] = (1, 5, 10),
    out: str | None = None, argv: Sequence[str] = (),
) -> int:  # fmt: skip
    """``avssl-eval cross-modal``: OUT/cross_modal.json (R@k, nDCG@k, mAP both ways)."""
    from avssl.eval.retrieval import cross_modal

    loaded = load_av_model(model)
    image_rows, sound_rows = read_manifest(images), unique_sounds(read_manifest(sounds))
    if not image_rows or not sound_rows:
        raise ValueError("no image rows or no sound rows")
    reader = trial_reader(Path(images), loaded)
    t0 = time.monotonic()
    v, a = embed_pairs(loaded, image_rows, sound_rows, reader)
    rel = metrics.label_relevance([_label(r) for r in image_rows], [_label(r) for r in sound_rows])
    res = cross_modal(v, a, rel, ks)
    flat = {f"{d}/{k}": float(x) for d, m in res.items() for k, x in m.items()}
    path = (Path(out) if out else default_out(model)) / "cross_modal.json"
    write_result(path, "cross-modal", argv, t0, model=_model(model, loaded),
                 dataset={"images": images, "sounds": sounds, "num_images": len(image_rows),
                          "num_sounds": len(sound_rows)},
                 metrics=flat, extra={"relevance": "same label"})  # fmt: skip
    print(f"cross-modal retrieval: {len(sound_rows)} sounds, {len(image_rows)} images")
    for k, x in flat.items():
        if k.endswith(("R@1", "R@5", "R@10", "mAP")) or "nDCG@" in k:
            print(f"  {k:<28} {x:.4f}")
    print(f"wrote {path}")
    return 0
