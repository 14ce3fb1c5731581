"""What a wheel carries, and configurations reachable from any folder (issue 27).

A wheel installed outside the clone must hold every package of the tree (the list in
pyproject.toml is explicit, because the prep code installs under another name), the shipped
configurations, and no top-level ``data_prep`` (a generic name other projects use).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from avssl.config import PACKAGED_CONFIGS, resolve_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
           "-w", str(out), str(REPO)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if r.returncode != 0 and "No module named" in r.stderr and "setuptools" in r.stderr:
        pytest.skip("setuptools is not installed in this environment: cannot build a wheel")
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = out.glob("avssl-*.whl")
    return zipfile.ZipFile(whl)


def test_wheel_holds_every_package_and_no_data_prep(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    tree = sorted(
        p.parent.relative_to(REPO).as_posix() for p in (REPO / "avssl").rglob("__init__.py")
    )
    for pkg in tree:
        assert f"{pkg}/__init__.py" in names, f"{pkg} is missing from pyproject's package list"
    prep = sorted(p.name for p in (REPO / "data_prep").glob("*.py"))
    assert prep and all(f"avssl_prep/{n}" in names for n in prep)
    assert not any(n.startswith("data_prep/") for n in names)
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"avssl", "avssl_prep"}
    shipped = sorted(p.name for p in PACKAGED_CONFIGS.glob("*.yaml"))
    assert shipped and all(f"avssl/configs/{n}" in names for n in shipped)
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = wheel.read(meta).decode()
    assert "Requires-Python: >=3.11\n" in text  # no upper cap
    entry = wheel.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "avssl-prep = avssl_prep.cli:main" in entry


def test_configs_folder_is_the_packaged_one() -> None:
    """configs/ in the clone is the packaged folder (one copy of each configuration)."""
    assert (REPO / "configs").resolve() == PACKAGED_CONFIGS.resolve()


def test_config_names_resolve_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    name = "demo_shuffle_learn.yaml"
    assert resolve_config(f"configs/{name}") == PACKAGED_CONFIGS / name
    assert resolve_config(name) == PACKAGED_CONFIGS / name
    assert resolve_config("demo_shuffle_learn") == PACKAGED_CONFIGS / name
    own = tmp_path / "configs" / name  # a file of the user's own wins
    own.parent.mkdir()
    own.write_text("seed: 3\n")
    assert resolve_config(f"configs/{name}") == Path(f"configs/{name}")
    assert resolve_config("elsewhere/x.yaml") == Path("elsewhere/x.yaml")  # not a configs path
    assert resolve_config("configs/nope.yaml") == Path("configs/nope.yaml")


def test_prep_runs_under_its_installed_name() -> None:
    """``python -m avssl_prep.cli`` (what an installed wheel has, and what avssl-train runs to
    build the built-in set) works from outside the tree."""
    env = {**os.environ, "PYTHONPATH": ""}
    r = subprocess.run([sys.executable, "-m", "avssl_prep.cli", "--help"], cwd="/",
                       capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr[-1500:]
    assert "avssl-prep" in r.stdout


def test_prep_modules_import_each_other_relatively() -> None:
    """An absolute ``data_prep`` import inside data_prep/ works in a clone but fails in an
    installed wheel (where the package is ``avssl_prep``), and only when that line runs."""
    import re

    bad = [
        f"{p.name}:{i}"
        for p in sorted((REPO / "data_prep").rglob("*.py"))
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if re.match(r"\s*(from|import)\s+data_prep\b", line)
    ]
    assert not bad, f"absolute data_prep imports (use relative ones): {bad}"
