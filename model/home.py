"""VLJEPA_HOME: where vl-jepa keeps what it builds or downloads once per machine (tiny checkpoints,
models fetched from MLflow). Default ~/.cache/vljepa."""

from __future__ import annotations

import os
from pathlib import Path


def vljepa_home() -> Path:
    return Path(os.environ.get("VLJEPA_HOME") or Path.home() / ".cache" / "vljepa")
