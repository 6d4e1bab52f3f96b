"""`python -m lhsweep` runs the command line."""

import sys

from lhsweep.cli import main

sys.exit(main())
