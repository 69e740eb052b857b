import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import cli


def test_summary_json_last_line_for_paper(capsys):
    assert cli.main(["summary", "--preset", "paper", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert set(result) == {"x_encoder", "predictor", "y_encoder", "total"}
    for counts in result.values():
        assert set(counts) == {"total", "trainable", "frozen"}
        assert counts["total"] == counts["trainable"] + counts["frozen"]
    assert 480e6 < result["predictor"]["trainable"] < 500e6
    assert any("x_encoder" in line for line in lines[:-1])  # a human-readable table comes first


def test_summary_runs_as_module_and_console_script(tmp_path):
    env = {**os.environ, "VLJEPA_HOME": str(tmp_path)}
    args = ["summary", "--preset", "tiny", "--json"]
    module = subprocess.run([sys.executable, "-m", "pipelines.models.summary", *args[1:]],
                            capture_output=True, text=True, env=env, check=True)
    console_script = Path(sys.executable).parent / "vljepa"
    script = subprocess.run([str(console_script), *args], capture_output=True, text=True, env=env, check=True)
    assert json.loads(module.stdout.splitlines()[-1]) == json.loads(script.stdout.splitlines()[-1])


def test_unknown_verb_and_preset_fail_clearly(capsys):
    assert cli.main(["no-such-verb"]) == 2
    assert "unknown verb" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["summary", "--preset", "nope"])
    assert "invalid choice" in capsys.readouterr().err
