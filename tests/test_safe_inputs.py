"""Untrusted inputs: checkpoints holding pickled objects, YAML with Python tags, manifest paths
that leave the dataset root, and checkpoints that do not fit the model are refused with a
message naming the file -- never run, never read outside the root, never a raw traceback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from avssl import cli as train_cli
from avssl.checkpoints import load_checkpoint, load_weights
from avssl.cli import eval as eval_cli
from avssl.config import load_config
from avssl.data.dataset import FrameReader
from avssl.data.manifest import resolve_under
from avssl.models.backbones import build_backbone
from avssl.train import TrainConfig
from data_prep.image_folder import prep_images

TINY = ["--set", "backbone=convnet_tiny", "--set", "model.channels=[8,16]",
        "--set", "model.spatial=2", "--set", "data.frame_size=16", "--set", "aug.size=16",
        "--set", "optim.batch_size=4", "--set", "run.tensorboard=false",
        "--set", "run.device=cpu", "--set", "data.num_workers=0"]  # fmt: skip


class _RunsCode:
    """Pickles as a call of os.system: whoever unpickles it without weights_only runs it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((16, 16, 3), value, np.uint8)
    img[3:9, 2:12] = (255 - value, value // 2, 40)
    assert cv2.imwrite(str(path), img)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image folder prepped by avssl-prep images: OUT/images.jsonl (+ prep.json -> root)."""
    base = tmp_path_factory.mktemp("safe")
    for i in range(8):
        _png(base / "pics" / f"c{i % 2}" / f"{i}.png", 20 * i)
    prep_images(base / "pics", base / "prep", test_fraction=0.25, seed=0, workers=1)
    return base / "prep" / "images.jsonl"


@pytest.fixture(scope="module")
def run(images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (one-step) rotation run: RUN/checkpoint.pt as avssl-train writes it."""
    out = tmp_path_factory.mktemp("run") / "rot"
    argv = ["rotation", "--out", str(out), "--set", f"data.manifest={images}", *TINY,
            "--set", "optim.epochs=1", "--set", "optim.steps_per_epoch=1"]  # fmt: skip
    assert train_cli.train_main(argv) == 0
    return out


def _copy_run(run: Path, dest: Path, ck: dict | None = None) -> Path:
    """A run directory holding ``ck`` (default: ``run``'s checkpoint unchanged)."""
    dest.mkdir(parents=True)
    (dest / "config.yaml").write_bytes((run / "config.yaml").read_bytes())
    ck = ck if ck is not None else torch.load(run / "checkpoint.pt", weights_only=True)
    torch.save(ck, dest / "checkpoint.pt")
    return dest


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


# ------------------------------------------------------------------------ checkpoints
def test_checkpoint_with_pickled_object_is_refused_everywhere(
    run: Path, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "code-ran"
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    evil = _copy_run(run, tmp_path / "evil", {**ck, "note": _RunsCode(marker)})
    path = evil / "checkpoint.pt"

    with pytest.raises(ValueError, match=rf"{path}: refused: .*pickled objects"):
        load_checkpoint(path)
    assert eval_cli.main(["linear", str(evil), "--manifest", str(images)]) == 2
    assert f"avssl-eval: {path}: refused" in _err(capsys)
    assert train_cli.export_main([str(evil)]) == 2
    assert f"avssl-export: {path}: refused" in _err(capsys)
    argv = ["rotation", "--out", str(evil), "--set", f"data.manifest={images}", *TINY,
            "--set", "optim.epochs=1", "--set", "optim.steps_per_epoch=1", "--resume"]  # fmt: skip
    assert train_cli.train_main(argv) == 2
    assert f"avssl-train: {path}: refused" in _err(capsys)
    assert not marker.exists()  # nothing ran
    # the same checkpoint without the object loads everywhere
    fine = _copy_run(run, tmp_path / "fine")
    assert train_cli.export_main([str(fine)]) == 0


def test_torn_or_foreign_checkpoint_is_a_clear_error(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    whole = (run / "checkpoint.pt").read_bytes()
    torn = tmp_path / "torn" / "checkpoint.pt"
    torn.parent.mkdir()
    torn.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=rf"{torn}: not a readable checkpoint"):
        load_checkpoint(torn)
    assert train_cli.export_main([str(torn.parent)]) == 2
    assert f"{torn}: not a readable checkpoint" in _err(capsys)
    listed = tmp_path / "list.pt"
    torch.save([1, 2], listed)
    with pytest.raises(ValueError, match=rf"{listed}: not an avssl checkpoint"):
        load_checkpoint(listed)
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        load_checkpoint(tmp_path / "absent.pt")


def test_weights_that_do_not_fit_name_file_keys_and_shapes(
    run: Path, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    net = build_backbone("convnet_tiny", channels=(8, 16), spatial=2)
    sd = dict(net.state_dict())
    first = next(iter(sd))
    dropped = sd.pop(first)
    sd["extra.weight"] = torch.zeros(1)
    wrong = next(k for k, v in sd.items() if v.ndim == 4)
    sd[wrong] = torch.zeros(3, 3, 3, 3)
    with pytest.raises(ValueError) as e:
        load_weights(net, sd, "some.pt", what="backbone")
    msg = str(e.value)
    assert msg.startswith("some.pt: the weights (backbone) do not fit")
    assert f"1 missing key(s): {first}" in msg and "1 unexpected key(s): extra.weight" in msg
    assert f"{wrong} (3, 3, 3, 3) in the file, {tuple(net.state_dict()[wrong].shape)}" in msg
    sd[first] = dropped
    del sd["extra.weight"]
    sd[wrong] = net.state_dict()[wrong].clone()
    load_weights(net, sd, "some.pt")  # fits: loads

    # a checkpoint whose weights are of another size than its recorded backbone: eval, export
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    other = build_backbone("convnet_tiny", channels=(8, 32), spatial=2).state_dict()
    ck["model"] = {**ck["model"], **{f"encoder.net.{k}": v for k, v in other.items()}}
    bad = _copy_run(run, tmp_path / "bad", ck)
    assert eval_cli.main(["knn", str(bad), "--manifest", str(images)]) == 2
    err = _err(capsys)
    assert f"{bad / 'checkpoint.pt'}: the weights (convnet_tiny backbone) do not fit" in err
    assert "shape mismatch" in err and "(32,) in the file, (16,) in the model" in err
    assert train_cli.export_main([str(bad)]) == 2
    assert "shape mismatch" in _err(capsys)

    # --resume with another model size than the checkpoint's: refused, names the keys
    resumed = _copy_run(run, tmp_path / "resumed")
    argv = ["rotation", "--out", str(resumed), "--set", f"data.manifest={images}", *TINY,
            "--set", "model.channels=[8,32]", "--set", "optim.epochs=1",
            "--set", "optim.steps_per_epoch=1", "--resume"]  # fmt: skip
    assert train_cli.train_main(argv) == 2
    err = _err(capsys)
    assert f"avssl-train: {resumed / 'checkpoint.pt'}: the weights (model) do not fit" in err
    assert "shape mismatch" in err


# ------------------------------------------------------------------------------- YAML
def test_yaml_python_tags_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "code-ran"
    bad = tmp_path / "evil.yaml"
    bad.write_text(f'optim: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(ValueError, match=rf"{bad}: refused: a tag that builds a Python object"):
        load_config(TrainConfig, bad)
    assert train_cli.train_main(["rotation", "--config", str(bad)]) == 2
    assert f"avssl-train: {bad}: refused" in _err(capsys)
    assert not marker.exists()
    broken = tmp_path / "broken.yaml"
    broken.write_text("optim: {lr: [1, 2\n")
    with pytest.raises(ValueError, match=rf"{broken}: not valid YAML"):
        load_config(TrainConfig, broken)
    plain = tmp_path / "plain.yaml"
    plain.write_text("optim: {lr: 0.5}\n")
    assert load_config(TrainConfig, plain).optim.lr == 0.5


# --------------------------------------------------------------------- manifest paths
@pytest.mark.parametrize(
    "rel",
    ["../secret.png", "a/../../secret.png", "/ABS/secret.png", "..", "", "C:/x.png", "..\\x.png"],
)
def test_resolve_under_refuses_paths_out_of_the_root(tmp_path: Path, rel: str) -> None:
    rel = rel.replace("/ABS", str(tmp_path))
    with pytest.raises(ValueError, match="m.jsonl: row 3: "):
        resolve_under(tmp_path / "root", rel, where="m.jsonl: row 3")


def test_resolve_under_keeps_paths_inside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert resolve_under(root, "a/b.png") == root / "a" / "b.png"
    assert resolve_under(root, "./a/../b.png") == root / "b.png"
    assert resolve_under(root, Path("x:y.png")) == root / "x:y.png"  # a POSIX name, not a drive
    with pytest.raises(ValueError, match="not text"):
        resolve_under(root, 7)  # type: ignore[arg-type]


def test_readers_never_leave_the_root(
    images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    _png(root / "in.png", 90)
    _png(tmp_path / "secret.png", 200)  # readable, were the path not refused
    reader = FrameReader(root, (8, 8))
    assert reader.image("in.png").shape == (1, 3, 8, 8)
    for rel in ("../secret.png", str(tmp_path / "secret.png")):
        with pytest.raises(ValueError, match=f"not inside the dataset root {root}"):
            reader.image(rel)
        with pytest.raises(ValueError, match="not inside the dataset root"):
            reader(rel, [0])
    # symbolic links inside the root are followed, wherever they point (docs/manifests.md)
    (root / "linked.png").symlink_to(tmp_path / "secret.png")
    assert reader.image("linked.png").shape == (1, 3, 8, 8)

    # avssl-eval (vision manifests) and fine-tuning refuse such a row, naming the manifest row
    from avssl.eval.finetune_data import _read_rows
    from avssl.eval.vision import load_eval_set

    rows = [json.loads(ln) for ln in images.read_text().splitlines()]
    rows[2]["path"] = "../../secret.png"
    bad = images.parent / "escape.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=rf"{bad}:3: path '../../secret.png'"):
        load_eval_set(bad)
    with pytest.raises(ValueError, match=rf"{bad}: row 3: path '../../secret.png'"):
        _read_rows(bad)
    assert eval_cli.main(["linear", "random:convnet_tiny", "--manifest", str(bad)]) == 2
    assert "not inside the dataset root" in _err(capsys)
    # and training on it stops at the row (the reader refuses it before any read)
    rows[2]["path"] = str(tmp_path / "secret.png")
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["rotation", "--out", str(tmp_path / "r"), "--set", f"data.manifest={bad}", *TINY,
            "--set", "optim.epochs=1", "--set", "optim.steps_per_epoch=1"]  # fmt: skip
    assert train_cli.train_main(argv) == 2
    assert f"path '{tmp_path / 'secret.png'}' of a manifest row" in _err(capsys)
