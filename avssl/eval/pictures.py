"""Pictures of sound-source heatmaps on one absolute colour scale, for the localization sheets
(``avssl-eval localization``, the pair tasks' closing check: :mod:`avssl.eval.av`) and the
overlays of ``avssl-localize``.

What a colour means: the heatmap's cell scores (``AVNet.localize``: the sigmoid of each cell's
match logit, in [0, 1]) capped at the sound's p(match) (:func:`shown_map`), on the INFERNO colour
map from 0 (black: no sound from here) to 1 (pale yellow), the same in every panel and frame.
The cap: "the sound comes from this cell" implies "the sound belongs to this picture", so its
probability cannot exceed p(match); without it an AVE-Net heatmap of a rejected sound (silence:
p = 0.02) can be bright all over the background, which reads as "everything here makes it".
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: The colour bar's label.
SCALE_LABEL = "p(sound comes from here)"
#: How the colours are made, said under the colour bar.
SCALE_NOTE = "each cell's score, capped at the sound's p(match)"
#: p(match) from which the model is said to hear a match (match_logit > 0).
MATCH_AT = 0.5
WHITE, GREY, BLACK = (255, 255, 255), (170, 170, 170), (0, 0, 0)
GREEN, RED, AMBER = (60, 220, 90), (255, 80, 70), (255, 190, 60)
BACKGROUND = (24, 24, 28)
_FONT = 0  # cv2.FONT_HERSHEY_SIMPLEX


def shown_map(heatmap: np.ndarray, p_match: float) -> np.ndarray:
    """The values a picture colours: ``heatmap`` clipped to [0, 1] and capped at ``p_match``."""
    cap = float(np.clip(p_match, 0.0, 1.0))
    return np.minimum(np.clip(np.asarray(heatmap, np.float32), 0.0, 1.0), cap)


def colourize(values: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) uint8 RGB on the absolute INFERNO scale."""
    import cv2

    v = np.round(np.clip(values, 0.0, 1.0) * 255).astype(np.uint8)
    return np.ascontiguousarray(cv2.applyColorMap(v, cv2.COLORMAP_INFERNO)[..., ::-1])


def heat_overlay(frame: np.ndarray, values: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """``frame`` (H, W, 3) uint8 RGB with ``values`` (any grid, in [0, 1], see
    :func:`shown_map`) resized bilinearly on top in the absolute colours."""
    import cv2

    h, w = frame.shape[:2]
    hm = cv2.resize(np.asarray(values, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    mix = frame.astype(np.float32) * (1 - alpha) + colourize(hm).astype(np.float32) * alpha
    return np.clip(mix, 0, 255).astype(np.uint8)


def upscale(frame: np.ndarray, min_width: int) -> tuple[np.ndarray, int]:
    """``frame`` enlarged by the smallest whole factor that makes it ``min_width`` wide (nearest
    neighbour: the pixels stay sharp), and that factor."""
    import cv2

    f = max(1, -(-min_width // max(1, frame.shape[1])))
    if f == 1:
        return frame, 1
    size = (frame.shape[1] * f, frame.shape[0] * f)
    return cv2.resize(frame, size, interpolation=cv2.INTER_NEAREST), f


def font_for(width: int) -> tuple[float, int]:
    """Font scale and stroke of text on a picture ``width`` pixels wide (about 11 px high at
    512 px and below, growing with wider pictures)."""
    s = max(1.0, width / 512)
    return 0.5 * s, max(1, round(s))


def put_text(
    img: Any,
    text: str,
    org: tuple[int, int],
    scale: float,
    colour: tuple[int, ...],
    thickness: int = 1,
    max_width: int | None = None,
) -> None:
    """``text`` at ``org`` (its baseline's left end), shrunk to fit ``max_width`` pixels when
    given (on the plain strips of :func:`text_strip`: no outline needed)."""
    import cv2

    if max_width:
        tw = cv2.getTextSize(text, _FONT, scale, thickness)[0][0]
        scale = scale * min(1.0, max_width / max(tw, 1))
    cv2.putText(img, text, org, _FONT, scale, colour, thickness, cv2.LINE_AA)


def text_strip(
    width: int,
    lines: Sequence[tuple[str, tuple[int, ...]]],
    *,
    scale: float,
    thickness: int = 1,
    bg: tuple[int, int, int] = BACKGROUND,
) -> np.ndarray:
    """A strip ``width`` wide with one ``(text, colour)`` per line, each shrunk to fit."""
    step = round(24 * scale / 0.5)
    strip = np.zeros((step * len(lines) + round(8 * scale / 0.5), width, 3), np.uint8)
    strip[:] = bg
    pad = round(8 * scale / 0.5)
    for n, (text, colour) in enumerate(lines):
        put_text(
            strip,
            text,
            (pad, step * (n + 1) - round(4 * scale / 0.5) + pad // 2),
            scale,
            colour,
            thickness,
            max_width=width - 2 * pad,
        )
    return strip


def colour_bar(
    width: int, *, scale: float, thickness: int = 1, note: str = SCALE_NOTE
) -> np.ndarray:
    """The legend of the colours: a bar from 0 to 1 with ticks, :data:`SCALE_LABEL` and
    ``note`` under it, ``width`` pixels wide."""
    import cv2

    u = scale / 0.5
    pad, bar_h = round(10 * u), round(14 * u)
    x0, x1 = pad + round(18 * u), width - pad - round(18 * u)
    rows = [(f"{SCALE_LABEL}, 0 to 1", WHITE)] + ([(note, GREY)] if note else [])
    head = text_strip(width, rows, scale=scale, thickness=thickness)
    body = np.zeros((bar_h + round(30 * u), width, 3), np.uint8)
    body[:] = BACKGROUND
    ramp = np.linspace(0.0, 1.0, max(2, x1 - x0))[None].repeat(bar_h, 0)
    body[round(4 * u) : round(4 * u) + bar_h, x0 : x0 + ramp.shape[1]] = colourize(ramp)
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = x0 + round(t * (ramp.shape[1] - 1))
        y = round(4 * u) + bar_h
        cv2.line(body, (x, y), (x, y + round(5 * u)), WHITE, thickness)
        label = f"{t:g}"
        tw = cv2.getTextSize(label, _FONT, scale, thickness)[0][0]
        put_text(body, label, (x - tw // 2, y + round(22 * u)), scale, WHITE, thickness)
    return np.concatenate([head, body], axis=0)


def draw_boxes(
    img: Any,
    boxes_norm: Sequence[Sequence[float]],
    colour: tuple[int, ...] = GREEN,
    thickness: int = 2,
) -> None:
    """Normalised ``[x1, y1, x2, y2]`` boxes drawn on ``img`` in place."""
    import cv2

    h, w = img.shape[:2]
    for x1, y1, x2, y2 in boxes_norm:
        cv2.rectangle(
            img,
            (round(x1 * w), round(y1 * h)),
            (round(x2 * w) - 1, round(y2 * h) - 1),
            colour,
            thickness,
        )


def mark_peak(img: Any, x: int, y: int, colour: tuple[int, ...] = (0, 230, 255)) -> None:
    """A cross in a ring at pixel ``(x, y)`` (the heatmap's peak), outlined in black."""
    import cv2

    r = max(6, img.shape[1] // 40)
    for col, t in ((BLACK, 4), (colour, 2)):
        cv2.circle(img, (x, y), r, col, t, cv2.LINE_AA)
        cv2.line(img, (x - 2 * r, y), (x + 2 * r, y), col, t, cv2.LINE_AA)
        cv2.line(img, (x, y - 2 * r), (x, y + 2 * r), col, t, cv2.LINE_AA)


def verdict(p_match: float) -> tuple[str, tuple[int, int, int]]:
    """What the model says of a sound with this p(match), and the colour to say it in."""
    if p_match >= MATCH_AT:
        return f"match heard (p={p_match:.2f})", GREEN
    return f"no match heard (p={p_match:.2f})", RED


def annotated_frame(
    frame: np.ndarray, heatmap: np.ndarray, p_match: float, *, min_width: int = 512, note: str = ""
) -> np.ndarray:
    """An ``avssl-localize`` picture: a banner with the verdict and p(match) of the sound
    (:func:`verdict`; ``note`` on a second line), the frame (enlarged to ``min_width``) with
    the heatmap on the absolute scale, and the colour bar under it. Same size for every
    heatmap of one video."""
    big, _ = upscale(frame, min_width)
    w = big.shape[1]
    scale, thick = font_for(w)
    text, colour = verdict(p_match)
    if p_match < MATCH_AT:
        text += ": nothing in the picture makes this sound"
    else:
        text += ": the bright part is where it comes from"
    bg = (70, 20, 20) if p_match < MATCH_AT else (20, 55, 30)
    lines = [(text, colour if p_match < MATCH_AT else WHITE)] + [(note or " ", AMBER)]
    banner = text_strip(w, lines, scale=scale * 1.15, thickness=thick, bg=bg)
    pic = heat_overlay(big, shown_map(heatmap, p_match))
    bar = colour_bar(w, scale=scale, thickness=thick)
    return np.concatenate([banner, pic, bar], axis=0)


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an RGB picture."""
    import cv2

    ok, png = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise ValueError("PNG encoding failed")
    return bytes(png.tobytes())


def write_png(path: Path, rgb: np.ndarray) -> None:
    """``rgb`` written to ``path`` as a PNG, atomically."""
    from avssl.data.manifest import atomic_output

    with atomic_output(path) as tmp:
        Path(tmp).write_bytes(encode_png(rgb))


# -- the localization sheets ---------------------------------------------------------------------

_NAMES = {"matched": "matched sound", "silent": "silent sound", "mismatched": "mismatched sound"}
_GAP = 6  # pixels between panels
PANEL_MIN = 256  # a sheet's panels are at least this wide
_SUBTITLE = (
    "Where does the sound come from? The frame with its own sound, silence and another clip's sound"
)
_LEGEND = "green box: ground truth    cyan cross: the heatmap's peak (pointing game: inside = hit)"


def _heat_panel(
    kept: dict[str, Any], k: int, cond: str, big: np.ndarray, scale: int, font: float
) -> np.ndarray:
    """One condition's panel of sheet ``k``: the capped heatmap on the frame, the true box, the
    peak (as the pointing game finds it), and its caption."""
    from avssl.eval import metrics

    frame, heat, boxes = kept["frames"][k], kept[cond][k], kept["boxes"][k]
    p = float(kept[f"{cond}_p"][k])
    pic = heat_overlay(big, shown_map(heat, p))
    draw_boxes(pic, boxes)
    i, j = metrics.heatmap_peak(heat, frame.shape[:2])
    mark_peak(pic, round((j + 0.5) * scale), round((i + 0.5) * scale))
    hit = metrics.pointing_game(heat, boxes, frame.shape[:2]) > 0
    name = _NAMES.get(cond, cond)
    if cond == "mismatched" and kept.get("other_labels"):
        name += f" ({', '.join(kept['other_labels'][k]) or '?'})"
    text, colour = verdict(p)
    lines = [
        (name, WHITE),
        (f"p(match) {p:.2f}: {text.split(' (')[0]}", colour),
        (f"peak {'inside' if hit else 'outside'} the box", WHITE if hit else GREY),
    ]
    return np.concatenate([pic, text_strip(pic.shape[1], lines, scale=font)], axis=0)


def _frame_panel(kept: dict[str, Any], k: int, big: np.ndarray, font: float) -> np.ndarray:
    pic = big.copy()
    draw_boxes(pic, kept["boxes"][k])
    trial = kept["trials"][k] if kept.get("trials") else {}
    labels = ", ".join(str(x) for x in trial.get("labels", [])) or "?"
    lines = [("frame", WHITE), ("green box: the sounding", GREEN), (f"object ({labels})", GREEN)]
    return np.concatenate([pic, text_strip(pic.shape[1], lines, scale=font)], axis=0)


def localization_sheet(kept: dict[str, Any], k: int, scale: int = 4) -> np.ndarray:
    """Sheet ``k`` of ``kept`` (:func:`avssl.eval.av.evaluate_localization`): a title naming
    the clip and frame; the frame, then its heatmap with the matched, silent and mismatched
    sound (each with p(match), the true box and the peak); the legend and colour bar. The frame
    is enlarged ``scale`` times, more where that leaves a panel under 256 px (room for text)."""
    frame = kept["frames"][k]
    big, scale = upscale(frame, max(frame.shape[1] * scale, PANEL_MIN))
    font = 0.5
    panels = [_frame_panel(kept, k, big, font)]
    panels += [_heat_panel(kept, k, c, big, scale, font) for c in _NAMES if c in kept]
    gap = np.zeros((panels[0].shape[0], _GAP, 3), np.uint8)
    gap[:] = BACKGROUND
    row = np.concatenate([x for p in panels for x in (p, gap)][:-1], axis=1)
    t = kept["trials"][k] if kept.get("trials") else {}
    where = f"{t.get('video', kept['ids'][k])}, frame {t.get('frame', '?')}"
    if "frame_s" in t:
        where += f" (t = {float(t['frame_s']):.2f} s)"
    if "index" in t:
        where += f"  -  trial {int(t['index']) + 1} of {t['of']}"
    title = text_strip(row.shape[1], [(where, WHITE), (_SUBTITLE, GREY)], scale=0.6)
    legend = text_strip(row.shape[1], [(_LEGEND, GREY)], scale=font)
    bar = colour_bar(row.shape[1], scale=font)
    return np.concatenate([title, row, legend, bar], axis=0)


def write_heatmaps(kept: dict[str, Any], out_dir: Path, scale: int = 4) -> list[str]:
    """One PNG sheet per kept trial (:func:`localization_sheet`), ``NNN_<trial id>.png``, in
    ``out_dir`` (a previous run's sheets removed first); returns their names."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("[0-9][0-9][0-9]_*.png"):
        old.unlink()
    names = []
    for k in range(len(kept["frames"])):
        name = f"{k:03d}_{_safe(kept['ids'][k])}.png"
        write_png(out_dir / name, localization_sheet(kept, k, scale))
        names.append(name)
    return names


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:60]
