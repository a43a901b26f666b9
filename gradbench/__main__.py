"""``python -m gradbench``: the command line."""

import sys

from gradbench.cli import main

sys.exit(main())
