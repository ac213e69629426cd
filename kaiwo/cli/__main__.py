"""``python -m kaiwo.cli``: the ``kaiwo`` command."""
import sys

from . import main

sys.exit(main())
