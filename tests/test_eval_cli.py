"""avssl-eval: every evaluation kind is reachable from the one command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from avssl.cli import eval as cli


def test_every_kind_is_registered(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for kind in ("linear", "knn", "retrieval", "finetune", "esc50"):
        assert kind in out
        with pytest.raises(SystemExit) as e:
            cli.main([kind, "--help"])
        assert e.value.code == 0


def test_bad_model_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = tmp_path / "images.jsonl"
    m.write_text('{"v": 1, "path": "a.png", "class_id": 0, "label": "0", "split": "train"}\n')
    assert cli.main(["linear", str(tmp_path / "no-run"), "--manifest", str(m)]) == 2
    assert "avssl-eval:" in capsys.readouterr().err
    assert cli.main(["knn", "random:no_such_net", "--manifest", str(m)]) == 2
