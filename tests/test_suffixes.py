"""One home for media suffixes (avssl/data/suffixes.py): every reader uses the same lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from avssl.data import suffixes


def test_every_reader_uses_the_one_list() -> None:
    from avssl.data import decode, frame_folder
    from avssl.eval import finetune_data, image_sets
    from avssl.report import plots
    from data_prep import audio_folder, audioset_meta, scan

    assert decode.VIDEO_SUFFIXES is suffixes.VIDEO_SUFFIXES is scan.VIDEO_SUFFIXES
    for mod in (frame_folder, image_sets, finetune_data):
        assert mod.IMAGE_SUFFIXES is suffixes.IMAGE_SUFFIXES
    for mod in (plots, audio_folder, scan, audioset_meta):
        assert mod.AUDIO_SUFFIXES is suffixes.AUDIO_SUFFIXES
    assert set(audioset_meta.MEDIA_SUFFIXES) == set(
        suffixes.VIDEO_SUFFIXES + suffixes.AUDIO_SUFFIXES
    )
    assert ".gif" in suffixes.VIDEO_SUFFIXES and ".gif" not in suffixes.IMAGE_SUFFIXES
    assert all(s == s.lower() and s.startswith(".") for s in suffixes.MEDIA_SUFFIXES)


def test_a_pgm_frame_folder_is_a_video(tmp_path: Path) -> None:
    """.pgm is an image everywhere (it was one for avssl-prep images but not for fine-tuning or
    frame folders): three grey PGM frames read as a 3-frame video."""
    from avssl.data import decode

    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (16, 24), dtype=np.uint8)).save(tmp_path / f"{i}.pgm")
    info = decode.probe(tmp_path)
    assert info.num_frames == 3 and (info.width, info.height) == (24, 16)
    clip = decode.read_frames(tmp_path, [2])
    want = np.asarray(Image.open(tmp_path / "2.pgm"))
    assert np.array_equal(clip.data[0, 0].numpy(), want)
