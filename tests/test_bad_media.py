"""Every prep command survives a corpus of bad media (issue 11, reliability).

The corpus (tests/badmedia.py) holds over 20 kinds of bad files -- empty, cut, mislabelled,
stream-less, corrupt, FIFOs, folders and broken links named like media -- and good files with
awkward names, sizes and timing. Each prep command that reads media (folder, ucf101, audioset,
esc50, audio-folder, images) runs on it under a deadline, and must finish with every bad file in
quarantine.csv under a precise reason, every good file in its manifest with the right fields
(data lost = 0), and the same bytes when run again (the video preps reusing every record).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from avssl import errors
from tests.badmedia import (
    COMMANDS,
    GROUP_COMMANDS,
    KEEP,
    QUARANTINE,
    VIDEO_COMMANDS,
    Case,
    PrepHang,
    build_bad_corpus,
    compare,
    make_layout,
    outputs,
    run_cli,
    skipped_kinds,
)

RUN_TIMEOUT_S = 120.0  # one prep run on the corpus takes 0.1-10 s; a hang fails the test
#: Reason codes that say nothing precise: never an acceptable answer for a bad file.
GENERIC = {"error", "media-error"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Case]]:
    root = tmp_path_factory.mktemp("bad") / "corpus"
    return root, build_bad_corpus(root)


def test_corpus_covers_the_bad_kinds(corpus: tuple[Path, list[Case]]) -> None:
    root, cases = corpus
    bad = [c for c in cases if c.expected == QUARANTINE]
    good = [c for c in cases if c.expected == KEEP]
    assert len({c.kind for c in bad}) >= 20
    assert {c.group for c in good} == {"video", "audio", "image"}
    for c in cases:
        assert os.path.lexists(root / c.relpath), c.relpath
        for command in GROUP_COMMANDS[c.group]:
            want, reasons = c.expect(command)
            assert (want == QUARANTINE) == bool(reasons), (c.relpath, command)
            assert not reasons & GENERIC, (c.relpath, command)
    specials = {c.special for c in cases}
    assert {"fifo", "dir", "dangling", "loop", "link"} <= specials
    assert any(not c.relpath.isascii() for c in good) and any(" " in c.relpath for c in good)
    if os.geteuid() == 0:
        assert [k for k, _ in skipped_kinds()] == ["no read permission (mode 000)"]
    else:
        assert any(c.kind.startswith("no read permission") for c in bad)


@pytest.mark.parametrize("command", COMMANDS)
def test_prep_survives_bad_media(
    corpus: tuple[Path, list[Case]], tmp_path: Path, command: str
) -> None:
    root, cases = corpus
    layout = make_layout(command, root, cases, tmp_path / "layout")
    out = tmp_path / "out"
    assert run_cli([*layout.argv, "--out", str(out)], RUN_TIMEOUT_S) == 0
    result = compare(layout, out)
    assert result.problems == []
    assert result.tried == len(layout.cases) >= 14
    assert result.quarantined_right == result.bad > 10
    assert result.good_kept == result.good >= 3
    assert result.data_lost == 0

    first = outputs(out)
    records = {p.name: p.stat().st_mtime_ns for p in (out / "records").glob("*.json")}
    assert run_cli([*layout.argv, "--out", str(out)], RUN_TIMEOUT_S) == 0
    assert outputs(out) == first
    if command in VIDEO_COMMANDS:  # resumed: every record reused, none rewritten
        assert len(records) == len(layout.cases)
        assert {p.name: p.stat().st_mtime_ns for p in (out / "records").glob("*.json")} == records


def test_compare_reports_lost_and_misfiled_files(
    corpus: tuple[Path, list[Case]], tmp_path: Path
) -> None:
    """The checker fails when it should: a good file dropped from the manifest, a bad file with
    a wrong reason, a bad file silently skipped."""
    root, cases = corpus
    layout = make_layout("images", root, cases, tmp_path / "layout")
    out = tmp_path / "out"
    assert run_cli([*layout.argv, "--out", str(out)], RUN_TIMEOUT_S) == 0
    assert compare(layout, out).ok
    manifest = (out / "images.jsonl").read_text().splitlines(keepends=True)
    (out / "images.jsonl").write_text("".join(manifest[1:]))
    quarantine = (out / "quarantine.csv").read_text().splitlines(keepends=True)
    header, first, second = quarantine[0], quarantine[1], quarantine[2]
    path, reason = first.split(",")[:2]
    wrong = first.replace(f"{path},{reason},", f"{path},error,", 1)
    (out / "quarantine.csv").write_text(header + wrong + "".join(quarantine[3:]))
    result = compare(layout, out)
    assert result.data_lost == 1
    assert result.good_kept == result.good - 1
    assert result.quarantined_right == result.bad - 2
    text = "\n".join(result.problems)
    assert "good file lost" in text and "reason 'error'" in text
    assert f"{second.split(',')[0]} (" in text and "silently skipped" in text


# --------------------------------------------------------------------------------------------
# the fixes underneath, one by one
# --------------------------------------------------------------------------------------------
def test_check_file_entry_names_each_kind(tmp_path: Path) -> None:
    good = tmp_path / "good.mp4"
    good.write_bytes(b"x")
    assert errors.check_file_entry(good).st_size == 1
    os.symlink("nowhere.mp4", tmp_path / "dangling.mp4")
    os.symlink("b.mp4", tmp_path / "a.mp4")
    os.symlink("a.mp4", tmp_path / "b.mp4")
    os.mkfifo(tmp_path / "pipe.mp4")
    (tmp_path / "dir.mp4").mkdir()
    expected = {
        "dangling.mp4": (errors.BrokenLinkError, "broken-link"),
        "a.mp4": (errors.LinkLoopError, "link-loop"),
        "pipe.mp4": (errors.NotAFileError, "not-a-file"),
        "dir.mp4": (errors.NotAFileError, "not-a-file"),
        "absent.mp4": (errors.MediaNotFoundError, "missing"),
    }
    for name, (cls, reason) in expected.items():
        with pytest.raises(cls) as e:
            errors.check_file_entry(tmp_path / name)
        assert e.value.reason == reason and name in str(e.value)
    # Callers that catch the old, broader classes still catch these.
    assert issubclass(errors.BrokenLinkError, FileNotFoundError)
    assert issubclass(errors.NotAFileError, errors.NotMediaError)


def test_probe_without_concealment_fails_on_mid_stream_damage(
    corpus: tuple[Path, list[Case]],
) -> None:
    """MPEG-4 paints over a damaged macroblock without an error: the default probe keeps the
    file, the prep's probe (``conceal=False``) refuses it; a good file passes both."""
    from avssl.data.decode import probe

    root, _ = corpus
    damaged = root / "video/corrupt_mid.avi"
    assert probe(damaged).num_frames == 48
    with pytest.raises(errors.CorruptMediaError) as e:
        probe(damaged, conceal=False)
    assert e.value.reason == "corrupt" and "corrupt_mid.avi" in str(e.value)
    assert probe(root / "video/good.avi", conceal=False).num_frames == 48


def test_check_video_refuses_images_and_lost_frames(corpus: tuple[Path, list[Case]]) -> None:
    from avssl.data.decode import probe
    from data_prep.videos import check_video

    root, _ = corpus
    for name, cls, words in (
        ("png_named.avi", errors.StillImageError, "png_pipe"),
        ("header_claims_more.avi", errors.TruncatedMediaError, "declares 48 frames but only 24"),
    ):
        info = probe(root / "video" / name)
        with pytest.raises(cls) as e:
            check_video(root / "video" / name, info)
        assert words in str(e.value)
    check_video(root / "video/good.avi", probe(root / "video/good.avi"))  # passes


def test_image_truncation_is_found_before_decoding(corpus: tuple[Path, list[Case]]) -> None:
    from data_prep.image_folder import _truncation

    root, _ = corpus
    for name in ("cat/good.png", "cat/good.jpg", "dog/deep16.png", "dog/huge_claim.png"):
        assert _truncation((root / "image" / name).read_bytes()) is None, name
    assert "IDAT" in str(_truncation((root / "image/cat/cut.png").read_bytes()))
    assert "end-of-image" in str(_truncation((root / "image/dog/cut.jpg").read_bytes()))
    assert _truncation(b"\x89PNG\r\n\x1a\n") is not None  # the signature alone
    assert _truncation(b"\x89PNG\r\n\x1a\n not really a png") is None  # garbage: unreadable


def test_fifo_listed_by_ucf101_is_quarantined_not_missing(
    corpus: tuple[Path, list[Case]], tmp_path: Path
) -> None:
    """A listed clip that is a FIFO reaches the prep (and is refused unopened) instead of being
    reported as missing; the run returns."""
    root, cases = corpus
    fifo = [c for c in cases if c.relpath == "video/fifo.mp4"]
    good = [c for c in cases if c.relpath == "video/good.avi"]
    layout = make_layout("ucf101", root, fifo + good, tmp_path / "layout")
    out = tmp_path / "out"
    assert run_cli([*layout.argv, "--out", str(out)], RUN_TIMEOUT_S) == 0
    result = compare(layout, out)
    assert result.problems == [] and result.reasons == {"video/fifo.mp4": "not-a-file"}


def test_a_hang_fails_instead_of_stalling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The deadline of run_cli ends a blocked read (here: the old behaviour, opening a FIFO with
    no writer) with PrepHang, which the preps' per-file ``except Exception`` cannot swallow."""
    import time

    from data_prep import cli

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def blocked(argv: list[str] | None = None) -> int:
        try:
            fifo.read_bytes()  # blocks: nobody writes
        except Exception:  # noqa: BLE001 - what a prep's per-file handler does
            return 1
        return 0

    monkeypatch.setattr(cli, "main", blocked)
    t0 = time.monotonic()
    with pytest.raises(PrepHang):
        run_cli(["folder"], 0.5)
    assert time.monotonic() - t0 < 5
