"""The demo's step clock: each banner closes the previous step; the report sums them."""

from pipelines.demo import demo


def test_each_step_gets_the_seconds_until_the_next_banner(monkeypatch, capsys):
    now = iter([101.0, 131.0, 132.5])  # banner 1, banner 2, report
    monkeypatch.setattr(demo.time, "monotonic", lambda: next(now))
    clock = demo.StepClock()
    clock.banner("1. sample data: real clips")
    clock.banner("2. selective decoding of a stream (decode only where the meaning changes)")
    report = clock.report()
    assert "=== 1. sample data: real clips ===" in capsys.readouterr().out
    rows = [line.rsplit(None, 1) for line in report.splitlines()[1:]]
    assert rows == [["1. sample data", "30"], ["2. selective decoding of a stream", "2"], ["total", "32"]]
