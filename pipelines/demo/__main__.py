"""`python -m pipelines.demo` (what `make demo` runs)."""

from pipelines.cli.report import run_as_process
from pipelines.demo.demo import main

raise SystemExit(run_as_process(main, "demo"))
