"""The command-line layer: argument parsing and entry points, the top of the import order.

``avssl-train`` / ``avssl-export`` (avssl.cli.train), ``avssl-eval`` (avssl.cli.eval);
``python -m avssl.cli {train|export} ...`` (also under torchrun).
"""

from avssl.cli.train import export_entry, export_main, main, train_entry, train_main

__all__ = ["export_entry", "export_main", "main", "train_entry", "train_main"]
