"""`python -m wire.cli` runs the `eddy` command."""

import sys

from wire.cli import main

sys.exit(main())
