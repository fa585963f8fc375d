"""`python -m eventapi ...`."""

import sys

from eventapi.cli import main

sys.exit(main())
