"""A driver whose Ray actor keeps printing after the driver's --json result: the hazard that
pipelines.cli.report.json_line_after_ray guards against. argv[1]: "held" (the process entry points'
way) or "plain" (print at once: the control, showing the hazard is real)."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time

import ray

from pipelines.cli.report import json_line_after_ray, print_json_result


@ray.remote(num_cpus=0)
class Chatty:
    def talk(self, lines: int) -> None:
        for index in range(lines):
            print(f"chatty line {index}", flush=True)
            time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    mode = (argv if argv is not None else sys.argv[1:])[0]
    # a new instance of its own, whatever else runs on the machine (the test session's Ray)
    temp_dir = tempfile.mkdtemp(prefix="vlj-", dir="/tmp")  # short: Unix socket paths have a length limit
    ray.init(address="local", num_cpus=1, include_dashboard=False, _temp_dir=temp_dir)
    chatty = Chatty.remote()
    chatty.talk.remote(120)  # ~6 s of lines, forwarded to this driver's stdout
    time.sleep(1.5)  # the first lines have arrived: the forwarding is live
    if mode == "held":
        with json_line_after_ray():
            print_json_result({"mode": mode})
    else:
        print_json_result({"mode": mode})
        time.sleep(2.0)  # the process lives on a little, as a verb's teardown does
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
