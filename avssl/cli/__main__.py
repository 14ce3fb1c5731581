"""``python -m avssl.cli {train|export} ...`` (also ``torchrun ... -m avssl.cli train TASK``)."""

import sys

from avssl.cli.train import main

sys.exit(main())
