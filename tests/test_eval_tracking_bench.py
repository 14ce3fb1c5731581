"""Tracking on real ground truth (avssl/eval/tracking_bench.py): the DAVIS-2017 toolkit's J and F,
box IoU against VOT regions, the layouts, and ``avssl-eval tracking --davis / --vot`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avssl.cli import eval as cli
from avssl.eval import tracking_bench as tb


def _rect(h: int, w: int, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """A bool mask with rows r0..r1 and columns c0..c1 (inclusive) set."""
    m = np.zeros((h, w), bool)
    m[r0 : r1 + 1, c0 : c1 + 1] = True
    return m


# ------------------------------------------------------------------------------ metrics
def test_seg2bmap_marks_pixels_differing_from_east_south_southeast() -> None:
    got = tb.seg2bmap(_rect(8, 8, 2, 3, 2, 3))
    want = {(1, 1), (1, 2), (1, 3), (2, 1), (3, 1), (2, 3), (3, 2), (3, 3)}
    assert set(zip(*np.nonzero(got), strict=True)) == want
    dot = np.zeros((10, 10), bool)
    dot[8, 8] = True
    assert set(zip(*np.nonzero(tb.seg2bmap(dot)), strict=True)) == {(7, 7), (7, 8), (8, 7), (8, 8)}


def test_j_and_f_hand_computed() -> None:
    sq = _rect(10, 10, 2, 3, 2, 3)  # 10x10: ceil(0.008 * 14.1) = 1 px tolerance
    shifted = _rect(10, 10, 2, 3, 3, 4)
    assert tb.region_similarity(shifted, sq) == pytest.approx(2 / 6)
    assert tb.davis_f(shifted, sq) == pytest.approx(1.0)  # every boundary pixel 1 px off
    far = sq.copy()
    far[8, 8] = True  # 4 extra boundary pixels, none near the truth: P = 8/12, R = 1
    assert tb.region_similarity(far, sq) == pytest.approx(4 / 5)
    assert tb.davis_f(far, sq) == pytest.approx(0.8)
    assert tb.region_similarity(_rect(10, 10, 7, 8, 7, 8), sq) == 0.0
    assert tb.davis_f(_rect(10, 10, 7, 8, 7, 8), sq) == 0.0
    # the tolerance is ceil(0.008 * diagonal): 2 px on 100 x 100
    big = _rect(100, 100, 40, 59, 40, 59)
    assert tb.davis_f(_rect(100, 100, 40, 59, 42, 61), big) == pytest.approx(1.0)
    assert tb.davis_f(_rect(100, 100, 40, 59, 43, 62), big) < 1.0


def test_empty_masks_follow_the_toolkit() -> None:
    empty, sq = np.zeros((10, 10), bool), _rect(10, 10, 2, 3, 2, 3)
    assert (
        tb.region_similarity(empty, empty) == 1.0 and tb.davis_f(empty, empty) == 1.0
    )  # absent in both
    assert (
        tb.region_similarity(sq, empty) == 0.0 and tb.davis_f(sq, empty) == 0.0
    )  # left, still predicted
    assert tb.region_similarity(empty, sq) == 0.0 and tb.davis_f(empty, sq) == 0.0  # lost


def test_void_pixels_background_or_ignored() -> None:
    pred = _rect(40, 40, 5, 14, 5, 14)
    gt = _rect(40, 40, 10, 14, 5, 14)  # the top half of the square is void in the truth
    void = _rect(40, 40, 5, 9, 5, 14)
    assert tb.region_similarity(pred, gt) == pytest.approx(0.5)
    assert tb.region_similarity(pred, gt, void) == pytest.approx(1.0)
    # boundaries (Martin's seg2bmap) of 2w + 2h pixels: 40 and 30; 23 of each matched (1 px)
    assert tb.davis_f(pred, gt) == pytest.approx(46 / 70)
    assert tb.davis_f(pred, gt, void) == pytest.approx(1.0)


def test_db_statistics() -> None:
    m, r, d = tb.db_statistics([1.0, 1.0, 0.4, 0.0, 0.0])
    assert m == pytest.approx(0.48) and r == pytest.approx(0.4)
    # bins of 5 values: ids round(linspace(1, 5, 5)) - 1 = 0..4 -> [0:2], ..., [3:5]
    assert d == pytest.approx(1.0 - 0.0)


def test_groundtruth_boxes_and_polygons(tmp_path: Path) -> None:
    gt = tmp_path / "groundtruth.txt"
    gt.write_text("10,10,20,20\n20,10,30,20,20,30,10,20\nnan,nan,nan,nan\n20\t10\t20\t20\n\n")
    regions = tb.parse_groundtruth(gt)
    assert [r is None for r in regions] == [False, False, True, False, True]
    assert tb.aabb(regions[0]) == [10, 10, 30, 30]
    assert tb.aabb(regions[1]) == [10, 10, 30, 30]  # a diamond: its bounding box
    assert tb.polygon_iou([10, 10, 30, 30], regions[1]) == pytest.approx(200 / 400)
    assert tb.polygon_iou(None, regions[1]) == 0.0
    assert tb.aabb(regions[3]) == [20, 10, 40, 30]
    (tmp_path / "bad.txt").write_text("1,2,3\n")
    with pytest.raises(ValueError, match="3 numbers"):
        tb.parse_groundtruth(tmp_path / "bad.txt")


# ------------------------------------------------------------------------------ end to end
H = W = 40


def _frames(n: int, seed: int = 0) -> list[np.ndarray]:
    """A textured background with a bright square drifting right one pixel a frame."""
    rng = np.random.default_rng(seed)
    bg = rng.integers(0, 120, (H, W, 3), dtype=np.uint8)
    out = []
    for i in range(n):
        f = bg.copy()
        f[5:15, 5 + i : 15 + i] = (230, 40, 40)
        out.append(f)
    return out


def _davis_tree(root: Path) -> None:
    """One sequence, 6 frames, masks of frames 0, 1, 3, 4, 5 (2 is missing): object 1 a square
    (its top half void in frame 1, moved away in the last frame), object 2 absent everywhere,
    object 3 present in frames 0-1 only (it leaves)."""
    img, ann = root / "JPEGImages" / "480p" / "seq", root / "Annotations" / "480p" / "seq"
    img.mkdir(parents=True)
    ann.mkdir(parents=True)
    for i, f in enumerate(_frames(6)):
        Image.fromarray(f).save(img / f"{i:05d}.jpg", quality=95)
    for i in (0, 1, 3, 4, 5):
        m = np.zeros((H, W), np.uint8)
        m[_rect(H, W, 5, 14, 5, 14) if i < 5 else _rect(H, W, 25, 34, 25, 34)] = 1
        if i == 1:
            m[5:10, 5:15] = 255
        if i <= 1:
            m[20:30, 20:30] = 3
        im = Image.fromarray(m, mode="P")
        im.putpalette([0, 0, 0, 200, 0, 0, 0, 200, 0, 0, 0, 200] + [0] * 756)
        im.save(ann / f"{i:05d}.png")


def test_davis_layout_end_to_end_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _davis_tree(tmp_path / "davis")
    out = tmp_path / "out"
    args = ["tracking", "lab-pixels", "--davis", str(tmp_path / "davis"), "--size", "32",
            "--out", str(out)]  # fmt: skip
    assert cli.main(args) == 0
    res = json.loads((out / "tracking_bench.json").read_text())
    seq = res["extra"]["davis_sequences"][0]
    assert seq["objects"] == 3 and seq["frames_scored"] == 3  # frames 1, 3, 4
    copy = seq["copy_first"]["objects"]
    # copy-first, void = background: J of object 1 in frame 1 = 50 / 100
    assert copy[0]["J_per_frame"] == pytest.approx([0.5, 1, 1])
    assert copy[0]["F_per_frame"] == pytest.approx([46 / 70, 1, 1], abs=1e-5)
    assert copy[1]["J_per_frame"] == [1, 1, 1] and copy[1]["F_per_frame"] == [1, 1, 1]
    assert copy[2]["J_per_frame"] == [1, 0, 0] and copy[2]["F_per_frame"] == [1, 0, 0]
    j = (2.5 / 3 + 1 + 1 / 3) / 3
    f = ((46 / 70 + 2) / 3 + 1 + 1 / 3) / 3
    got = res["metrics"]["davis"]["copy_first"]
    assert got["J"] == pytest.approx(j, abs=1e-5) and got["F"] == pytest.approx(f, abs=1e-5)
    assert got["J&F"] == pytest.approx((j + f) / 2, abs=1e-5)
    tr = res["metrics"]["davis"]["tracker"]
    assert 0 <= tr["J"] <= 1 and 0 <= tr["F"] <= 1 and tr["objects"] == 3
    assert "seq" in capsys.readouterr().out
    # void ignored: object 1 is exact in every scored frame
    assert cli.main([*args, "--void", "ignore"]) == 0
    res = json.loads((out / "tracking_bench.json").read_text())
    obj1 = res["extra"]["davis_sequences"][0]["copy_first"]["objects"][0]
    assert obj1["J_per_frame"] == [1, 1, 1] and obj1["F_per_frame"] == [1, 1, 1]


def test_davis_imagesets_pick_the_listed_sequences(tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "davis"
    _davis_tree(root)
    for sub in ("JPEGImages", "Annotations"):
        shutil.copytree(root / sub / "480p" / "seq", root / sub / "480p" / "other")
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("other\n")
    (root / "ImageSets" / "2016").mkdir()
    (root / "ImageSets" / "2016" / "val.txt").write_text("seq\n")
    assert tb.read_imageset(root, "val") == ["other"]  # the newest year
    assert tb.read_imageset(root, "2016/val") == ["seq"]
    out = tmp_path / "out"
    base = ["tracking", "lab-pixels", "--davis", str(root), "--size", "32", "--out", str(out)]
    assert cli.main([*base, "--imageset", "2016/val"]) == 0
    res = json.loads((out / "tracking_bench.json").read_text())
    assert res["dataset"]["sequences"] == ["seq"]
    assert cli.main(base) == 0  # no list: every sequence
    res = json.loads((out / "tracking_bench.json").read_text())
    assert res["dataset"]["sequences"] == ["other", "seq"]
    with pytest.raises(FileNotFoundError, match="train.txt"):
        tb.read_imageset(root, "2017/train")
    assert cli.main([*base, "--imageset", "2017/train"]) != 0


def test_folder_layouts_and_vot_boxes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "mixed"
    frames = _frames(4)
    for name in ("bin", "first_only", "box"):
        (root / name / "frames").mkdir(parents=True)
        for i, f in enumerate(frames):
            Image.fromarray(f).save(root / name / "frames" / f"{i + 1:08d}.png")
    (root / "bin" / "masks").mkdir()
    for i in range(4):  # a grey 0/255 mask: one object, numbered like the frames
        m = np.zeros((H, W), np.uint8)
        m[5:15, 5 + i : 15 + i] = 255
        Image.fromarray(m, mode="L").save(root / "bin" / "masks" / f"{i + 1:08d}.png")
    (root / "first_only" / "masks").mkdir()
    Image.fromarray(np.full((H, W), 1, np.uint8), mode="L").save(
        root / "first_only" / "masks" / "00000001.png")  # fmt: skip
    (root / "box" / "groundtruth.txt").write_text(
        "10,10,20,20\n20,10,30,20,20,30,10,20\nnan,nan,nan,nan\n20,10,20,20\n"
    )
    (root / "empty").mkdir()

    seqs, skipped = tb.find_davis(root)
    assert [s.name for s in seqs] == ["bin"] and seqs[0].binary
    assert [i for i, _ in seqs[0].masks] == [0, 1, 2, 3]
    why = dict(skipped)
    assert "no ground truth to score" in why["first_only"] and "--vot" in why["box"]
    assert "no mask folder" in why["empty"]
    vseqs, vskipped = tb.find_vot(root)
    assert [s.name for s in vseqs] == ["box"] and "--davis" in dict(vskipped)["bin"]

    out = tmp_path / "out"
    assert cli.main(["tracking", "pixels", "--davis", str(root), "--vot", str(root), "--size",
                     "32", "--out", str(out)]) == 0  # fmt: skip
    res = json.loads((out / "tracking_bench.json").read_text())
    box = res["extra"]["vot_sequences"][0]
    assert box["frames_scored"] == 2 and box["per_frame"]["frame"] == [1, 3]
    assert box["per_frame"]["iou_copy"] == pytest.approx([1, 1 / 3], abs=1e-5)
    assert box["per_frame"]["iou_poly_copy"] == pytest.approx([0.5, 200 / 600], abs=1e-5)
    cf = res["metrics"]["vot"]["copy_first"]
    assert cf["mIoU"] == pytest.approx(2 / 3, abs=1e-5)
    assert cf["AUC"] == pytest.approx(13.5 / 21)  # 7 thresholds < 1/3 at 1, 13 at 0.5, 1.0 at 0
    assert res["metrics"]["davis"]["tracker"]["objects"] == 1
    assert {s["sequence"] for s in res["dataset"]["skipped"]} == {"first_only", "empty"}
    # a sheet per sequence (--pictures 4 by default): title bar + 4 panels (frame 0 and the 3
    # frames with ground truth, at most 5) of 280 px each, a caption bar under each
    for name, panels in (("bin", 3), ("box", 3)):
        pic = np.asarray(Image.open(out / "pictures" / f"{name}.png"))
        assert pic.shape[1] == 280 * panels and pic.shape[0] > 280 * H / W
    err = capsys.readouterr().err
    assert "skipped first_only" in err and "skipped box" not in err
    assert cli.main(["tracking", "pixels", "--vot", str(root), "--sequences", "nope", "--out",
                     str(out)]) == 2  # fmt: skip
    out2 = tmp_path / "out2"
    assert cli.main(["tracking", "pixels", "--vot", str(root), "--pictures", "0", "--out",
                     str(out2)]) == 0  # fmt: skip
    assert not (out2 / "pictures").exists()


def test_shared_tracking_data(shared_data: Path, tmp_path: Path) -> None:
    """../shared/data/tracking as it is: bmx-trees (binary masks), schoolgirls (an mp4 and
    palette masks), the bag (VOT boxes); the first-frame-only sequences are skipped."""
    root = shared_data / "tracking"
    if not root.is_dir():
        pytest.skip(f"{root} not found (../shared/data/tracking: DAVIS-style masks, VOT boxes)")
    seqs, skipped = tb.find_davis(root)
    got = {s.name: s for s in seqs}
    assert set(got) == {"propainter_bmx-trees", "e2fgvi_schoolgirls"}
    assert got["propainter_bmx-trees"].binary and not got["e2fgvi_schoolgirls"].binary
    assert got["e2fgvi_schoolgirls"].video.suffix == ".mp4"
    assert len(got["e2fgvi_schoolgirls"].masks) == 80
    assert {"cutie_bike", "aot_1001_3iEIq5HBY1s", "aot_1007_YCTBBdbKSSg"} <= set(dict(skipped))
    out = tmp_path / "out"
    assert cli.main(["tracking", "lab-pixels", "--davis", str(root), "--vot", str(root),
                     "--sequences", "propainter_bmx-trees,dasiamrpn_bag", "--size", "32",
                     "--out", str(out)]) == 0  # fmt: skip
    m = json.loads((out / "tracking_bench.json").read_text())["metrics"]
    # copy-first does not depend on the model (docs/tracking.md's table)
    assert m["davis"]["copy_first"]["J&F"] == pytest.approx(0.1608, abs=1e-4)
    assert m["vot"]["copy_first"]["AUC"] == pytest.approx(0.0647, abs=1e-4)
    assert m["vot"]["tracker"]["AUC"] > m["vot"]["copy_first"]["AUC"]
