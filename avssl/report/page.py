"""The markdown page of avssl-report: one function per section of ``OUT/README.md``.

Design notes: docs/design/prep_tracking_cli.md, "avssl/report/page.py".
"""

from __future__ import annotations

import json
import math
import os
import re
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from avssl.data.manifest import atomic_write_text
from avssl.eval.results import BASELINE_DIR
from avssl.report.plots import (
    MAP_MAX_POINTS,
    _examples,
    _is_number,
    _subsample,
    pca_2d,
    plot_confusion,
    plot_embedding,
    plot_folds,
    plot_retrieval,
    plot_training,
)

TSNE_MAX = 5000  # t-SNE only up to this many points (it is O(N^2) in memory)
MAX_HEATMAPS = 200  # gallery entries
TRAIN_KEYS = ("loss", "acc", "lr", "samples_per_s", "data_wait")
TRAIN_LOCALIZATION = "localization.json"  # avssl-train's closing check of an audio-visual run


def read_metrics(
    path: str | os.PathLike[str],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """Split ``metrics.jsonl`` into (training records, evaluation records, unreadable lines).

    A training record has ``step`` and at least one of :data:`TRAIN_KEYS`; an evaluation record has
    at least one ``val_*`` key. Every record gets ``x``, its step; an evaluation record without
    ``step`` gets the step of the last training record before it (evaluations are logged after
    their epoch's steps). Blank, truncated (a run still writing) or non-object lines are counted,
    not fatal; other records (e.g. ``stopped_at_step``) are skipped.
    """
    train: list[dict[str, Any]] = []
    evals: list[dict[str, Any]] = []
    bad = 0
    last_step: float = 0.0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                rec = None
            if not isinstance(rec, dict):
                bad += 1
                continue
            step = float(rec["step"]) if _is_number(rec.get("step")) else None
            if any(k.startswith("val_") for k in rec):
                evals.append({**rec, "x": last_step if step is None else step})
            elif step is not None and any(k in rec for k in TRAIN_KEYS):
                last_step = step
                train.append({**rec, "x": last_step})
    return train, evals, bad


def _load_result(path: Path) -> dict[str, Any]:
    """One ``avssl-eval`` result JSON; ValueError when it is not one."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"unreadable JSON ({e.__class__.__name__}: {e})") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    if doc.get("format") not in (None, "avssl-eval"):
        raise ValueError(f"format is {doc.get('format')!r}, not 'avssl-eval'")
    if "kind" not in doc or not isinstance(doc.get("metrics", {}), dict):
        raise ValueError("no 'kind' or 'metrics' is not an object")
    return doc


def _npz_refs(obj: Any) -> list[str]:
    """Every string ending in ``.npz`` anywhere in a JSON value."""
    if isinstance(obj, str):
        return [obj] if obj.endswith(".npz") else []
    values = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, list) else []
    return [ref for v in values for ref in _npz_refs(v)]


def _resolve(ref: str, *bases: Path) -> Path | None:
    """``ref`` as given (absolute or relative to the working directory), else under each base."""
    return next((b / ref for b in (Path(), *bases) if (b / ref).exists()), None)


def _fmt(v: Any) -> str:
    if isinstance(v, float) and math.isfinite(v):
        a = abs(v)
        return f"{v:.0f}" if a >= 1000 else f"{v:.2f}" if a >= 10 else f"{v:.4f}"
    return str(v)


def _cell(v: Any) -> str:
    return _fmt(v).replace("|", "\\|").replace("\n", " ")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "x"


_Results = list[tuple[Path, dict[str, Any]]]  # (path, result JSON) of each readable result


class _Page:
    """Markdown lines plus the relative-link helper for one output directory."""

    def __init__(self, run: Path, out: Path) -> None:
        self.run, self.out = run, out
        self.lines: list[str] = []

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def link(self, target: Path) -> str:
        rel = os.path.relpath(target.resolve(), self.out.resolve()).replace(os.sep, "/")
        return urllib.parse.quote(rel)

    def image(self, path: Path, alt: str) -> None:
        self.add(f"![{alt}]({self.link(path)})", "")

    def note(self, text: str) -> None:
        self.add(f"_{text}_", "")


def write_report(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    tsne: bool = False,
    max_examples: int = 8,
    top_k: int = 8,
    argv: Sequence[str] | None = None,
) -> Path:
    """Write ``OUT/README.md`` and its PNGs for ``run_dir``; returns the README path.
    FileNotFoundError when ``run_dir`` is not a directory or holds nothing to report."""
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run directory not found: {run}")
    out_dir = Path(out) if out is not None else run / "report"
    metrics_path, config_path = run / "metrics.jsonl", run / "config.yaml"
    result_paths = sorted((run / "eval").glob("*.json"))
    baseline_paths = sorted((run / "eval" / BASELINE_DIR).glob("*.json"))
    heatmaps = sorted(p for p in (run / "heatmaps").rglob("*.png") if p.is_file())
    feature_paths = sorted((run / "eval" / "features").glob("*.npz"))
    found = (metrics_path, config_path, run / TRAIN_LOCALIZATION)
    if not (
        any(p.is_file() for p in found)
        or result_paths or baseline_paths or heatmaps or feature_paths
    ):  # fmt: skip
        raise FileNotFoundError(
            f"nothing to report in {run}: no metrics.jsonl, config.yaml, eval/*.json, "
            f"eval/{BASELINE_DIR}/*.json, eval/features/*.npz or heatmaps/*.png"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    page = _Page(run, out_dir)

    _header(page, config_path, argv)
    _last_evaluation(page, _training_section(page, metrics_path))
    _config_section(page, config_path)
    results = _results_section(page, result_paths, baseline_paths)
    _result_plots(page, results)
    _embedding_maps(page, results, feature_paths, tsne)
    _retrieval_section(page, results, max_examples, top_k)
    _heatmaps_section(page, heatmaps)
    readme = out_dir / "README.md"
    atomic_write_text(readme, "\n".join(page.lines).rstrip("\n") + "\n")
    return readme


def _header(page: _Page, config_path: Path, argv: Sequence[str] | None) -> None:
    """Title, the run's task / backbone / seed from config.yaml, and the command."""
    try:
        import yaml

        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except Exception:  # missing or not YAML: shown as text below whatever it holds
        config = None
    config = config if isinstance(config, dict) else {}
    facts = [f"{key} `{config[key]}`" for key in ("task", "backbone", "seed") if key in config]
    page.add(f"# Run report: {page.run.resolve().name}", "")
    page.add(" · ".join([f"run directory `{page.run}`", *facts]) + ".", "")
    cmd = "avssl-report " + " ".join(argv) if argv is not None else f"avssl-report {page.run}"
    page.add(f"Generated by `{cmd}`.", "")


def _training_section(page: _Page, metrics_path: Path) -> list[dict[str, Any]]:
    """Training curves from metrics.jsonl; returns its evaluation records."""
    page.add("## Training curves", "")
    if not metrics_path.is_file():
        page.note("No training curves: no metrics.jsonl in the run directory.")
        return []
    train, evals, bad = read_metrics(metrics_path)
    if bad:
        page.note(f"{bad} unreadable line(s) in metrics.jsonl skipped.")
    made = plot_training(train, evals, page.out)
    if not made:
        page.note("metrics.jsonl has no training or evaluation records.")
        return evals
    steps = int(max(r["x"] for r in train)) + 1 if train else 0
    page.add(
        f"{len(train)} training records (up to step {steps}), "
        f"{len(evals)} held-out evaluations, from `metrics.jsonl`.",
        "",
    )
    for name, path in made.items():
        page.image(path, name)
    return evals


def _last_evaluation(page: _Page, evals: list[dict[str, Any]]) -> None:
    if not evals:
        page.note("Last evaluation: no evaluation records (val_*) in metrics.jsonl.")
        return
    last = evals[-1]
    keys = [k for k in ("step", "epoch") if k in last] + [k for k in last if k.startswith("val_")]
    page.add("### Last evaluation", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys))
    page.add("| " + " | ".join(_cell(last[k]) for k in keys) + " |", "")
    accs = [(r["val_acc"], r) for r in evals if isinstance(r.get("val_acc"), int | float)]
    if accs:
        best, rec = max(accs, key=lambda t: t[0])
        where = f"epoch {rec['epoch']}" if "epoch" in rec else f"step {rec['x']:.0f}"
        page.add(f"Best held-out accuracy {_fmt(float(best))} at {where}.", "")


def _config_section(page: _Page, config_path: Path) -> None:
    if not config_path.is_file():
        page.note("Configuration: no config.yaml in the run directory.")
        return
    text = config_path.read_text(encoding="utf-8", errors="replace").rstrip("\n")
    page.add("### Configuration", "", "<details><summary>config.yaml</summary>", "")
    page.add("```yaml", text, "```", "", "</details>", "")


def _model_tag(model: Any) -> str:
    if not isinstance(model, dict):
        return str(model)
    tag, bb = str(model.get("spec") or model.get("source") or "?"), model.get("backbone")
    return tag + f" ({bb})" if bb and str(bb) not in tag else tag


def _read_results(paths: list[Path], prefix: str = "") -> tuple[_Results, list[str]]:
    """The readable results of ``paths`` and a note for each unreadable one."""
    results: _Results = []
    skipped: list[str] = []
    for p in paths:
        try:
            results.append((p, _load_result(p)))
        except ValueError as e:
            skipped.append(f"`{prefix}{p.name}`: {e}")
    return results, skipped


def _train_localization(run: Path) -> tuple[Path, dict[str, Any]] | None:
    """The localization check avssl-train writes at the end of an audio-visual run
    (``RUN/localization.json``) as a result of kind localization; None without one."""
    path = run / TRAIN_LOCALIZATION
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("metrics"), dict):
        return None
    name = str(doc.get("manifest", "held-out trials"))
    trials = doc["metrics"].get("trials")
    return path, {"kind": "localization", "dataset": {"name": name, "trials": trials},
                  "model": {"spec": "this run (avssl-train's closing check)"},
                  "metrics": doc["metrics"], "seconds": doc.get("seconds")}  # fmt: skip


def _flat(metrics: Any, prefix: str = "") -> dict[str, Any]:
    """Metrics with nested groups (tracking: tracker / copy_first) as ``group/key``."""
    if not isinstance(metrics, dict):
        return {}
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _scores(doc: dict[str, Any] | None, order: list[str]) -> str:
    """``key value · ...`` of a result's metrics, the keys of ``order`` first."""
    if doc is None:
        return "—"
    m = _flat(doc.get("metrics"))
    keys = [k for k in order if k in m] + [k for k in m if k not in order]
    return " · ".join(f"{k} {_cell(m[k])}" for k in keys) or "—"


def _data(doc: dict[str, Any]) -> tuple[str, str]:
    """(dataset name, ``train / test`` sizes) of a result."""
    ds = doc["dataset"] if isinstance(doc.get("dataset"), dict) else {}
    sizes = f"{_cell(ds.get('num_train', '?'))} / {_cell(ds.get('num_test', '?'))}"
    return _cell(ds.get("name", doc.get("dataset", "?"))), sizes


def _pair_results(
    page: _Page, own: _Results, baselines: _Results
) -> list[tuple[str, tuple[Path, dict[str, Any]] | None, tuple[Path, dict[str, Any]] | None]]:
    """(name, the run's result, its baseline's) by file name: ``eval/X.json`` with
    ``eval/random/X.json``; avssl-train's localization check stands in for
    ``eval/localization.json`` when there is none."""
    mine = {p.stem: (p, d) for p, d in own}
    if "localization" not in mine and (loc := _train_localization(page.run)) is not None:
        mine["localization"] = loc
    base = {p.stem: (p, d) for p, d in baselines}
    names = sorted(mine) + sorted(set(base) - set(mine))
    return [(n, mine.get(n), base.get(n)) for n in names]


def _results_section(page: _Page, result_paths: list[Path], baseline_paths: list[Path]) -> _Results:
    """One table: each result of the run beside its random-init baseline's (``eval/random/``),
    and the commands that reproduce them; returns the run's own readable results."""
    results, skipped = _read_results(result_paths)
    baselines, skipped_base = _read_results(baseline_paths, f"{BASELINE_DIR}/")
    rows = _pair_results(page, results, baselines)
    page.add("## Evaluation results", "")
    if rows:
        if baselines:
            page.add(f"**baseline**: the same network at random initialisation (`random:{page.run}`"
                     f" or `random:BACKBONE --like {page.run}`), from `eval/{BASELINE_DIR}/`.",
                     "")  # fmt: skip
        page.add(
            "| result | kind | dataset | model | layer | train / test | metrics | baseline "
            "| seconds |",
            "|---|---|---|---|---|---|---|---|---|",
        )
        for name, mine, base in rows:
            shown = mine or base
            assert shown is not None  # every row has one or the other
            p, doc = shown
            ds, sizes = _data(doc)
            order = list(_flat(doc.get("metrics")))
            theirs = _scores(base[1] if base else None, order)
            if base is not None:
                b_ds, b_sizes = _data(base[1])
                other = f" (on {b_ds}, {b_sizes})" if (b_ds, b_sizes) != (ds, sizes) else ""
                theirs = f"[{theirs}]({page.link(base[0])}){other}"
            secs: Any = doc.get("seconds")
            secs = f"{secs:.1f}" if _is_number(secs) and math.isfinite(secs) else ""
            label = name if mine is not None else f"{name} (baseline only)"
            page.add(
                f"| [{label}]({page.link(p)}) | {_cell(doc.get('kind'))} | {ds} "
                f"| {_cell(_model_tag(doc.get('model')))} | {_cell(doc.get('layer', ''))} "
                f"| {sizes} | {_scores(doc, order) if mine else '—'} | {theirs} | {secs} |"
            )
        page.add("")
        if not baselines:
            page.note(f"No baseline yet: e.g. `avssl-eval linear random:{page.run} --manifest M` "
                      f"writes one to eval/{BASELINE_DIR}/.")  # fmt: skip
        _commands(page, results + baselines)
    else:
        page.note("No evaluation results: no avssl-eval JSON under eval/.")
    for s in skipped + skipped_base:
        page.note(f"Skipped {s}")
    return results


def _commands(page: _Page, results: _Results) -> None:
    cmds = [(p, doc["command"]) for p, doc in results if doc.get("command")]
    if cmds:
        page.add("<details><summary>Commands that reproduce these results</summary>", "")
        page.add("```sh")
        for p, c in cmds:
            where = f"{BASELINE_DIR}/" if p.parent.name == BASELINE_DIR else ""
            page.add(f"# {where}{p.name}", str(c))
        page.add("```", "", "</details>", "")


def _classes(doc: dict[str, Any]) -> list[Any] | None:
    return doc["classes"] if isinstance(doc.get("classes"), list) else None


def _result_plots(page: _Page, results: _Results) -> None:
    """Confusion matrices and per-fold bars of the results that have them."""
    sections = (
        ("confusion", "Confusion matrices", "confusion", "confusion", "a confusion matrix"),
        ("per_fold", "Per-fold results", "folds", "per-fold results", "per_fold"),
    )
    for key, title, prefix, what, missing in sections:
        chosen = [(p, d) for p, d in results if d.get(key)]
        if not chosen:
            page.note(f"{title}: no result has {missing}.")
            continue
        page.add(f"### {title}", "")
        for p, doc in chosen:
            png = page.out / f"{prefix}-{_slug(p.stem)}.png"
            try:
                if key == "confusion":
                    plot_confusion(doc["confusion"], _classes(doc), p.stem, png)
                else:
                    plot_folds(doc["per_fold"], p.stem, png)
            except (ValueError, TypeError) as e:
                page.note(f"{p.name}: {what} not drawn ({e}).")
                continue
            page.image(png, f"{prefix if key == 'confusion' else 'per-fold'} {p.stem}")


def _embedding_maps(page: _Page, results: _Results, feature_paths: list[Path], tsne: bool) -> None:
    """A map per feature cache: eval/features/*.npz and every .npz a result names."""
    refs: dict[Path, list[str] | None] = {p.resolve(): None for p in feature_paths}
    for p, doc in results:
        classes = _classes(doc)
        for ref in _npz_refs(doc):
            found = _resolve(ref, page.run, p.parent, page.run / "eval" / "features")
            if found is not None and refs.get(found.resolve()) is None:
                refs[found.resolve()] = [str(c) for c in classes] if classes else None
    if not refs:
        page.note("Embedding maps: no cached features (eval/features/*.npz).")
        return
    page.add("## Embedding maps", "")
    for npz, names in sorted(refs.items()):
        _embedding_section(page, npz, names, tsne)


def _embedding_section(page: _Page, npz: Path, names: list[str] | None, tsne: bool) -> None:
    """One feature cache: PCA map (and t-SNE with ``tsne``), or a note saying why not."""
    try:
        with np.load(npz, allow_pickle=False) as z:
            feats = np.asarray(z["feats"])
            labels = np.asarray(z["labels"]) if "labels" in z else np.zeros(len(feats), np.int64)
            split = np.asarray(z["split"]).astype(str) if "split" in z else None
            if names is None and "classes" in z:
                names = [str(c) for c in z["classes"].tolist()]
    except (OSError, KeyError, ValueError) as e:
        page.note(f"{npz.name}: not drawn ({e.__class__.__name__}: {e}).")
        return
    if feats.ndim != 2 or feats.shape[0] < 2 or len(labels) != feats.shape[0]:
        page.note(f"{npz.name}: not drawn (feats shape {feats.shape}, {len(labels)} labels).")
        return
    if split is not None and (split.ndim != 1 or len(split) != feats.shape[0]):
        split = None
    n, d = feats.shape
    idx = _subsample(n, MAP_MAX_POINTS)
    x = feats[idx].astype(np.float64)
    if not np.isfinite(x).all():
        page.note(f"{npz.name}: not drawn (non-finite features).")
        return
    coords, ratio = pca_2d(x)
    sub = f", {len(idx)} plotted" if len(idx) < n else ""
    page.add(f"### {npz.stem}", "")
    page.add(f"`{npz.name}`: {n} × {d} features{sub}, {len(np.unique(labels))} labels.", "")
    axes = (f"PC1 ({100 * ratio[0]:.1f}% var.)", f"PC2 ({100 * ratio[1]:.1f}% var.)")
    png = page.out / f"embedding-{_slug(npz.stem)}.png"
    sub_split = split[idx] if split is not None else None
    plot_embedding(coords, labels[idx], sub_split, names, f"PCA of {npz.stem}", axes, png)
    page.image(png, f"PCA {npz.stem}")
    if not tsne:
        return
    if n > TSNE_MAX or n < 5:
        why = f"{n} points > {TSNE_MAX}" if n > TSNE_MAX else f"only {n} points"
        page.note(f"t-SNE skipped: {why}.")
        return
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, (n - 1) / 3))
    emb = TSNE(n_components=2, init="pca", random_state=0, perplexity=perplexity).fit_transform(
        feats.astype(np.float64)
    )
    title = f"t-SNE of {npz.stem} (perplexity {perplexity:.0f})"
    png = page.out / f"tsne-{_slug(npz.stem)}.png"
    plot_embedding(emb, labels, split, names, title, ("t-SNE 1", "t-SNE 2"), png)
    page.image(png, f"t-SNE {npz.stem}")


def _retrieval_section(page: _Page, results: _Results, max_examples: int, top_k: int) -> None:
    grids = [(p, d) for p, d in results if isinstance(d.get("extra"), dict)]
    grids = [(p, d) for p, d in grids if "retrieval_examples" in d["extra"]]
    if not grids:
        page.note("Retrieval examples: no result has extra.retrieval_examples.")
        return
    page.add("## Retrieval examples", "")
    page.add(
        "Each row: the query (blue border) and its nearest neighbours in rank order; green = "
        "relevant, red = not relevant, grey tile = file missing or not an image.",
        "",
    )
    for p, doc in grids:
        extra = doc["extra"]
        try:
            examples = _examples(extra["retrieval_examples"])
        except ValueError as e:
            page.note(f"{p.name}: retrieval examples not drawn ({e}).")
            continue
        root_ref = extra.get("root")
        root = None
        if isinstance(root_ref, str) and root_ref:
            root = _resolve(root_ref, page.run, p.parent) or Path(root_ref)
        id_kind = extra.get("id_kind") if isinstance(extra.get("id_kind"), str) else None
        title = f"{p.stem} ({id_kind or 'ids'})"
        png = page.out / f"retrieval-{_slug(p.stem)}.png"
        _, tiles, failed = plot_retrieval(
            examples, root, id_kind, title, png, max_examples=max_examples, top_k=top_k
        )
        shown = min(len(examples), max_examples)
        page.add(f"**{p.stem}**: {shown} of {len(examples)} queries, root `{root_ref}`.", "")
        page.image(png, f"retrieval {p.stem}")
        if failed:
            page.note(f"{failed} of {tiles} tiles could not be loaded (grey).")


def _heatmaps_section(page: _Page, heatmaps: list[Path]) -> None:
    if not heatmaps:
        page.note("Heatmaps: none (no PNG under heatmaps/).")
        return
    page.add("## Heatmaps", "", f"{len(heatmaps)} PNG(s) under `heatmaps/`.", "")
    page.add(
        " ".join(
            f'<a href="{page.link(h)}"><img src="{page.link(h)}" width="160" '
            f'title="{h.relative_to(page.run / "heatmaps")}"></a>'
            for h in heatmaps[:MAX_HEATMAPS]
        ),
        "",
    )
    if len(heatmaps) > MAX_HEATMAPS:
        page.note(f"Showing the first {MAX_HEATMAPS} of {len(heatmaps)}.")
