"""``avssl-report RUN_DIR``: a markdown page with PNG plots for one run (docs/evaluation.md).

:mod:`avssl.report.page` writes ``OUT/README.md`` from what the run directory holds and
:mod:`avssl.report.plots` draws its PNGs; this module is the command line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from avssl.errors import run_cli
from avssl.report.page import TSNE_MAX, write_report

DESCRIPTION = (
    "Write a markdown report with PNG plots for a run directory: training curves "
    "(metrics.jsonl), the configuration, the last evaluation, every avssl-eval result "
    "under eval/ in one table beside its random-init baseline's from eval/random/ (what "
    "'avssl-eval KIND random:RUN' or 'random:BACKBONE --like RUN' writes), confusion "
    "matrices, per-fold bars, retrieval grids, embedding maps of the cached features "
    "(eval/features/*.npz) and heatmaps/*.png."
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avssl-report", description=DESCRIPTION)
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run directory")
    p.add_argument(
        "--out", default=None, metavar="DIR", help="output directory (default RUN_DIR/report)"
    )
    p.add_argument(
        "--tsne",
        action="store_true",
        help=f"also draw t-SNE maps (scikit-learn) for feature files with <= {TSNE_MAX} rows",
    )
    p.add_argument(
        "--max-examples",
        type=int,
        default=8,
        metavar="N",
        help="retrieval grids: at most N query rows (default 8)",
    )
    p.add_argument(
        "--top-k",
        type=int,
        default=8,
        metavar="K",
        help="retrieval grids: at most K neighbours per query (default 8)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def report() -> int:
        if args.max_examples < 1 or args.top_k < 1:
            raise ValueError("--max-examples and --top-k must be >= 1")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ValueError("matplotlib is not installed (pip install matplotlib)") from None
        command = list(argv) if argv is not None else sys.argv[1:]
        print(f"wrote {write_report(**vars(args), argv=command)}")
        return 0

    return run_cli("avssl-report", report)


def entry() -> None:
    """Console-script entry point (``avssl-report``)."""
    sys.exit(main())
