"""The `vljepa` command line.

    main    `vljepa <verb> ...`: the verbs and their modules
    types   argparse types for counts, sizes and ports
    report  console output shared by the verbs: tables, the `--json` last line, user errors
"""

from pipelines.cli.main import main

__all__ = ["main"]
