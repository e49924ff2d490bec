"""Evaluation benchmark: one `linkwatch evaluate` of 1 and 20 rules against `sqlite3 .import`.

Generates one site of N links (default 1,000,000) and K churn snapshots (default 10) with
the ingest benchmark's generator (bench/ingest_bench.py), dated so that the last snapshot
was taken an hour ago, and ingests them through the real ingest (each in a child process).
Then it measures, in one run:

* the baseline: the `sqlite3` CLI importing the last snapshot into an empty table;
* the whole `linkwatch evaluate` command (a subprocess: start-up, rule loading, evaluation,
  delivery to the console notifier) with 1 threshold rule (the example's refdomain-loss
  rule, which fires nothing here, over 90 days: the 20 rules' longest window, so that the
  ratio is the cost of the rules added, not of reading more history), with 20 threshold
  rules over 1d/7d/30d/90d windows (some with link filters; 4 fire), and, for reference,
  with the one rule as the example ships it (7 days) and with one of the 20 that fires,
  each on its own copy of the database:
  a first run (alerts fire and their messages list the lost domains; the best of
  --firsts, default 3, each on a fresh copy) and a repeat (the best of two), after a
  warm-up run on a scratch copy (compiled modules cached, as installed; each copy is
  flushed to disk before it is timed); the configurations take turns, one run each per
  round, so that a shared machine's slow minute falls on all of them alike;
* the ratios: 20-rule evaluate / `.import` (target <= 0.5) and 20 rules / 1 rule over 90 days
  (target <= 1.5), first run and repeat, each followed by PASS or FAIL.

Usage: python bench/evaluate_bench.py [--links N] [--snapshots K] [--keep] [--workdir DIR]
       [--reuse] [--firsts N]
This is a benchmark, not a test; generation and ingest are not measured.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import ingest_bench
from ingest_bench import SITE, SOURCE, db_size, generate, run_child, sqlite_import, verdict

TARGET_IMPORT_RATIO = 0.5
TARGET_RULES_RATIO = 1.5
WINDOWS = ("1d", "7d", "30d", "90d")
# Link filters as written in a threshold rule file: rel, rating and referring domains
# (tested in SQL). The generator names referring domains `site{i}.com` / `site{i}.co.uk`.
FILTERS = (
    "",
    "dofollow_only = true\n",
    "min_domain_rating = 50\n",
    'watch_domains = ["site1.com", "site2.com", "site3.com", "site8.co.uk"]\n',
)
METRICS = (
    "lost_links",
    "lost_refdomains",
    "net_links",
    "new_refdomains",
    "lost_refdomains_pct",
    "live_refdomains",
    "new_links",
    "live_links",
    "net_refdomains",
    "lost_links",
)
# The one-rule runs: the example rule file's refdomain-loss rule, over the 20 rules'
# longest window (the verdict: the same history read, so the ratio is what the 19 rules
# added cost) and, for reference, as the example ships it (7 days: the ratio then also
# counts reading 90 days of history instead of 7).
ONE_RULE = 'metric = "lost_refdomains"\nwindow = "{window}"\nop = ">="\nvalue = 5\n'


def one_rule(window: str) -> list[tuple[str, str]]:
    """The example's refdomain-loss rule (name, body) over `window`."""
    return [("refdomain-loss", ONE_RULE.format(window=window))]


def rule_files(n: int) -> list[tuple[str, str]]:
    """`n` threshold rules (name, body) over every window and filter; the first four fire
    on the generated churn (links are lost every day) and list their lost domains."""
    rules = []
    for i in range(n):
        metric = METRICS[i % len(METRICS)]
        window = WINDOWS[i % len(WINDOWS)]
        filt = FILTERS[(i // len(WINDOWS)) % len(FILTERS)]
        # lost_links over any window fires (every snapshot loses 0.5% of the links two
        # snapshots before); the other metrics are set not to fire.
        op, value = (">=", 10) if i < 4 else ("<", -1e9)
        if i < 4:
            metric = "lost_links"
        body = f'metric = "{metric}"\nwindow = "{window}"\nop = "{op}"\nvalue = {value}\n{filt}'
        rules.append((f"rule-{i:02d}", body))
    return rules


def write_setup(work: Path, name: str, db: Path, rules: list[tuple[str, str]]) -> Path:
    """A settings file and rules folder for one evaluate configuration; returns the settings."""
    rules_dir = work / f"rules-{name}"
    rules_dir.mkdir(exist_ok=True)
    for rule, body in rules:
        text = f'kind = "threshold"\n{body}severity = "warning"\nnotify = ["console"]\n'
        (rules_dir / f"{rule}.toml").write_text(text, encoding="utf-8")
    empty = work / "no-new-exports"
    empty.mkdir(exist_ok=True)
    settings = work / f"settings-{name}.toml"
    settings.write_text(
        f'[storage]\npath = "{db}"\n\n[daemon]\nrules_dir = "{rules_dir}"\n\n'
        f'[[sites]]\ndomain = "{SITE}"\nrole = "own"\nsources = ["{SOURCE}"]\n\n'
        f'[sources.{SOURCE}]\nkind = "csv_dir"\npath = "{empty}"\n\n'
        '[notifiers.console]\nkind = "console"\n',
        encoding="utf-8",
    )
    return settings


def linkwatch() -> list[str]:
    """The installed `linkwatch` command next to this interpreter."""
    exe = Path(sys.executable).with_name("linkwatch")
    if not exe.exists():
        raise SystemExit(f"{exe} not found: install linkwatch into this environment")
    return [str(exe)]


@dataclass
class Run:
    """One timed `linkwatch evaluate`."""

    seconds: float
    # CPU seconds (user + system) of the command: on a shared machine, less noisy than
    # the wall clock, which the targets are about.
    cpu: float
    changes: str


def children_cpu() -> float:
    """CPU seconds used so far by this process's finished children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def command_env(work: Path) -> dict[str, str]:
    """The environment of the timed commands: compiled modules cached (in `work`, not in
    the checkout), as an installed linkwatch has them, whatever this shell says."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    return env


def copy_database(db: Path, copy: Path) -> None:
    """`db` copied to `copy`, on disk before any timing: otherwise the first command's
    checkpoint would wait for the copy's 500 MB to be written back."""
    shutil.copyfile(db, copy)
    with copy.open("rb+") as f:
        os.fsync(f.fileno())


def evaluate_once(settings: Path, env: dict[str, str]) -> Run:
    """Wall-clock seconds of one whole `linkwatch evaluate` command."""
    cmd = [*linkwatch(), "-c", str(settings), "evaluate"]
    cpu0, t0 = children_cpu(), time.perf_counter()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, cwd=ingest_bench.REPO, env=env, check=False
    )
    seconds, cpu = time.perf_counter() - t0, children_cpu() - cpu0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"linkwatch evaluate failed (exit {proc.returncode})")
    lines = proc.stdout.strip().splitlines()
    return Run(seconds, cpu, next((ln for ln in lines if "alert changes" in ln), lines[-1:][0]))


def bench(args: argparse.Namespace) -> int:
    if args.firsts < 1:
        raise SystemExit("--firsts: at least 1 first run")
    made_temp = args.workdir is None
    work = Path(tempfile.mkdtemp(prefix="linkwatch-evbench-")) if made_temp else Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data"
    data.mkdir(exist_ok=True)
    db = work / "linkwatch.db"
    reuse = args.reuse and db.exists()
    if not reuse:
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
    try:
        # Dated so that a plain `evaluate` (now) has the churn in its windows: the last
        # snapshot an hour ago, one a day before it.
        now = datetime.now(UTC).replace(microsecond=0)
        ingest_bench.START = now - timedelta(days=args.snapshots, hours=1)
        print(f"workdir {work}: {args.links:,} links, {args.snapshots} churn snapshots")
        if reuse:
            # Iterating: the database and exports of an earlier --keep run, as they are.
            last = max(data.glob("*.csv"))
            print(f"reusing {db} and {last.name}")
        else:
            print("generating (not timed) ...", flush=True)
            snaps = generate(data, args.links, args.snapshots).snapshots
            print("ingesting through linkwatch (not timed) ...", flush=True)
            for snap in snaps:
                rep = run_child(db, snap)
                print(
                    f"  snapshot {snap.index}: {rep['status']}, new {rep['new']:,}, missing"
                    f" {rep['missing']:,}, lost {rep['lost']:,} ({rep['seconds']:.1f}s)",
                    flush=True,
                )
            last = snaps[-1].path
        size = db_size(db)  # checkpointed: the copies below are whole
        print(f"  database {size / 1e6:.0f} MB")

        print("baseline: sqlite3 CLI .import of the last snapshot into an empty table ...")
        cpu0 = children_cpu()
        import_s = sqlite_import(work, last)
        import_cpu = children_cpu() - cpu0

        results: dict[str, tuple[Run, Run]] = {}
        env = command_env(work)
        # The verdicts compare 20 rules with the example's one rule over their longest
        # window, which fires nothing; for reference, also with that rule as the example
        # ships it (7 days), and with one of the 20 that fires (as 4 of them do).
        configs = {
            "1": one_rule(WINDOWS[-1]),
            "1 example": one_rule("7d"),
            "1 firing": rule_files(20)[:1],
            "20": rule_files(20),
        }
        copies: dict[str, Path] = {}
        setups: dict[str, Path] = {}
        for n, files in configs.items():
            name = n.replace(" ", "-")
            # A warm-up on a scratch copy fills the compiled-module cache.
            scratch = work / "warm-up.db"
            copy_database(db, scratch)
            evaluate_once(write_setup(work, f"{name}-warm-up", scratch, files), env)
            copies[n] = work / f"evaluate-{name}.db"
            setups[n] = write_setup(work, name, copies[n], files)
        # The first run: the best of --firsts, each on a fresh copy (one sample of a second
        # or so varies by a fifth from run to run on a shared machine). The configurations
        # take turns, round by round, so that a machine slowing down or speeding up for a
        # minute weighs on each alike, not on whichever ran then.
        firsts: dict[str, list[Run]] = {n: [] for n in configs}
        for _ in range(args.firsts):
            for n in configs:
                copy_database(db, copies[n])
                firsts[n].append(evaluate_once(setups[n], env))
        # The repeat: the best of two, alerts already firing (nothing new to tell), in turns.
        repeats: dict[str, list[Run]] = {n: [] for n in configs}
        for _ in range(2):
            for n in configs:
                repeats[n].append(evaluate_once(setups[n], env))
        for n in configs:
            first = min(firsts[n], key=lambda r: r.seconds)
            repeat = min(repeats[n], key=lambda r: r.seconds)
            spread = (
                ""
                if len(firsts[n]) == 1
                else (f" (of {len(firsts[n])}: {' '.join(f'{r.seconds:.2f}' for r in firsts[n])})")
            )
            results[n] = (first, repeat)
            print(
                f"  linkwatch evaluate, {n:>9} rule(s): first {first.seconds:.2f}s{spread}"
                f" (cpu {first.cpu:.2f}s; {first.changes}); repeat {repeat.seconds:.2f}s"
                f" (cpu {repeat.cpu:.2f}s; {repeat.changes})",
                flush=True,
            )

        print()
        print("results")
        print(
            f"  sqlite3 .import of the last export ({last.name}): {import_s:.2f}s"
            f" (cpu {import_cpu:.2f}s)"
        )
        print(f"  load average now: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        ok = True
        for i, label in enumerate(("first run", "repeat")):
            one, twenty = results["1"][i].seconds, results["20"][i].seconds
            to_import = twenty / import_s
            rules = twenty / one
            ok = ok and to_import <= TARGET_IMPORT_RATIO and rules <= TARGET_RULES_RATIO
            print(
                f"  {label}: 20 rules {twenty:.2f}s / .import {import_s:.2f}s ="
                f" {to_import:.2f}  target <= {TARGET_IMPORT_RATIO}"
                f"  {verdict(to_import <= TARGET_IMPORT_RATIO)}"
            )
            print(
                f"  {label}: 20 rules {twenty:.2f}s / 1 rule over 90d {one:.2f}s = {rules:.2f}"
                f"  target <= {TARGET_RULES_RATIO}  {verdict(rules <= TARGET_RULES_RATIO)}"
            )
            c1, c20 = results["1"][i].cpu, results["20"][i].cpu
            print(
                f"  {label}, cpu seconds (for reference): 20 rules {c20:.2f} / .import"
                f" {import_cpu:.2f} = {c20 / import_cpu:.2f}; 20 rules / 1 rule over 90d {c1:.2f}"
                f" = {c20 / c1:.2f}"
            )
            for n, what in (
                ("1 example", "the example's 7-day rule"),
                ("1 firing", "1 firing rule"),
            ):
                other = results[n][i].seconds
                print(
                    f"  {label}, for reference: 20 rules / {what} {other:.2f}s ="
                    f" {twenty / other:.2f}"
                )
        return 0 if ok else 1
    finally:
        if args.keep:
            print(f"kept {work}")
        elif made_temp:
            shutil.rmtree(work, ignore_errors=True)
        elif not args.reuse:
            shutil.rmtree(data, ignore_errors=True)
            for path in work.glob("*.db*"):
                path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """Parse the options and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--firsts", type=int, default=3, help="first runs, each on a fresh copy (best taken)"
    )
    parser.add_argument("--links", type=int, default=1_000_000, help="links in the export")
    parser.add_argument("--snapshots", type=int, default=10, help="churn snapshots")
    parser.add_argument("--keep", action="store_true", help="keep generated data and DBs")
    parser.add_argument("--workdir", help="where to put data (default: a temp dir)")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="with --workdir: reuse its database and exports from an earlier run (no new"
        " data); the windows move with the clock",
    )
    args = parser.parse_args(argv)
    if args.links < 100 or args.snapshots < 2:
        parser.error("need --links >= 100 and --snapshots >= 2")
    return bench(args)


if __name__ == "__main__":
    sys.exit(main())
