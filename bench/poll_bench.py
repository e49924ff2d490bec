"""Agency poll benchmark: `linkwatch poll` of many sites' export folders against `sqlite3 .import`.

Generates, for S sites of N links each, an initial Ahrefs export and K-1 churn snapshots
(the ingest benchmark's deterministic rows and churn: 0.5% dropped, 0.5% added, 0.05% of
anchors changed; each site its own referring pages), one folder per site as a `csv_dir`
source reads them. Then, in one run:

* K polls: before poll k the k-th export of every site is moved into its folder, and the
  whole `linkwatch poll` command runs in a child process (its wall time and peak RSS);
* the baseline: the `sqlite3` CLI importing the same S * K files into one empty table;
* the ratio of all polls' seconds to the import's (target <= 4.0) and the polls' peak RSS
  (target <= 300 MB), with the counts the generator expects checked in the database.

Usage: python bench/poll_bench.py [--sites S] [--links N] [--snapshots K] [--keep] [--workdir DIR]
This is a benchmark, not a test; generation time is not measured.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ingest_bench import SEED, Generated, generate, verdict

REPO = Path(__file__).resolve().parent.parent
TARGET_RATIO = 4.0
TARGET_RSS_MB = 300.0


def site_name(i: int) -> str:
    """The domain of site `i`."""
    return f"client{i:04d}.example"


def write_settings(work: Path, sites: int) -> Path:
    """A settings file watching `sites` sites, each through its own export folder."""
    lines = [
        "[storage]",
        f'path = "{work / "linkwatch.db"}"',
        "[daemon]",
        f'rules_dir = "{work / "rules.d"}"',
        "[sources.exports]",
        'kind = "csv_dir"',
        f'path = "{work / "exports" / "{domain}"}"',
        'settle = "0s"',
        "confirm_after = 2",
        "[notifiers.console]",
        'kind = "console"',
    ]
    for i in range(sites):
        lines += ["[[sites]]", f'domain = "{site_name(i)}"', 'sources = ["exports"]']
    (work / "rules.d").mkdir(exist_ok=True)
    path = work / "settings.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def timed_child(cmd: list[str], log: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one child process; its output goes to `log`."""
    t0 = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):  # 1: a poll with a failed snapshot, counted below
        sys.stderr.write(log.read_text())
        raise SystemExit(f"{' '.join(cmd)} failed (exit {code})")
    return seconds, usage.ru_maxrss / 1024


def sqlite_import_all(work: Path, files: list[Path]) -> float:
    """Wall-clock seconds of the sqlite3 CLI importing every file into one empty table."""
    db = work / "sqlite_import.db"
    db.unlink(missing_ok=True)
    cli = shutil.which("sqlite3")
    if cli is None:
        raise SystemExit("the sqlite3 command-line tool is not installed")
    script = [".mode csv", f'.import "{files[0]}" t']
    script += [f'.import --skip 1 "{f}" t' for f in files[1:]]
    t0 = time.perf_counter()
    subprocess.run([cli, str(db)], input="\n".join(script) + "\n", text=True, check=True)
    seconds = time.perf_counter() - t0
    rows = sqlite3.connect(db).execute("SELECT count(*) FROM t").fetchone()[0]
    print(f"  sqlite3 .import of {len(files):,} files: {rows:,} rows in {seconds:.2f}s")
    db.unlink()
    return seconds


def bench(args: argparse.Namespace) -> int:
    made_temp = args.workdir is None
    work = Path(tempfile.mkdtemp(prefix="linkwatch-poll-")) if made_temp else Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        print(
            f"workdir {work}: {args.sites} sites x {args.links:,} links,"
            f" {args.snapshots} snapshots each"
        )
        print("generating (not timed) ...", flush=True)
        t0 = time.monotonic()
        generated: list[Generated] = []
        for i in range(args.sites):
            data = work / "generated" / site_name(i)
            data.mkdir(parents=True)
            generated.append(
                generate(data, args.links, args.snapshots - 1, site_name(i), SEED + i, quiet=True)
            )
        files = [s.path for g in generated for s in g.snapshots]
        size = sum(f.stat().st_size for f in files) / 1e6
        print(f"  {len(files):,} files, {size:,.0f} MB ({time.monotonic() - t0:.0f}s)")
        settings = write_settings(work, args.sites)
        cmd = [sys.executable, "-m", "daemon.cli", "-c", str(settings), "poll"]

        print("linkwatch polls (each the whole command, in a child process) ...", flush=True)
        polls: list[tuple[float, float]] = []
        for k in range(args.snapshots):
            for i, gen in enumerate(generated):
                folder = work / "exports" / site_name(i)
                folder.mkdir(parents=True, exist_ok=True)
                snap = gen.snapshots[k]
                shutil.copyfile(snap.path, folder / snap.path.name)
            seconds, rss = timed_child(cmd, work / f"poll-{k + 1}.log")
            polls.append((seconds, rss))
            print(f"  poll {k + 1}: {seconds:.2f}s, peak RSS {rss:.1f} MB", flush=True)
        problems = check_counts(work / "linkwatch.db", generated)

        print("baseline: sqlite3 CLI .import of the same files into one empty table ...")
        import_s = sqlite_import_all(work, files)

        total = sum(s for s, _ in polls)
        peak = max(r for _, r in polls)
        ratio = total / import_s
        rows = sum(s.links for g in generated for s in g.snapshots)
        print()
        print("results")
        print(
            f"  {len(polls)} polls of {args.sites} sites: {total:.2f}s ({rows / total:,.0f} rows/s)"
        )
        print(f"  sqlite3 .import of the same {len(files):,} files: {import_s:.2f}s")
        print(
            f"  poll time ratio (all polls / sqlite3 .import): {ratio:.2f}"
            f"  target <= {TARGET_RATIO:.1f}  {verdict(ratio <= TARGET_RATIO)}"
        )
        print(
            f"  peak RSS of the polls (max of {len(polls)} child processes): {peak:.1f} MB"
            f"  target <= {TARGET_RSS_MB:.0f} MB  {verdict(peak <= TARGET_RSS_MB)}"
        )
        for problem in problems:
            print(f"  MISMATCH: {problem}")
        return 0 if ratio <= TARGET_RATIO and peak <= TARGET_RSS_MB and not problems else 1
    finally:
        if args.keep:
            print(f"kept {work}")
        elif made_temp:
            shutil.rmtree(work, ignore_errors=True)
        else:
            for name in ("generated", "exports"):
                shutil.rmtree(work / name, ignore_errors=True)


def check_counts(db: Path, generated: list[Generated]) -> list[str]:
    """What the polls stored that the generator did not make: statuses and event counts."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT s.domain, n.status, n.new, n.missing, n.changed FROM snapshots n"
            " JOIN sites s ON s.id = n.site_id ORDER BY s.domain, n.taken_at"
        ).fetchall()
    finally:
        conn.close()
    by_site: dict[str, list[tuple[str, int, int, int]]] = {}
    for domain, status, new, missing, changed in rows:
        by_site.setdefault(domain, []).append((status, new, missing, changed))
    problems = []
    for i, gen in enumerate(generated):
        expected = [("baseline", 0, 0, 0)] + [
            ("complete", s.added, s.dropped, s.anchors_changed) for s in gen.snapshots[1:]
        ]
        got = by_site.get(site_name(i), [])
        if got != expected:
            problems.append(f"{site_name(i)}: stored {got}, expected {expected}")
    return problems[:10]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sites", type=int, default=500, help="sites watched")
    parser.add_argument("--links", type=int, default=5000, help="links per site")
    parser.add_argument("--snapshots", type=int, default=3, help="exports (polls) per site")
    parser.add_argument("--keep", action="store_true", help="keep generated data and DB")
    parser.add_argument("--workdir", help="where to put data (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.sites < 1 or args.links < 100 or args.snapshots < 2:
        parser.error("need --sites >= 1, --links >= 100 and --snapshots >= 2")
    return bench(args)


if __name__ == "__main__":
    sys.exit(main())
