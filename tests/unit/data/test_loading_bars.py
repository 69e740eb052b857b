"""transformers draws a "Loading weights" bar at every from_pretrained: kept on a terminal, left out
of logs (every Ray actor's, worker's and replica's stderr is a file)."""

import sys

import pytest


@pytest.mark.parametrize("terminal", [True, False])
def test_the_weight_loading_bar_is_drawn_on_terminals_only(terminal, tiny_config, capsys, monkeypatch):
    from transformers.utils import logging as hf_logging

    from model.x_encoder import XEncoder

    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    XEncoder.from_pretrained(tiny_config.x_encoder.checkpoint)
    assert ("Loading weights" in capsys.readouterr().err) == terminal
    assert hf_logging.set_tqdm_hook(None) is None  # the hook was removed after loading
