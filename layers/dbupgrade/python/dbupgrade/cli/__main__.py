"""``python -m dbupgrade.cli ...`` (what tests run; the same as the ``dbupgrade`` script)."""

import sys

from dbupgrade.cli.commands import main

sys.exit(main())
