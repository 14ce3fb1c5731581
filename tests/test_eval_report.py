"""avssl-report (avssl/report/): a fake run directory, the markdown sections, every linked PNG."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="avssl-report needs matplotlib")

from avssl.report import build_parser, main  # noqa: E402
from avssl.report.page import read_metrics  # noqa: E402
from avssl.report.plots import _fold_table, load_thumbnail, pca_2d  # noqa: E402

PNG_SIG = b"\x89PNG\r\n\x1a\n"
COLOURS = {"red": (230, 30, 30), "green": (30, 200, 60), "blue": (40, 60, 230)}


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk; asserts a PNG signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIG, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    w, h = struct.unpack(">II", data[16:24])
    return int(w), int(h)


def _verify_png(path: Path) -> None:
    """PIL decodes the whole file (checks every chunk's CRC) without error."""
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG"
        im.verify()


def _write_png(path: Path, rgb: tuple[int, int, int], size: tuple[int, int] = (20, 14)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, rgb).save(path)


def _metrics(path: Path, truncated: bool = True) -> None:
    lines = []
    for i, step in enumerate(range(0, 40, 4)):
        rec = {
            "step": step,
            "loss": round(1.0 / (1 + i), 4),
            "acc": min(0.3 + 0.07 * i, 1.0),
            "lr": 1e-3 * (i + 1) / 10,
            "samples_per_s": 100.0 + i,
            "data_wait": 0.1,
        }
        lines.append(json.dumps(rec))
        if step in (16, 36):
            ev = {
                "step": step + 3,
                "epoch": step // 20,
                "val_loss": 0.5 - 0.01 * i,
                "val_acc": 0.6 + 0.01 * i,
                "val_balanced_acc": 0.55 + 0.01 * i,
                "val_samples": 30,
            }
            lines.append(json.dumps(ev))
    text = "\n".join(lines) + "\n"
    if truncated:
        text += '{"step": 40, "lo'  # a run still writing its log
    path.write_text(text)


def _fake_run(root: Path) -> Path:
    run = root / "run"
    (run / "eval" / "features").mkdir(parents=True)
    _metrics(run / "metrics.jsonl")
    (run / "config.yaml").write_text("task: shuffle_learn\nseed: 0\nbackbone: convnet_tiny\n")
    classes = ["disc", "square", "ring"]
    rng = np.random.default_rng(0)
    feats = np.concatenate([rng.normal(3 * k, 1.0, (12, 8)) for k in range(3)]).astype(np.float32)
    labels = np.repeat(np.arange(3), 12).astype(np.int64)
    ids = np.array([f"img/{i}.png" for i in range(36)])
    split = np.array(["train", "test"] * 18)
    np.savez(
        run / "eval" / "features" / "f0123.npz", feats=feats, labels=labels, ids=ids, split=split
    )
    base: dict[str, Any] = {
        "format": "avssl-eval",
        "version": 1,
        "dataset": {"name": "synth", "manifest": "m.jsonl", "num_train": 24, "num_test": 12},
        "model": {"source": "run", "spec": "runs/x", "backbone": "convnet_tiny"},
        "layer": "pool",
        "seconds": 1.5,
    }
    linear = {
        **base,
        "kind": "linear",
        "metrics": {"acc": 0.75, "balanced_acc": 0.7},
        "classes": classes,
        "confusion": [[4, 0, 0], [1, 2, 1], [0, 1, 3]],
        "per_fold": [{"fold": 1, "acc": 0.7, "C": 10.0}, {"fold": 2, "acc": 0.8, "C": 1.0}],
        "extra": {"cache": "eval/features/f0123.npz"},
        "command": "avssl-eval linear runs/x --dataset synth",
    }
    (run / "eval" / "linear-synth.json").write_text(json.dumps(linear))
    imgs = root / "images"
    for name, rgb in COLOURS.items():
        _write_png(imgs / "a" / f"{name}.png", rgb)
    retrieval = {
        **base,
        "kind": "retrieval",
        "metrics": {"R@1": 0.5, "nDCG@5": 0.61},
        "extra": {
            "retrieval_examples": [
                {
                    "query": "a/red.png",
                    "neighbours": ["a/green.png", "a/blue.png", "a/missing.png"],
                    "relevant": [True, False, False],
                },
                {"query": "a/blue.png", "neighbours": ["a/red.png"], "relevant": [False]},
            ],
            "root": str(imgs),
            "id_kind": "image",
        },
        "command": "avssl-eval retrieval runs/x",
    }
    (run / "eval" / "retrieval-synth.json").write_text(json.dumps(retrieval))
    (run / "eval" / "broken.json").write_text("{not json")
    _write_png(run / "heatmaps" / "h0.png", (200, 100, 0))
    return run


def _linked_pngs(readme: Path) -> list[Path]:
    text = readme.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text) + re.findall(r'<img src="([^"]+)"', text)
    return [(readme.parent / link).resolve() for link in links]


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake run with its default report (``--tsne``) written once for the module."""
    run = _fake_run(tmp_path_factory.mktemp("report"))
    assert main([str(run), "--tsne"]) == 0
    return run


def test_full_report(reported: Path) -> None:
    run = reported
    readme = run / "report" / "README.md"
    text = readme.read_text()
    for section in (
        "## Training curves",
        "### Last evaluation",
        "### Configuration",
        "## Evaluation results",
        "### Confusion matrices",
        "### Per-fold results",
        "## Embedding maps",
        "## Retrieval examples",
        "## Heatmaps",
    ):
        assert section in text, section
    # results table: one row per valid result file, the broken one named in a note
    assert "| [linear-synth](../eval/linear-synth.json) | linear | synth |" in text
    assert "| [retrieval-synth](../eval/retrieval-synth.json) | retrieval |" in text
    assert "Skipped `broken.json`" in text
    assert "avssl-eval linear runs/x --dataset synth" in text
    assert "1 unreadable line(s)" in text
    assert "| 39 | 1 | 0.4100 | 0.6900 | 0.6400 | 30 |" in text  # the last evaluation
    assert "1 of 6 tiles could not be loaded" in text  # a/missing.png
    names = {p.name for p in _linked_pngs(readme)}
    assert {
        "loss.png",
        "accuracy.png",
        "lr.png",
        "throughput.png",
        "confusion-linear-synth.png",
        "folds-linear-synth.png",
        "embedding-f0123.png",
        "tsne-f0123.png",
        "retrieval-retrieval-synth.png",
        "h0.png",
    } <= names
    for png in _linked_pngs(readme):
        assert png.is_file(), png
        w, h = _png_size(png)
        assert w > 0 and h > 0 and png.stat().st_size > 0
        _verify_png(png)
        assert w <= 2200 and h <= 2200  # small plots
    # the npz is referenced by the result and globbed: drawn once, with the result's class names
    assert text.count("### f0123") == 1


def test_report_is_deterministic(
    reported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, again = reported / "report", tmp_path / "again"
    assert main([str(reported), "--tsne", "--out", str(again)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {again / 'README.md'}"
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    for name in names:
        if name != "README.md":  # README holds the --out argument
            assert (first / name).read_bytes() == (again / name).read_bytes(), name


def test_only_metrics(tmp_path: Path) -> None:
    run = tmp_path / "r"
    run.mkdir()
    _metrics(run / "metrics.jsonl", truncated=False)
    out = tmp_path / "out"
    assert main([str(run), "--out", str(out)]) == 0
    text = (out / "README.md").read_text()
    assert "## Training curves" in text
    assert "No evaluation results" in text
    assert "Embedding maps: no cached features" in text
    assert "Heatmaps: none" in text
    assert "Configuration: no config.yaml" in text
    assert "## Evaluation results" in text and "## Heatmaps" not in text
    pngs = _linked_pngs(out / "README.md")
    assert {p.name for p in pngs} == {"loss.png", "accuracy.png", "lr.png", "throughput.png"}
    for p in pngs:
        assert _png_size(p)[0] > 0
        _verify_png(p)


def test_missing_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("avssl-report: run directory not found")
    assert len(err.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    assert "nothing to report" in capsys.readouterr().err
    assert not (tmp_path / "empty" / "report").exists()


def _result(kind: str, metrics: dict[str, Any], **more: Any) -> str:
    ds = {"name": "digits", "num_train": 20, "num_test": 20}
    return json.dumps({"format": "avssl-eval", "version": 1, "kind": kind, "dataset": ds,
                       "model": {"source": "random", "spec": "random:runs/x",
                                 "backbone": "convnet_tiny"},
                       "metrics": metrics, "seconds": 2.0, **more})  # fmt: skip


def test_results_table_with_baselines(tmp_path: Path) -> None:
    """One table: each result of the run beside its baseline's (eval/random/, same file name);
    a baseline without a result of the run gets its own row; avssl-train's localization check
    stands in for eval/localization.json."""
    run = tmp_path / "run"
    ev, base = run / "eval", run / "eval" / "random"
    base.mkdir(parents=True)
    (ev / "linear-digits.json").write_text(
        _result("linear", {"accuracy": 0.9, "balanced_accuracy": 0.88}, command="avssl-eval x")
    )
    (base / "linear-digits.json").write_text(
        _result("linear", {"balanced_accuracy": 0.31, "accuracy": 0.3}, command="avssl-eval y")
    )
    (base / "knn-digits.json").write_text(_result("knn", {"accuracy": 0.2}))
    (ev / "tracking.json").write_text(
        _result("tracking", {"tracker": {"box_mIoU": 0.5}, "copy_first": {"box_mIoU": 0.4}})
    )
    (base / "tracking.json").write_text(
        _result("tracking", {"tracker": {"box_mIoU": 0.45}, "copy_first": {"box_mIoU": 0.4}})
    )
    loc = {"metrics": {"cIoU@0.5": 0.6, "trials": 12.0}, "manifest": "loc.jsonl", "seconds": 3}
    (run / "localization.json").write_text(json.dumps(loc))
    (base / "localization.json").write_text(
        _result("localization", {"cIoU@0.5": 0.1, "trials": 12.0}, dataset={"name": "loc.jsonl"})
    )
    (base / "broken.json").write_text("[]")
    assert main([str(run)]) == 0
    text = (run / "report" / "README.md").read_text()
    assert text.count("| result | kind |") == 1  # one table
    assert (
        "| [linear-digits](../eval/linear-digits.json) | linear | digits | random:runs/x "
        "(convnet_tiny) |  | 20 / 20 | accuracy 0.9000 · balanced_accuracy 0.8800 "
        "| [accuracy 0.3000 · balanced_accuracy 0.3100](../eval/random/linear-digits.json) "
        "| 2.0 |"
    ) in text
    assert (
        "| [knn-digits (baseline only)](../eval/random/knn-digits.json) | knn | digits |"
    ) in text and "| — | [accuracy 0.2000](../eval/random/knn-digits.json) |" in text
    assert (
        "| tracker/box_mIoU 0.5000 · copy_first/box_mIoU 0.4000 "
        "| [tracker/box_mIoU 0.4500 · copy_first/box_mIoU 0.4000](../eval/random/tracking.json)"
    ) in text
    assert "| [localization](../localization.json) | localization | loc.jsonl |" in text
    assert "| cIoU@0.5 0.6000 · trials 12.00 | [cIoU@0.5 0.1000 · trials 12.00]" in text
    assert "Skipped `random/broken.json`" in text
    assert "# random/linear-digits.json\navssl-eval y" in text
    assert "No baseline yet" not in text
    for p in base.glob("*.json"):
        p.unlink()
    assert main([str(run)]) == 0
    text = (run / "report" / "README.md").read_text()
    assert "No baseline yet: e.g. `avssl-eval linear random:" in text
    assert "| accuracy 0.9000 · balanced_accuracy 0.8800 | — |" in text


def test_read_metrics_split_and_steps(tmp_path: Path) -> None:
    p = tmp_path / "m.jsonl"
    p.write_text(
        '{"step": 0, "loss": 1.0}\n{"step": 9, "loss": 0.5, "acc": 0.6}\n'
        '{"epoch": 0, "val_acc": 0.7}\n{"stopped_at_step": 12}\n[1]\n\n'
    )
    train, evals, bad = read_metrics(p)
    assert [r["x"] for r in train] == [0.0, 9.0]
    assert evals == [{"epoch": 0, "val_acc": 0.7, "x": 9.0}]  # no step: the last training step
    assert bad == 1


def test_pca_matches_sklearn_and_fixes_signs() -> None:
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 6)) @ np.diag([5.0, 2.0, 1.0, 0.5, 0.1, 0.1])
    coords, ratio = pca_2d(x)
    ref = PCA(n_components=2).fit(x)
    np.testing.assert_allclose(ratio, ref.explained_variance_ratio_, rtol=1e-9)
    np.testing.assert_allclose(np.abs(coords), np.abs(ref.transform(x)), atol=1e-9)
    flipped, _ = pca_2d(-x)  # same data mirrored: signs fixed by the loadings, not the data
    np.testing.assert_allclose(flipped, -coords, atol=1e-9)
    one, r1 = pca_2d(np.ones((3, 4)))
    assert np.all(one == 0) and np.all(r1 == 0)


def test_fold_table_shapes() -> None:
    assert _fold_table([0.5, 0.7]) == (["1", "2"], {"score": [0.5, 0.7]})
    labels, series = _fold_table(
        [{"test_fold": 3, "accuracy": 0.5, "chosen_C": 10.0}, {"test_fold": 4, "accuracy": 0.6}]
    )
    assert labels == ["3", "4"] and series == {"accuracy": [0.5, 0.6]}
    assert _fold_table([{"n": 10}, {"n": 12}])[1] == {"n": [10.0, 12.0]}
    with pytest.raises(ValueError):
        _fold_table([{"fold": "a"}])


def test_thumbnails(tmp_path: Path) -> None:
    _write_png(tmp_path / "x.png", COLOURS["green"], size=(40, 20))
    img, note = load_thumbnail("x.png", tmp_path, "image")
    assert note == "" and img.shape == (96, 96, 3) and img.dtype == np.uint8
    assert tuple(img[48, 48]) == COLOURS["green"]
    grey, note = load_thumbnail("nope.png", tmp_path, "image")
    assert note == "missing" and grey.shape == (96, 96, 3) and np.all(grey == 160)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    _, note = load_thumbnail("bad.png", tmp_path, "image")
    assert note.startswith("unreadable")
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    assert load_thumbnail("a.wav", tmp_path, "image")[1] == "audio"


def test_video_frame_thumbnail(tmp_path: Path) -> None:
    from avssl.data.encode import write_video

    frames = np.zeros((6, 32, 32, 3), np.uint8)
    frames[:3] = COLOURS["blue"]
    frames[3:] = COLOURS["red"]
    write_video(tmp_path / "v.mkv", frames, fps=5, codec="ffv1")
    first, n0 = load_thumbnail("v.mkv#1", tmp_path, "video_frame")
    later, n1 = load_thumbnail("v.mkv#4", tmp_path, "video_frame")
    assert n0 == n1 == "" and first.shape == (96, 96, 3)
    np.testing.assert_allclose(first[48, 48], COLOURS["blue"], atol=6)
    np.testing.assert_allclose(later[48, 48], COLOURS["red"], atol=6)
    assert load_thumbnail("v.mkv#99", tmp_path, "video_frame")[1].startswith("unreadable")
    assert load_thumbnail("gone.mkv#0", tmp_path, "video_frame")[1] == "missing"


def test_parser_defaults() -> None:
    a = build_parser().parse_args(["R"])
    assert (a.run_dir, a.out, a.tsne, a.max_examples, a.top_k) == ("R", None, False, 8, 8)
