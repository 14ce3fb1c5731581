"""The result JSON every ``avssl-eval`` command writes (docs/evaluation.md), and where.

Keys, in order: ``format`` ("avssl-eval"), ``version`` (1), ``kind`` (the command), the
command's own fields (``dataset``, ``model``, ``layer``, ``metrics``, ...), ``command`` (the
command line, shell-quoted) and ``seconds``. Written atomically as indented JSON.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from avssl.data.manifest import atomic_write_text


def safe_name(text: str) -> str:
    """``text`` as a file-name part: runs of other characters than ``A-Za-z0-9_.+-`` -> ``_``."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).strip("_") or "x"


#: Under a run's ``eval/``: the results of its random-init baselines (``random:RUN``, or
#: ``random:BACKBONE --like RUN``), each named like the run's own result it is compared with.
BASELINE_DIR = "random"


def default_result_path(
    kind: str, dataset: str, tag: str, run_dir: Path | None, baseline_of: Path | None = None
) -> Path:
    """``RUN/eval/KIND-DATASET.json`` for a run directory, ``RUN/eval/random/KIND-DATASET.json``
    for the random-init baseline of run ``baseline_of`` (beside the run's own result, where
    ``avssl-report RUN`` finds it), else ``evals/KIND-DATASET-TAG.json``."""
    if run_dir is not None:
        return run_dir / "eval" / f"{kind}-{safe_name(dataset)}.json"
    if baseline_of is not None:
        return baseline_of / "eval" / BASELINE_DIR / f"{kind}-{safe_name(dataset)}.json"
    return Path("evals") / f"{kind}-{safe_name(dataset)}-{safe_name(tag)}.json"


def write_result(
    path: Path, kind: str, argv: Sequence[str], t0: float, **fields: Any
) -> dict[str, Any]:
    """Write the result of command ``kind`` run as ``avssl-eval ARGV`` since ``t0``
    (``time.monotonic()``) with ``fields`` in their order; returns the result."""
    result: dict[str, Any] = {"format": "avssl-eval", "version": 1, "kind": kind, **fields}
    result["command"] = shlex.join(["avssl-eval", *map(str, argv)])
    result["seconds"] = round(time.monotonic() - t0, 3)
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")
    return result
