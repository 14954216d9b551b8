"""``python -m etlsync.cli``."""

import sys

from etlsync.cli import main

sys.exit(main())
