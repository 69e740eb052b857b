"""The live endpoint's client side (pipelines/decode/live_client.py, `vljepa live`): its URL and the errors
it gives before it connects to anything."""

from __future__ import annotations

import pytest

from pipelines.decode import live
from pipelines.decode.live_client import live_url


def test_the_live_url_is_the_servers_websocket_with_the_parameters_given():
    assert live_url("http://127.0.0.1:8000/") == "ws://127.0.0.1:8000/v1/live"
    assert live_url("https://vljepa.example/api", fps=8, pool=False, threshold=None, query="what now?") == \
        "wss://vljepa.example/api/v1/live?fps=8&pool=false&query=what+now%3F"


def test_vljepa_live_refuses_what_it_cannot_send_before_connecting(tmp_path, capsys):
    with pytest.raises(SystemExit) as usage:
        live.main(["--frames", str(tmp_path)])  # a folder of images has no rate
    assert usage.value.code == 2 and "--frames needs --fps" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("not a frame")
    assert live.main(["--frames", str(tmp_path), "--fps", "8", "--server", "http://127.0.0.1:9"]) == 2
    assert "holds no JPEG, PNG or WebP images" in capsys.readouterr().err
    (tmp_path / "token").write_text("\n")
    assert live.main(["--video", str(tmp_path / "notes.txt"), "--token-file", str(tmp_path / "token")]) == 2
    assert "token is empty" in capsys.readouterr().err
    assert live.main(["--video", str(tmp_path / "notes.txt"), "--server", "http://127.0.0.1:9"]) == 2
    assert "corrupt_video" in capsys.readouterr().err
