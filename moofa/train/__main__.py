"""``python -m moofa.train`` and ``torchrun -m moofa.train``."""

import os
import sys

from .cli import train_main
from .loop import dist_info

status = train_main()
if dist_info()[0] > 1:
    # Every file is written and the process group destroyed by now. Under torchrun, Gloo's
    # threads can abort the interpreter's teardown ("terminate called without an active
    # exception"), which torchrun reports as a failed run: leave without that teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
sys.exit(status)
