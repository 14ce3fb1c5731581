"""Image pretext tasks (avssl/tasks/image.py): the losses against their direct formulas, the
relative-position sampler's geometry, Lab against OpenCV, the rebalancing weights, and every task
(and a multi-task mix) training a few steps on generated images and on a generated video, its
backbone loading into ``load_encoder``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avssl import cli
from avssl.config import load_config
from avssl.data.colour import grey_from_lightness, quantize_ab, rgb_to_lab
from avssl.data.dataset import FrameReader
from avssl.tasks import TASKS
from avssl.tasks.image import frame_index, read_frame
from avssl.tasks.image_ops import (
    NEIGHBOURS,
    ab_bins,
    ab_weights,
    cut_patches,
    mae_loss,
    nt_xent,
    patchify,
    random_masking,
    relative_position_layout,
    sample_patch_pair,
)
from avssl.train import TrainConfig

REPO = Path(__file__).resolve().parents[1]
IMAGE_TASKS = ["rotation", "relative_position", "colorization", "exemplar", "simclr", "mae"]


# ------------------------------------------------------------------------------- NT-Xent
def nt_xent_direct(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    """Chen et al. (2020), Algorithm 1, written out: z = (z1_1, z2_1, z1_2, z2_2, ...)."""
    z = torch.stack([z1, z2], dim=1).reshape(-1, z1.shape[1]).double()
    n = z.shape[0]

    def s(i: int, j: int) -> torch.Tensor:
        return z[i] @ z[j] / (tau * z[i].norm() * z[j].norm())

    def pair_loss(i: int, j: int) -> torch.Tensor:
        den = sum(torch.exp(s(i, k)) for k in range(n) if k != i)
        return -torch.log(torch.exp(s(i, j)) / den)

    return sum(pair_loss(2 * k, 2 * k + 1) + pair_loss(2 * k + 1, 2 * k) for k in range(n // 2)) / n


def test_nt_xent_matches_the_direct_formula() -> None:
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    for tau in (0.1, 0.5, 1.0):
        loss, logits, target = nt_xent(z1, z2, tau)
        assert loss.item() == pytest.approx(nt_xent_direct(z1, z2, tau).item(), rel=1e-5)
        assert logits.shape == (10, 10) and torch.isinf(logits.diagonal()).all()
        assert target.tolist() == [5, 6, 7, 8, 9, 0, 1, 2, 3, 4]  # each anchor's other view
    same, _, _ = nt_xent(z1, z1 * 3.0, 0.1)  # identical directions: the positive wins by far
    assert same.item() < nt_xent(z1, z2, 0.1)[0].item()


def _halves_loss(z1: torch.Tensor, z2: torch.Tensor, world: int) -> torch.Tensor:
    """The mean over ``world`` simulated processes of their NT-Xent, each on its slice of the
    pairs, with a gather that returns every process's (normalised) rows -- the local slice as
    given, with its graph, as :func:`avssl.dist.all_gather_with_grad` does; the other slices
    with theirs too, which is what that function's backward adds up across processes."""
    b = z1.shape[0] // world
    total = torch.zeros(())
    for rank in range(world):
        wholes = iter([F.normalize(z1, dim=1), F.normalize(z2, dim=1)])

        def gather(t: torch.Tensor, rank: int = rank, wholes=wholes) -> torch.Tensor:  # type: ignore[no-untyped-def]
            whole = next(wholes)
            return torch.cat([whole[: rank * b], t, whole[(rank + 1) * b :]])

        mine = slice(rank * b, (rank + 1) * b)
        loss, logits, target = nt_xent(z1[mine], z2[mine], 0.2, gather=gather, rank=rank)
        assert logits.shape == (2 * b, 2 * world * b)
        selves = torch.arange(b) + rank * b
        selves = torch.cat([selves, selves + world * b])  # anchor i's own column
        assert torch.isinf(logits[torch.arange(2 * b), selves]).all()
        assert (target == torch.cat([selves[b:], selves[:b]])).all()  # the other view
        total = total + loss / world
    return total


def test_nt_xent_gathered_slices_give_the_whole_batch() -> None:
    """Processes scoring their own pairs against everyone's embeddings: the mean of their
    losses (what DDP's averaged gradients optimise) is the loss of the whole batch, and so are
    the gradients -- the rank offsets of anchors, positives and self-columns are right."""
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    a = [z.clone().requires_grad_(True) for z in (z1, z2)]
    b = [z.clone().requires_grad_(True) for z in (z1, z2)]
    split = _halves_loss(a[0], a[1], world=3)
    whole = nt_xent(b[0], b[1], 0.2)[0]
    assert split.item() == pytest.approx(whole.item(), rel=1e-6)
    split.backward()
    whole.backward()
    for x, y in zip(a, b, strict=True):
        assert x.grad is not None and y.grad is not None
        assert torch.allclose(x.grad, y.grad, atol=1e-6)


def test_nt_xent_across_two_gloo_processes(tmp_path: Path) -> None:
    """The real thing: two processes (gloo), each its 3 pairs against all 6 through
    avssl.dist.all_gather_with_grad. The mean loss is the whole batch's, and each process's rows
    get the gradient of the sum of both losses (= 2 x the whole batch's; DDP then averages)."""
    import gloo_nt_xent as G
    from test_dist import free_port, run_processes

    port = free_port()
    run_processes(G.worker, [(r, port, str(tmp_path)) for r in (0, 1)])
    res = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    ref = [z.clone().requires_grad_(True) for z in G.embeddings()]
    full = nt_xent(ref[0], ref[1], G.TEMPERATURE)[0]
    full.backward()
    assert (res[0]["loss"] + res[1]["loss"]) / 2 == pytest.approx(full.item(), rel=1e-5)
    half = G.BATCH // 2
    for rank in (0, 1):
        for view in (0, 1):
            got = torch.tensor(res[rank]["grad"][view])
            grad = ref[view].grad
            assert grad is not None
            assert torch.allclose(got, 2 * grad[half * rank : half * (rank + 1)], atol=1e-5)


# ----------------------------------------------------------------------------------- MAE
def test_mae_masking_and_loss_match_the_direct_formula() -> None:
    g = torch.Generator().manual_seed(2)
    images = torch.randn(3, 3, 32, 32, generator=g)
    patches = patchify(images, 4)
    assert patches.shape == (3, 64, 48)
    # patch (i, j) holds pixels [4i:4i+4, 4j:4j+4] as (row, column, channel)
    i, j = 2, 5
    direct = images[1, :, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4].permute(1, 2, 0).reshape(-1)
    assert torch.equal(patches[1, i * 8 + j], direct)

    noise = torch.rand(3, 64, generator=g)
    keep, mask, restore = random_masking(noise, 0.75)
    assert keep.shape == (3, 16) and (mask.sum(1) == 48).all()  # exactly 75% of 64 masked
    for b in range(3):  # the visible patches are the 16 smallest draws
        assert set(keep[b].tolist()) == set(noise[b].argsort()[:16].tolist())
        assert set(torch.nonzero(mask[b] == 0).flatten().tolist()) == set(keep[b].tolist())
    shuffled = torch.gather(patches, 1, noise.argsort(1)[..., None].expand(-1, -1, 48))
    assert torch.equal(torch.gather(shuffled, 1, restore[..., None].expand(-1, -1, 48)), patches)

    pred = torch.randn(3, 64, 48, generator=g)
    for norm_pix in (True, False):
        total, n = 0.0, 0
        for b in range(3):
            for p in range(64):
                if mask[b, p] == 0:
                    continue
                t = patches[b, p].double()
                if norm_pix:  # per patch, with the unbiased variance (MAE's code)
                    mean = t.sum() / len(t)
                    var = ((t - mean) ** 2).sum() / (len(t) - 1)
                    t = (t - mean) / math.sqrt(var + 1e-6)
                total += float(((pred[b, p].double() - t) ** 2).mean())
                n += 1
        got = mae_loss(pred, patches, mask, norm_pix=norm_pix).item()
        assert got == pytest.approx(total / n, rel=1e-5)


# ---------------------------------------------------------------------- relative position
@pytest.mark.parametrize(
    ("size", "patch", "gap", "jitter"),
    [((28, 28), 6, 3, 1), ((64, 80), 12, 6, 2), ((40, 40), 8, 0, 3)],
)
def test_relative_position_sampler(
    size: tuple[int, int], patch: int, gap: int, jitter: int
) -> None:
    state = np.random.get_state()  # noqa: NPY002 (checked: the sampler never touches it)
    stride = patch + gap
    labels, offsets = set(), set()
    for seed in range(600):
        yx, label = sample_patch_pair(size, patch, gap, jitter, np.random.default_rng(seed))
        again, label2 = sample_patch_pair(size, patch, gap, jitter, np.random.default_rng(seed))
        assert np.array_equal(yx, again) and label == label2  # deterministic per seed
        assert yx.shape == (2, 2) and yx.dtype == np.int64
        assert (yx >= 0).all() and (yx[:, 0] + patch <= size[0]).all()  # inside the frame
        assert (yx[:, 1] + patch <= size[1]).all()
        labels.add(label)
        dy, dx = NEIGHBOURS[label]
        off = yx[1] - yx[0] - np.array([dy, dx]) * stride  # the two patches' jitter
        assert (np.abs(off) <= 2 * jitter).all()
        offsets.update(off.tolist())
        # the gap between the patches along the displacement: at least gap - 2 * jitter
        for axis, d in enumerate((dy, dx)):
            if d:
                lo, hi = sorted([yx[0, axis], yx[1, axis]])
                assert hi - (lo + patch) >= gap - 2 * jitter
    assert labels == set(range(8))  # all 8 positions
    assert min(offsets) == -2 * jitter and max(offsets) == 2 * jitter  # jitter is used in full
    assert np.array_equal(np.random.get_state()[1], state[1])  # noqa: NPY002


def test_relative_position_layout_and_patches() -> None:
    assert relative_position_layout(28) == (6, 3, 1)
    assert relative_position_layout(227) == (54, 27, 4)  # 96 / 48 / 7 in proportion
    assert relative_position_layout(400, 96, 48, 7) == (96, 48, 7)  # the paper: 398 px
    with pytest.raises(ValueError, match="needs 3\\*patch"):
        relative_position_layout(28, 8, 4, 1)
    x = torch.arange(2 * 3 * 10 * 12, dtype=torch.float32).view(2, 3, 10, 12)
    yx = torch.tensor([[[0, 0], [4, 7]], [[6, 2], [1, 9]]])
    out = cut_patches(x, yx, 3)
    assert out.shape == (2, 2, 3, 3, 3)
    for b in range(2):
        for n in range(2):
            y, xx = yx[b, n].tolist()
            assert torch.equal(out[b, n], x[b, :, y : y + 3, xx : xx + 3])


# ----------------------------------------------------------------------------------- colour
def test_lab_matches_opencv_and_grey_round_trips() -> None:
    rng = np.random.default_rng(0)
    img = rng.random((24, 24, 3)).astype(np.float32)
    img[0, :3] = [[0, 0, 0], [1, 1, 1], [0.5, 0.5, 0.5]]
    ref = cv2.cvtColor(img, cv2.COLOR_RGB2Lab)
    lab = rgb_to_lab(torch.from_numpy(img).permute(2, 0, 1).double()).permute(1, 2, 0).numpy()
    assert np.abs(lab - ref).max() < 0.35  # OpenCV's float path approximates the gamma
    greys = torch.linspace(0, 1, 21, dtype=torch.float64)
    lab_grey = rgb_to_lab(greys.view(1, 1, -1).expand(3, 1, -1))
    assert lab_grey[1:].abs().max() < 1e-6  # greys have a = b = 0
    assert torch.allclose(grey_from_lightness(lab_grey[0, 0]), greys, atol=1e-9)


def test_ab_bins_and_rebalancing_weights() -> None:
    bins = ab_bins()
    q = bins.shape[0]
    assert 250 <= q <= 313  # 261 with our gamut test (the paper's table: 313)
    assert (bins.remainder(10) == 0).all() and (bins == 0).all(1).any()
    assert bins.abs().max() <= 130
    idx = quantize_ab(bins.T.reshape(1, 2, 1, q), bins)  # every centre is its own bin
    assert idx.flatten().tolist() == list(range(q))
    assert len(ab_bins(20.0)) < q / 3  # a coarser grid for tiny models

    counts = torch.zeros(q)
    common = int(((bins - torch.tensor([0.0, 0.0])).norm(dim=1)).argmin())
    rare = int(((bins - torch.tensor([60.0, 60.0])).norm(dim=1)).argmin())
    counts[common], counts[rare] = 1000, 3
    w, smooth = ab_weights(counts, bins)
    assert w.shape == (q,) and smooth.shape == (q,) and (w > 0).all()
    assert float((smooth * w).sum()) == pytest.approx(1.0, rel=1e-5)  # E_p[w] = 1
    assert float(smooth.sum()) == pytest.approx(1.0, rel=1e-5)
    assert w[rare] > w[common] and w.max() <= 2 * q  # rare colours weigh more, bounded by lambda
    flat, _ = ab_weights(counts, bins, lam=1.0)  # lambda 1: the uniform prior, no rebalancing
    assert torch.allclose(flat, torch.ones(q), atol=1e-5)
    with pytest.raises(ValueError, match="counts of shape"):
        ab_weights(torch.ones(q + 1), bins)


# ------------------------------------------------------------------------------ training
def _scene(rng: np.random.Generator, size: int) -> np.ndarray:
    """A coloured rectangle and a bar on a coloured background, ``(size, size, 3)`` uint8 RGB."""
    img = np.empty((size, size, 3), np.uint8)
    img[:] = rng.integers(0, 256, 3)
    y, x = rng.integers(0, size // 2, 2)
    img[y : y + size // 2, x : x + size // 3] = rng.integers(0, 256, 3)
    img[:, rng.integers(size)] = rng.integers(0, 256, 3)
    return img


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image manifest (32 train / 8 test images, 20 px, 4 classes) and a video manifest
    (two 24-frame lossless videos) in one folder."""
    from avssl.data.encode import write_video

    root = tmp_path_factory.mktemp("image_tasks")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        rel = f"images/{i % 4}/{i:02d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), _scene(rng, 20)[..., ::-1])
        split = "train" if i < 32 else "test"
        rows.append(
            {"v": 1, "path": rel, "class_id": i % 4, "label": str(i % 4), "split": split, "fold": 1}
        )
    (root / "images.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    videos = []
    for v in range(2):
        frames = np.stack([_scene(rng, 32) for _ in range(24)])
        write_video(root / f"v{v}.mkv", frames, fps=10, codec="ffv1")
        videos.append({"v": 1, "video": f"v{v}.mkv", "num_frames": 24})
    (root / "videos.jsonl").write_text("".join(json.dumps(r) + "\n" for r in videos))
    return root


TINY = [
    "--set",
    "backbone=convnet_tiny",
    "--set",
    "model.channels=[8,16]",
    "--set",
    "data.frame_size=20",
    "--set",
    "aug.size=16",
    "--set",
    "optim.batch_size=8",
    "--set",
    "optim.optimizer=adamw",
    "--set",
    "optim.lr=0.003",
    "--set",
    "optim.epochs=1",
    "--set",
    "optim.steps_per_epoch=2",
    "--set",
    "run.log_every=1",
    "--set",
    "run.tensorboard=false",
    "--set",
    "run.device=cpu",
    "--set",
    "options.colour_prior_rows=16",
]
VIT = [
    "--set",
    "backbone=vit_tiny",
    "--set",
    "model.channels=[]",
    "--set",
    "model.patch_size=4",
    "--set",
    "model.dim=16",
    "--set",
    "model.depth=1",
    "--set",
    "model.heads=2",
    "--set",
    "options.decoder_dim=16",
    "--set",
    "options.decoder_depth=1",
    "--set",
    "options.decoder_heads=2",
]


def _train(task: str, manifest: Path, run: Path, *extra: str) -> list[dict]:
    argv = [
        task.replace("_", "-"),
        "--out",
        str(run),
        "--set",
        f"data.manifest={manifest}",
        *TINY,
        *extra,
    ]
    assert cli.train_main(argv) == 0
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _check_encoder(run: Path, size: int = 16) -> None:
    """The run's backbone loads as avssl-eval loads it, and embeds RGB frames."""
    from avssl.eval.vision import load_model

    model = load_model(str(run))
    assert model.net is not None
    with torch.no_grad():
        feats = model.net(torch.randn(2, 3, size, size))
    assert feats.ndim == 2 and feats.shape[0] == 2 and torch.isfinite(feats).all()
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    assert any(k.startswith("encoder.net.") for k in ck["model"])


@pytest.mark.parametrize("task", IMAGE_TASKS)
def test_every_image_task_trains_and_loads(data: Path, tmp_path: Path, task: str) -> None:
    extra = VIT if task == "mae" else []
    manifest = data / ("videos.jsonl" if task == "colorization" else "images.jsonl")
    rows = _train(task, manifest, tmp_path / task, *extra)
    steps = [r for r in rows if "loss" in r]
    assert len(steps) == 2 and all(math.isfinite(r["loss"]) for r in steps)
    assert all(("acc" in r) == (task != "mae") for r in steps)  # MAE has no classes
    (ev,) = [r for r in rows if "val_loss" in r]
    # held out: the 8 test images; exemplar: 32 training exemplars (fresh views); the video:
    # its 24 frames, one segment row each (options.frames_per_video)
    assert ev["val_samples"] == {"exemplar": 32, "colorization": 24}.get(task, 8)
    assert ("val_acc" in ev) == (task != "mae")
    assert ("val_balanced_acc" in ev) == (task not in ("mae", "simclr"))
    _check_encoder(tmp_path / task)


def test_multi_task_on_one_backbone(data: Path, tmp_path: Path) -> None:
    tasks = "{rotation: 1, relative_position: 0.5, exemplar: 1, simclr: 1}"
    rows = _train(
        "multi_task", data / "images.jsonl", tmp_path / "multi", "--set", f"options.tasks={tasks}"
    )
    steps = [r for r in rows if "loss" in r]
    for name in ("rotation", "relative_position", "exemplar", "simclr"):
        assert all(f"{name}_loss" in r and f"{name}_acc" in r for r in steps)
    r = steps[0]  # the weighted sum of the heads' losses
    total = r["rotation_loss"] + 0.5 * r["relative_position_loss"] + r["exemplar_loss"]
    assert r["loss"] == pytest.approx(total + r["simclr_loss"], rel=1e-4)
    assert r["acc"] == r["rotation_acc"]  # the first classifying head's accuracy
    ck = torch.load(tmp_path / "multi" / "checkpoint.pt", weights_only=True)
    heads = {k.split(".")[1] for k in ck["model"] if k.startswith("heads.")}
    assert heads == {"rotation", "relative_position", "exemplar", "simclr"}
    _check_encoder(tmp_path / "multi")


def test_every_head_on_a_vit_with_video_frames(data: Path, tmp_path: Path) -> None:
    """All six heads at once, on frames of a video manifest, MAE's ViT shared by all."""
    tasks = "{rotation: 1, relative_position: 1, colorization: 1, exemplar: 1, simclr: 1, mae: 1}"
    rows = _train(
        "multi_task",
        data / "videos.jsonl",
        tmp_path / "all",
        *VIT,
        "--set",
        f"options.tasks={tasks}",
        "--set",
        "options.patch=4",
        "--set",
        "options.gap=1",
        "--set",
        "options.exemplar_classes=12",
        "--set",
        "options.chroma=project",
    )
    assert {"mae_loss", "colorization_acc", "exemplar_acc"} <= set(rows[0])
    _check_encoder(tmp_path / "all")


def test_mae_runs_are_reproducible(data: Path, tmp_path: Path) -> None:
    """The masks come from the examples' (seed, epoch, index) draws: two runs are the same."""
    a = _train("mae", data / "images.jsonl", tmp_path / "a", *VIT)
    b = _train("mae", data / "images.jsonl", tmp_path / "b", *VIT)
    drop = ("samples_per_s", "data_wait")
    assert [{k: v for k, v in r.items() if k not in drop} for r in a] == [
        {k: v for k, v in r.items() if k not in drop} for r in b
    ]


def test_examples_and_frames(data: Path) -> None:
    reader = FrameReader(data, (20, 20), cache_mb=8)
    img = reader.image("images/1/01.png")
    assert img.shape == (1, 3, 20, 20) and img.dtype == torch.uint8
    grey = data / "grey.png"
    cv2.imwrite(str(grey), np.arange(64, dtype=np.uint8).reshape(8, 8))
    g = FrameReader(data, (16, 16)).image("grey.png")  # grey -> RGB, resized
    assert g.shape == (1, 3, 16, 16) and torch.equal(g[:, 0], g[:, 1])

    rng = np.random.default_rng(0)
    assert frame_index({"video": "v", "frame": 5, "window": [0, 9]}, reader, rng) == 5
    assert all(
        3 <= frame_index({"video": "v", "window": [3, 6]}, reader, rng) < 6 for _ in range(20)
    )
    assert {frame_index({"video": "v", "frames": [7, 9]}, reader, rng) for _ in range(40)} == {7, 9}
    assert frame_index({"video": "v", "subsequences": [[4], [4]]}, reader, rng) == 4
    assert 0 <= frame_index({"video": "v", "num_frames": 3}, reader, rng) < 3
    with pytest.raises(ValueError, match="no 'frame', 'window'"):
        frame_index({"video": "v"}, reader, rng)
    frame = read_frame({"video": "v0.mkv", "num_frames": 24}, reader, rng)
    assert frame.shape == (1, 3, 20, 20)

    from avssl.tasks.image import make_example as make

    ex = make(
        {"path": "images/1/01.png"},
        reader,
        np.random.default_rng(1),
        views=3,
        layout=(16, 3, 1, 1),
        drop_colour=True,
        mask_tokens=16,
    )
    assert ex["frames"].shape == (3, 3, 20, 20) and ex["patch_yx"].shape == (2, 2)
    assert int(ex["target"]) == int(ex["position"]) and ex["patch_keep"].shape == (2,)
    assert ex["mask_noise"].shape == (16,)
    import functools
    import pickle

    bound = functools.partial(make, views=2, layout=(16, 3, 1, 1))  # what the loaders receive
    again = pickle.loads(pickle.dumps(bound))
    assert (
        again({"path": "images/1/01.png"}, reader, np.random.default_rng(1))["frames"].shape[0] == 2
    )


def test_image_manifest_split_and_refusals(data: Path, tmp_path: Path) -> None:
    from avssl.train import _rows

    cfg = load_config(
        TrainConfig, None, ["task=rotation", f"data.manifest={data / 'images.jsonl'}"]
    )
    train, val, root, _ = _rows(cfg)
    assert len(train) == 32 and len(val) == 8 and root == data
    assert all(r["split"] == "train" for r in train) and all(r["split"] == "test" for r in val)
    bad = ["--set", "options.balanced_loss=true"]
    assert (
        cli.train_main(
            [
                "rotation",
                "--out",
                str(tmp_path / "x"),
                "--set",
                f"data.manifest={data / 'images.jsonl'}",
                *TINY,
                *bad,
            ]
        )
        == 2
    )
    assert (
        cli.train_main(
            [
                "mae",
                "--out",
                str(tmp_path / "y"),
                "--set",
                f"data.manifest={data / 'images.jsonl'}",
                *TINY,
            ]
        )
        == 2
    )


def _image_configs() -> list[Path]:
    import yaml

    return [
        p
        for p in sorted(REPO.glob("configs/*.yaml"))
        if yaml.safe_load(p.read_text()).get("task") in [*IMAGE_TASKS, "multi_task"]
    ]


@pytest.mark.parametrize("path", _image_configs(), ids=lambda p: p.name)
def test_image_configs_load(path: Path) -> None:
    """Every image-task config resolves (keys, types) over its task's defaults."""
    import yaml

    task = yaml.safe_load(path.read_text())["task"]
    cfg = load_config(TrainConfig, path, [f"task={task}"], base=TASKS[task].defaults)
    assert cfg.task == task and TASKS[task].prepare is not None
