"""``python -m convosd.ctl``: convosctl."""

import sys

from convosd.ctl.main import main

sys.exit(main())
