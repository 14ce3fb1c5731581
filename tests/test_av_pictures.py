"""Heatmap pictures a person can read (avssl/eval/pictures.py): the localization sheets of
``avssl-eval localization`` / ``avssl-train ave-net`` and the overlays of ``avssl-localize``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from avssl.eval import pictures
from avssl.eval.av import picture_trials
from avssl.eval.metrics import heatmap_peak

FRAME_RGB = (200, 100, 50)  # a colour found nowhere else on a sheet: it locates the panels
SIDE, GRID = 64, 8


def _kept(maps: dict[str, np.ndarray], probs: dict[str, float]) -> dict[str, Any]:
    """One trial as evaluate_localization keeps it: a flat frame, a box in the top-left corner."""
    frame = np.empty((SIDE, SIDE, 3), np.uint8)
    frame[:] = FRAME_RGB
    kept: dict[str, Any] = {
        "frames": [frame], "boxes": [[[0.0, 0.0, 0.25, 0.25]]], "ids": ["clip_7.mp4@12"],
        "trials": [{"index": 3, "of": 40, "video": "clip_7.mp4", "frame": 12, "frame_s": 0.48,
                    "labels": ["star"]}],
        "other_labels": [["ring"]],
    }  # fmt: skip
    for c in ("matched", "silent", "mismatched"):
        kept[c], kept[f"{c}_p"] = [maps[c].astype(np.float32)], [probs[c]]
    return kept


def _panels(sheet: np.ndarray) -> list[np.ndarray]:
    """The four pictures of a sheet (frame, matched, silent, mismatched), found from the frame
    panel's pixels (its colour) and the sheet's width (four panels, three equal gaps)."""
    ys, xs = np.nonzero((sheet == FRAME_RGB).all(-1))
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    assert x0 == 0 and y1 - y0 == x1 - x0  # the frame panel: the first, square
    side = x1 - x0
    gap = (sheet.shape[1] - 4 * side) // 3
    return [sheet[y0:y1, n * (side + gap) : n * (side + gap) + side] for n in range(4)]


def test_silent_sound_the_model_rejects_looks_dark() -> None:
    """A flat heatmap of 0.9 is bright with a sound the model takes (p = 0.95) and dark with
    one it rejects (silence, p = 0.02): the colours are capped at p(match)."""
    flat = np.full((GRID, GRID), 0.9)
    kept = _kept({"matched": flat, "silent": flat, "mismatched": flat},
                 {"matched": 0.95, "silent": 0.02, "mismatched": 0.3})  # fmt: skip
    frame, matched, silent, mismatched = _panels(pictures.localization_sheet(kept, 0))
    inner = (slice(SIDE * 2, None), slice(SIDE * 2, None))  # away from the box and the marker
    named = {"frame": frame, "matched": matched, "silent": silent, "mismatched": mismatched}
    lum = {k: float(p[inner].mean()) for k, p in named.items()}
    assert lum["silent"] < 0.5 * lum["frame"], lum
    assert lum["matched"] > 1.2 * lum["frame"], lum
    assert lum["silent"] < lum["mismatched"] < lum["matched"], lum


def test_one_absolute_colour_scale() -> None:
    """The same heatmap value gets the same colour in two panels whose maps differ elsewhere
    (a per-panel rescaling would paint 0.3 differently under maxima of 0.9 and 0.4)."""
    a, b = np.full((GRID, GRID), 0.3), np.full((GRID, GRID), 0.3)
    a[0, 0], b[0, 0] = 0.9, 0.4  # the peaks differ (and so would a rescaled 0.3)
    a[0, 7], b[0, 7] = 0.1, 0.0  # and so do the minima
    kept = _kept({"matched": a, "silent": np.zeros((GRID, GRID)), "mismatched": b},
                 {"matched": 0.95, "silent": 0.02, "mismatched": 0.95})  # fmt: skip
    _, matched, _, mismatched = _panels(pictures.localization_sheet(kept, 0))
    far = (slice(-3 * SIDE // 2, None), slice(-3 * SIDE // 2, None))
    np.testing.assert_array_equal(matched[far], mismatched[far])
    # and that colour is the scale's colour of 0.3 over the frame (alpha 0.6)
    inferno = cv2.applyColorMap(np.full((1, 1), round(0.3 * 255), np.uint8), cv2.COLORMAP_INFERNO)
    want = 0.4 * np.array(FRAME_RGB) + 0.6 * inferno[0, 0, ::-1]
    np.testing.assert_allclose(matched[far].reshape(-1, 3).mean(0), want, atol=1.5)
    # the peak is marked where the pointing game finds it (scale 4: pixel centre * 4)
    i, j = heatmap_peak(a, (SIDE, SIDE))
    assert (i, j) == (0, 0) and tuple(matched[round(4 * (i + 0.5)), round(4 * (j + 0.5))]) == (
        0, 230, 255,
    )  # fmt: skip


def test_sheets_are_written_and_replace_old_ones(tmp_path: Path) -> None:
    flat = np.full((GRID, GRID), 0.5)
    kept = _kept({c: flat for c in ("matched", "silent", "mismatched")},
                 {"matched": 0.9, "silent": 0.1, "mismatched": 0.2})  # fmt: skip
    (tmp_path / "007_old_sheet.png").write_bytes(b"old")
    (tmp_path / "notes.png").write_bytes(b"not a sheet")
    names = pictures.write_heatmaps(kept, tmp_path)
    assert names == ["000_clip_7.mp4_12.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000_clip_7.mp4_12.png", "notes.png"]
    img = cv2.imread(str(tmp_path / names[0]))
    assert img.shape[1] == 4 * 4 * SIDE + 3 * 6 and img.shape[0] > 4 * SIDE + 150


def test_pictures_show_one_trial_per_clip() -> None:
    rows = [{"video": v, "frame": f} for v in ("a", "b", "c") for f in range(5)]
    rows += [{"video": "d", "frame": 0}]
    assert picture_trials(rows, 12) == [2, 7, 12, 15]  # the middle trial of each clip
    two = picture_trials(rows, 2)
    assert two == [2, 15]  # the clips spread: the first and the last
    assert picture_trials(rows, 0) == []


def test_no_match_overlay_says_so() -> None:
    """An avssl-localize picture: a banner over the frame, the colour bar under it; a sound the
    model rejects gets a red banner (the verdict in words) and a dark picture."""
    frame = np.full((48, 80, 3), 150, np.uint8)
    flat = np.full((GRID, GRID), 0.9, np.float32)
    no = pictures.annotated_frame(frame, flat, 0.03, note="frame 3, t = 0.12 s")
    yes = pictures.annotated_frame(frame, flat, 0.9, note="frame 3, t = 0.12 s")
    assert no.shape == yes.shape and no.shape[1] == 560  # 80 px x 7: at least 512 wide
    big_h = 48 * 7
    assert no.shape[0] > big_h + 100  # a banner and a colour bar besides the frame
    ys = np.nonzero((np.abs(yes.astype(int) - no.astype(int)).sum(-1) > 0).any(1))[0]
    banner_h = ys.min()  # the first rows that differ hold the verdict
    assert banner_h == 0
    top = no[: no.shape[0] - big_h][:40]
    assert top[..., 0].mean() > top[..., 1].mean() + 20  # red
    assert pictures.verdict(0.03)[0] == "no match heard (p=0.03)"
    # the banner's text: the strip with it differs from a strip without it
    blank = pictures.text_strip(560, [(" ", pictures.RED)] * 2, scale=0.575, bg=(70, 20, 20))
    assert (np.abs(no[: blank.shape[0]].astype(int) - blank).sum(-1) > 60).sum() > 300
    # the frame region: dark when rejected, bright when heard
    mid = slice(no.shape[0] // 2 - 40, no.shape[0] // 2 + 40)
    assert no[mid].mean() < 0.6 * 150 < yes[mid].mean()


def test_colour_bar_runs_dark_to_light() -> None:
    bar = pictures.colour_bar(400, scale=0.5)
    coloured = (bar != pictures.BACKGROUND).any(-1)
    row = bar[int(np.argmax(coloured.sum(1)))]  # the row through the ramp
    ramp = row[(row != pictures.BACKGROUND).any(-1)].astype(float).sum(-1)
    assert len(ramp) > 300
    assert ramp[:10].mean() < 40 and ramp[-10:].mean() > 600
    assert (np.diff(ramp) >= -6).all()  # brighter left to right (INFERNO's sum: nearly so)
