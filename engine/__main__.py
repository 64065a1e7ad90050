"""``python -m engine``: the process entry, handed straight to the command-line app (``cli.main``)."""

import sys

from cli.main import main

sys.exit(main())
