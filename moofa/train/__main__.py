"""``python -m moofa.train`` and ``torchrun -m moofa.train``."""

import sys

from .cli import train_main

sys.exit(train_main())
