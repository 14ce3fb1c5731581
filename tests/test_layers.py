"""The shape of the tree: imports only go down, and no module or function grows past its size.

The layers contract lives in pyproject.toml ([tool.importlinter]) and is checked by import-linter
(`lint-imports`), so a change that adds an upward import fails CI.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("avssl", "data_prep")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
# argparse tables: a function that only declares a command's options may be long
PARSER_NAMES = ("parser", "register", "_add_", "add_options", "add_feature_options")


def test_imports_only_go_down():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(exe).exists():
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    r = subprocess.run([exe], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def _sources():
    for pkg in PACKAGES:
        yield from sorted((REPO / pkg).rglob("*.py"))


def test_no_module_past_its_size():
    big = {
        str(p.relative_to(REPO)): n
        for p in _sources()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not big, f"modules over {MAX_MODULE_LINES} lines (split them by job): {big}"


def test_no_function_past_its_size():
    long = []
    for p in _sources():
        for node in ast.walk(ast.parse(p.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            n = node.end_lineno - node.lineno + 1  # type: ignore[operator]
            if n > MAX_FUNCTION_LINES and not any(k in node.name for k in PARSER_NAMES):
                long.append(f"{p.relative_to(REPO)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
