"""CLI start-up benchmark: how long `linkwatch status`, `metrics` and `links` take, whole
process, on an empty database, against `python -c pass` measured in the same run.

Sets up a settings file (one site, a csv_dir source, a console notifier) in a temp folder,
creates its database with one `linkwatch status` (the schema migrations run then, as on a
first start), then runs each command N times, round robin so that load from elsewhere on
the machine falls on all of them alike, and prints each one's median and fastest wall
clock time, the median minus the baseline, and PASS or FAIL against the target (0.25 s).

Bytecode: by default Python may cache compiled modules (in a temp folder, through
PYTHONPYCACHEPREFIX, so nothing is written into the checkout), as an installed linkwatch
does; one warm-up run of each command fills that cache. `--no-bytecode-cache` measures
with PYTHONDONTWRITEBYTECODE, every project module compiled at every start.

Usage: python bench/cli_bench.py [--runs N] [--no-bytecode-cache] [--keep]
This is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 0.25
SITE = "example.com"
SETTINGS = f"""\
[storage]
path = "linkwatch.db"
[daemon]
rules_dir = "rules.d"
[[sites]]
domain = "{SITE}"
role = "own"
sources = ["exports"]
[sources.exports]
kind = "csv_dir"
path = "exports/{{domain}}"
[notifiers.console]
kind = "console"
"""
VERBS: dict[str, list[str]] = {
    "status": ["status"],
    "metrics": ["metrics", "--site", SITE],
    "links": ["links", "--site", SITE],
}


def _linkwatch() -> list[str]:
    """The installed `linkwatch` script beside this Python, else `python -m daemon.cli`."""
    script = Path(sys.executable).with_name("linkwatch")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "daemon.cli"]


def _cpu() -> float:
    """CPU seconds (user + system) of the children waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall clock and CPU seconds of one whole process; exits on a failed command."""
    cpu = _cpu()
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr.decode()}")
    return elapsed, _cpu() - cpu


def main() -> int:
    """Run the benchmark; exit 1 when a command misses the target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="timed runs per command")
    parser.add_argument(
        "--no-bytecode-cache", action="store_true", help="compile every module at every start"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    work = Path(tempfile.mkdtemp(prefix="linkwatch-cli-bench-"))
    env = dict(os.environ)
    env.pop("LINKWATCH_CONFIG", None)
    if args.no_bytecode_cache:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    try:
        (work / "rules.d").mkdir()
        (work / "exports" / SITE).mkdir(parents=True)
        settings = work / "settings.toml"
        settings.write_text(SETTINGS, encoding="utf-8")
        linkwatch = [*_linkwatch(), "-c", str(settings)]
        commands = {"python -c pass": [sys.executable, "-c", "pass"]}
        commands |= {f"linkwatch {' '.join(v)}": [*linkwatch, *v] for v in VERBS.values()}
        # The first status creates the database (migrations) and warms the bytecode cache.
        for cmd in commands.values():
            _timed(cmd, work, env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        cpus: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, cmd in commands.items():
                wall, cpu = _timed(cmd, work, env)
                times[name].append(wall)
                cpus[name].append(cpu)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    baseline = statistics.median(times["python -c pass"])
    cache = "no bytecode cache" if args.no_bytecode_cache else "bytecode cached"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"{args.runs} runs each, {cache}, {os.cpu_count()} CPUs (load average {load}); "
        f"target < {TARGET:.2f} s wall clock (median)"
    )
    # CPU time is what a command costs whatever else the machine runs: on a busy machine
    # the wall clock waits for a core as well.
    print(f"{'command':38} {'median':>7} {'fastest':>7} {'-baseline':>9} {'cpu':>6}  verdict")
    failed = False
    for name, runs in times.items():
        median = statistics.median(runs)
        cpu = statistics.median(cpus[name])
        line = f"{name:38} {median:7.3f} {min(runs):7.3f} {median - baseline:9.3f} {cpu:6.3f}"
        if name.startswith("linkwatch"):
            ok = median < TARGET
            failed = failed or not ok
            line += f"  {'PASS' if ok else 'FAIL'} ({median / TARGET:.2f}x the target)"
        else:
            line += "  (baseline)"
        print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
