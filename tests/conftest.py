"""Shared fixtures: the generated media set (built once per session) and the real clips.

Options:
    --exact-full   run every exact-frame pattern over every frame, also on big real clips
    --exact-table  print the backend x file exact-frame table at the end of the run
"""

from __future__ import annotations

from pathlib import Path

import pytest
from media import MediaFile, build_media, real_clip, shared_data_dir

# (file, backend) -> table cell, filled by tests/test_decode_exact.py
EXACT_TABLE: dict[tuple[str, str], str] = {}
EXACT_KINDS: dict[str, str] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("avssl")
    group.addoption(
        "--exact-full",
        action="store_true",
        help="exact-frame suite: every pattern over every frame of every file (slower)",
    )
    group.addoption(
        "--exact-table",
        action="store_true",
        help="print the backend x file exact-frame table after the run",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "diagnostic: runs a refused raw backend to show the refusal is justified"
    )


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, MediaFile]:
    """The generated set (tests/media.py), written once per session into a temp folder."""
    return build_media(tmp_path_factory.mktemp("media"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (env AVSSL_SHARED_DATA overrides); skips when absent."""
    d = shared_data_dir()
    if not d.is_dir():
        pytest.skip(f"real test data not found at {d} (set AVSSL_SHARED_DATA to its folder)")
    return d


def real_or_skip(name: str) -> Path:
    """Path of a real clip in ../shared/data, or skip the test with the reason."""
    p = real_clip(name)
    if p is None:
        pytest.skip(f"real clip {name} not found under {shared_data_dir()}")
    return p


@pytest.fixture
def exact_full(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--exact-full"))


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    if not config.getoption("--exact-table") or not EXACT_TABLE:
        return
    from exact import format_table

    terminalreporter.section("exact-frame table (backend x file)")
    terminalreporter.write_line(format_table(EXACT_TABLE, EXACT_KINDS))
