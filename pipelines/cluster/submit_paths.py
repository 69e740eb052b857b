"""Relative paths in a submitted command are refused before the job is sent.

A submitted job runs in a copy of the project that Ray unpacks into a temporary directory on the
cluster (the runtime_env's working_dir). A relative path resolves there: `--out runs/sft` writes
the run into that directory, which nothing keeps, and the job reports success; `--cache
demo-output/cache/eval` names a directory the copy leaves out. Made absolute here instead, a path
would be right only when the cluster shares this machine's filesystem, and a cluster reached
through `kubectl port-forward` has a loopback address too: so the user says which, with the
absolute path printed in the message to copy.

Outputs are always paths. An input is taken for a local path when its first part exists here
(`demo-output/...`, `cache/eval`, `data/train/*.tar`); otherwise it may be a hub id (`org/name`)
or a name the verb resolves itself, and it goes through as given.
"""

from __future__ import annotations

import os
import re

OUTPUT_FLAGS = {"--out", "--storage", "--index"}  # --index: index-build writes it; serve's must be the cluster's too
INPUT_FLAGS = {"--model", "--cache", "--eval-cache", "--replay-cache", "--shards", "--run", "--video", "--media",
               "--input", "--init-model", "--init-decoder", "--decoder", "--decoder-checkpoint", "--token-file"}
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # s3://, file://, models:/, runs:/


def flag_values(command: list[str]) -> list[tuple[str, str]]:
    """(flag, value) for every `--flag value` and `--flag=value` of the command."""
    pairs = []
    for i, arg in enumerate(command):
        flag, sep, value = arg.partition("=")
        if sep and flag.startswith("--"):
            pairs.append((flag, value))
        elif arg.startswith("--") and i + 1 < len(command):
            pairs.append((arg, command[i + 1]))
    return pairs


def refuse_relative_paths(command: list[str], cwd: str | None = None) -> None:
    """ValueError naming the first path of the command that the job would resolve in its temporary
    working directory."""
    cwd = cwd or os.getcwd()
    for flag, value in flag_values(command):
        if flag not in OUTPUT_FLAGS | INPUT_FLAGS or not value or os.path.isabs(value) or SCHEME.match(value):
            continue
        first_part = value.split("/", 1)[0]
        if flag in INPUT_FLAGS and not os.path.exists(os.path.join(cwd, first_part)):
            continue
        lost = " (and what it writes would be lost with that directory)" if flag in OUTPUT_FLAGS else ""
        raise ValueError(f"{flag} {value} is a relative path: the job runs in a copy of the project that Ray "
                         f"unpacks into a temporary directory on the cluster, where it would resolve{lost}. "
                         f"Give the path as the cluster's nodes see it: {os.path.join(cwd, value)} if they share "
                         "this machine's filesystem (a local cluster), else a shared volume's path or a URL (s3://...)")
