"""`vljepa submit [--address URL] [options] -- <verb> [args...]`: run a pipeline verb as a Ray job.

    vljepa submit --address http://head:8265 -- cache-features --shards s3://b/shards --out s3://b/cache
    vljepa submit --no-wait -- train --stage sft --cache s3://b/cache --out /mnt/runs/sft   (prints the job id)
    vljepa submit status JOB_ID | logs JOB_ID [--follow] | stop JOB_ID | list

The job's runtime_env carries the project as `working_dir` (so the cluster runs exactly this
checkout: `python -m pipelines.cli <verb> ...`), environment variables (MLFLOW_TRACKING_URI, the
S3 endpoint and credentials present here, and every --env K=V), and optionally the pinned
dependencies (`--deps pip`; by default the cluster image built from infra/Dockerfile already has
them). Paths in the command must be as the cluster's nodes see them (absolute, or URLs): a
relative one is refused before submitting (pipelines/cluster/submit.py). Logs stream until the job
ends; the exit status is the job's (0 succeeded, 1 failed, 130 stopped).

Authentication: clusters run with Ray token authentication (RAY_AUTH_MODE=token). The token comes
from --token-file, else RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH / ~/.ray/auth_token as Ray itself
looks it up; a cluster refuses a submission without the right token.
The address defaults to RAY_ADDRESS, else the local dashboard (http://127.0.0.1:8265).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shlex
import sys
import time
from pathlib import Path

from ray.exceptions import AuthenticationError

from pipelines.cli.main import VERBS
from pipelines.cli.report import run_as_process

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Never shipped to the cluster: environments, outputs, caches, VCS data.
EXCLUDES = [".venv", ".git", "demo-output", "bench-out", "**/__pycache__", "*.egg-info", ".pytest_cache", "mlruns"]
# Variables a pipeline reads that are forwarded when set here (secrets travel only this way, never in files).
FORWARDED_ENV = ["MLFLOW_TRACKING_URI", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "HF_TOKEN", "VLJEPA_HOME",
                 "VLJEPA_DATA_OP_RESERVATION"]
SUBMITTABLE = sorted(set(VERBS) - {"submit", "demo"})
EXIT_CODES = {"SUCCEEDED": 0, "FAILED": 1, "STOPPED": 130}


def pinned_requirements() -> list[str]:
    import tomllib

    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    return [d for d in project["dependencies"] if not d.startswith("torch")]  # torch: the image's build


def runtime_env(env_pairs: list[str], deps: str) -> dict:
    env_vars = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
    for pair in env_pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--env expects KEY=VALUE, got {pair!r}")
        env_vars[key] = value
    env = {"working_dir": str(PROJECT_ROOT), "excludes": EXCLUDES, "env_vars": env_vars}
    if deps == "pip":
        env["pip"] = {"packages": pinned_requirements(), "pip_check": False}
    return env


def client(address: str | None, token_file: str | None):
    from ray.job_submission import JobSubmissionClient

    address = address or os.environ.get("RAY_ADDRESS") or "http://127.0.0.1:8265"
    if address.startswith("ray://") or not address.startswith("http"):
        raise ValueError(f"--address must be the dashboard's HTTP address (http://HOST:8265), got {address!r}")
    headers = None
    if token_file:
        headers = {"Authorization": f"Bearer {Path(token_file).read_text().strip()}"}
    return JobSubmissionClient(address, headers=headers)


def submit_when_ready(job_client, attempts: int = 30, wait_s: float = 2.0, **job) -> str:
    """Submit; a head that has just started answers "no available agent" until its job agent is
    up, so that one answer is retried for about a minute."""
    for attempt in range(attempts):
        try:
            return job_client.submit_job(**job)
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(wait_s)
    raise AssertionError("unreachable")


def follow(job_client, job_id: str, poll_s: float = 1.0) -> str:
    """Stream the job's logs until it ends; returns its final status name."""
    async def tail() -> None:
        async for lines in job_client.tail_job_logs(job_id):
            print(lines, end="", flush=True)

    try:
        asyncio.run(tail())
    except Exception as exc:  # the log stream can drop (head restart, proxy): fall back to polling
        print(f"submit: log stream ended ({type(exc).__name__}); polling the job status", file=sys.stderr)
    while True:
        status = job_client.get_job_status(job_id)
        if status.is_terminal():
            return status.value
        time.sleep(poll_s)


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" in argv:
        split = argv.index("--")
        own, command = argv[:split], argv[split + 1 :]
    else:
        own, command = argv, []
    parser = argparse.ArgumentParser(prog="vljepa submit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", nargs="?", choices=["status", "logs", "stop", "list"], help="manage submitted jobs")
    parser.add_argument("job_id", nargs="?")
    parser.add_argument("--address", default=None, help="the cluster dashboard, http://HOST:8265 (default: RAY_ADDRESS)")
    parser.add_argument("--token-file", default=None, help="file holding the cluster's auth token")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="extra environment for the job")
    parser.add_argument("--deps", choices=["image", "pip"], default="image",
                        help="image: the cluster image has the pinned dependencies; pip: install them into the job env")
    parser.add_argument("--entrypoint-num-cpus", type=float, default=0,
                        help="CPUs reserved for the driver (0: the driver only coordinates)")
    parser.add_argument("--submission-id", default=None)
    parser.add_argument("--no-wait", action="store_true", help="print the job id and return")
    parser.add_argument("--follow", action="store_true", help="logs: stream until the job ends")
    args = parser.parse_args(own)
    if args.action is None:
        if not command:
            parser.error("nothing to submit: vljepa submit [options] -- <verb> [args...]")
        if command[0] not in SUBMITTABLE:
            parser.error(f"cannot submit {command[0]!r}; submittable verbs: {', '.join(SUBMITTABLE)}")
    elif args.action != "list" and not args.job_id:
        parser.error(f"{args.action} needs a JOB_ID")
    return args, command


def main(argv: list[str] | None = None) -> int:
    args, command = parse(sys.argv[1:] if argv is None else list(argv))
    try:
        if args.action is None:
            refuse_relative_paths(command)  # before connecting: a refused command needs no cluster
        job_client = client(args.address, args.token_file)
        if args.action == "list":
            for job in job_client.list_jobs():
                print(f"{job.submission_id}\t{job.status.value}\t{job.entrypoint}")
            return 0
        if args.action == "status":
            print(job_client.get_job_status(args.job_id).value)
            return 0
        if args.action == "logs":
            if args.follow:
                return EXIT_CODES.get(follow(job_client, args.job_id), 1)
            print(job_client.get_job_logs(args.job_id), end="")
            return 0
        if args.action == "stop":
            print("stopped" if job_client.stop_job(args.job_id) else "already finished")
            return 0
        entrypoint = " ".join(["python", "-m", "pipelines.cli",
                               *(shlex.quote(c) for c in command)])
        job_id = submit_when_ready(job_client, entrypoint=entrypoint, runtime_env=runtime_env(args.env, args.deps),
                                   submission_id=args.submission_id,
                                   entrypoint_num_cpus=args.entrypoint_num_cpus or None)
    except AuthenticationError as exc:
        print(f"submit: the cluster refused the request: {str(exc).splitlines()[0]}\n"
              "submit: pass --token-file, or set RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH", file=sys.stderr)
        return 2
    except ConnectionError as exc:  # JobSubmissionClient's "Failed to connect to Ray at address: ..."
        print(f"submit: {exc}\nsubmit: is the cluster up? Give its dashboard with --address http://HEAD:8265 "
              "or RAY_ADDRESS (the default is a local cluster's, http://127.0.0.1:8265)", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"submit: {exc}", file=sys.stderr)
        return 2
    if args.no_wait:
        print(job_id)
        return 0
    print(f"submit: job {job_id}: {entrypoint}", file=sys.stderr)
    status = follow(job_client, job_id)
    print(f"submit: job {job_id} {status}", file=sys.stderr)
    return EXIT_CODES.get(status, 1)


if __name__ == "__main__":
    raise SystemExit(run_as_process(main, "submit"))


# Relative paths in a submitted command are refused before the job is sent.
#
# A submitted job runs in a copy of the project that Ray unpacks into a temporary directory on the
# cluster (the runtime_env's working_dir). A relative path resolves there: `--out runs/sft` writes
# the run into that directory, which nothing keeps, and the job reports success; `--cache
# demo-output/cache/eval` names a directory the copy leaves out. Made absolute here instead, a path
# would be right only when the cluster shares this machine's filesystem, and a cluster reached
# through `kubectl port-forward` has a loopback address too: so the user says which, with the
# absolute path printed in the message to copy.
#
# Outputs are always paths. An input is taken for a local path when its first part exists here
# (`demo-output/...`, `cache/eval`, `data/train/*.tar`); otherwise it may be a hub id (`org/name`)
# or a name the verb resolves itself, and it goes through as given.
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
