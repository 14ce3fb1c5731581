"""Every avssl-prep command ends by naming where its outputs went (data_prep/cli.py)."""

from __future__ import annotations

from pathlib import Path

from data_prep.cli import wrote_line


def test_wrote_line_only_when_the_text_does_not_end_with_the_output(tmp_path: Path) -> None:
    out = tmp_path / "prep"
    summary = f"folder manifests in {out}\n  videos      3 ok\n  per class   all: 2 classes"
    assert wrote_line(out, summary) == f"wrote {out}"
    assert wrote_line(out, f"digits: 10 images; manifest {out / 'images.jsonl'}") is None
    assert wrote_line(out, f"x\nwrote {out.resolve()}: videos.jsonl") is None
    assert wrote_line(None, "report text") is None  # 'avssl-prep report' writes nothing
    assert wrote_line(out, "") == f"wrote {out}"
