"""``python -m kaiwo``: the ``kaiwo`` command."""
import sys

from .cli import main

sys.exit(main())
