"""``python -m pipeline.cli``: the ``harstream`` command."""

import sys

from pipeline.cli.main import main

sys.exit(main())
