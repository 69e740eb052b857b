"""A Serve replica's start-up notice reaches the console once: written to the real stderr when
Serve's logger has no stream handler (the throughput-optimized mode), left to the logger when it
has one (Ray's default mode)."""

import logging

import pytest

from pipelines.serve.deployments import SERVE_LOGGER, notice


@pytest.mark.parametrize("serve_streams_to_stderr", [False, True])
def test_a_notice_is_written_once(serve_streams_to_stderr, capfd, monkeypatch):
    logger = logging.getLogger(SERVE_LOGGER)
    # the throughput-optimized mode's handler buffers records for a file: a NullHandler stands in
    handler = logging.StreamHandler() if serve_streams_to_stderr else logging.NullHandler()
    monkeypatch.setattr(logger, "handlers", [handler])
    monkeypatch.setattr(logger, "propagate", False)
    notice(logging.WARNING, "index: %d item(s) dropped", 3)
    err = capfd.readouterr().err
    assert err.count("index: 3 item(s) dropped") == 1
    assert err.startswith("WARNING index: 3") != serve_streams_to_stderr  # ours, or the logger's own format
