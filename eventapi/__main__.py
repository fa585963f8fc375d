"""`python -m eventapi ...`."""

import sys

from .cli import main

sys.exit(main())
