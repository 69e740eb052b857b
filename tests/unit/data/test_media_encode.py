"""The synthetic media are the same bytes every run: sample data, demo results and test fixtures
depend on it."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from ops.data.frames import encode_h264
from ops.data.sample_data import SampleDataConfig
from ops.data.scenes import all_scenes, render_clip

REPO = Path(__file__).resolve().parents[3]


def _clips() -> list[np.ndarray]:
    config = SampleDataConfig()
    rng = np.random.default_rng(0)
    return [render_clip(scene, config.num_frames, config.frame_size, rng) for scene in all_scenes()[:6]]


def encodings_under_churn(seed: int, rounds: int) -> list[list[str]]:
    """Digests of every encoding of each clip, encoded `rounds` times between allocations and frees
    of assorted sizes and from inputs at assorted offsets: the encoder's buffers land elsewhere and
    hold other leftovers each time, as they do between two runs of a pipeline."""
    rng, held = np.random.default_rng(seed), []
    clips = _clips()
    digests: list[list[str]] = [[] for _ in clips]
    for _ in range(rounds):
        for frames, seen in zip(clips, digests):
            held.append([bytearray(rng.integers(1, 256, size=int(n), dtype=np.uint8).tobytes())
                         for n in rng.integers(8, 5000, size=rng.integers(1, 30))])
            if len(held) > 20:
                held.pop(int(rng.integers(0, len(held))))
            offset = int(rng.integers(0, 64))
            view = np.empty(frames.nbytes + 64, np.uint8)[offset:offset + frames.nbytes].reshape(frames.shape)
            view[...] = frames
            seen.append(hashlib.md5(encode_h264(view)).hexdigest())
    return digests


def test_the_same_frames_encode_to_the_same_bytes_whatever_the_process():
    here = encodings_under_churn(seed=0, rounds=60)
    expected = [{hashlib.md5(encode_h264(frames)).hexdigest()} for frames in _clips()]
    assert [set(seen) for seen in here] == expected
    # other processes: other address layouts, hash seeds and malloc fill bytes
    script = ("import json, sys; from tests.unit.data.test_media_encode import encodings_under_churn; "
              "print(json.dumps(encodings_under_churn(int(sys.argv[1]), 20)))")
    for seed in (1, 2, 3):
        env = {**os.environ, "PYTHONHASHSEED": str(seed), "MALLOC_PERTURB_": str(37 * seed)}
        done = subprocess.run([sys.executable, "-c", script, str(seed)], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=120, check=True)
        assert [set(seen) for seen in json.loads(done.stdout)] == expected, f"process {seed}"
