"""Our packages import from a working directory that holds directories with their names: Ray puts
the driver's working directory first on its workers' sys.path, and an exported model is often
called `model/` (with an `x_encoder/` weights folder inside). infra/setup_venv.sh's source-tree
path entry is what makes the real packages win over such directories."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_packages_import_beside_directories_named_like_them(tmp_path):
    for directory in ("model/x_encoder", "model/y_encoder", "ops", "pipelines"):  # no __init__.py: bare dirs
        (tmp_path / directory).mkdir(parents=True)
    code = "import model.x_encoder, ops.data.frames, pipelines.cli; print(model.x_encoder.__file__)"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert Path(done.stdout.strip()) == ROOT / "model" / "x_encoder.py"
