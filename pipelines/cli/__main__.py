"""`python -m pipelines.cli <verb> ...`, as the `vljepa` script."""

import sys

from pipelines.cli.main import main

sys.exit(main())
