"""`python -m adfm`: the same command line as `adfm` (the rules use this form, see common.smk)."""

import sys

from adfm.cli import main

sys.exit(main())
