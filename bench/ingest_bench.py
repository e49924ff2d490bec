"""Ingest benchmark: linkwatch's export ingest against `sqlite3 .import`, memory and DB growth.

Generates a deterministic N-link Ahrefs backlinks export (UTF-8, comma-separated, every
field double-quoted, the current 37-column header) and K "churn" snapshots, each derived
from the previous one by dropping 0.5% of its links, adding 0.5% new ones and changing a
few anchors. Then it measures, in one run:

* the baseline: the `sqlite3` CLI importing churn snapshot 1 into an empty table;
* linkwatch ingesting the initial export (the silent baseline), then each churn snapshot,
  every ingest in a child process so its peak RSS is its own;
* the ratio churn-1 ingest seconds / `.import` seconds (target <= 3.0), the peak RSS of the
  churn ingests (target <= 300 MB) and the database size after the K churn snapshots
  relative to its size after the baseline snapshot (target <= 1.5x).

Usage: python bench/ingest_bench.py [--links N] [--snapshots K] [--keep] [--workdir DIR]
This is a benchmark, not a test; generation time is not measured.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SITE = "example.com"
SOURCE = "exports"
SEED = 20260101
START = datetime(2026, 1, 1, tzinfo=UTC)

TARGET_RATIO = 3.0
TARGET_RSS_MB = 300.0
TARGET_GROWTH = 1.5

CHURN_DROP = 0.005
CHURN_ADD = 0.005
ANCHOR_CHANGE = 0.0005
N_TARGETS = 500

HEADER = [
    "Referring page title", "Referring page URL", "Language", "Platform",
    "Referring page HTTP code", "Domain rating", "UR", "Domain traffic", "Referring domains",
    "Linked domains", "External links", "Page traffic", "Keywords", "Target URL",
    "Left context", "Anchor", "Right context", "Redirect Chain URLs",
    "Redirect Chain status codes", "Type", "Is spam", "Content", "Nofollow", "UGC",
    "Sponsored", "Rendered", "Raw", "Lost status", "Drop reason", "Discovered status",
    "First seen", "Last seen", "Lost", "Author", "Page type", "Page category",
    "Links in group",
]  # fmt: skip

ANCHORS = [
    "example", "Example.com", "backlink monitoring", "click here", "this article",
    "read more", "the best link tracker", "SEO tools, compared", 'the "honest" review',
    "Café & Bistro guide", "link velocity explained", "https://example.com/",
    "learn more about backlinks", "source", "here", "example — official site",
    "", "negative SEO", "how we track lost links", "Übersicht der Backlinks",
]  # fmt: skip
TITLES = [
    "How to audit your backlinks", "Top 10 SEO tools", "Weekly link roundup",
    "Café reviews, Vol. 2", "Why link velocity matters", "A guide to \"rel\" attributes",
    "Notes on site migrations", "Marketing \u2013 the basics", "Resources", "Our partners",
]  # fmt: skip
SECTIONS = ["blog", "news", "posts", "articles", "wiki", "forum/thread", "reviews"]
LANGS = ["en", "en", "en", "en", "de", "fr", "es", "it"]
PLATFORMS = ["cms", "blogs", "ecommerce", "forum", "wiki", "messages", "", ""]
PAGE_TYPES = ["article", "blog", "homepage", "category", "product", "forum"]
CATEGORIES = ["", "Business", "Computers & Electronics", "Internet & Telecom", "Arts"]
AUTHORS = ["", "", "Jane Doe", "J. Smith", "editorial team", "Ana María López"]
LEFT = ["As shown by", "We recommend", "According to", "See also:", "Thanks to", "Via"]
RIGHT = ["for details.", "(2024).", "— worth a read.", ", among others.", "and more.", ""]

_M64 = (1 << 64) - 1


def mix(x: int) -> int:
    """splitmix64: a cheap, well-spread 64-bit hash of an integer."""
    z = (x + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


# --- generation ------------------------------------------------------------------------


class RowMaker:
    """Turns a link id (and its anchor version) into one deterministic Ahrefs export row."""

    def __init__(self, n_links: int, site: str = SITE, seed: int = SEED) -> None:
        self.n_hosts = max(1, n_links // 20)
        self.home = f"https://{site}/"
        self.seed = seed
        day0 = datetime(2019, 1, 1)
        self.days = [(day0 + timedelta(days=d)).strftime("%Y-%m-%d") for d in range(2500)]

    def host(self, hidx: int) -> tuple[str, int]:
        """(host name, registrable-domain index) of a referring host: 2 hosts per domain."""
        dom, sub = divmod(hidx, 2)
        tld = ".co.uk" if dom % 8 == 0 else ".com"
        name = f"www.site{dom}{tld}" if sub == 0 and dom % 3 == 0 else f"blog{sub}.site{dom}{tld}"
        return name, dom

    def row(self, link: int, anchor_version: int, last_seen: str) -> list[str]:
        """The 37 cells of link `link`."""
        h = mix(self.seed * 1_000_003 + link)
        g = mix(h)
        host, dom = self.host(h % self.n_hosts)
        dh = mix(dom + 17)
        dr = dh % 101
        # Skewed towards the first target pages, as real profiles are.
        target = min((h >> 20) % N_TARGETS, (h >> 32) % N_TARGETS)
        url_to = self.home if target == 0 else f"{self.home}page/{target}"
        a = ((h >> 40) + anchor_version) % len(ANCHORS)
        anchor = ANCHORS[a]
        scheme = "http" if g % 11 == 0 else "https"
        section = SECTIONS[(g >> 8) % len(SECTIONS)]
        url_from = f"{scheme}://{host}/{section}/{link}-{(g >> 12) % 9973}"
        if g % 7 == 0:
            url_from += f"?ref=r{(g >> 16) % 100}"
        first = self.days[(g >> 20) % 2400]
        first_seen = f"{first} {(g >> 32) % 24:02d}:{(g >> 40) % 60:02d}:{(g >> 46) % 60:02d}"
        return [
            f"{TITLES[(g >> 4) % len(TITLES)]} #{link}",
            url_from,
            LANGS[(dh >> 8) % len(LANGS)],
            PLATFORMS[(dh >> 12) % len(PLATFORMS)],
            "200",
            str(dr),
            str((h >> 8) % 60),
            str((dh >> 16) % 5_000_000),
            str((dh >> 24) % 90_000),
            str((dh >> 32) % 20_000),
            str((g >> 24) % 400),
            str((g >> 28) % 3000),
            str((g >> 36) % 500),
            url_to,
            LEFT[(g >> 50) % len(LEFT)],
            anchor,
            RIGHT[(g >> 53) % len(RIGHT)],
            "",
            "",
            "image" if anchor == "" else "text",
            "false",
            "true",
            "true" if (h >> 50) % 10 == 0 else "false",
            "true" if (h >> 54) % 50 == 0 else "false",
            "true" if (h >> 57) % 100 == 0 else "false",
            "false",
            "true",
            "",
            "",
            "",
            first_seen,
            last_seen,
            "",
            AUTHORS[(g >> 56) % len(AUTHORS)],
            PAGE_TYPES[(g >> 59) % len(PAGE_TYPES)],
            CATEGORIES[(dh >> 40) % len(CATEGORIES)],
            "1",
        ]


@dataclass
class Snapshot:
    """One generated export file and what the diff against the previous one should find."""

    index: int
    path: Path
    taken_at: datetime
    links: int
    added: int = 0
    dropped: int = 0
    anchors_changed: int = 0


@dataclass
class Generated:
    """The initial export (index 0) and the churn snapshots (1..K)."""

    snapshots: list[Snapshot] = field(default_factory=list)


def _write_export(
    path: Path, maker: RowMaker, ids: Iterable[int], versions: dict[int, int], taken: datetime
) -> int:
    last_seen = taken.strftime("%Y-%m-%d %H:%M:%S")
    n = 0
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, quoting=csv.QUOTE_ALL, lineterminator="\n")
        w.writerow(HEADER)
        rows: list[list[str]] = []
        for link in ids:
            rows.append(maker.row(link, versions.get(link, 0), last_seen))
            n += 1
            if len(rows) >= 5000:
                w.writerows(rows)
                rows.clear()
        w.writerows(rows)
    return n


def generate(
    data: Path,
    n_links: int,
    n_snapshots: int,
    site: str = SITE,
    seed: int = SEED,
    quiet: bool = False,
) -> Generated:
    """Write the initial export and `n_snapshots` churn snapshots of `site` into `data`."""
    rng = random.Random(seed)
    maker = RowMaker(n_links, site, seed)
    versions: dict[int, int] = {}
    ids = list(range(n_links))
    next_id = n_links
    out = Generated()
    for k in range(n_snapshots + 1):
        taken = START + timedelta(days=k)
        name = f"{site}-backlinks-subdomains_{taken:%Y-%m-%d_%H-%M-%S}.csv"
        snap = Snapshot(index=k, path=data / name, taken_at=taken, links=0)
        if k > 0:
            n_drop = max(1, round(len(ids) * CHURN_DROP))
            n_add = max(1, round(len(ids) * CHURN_ADD))
            drop = set(rng.sample(range(len(ids)), n_drop))
            kept = [x for i, x in enumerate(ids) if i not in drop]
            # New links land at random places in the export, not just at its end.
            positions = sorted(rng.randrange(len(kept) + 1) for _ in range(n_add))
            merged: list[int] = []
            prev = 0
            for pos in positions:
                merged.extend(kept[prev:pos])
                merged.append(next_id)
                next_id += 1
                prev = pos
            merged.extend(kept[prev:])
            ids = merged
            n_change = max(1, round(len(kept) * ANCHOR_CHANGE))
            for link in rng.sample(kept, n_change):
                versions[link] = versions.get(link, 0) + 1 + rng.randrange(len(ANCHORS) - 1)
                versions[link] %= len(ANCHORS)  # a shift of 1..len-1: always a new anchor
            snap.added, snap.dropped, snap.anchors_changed = n_add, n_drop, n_change
        t0 = time.monotonic()
        snap.links = _write_export(snap.path, maker, ids, versions, taken)
        size = snap.path.stat().st_size / 1e6
        if not quiet:
            print(
                f"  generated {snap.path.name}: {snap.links:,} links, {size:,.0f} MB"
                f" ({time.monotonic() - t0:.1f}s)",
                flush=True,
            )
        out.snapshots.append(snap)
    return out


# --- measurement -----------------------------------------------------------------------


def child_ingest(db: Path, file: Path, taken_at: str, profile: bool) -> None:
    """Ingest one export into the store and print a JSON line of what it did and cost."""
    sys.path.insert(0, str(REPO))
    from daemon.store import GuardSettings, Store
    from sources.exports import ExportFile

    taken = datetime.fromisoformat(taken_at)
    t0 = time.perf_counter()
    store = Store(db)
    store.ensure_site(SITE, "own")
    open_s = time.perf_counter() - t0

    def run() -> Any:
        result = ExportFile(file, SITE).snapshot(taken)
        return store.ingest(SITE, SOURCE, result, GuardSettings(), now=taken)

    prof_text = ""
    t0 = time.perf_counter()
    if profile:
        import cProfile
        import io
        import pstats

        prof = cProfile.Profile()
        outcome = prof.runcall(run)
        seconds = time.perf_counter() - t0
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(25)
        prof_text = buf.getvalue()
    else:
        outcome = run()
        seconds = time.perf_counter() - t0
    store.close()
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "seconds": seconds,
                "locked_s": outcome.locked_s,
                "open_seconds": open_s,
                "maxrss_mb": rss_kb / 1024,
                "status": outcome.status,
                "seen": outcome.seen,
                "new": outcome.new,
                "missing": outcome.missing,
                "restored": outcome.restored,
                "lost": outcome.lost,
                "changed": outcome.changed,
                "malformed": outcome.malformed,
                "note": outcome.note,
                "profile": prof_text,
            }
        )
    )


def run_child(db: Path, snap: Snapshot, profile: bool = False) -> dict[str, Any]:
    """Run one ingest in a fresh interpreter and return its JSON report."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child-ingest", str(db),
           str(snap.path), snap.taken_at.isoformat()]  # fmt: skip
    if profile:
        cmd.append("--profile")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"ingest of {snap.path.name} failed (exit {proc.returncode})")
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return report


def db_size(db: Path) -> int:
    """Bytes of the database after a WAL checkpoint, plus any -wal file left."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    total = 0
    for suffix in ("", "-wal"):
        p = Path(str(db) + suffix)
        if p.exists():
            total += p.stat().st_size
    return total


def sqlite_import(work: Path, file: Path) -> float:
    """Wall-clock seconds of the sqlite3 CLI importing `file` into a fresh database."""
    db = work / "sqlite_import.db"
    db.unlink(missing_ok=True)
    cli = shutil.which("sqlite3")
    if cli is None:
        raise SystemExit("the sqlite3 command-line tool is not installed")
    t0 = time.perf_counter()
    subprocess.run([cli, str(db), "-cmd", ".mode csv", f'.import "{file}" t'], check=True)
    seconds = time.perf_counter() - t0
    rows = sqlite3.connect(db).execute("SELECT count(*) FROM t").fetchone()[0]
    print(f"  sqlite3 .import {file.name}: {rows:,} rows in {seconds:.2f}s", flush=True)
    db.unlink()
    return seconds


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def bench(args: argparse.Namespace) -> int:
    made_temp = args.workdir is None
    work = Path(tempfile.mkdtemp(prefix="linkwatch-bench-")) if made_temp else Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data"
    data.mkdir(exist_ok=True)
    db = work / "linkwatch.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    try:
        print(f"workdir {work}: {args.links:,} links, {args.snapshots} churn snapshots")
        print("generating (not timed) ...", flush=True)
        gen = generate(data, args.links, args.snapshots)
        snaps = gen.snapshots

        print("baseline: sqlite3 CLI .import of churn snapshot 1 into an empty table ...")
        import_s = sqlite_import(work, snaps[1].path)

        print("linkwatch ingests (each in a child process) ...", flush=True)
        reports: list[dict[str, Any]] = []
        sizes: list[int] = []
        hdr = (
            f"  {'snap':>4} {'status':>8} {'seen':>9} {'new':>6} {'missing':>7} {'lost':>6}"
            f" {'changed':>7} {'restored':>8} {'seconds':>8} {'lock s':>7} {'rss MB':>7}"
            f" {'db MB':>8}"
            "   expected new/missing/lost/changed"
        )
        print(hdr)
        for snap in snaps:
            rep = run_child(db, snap, profile=args.profile and snap.index == 1)
            reports.append(rep)
            sizes.append(db_size(db))
            if snap.index == 0:
                expect = "(silent baseline)"
            else:
                lost_exp = snaps[snap.index - 1].dropped if snap.index >= 2 else 0
                expect = f"{snap.added}/{snap.dropped}/{lost_exp}/{snap.anchors_changed}"
                got = (rep["new"], rep["missing"], rep["lost"], rep["changed"])
                if got != (snap.added, snap.dropped, lost_exp, snap.anchors_changed):
                    expect += "  MISMATCH"
            print(
                f"  {snap.index:>4} {rep['status']:>8} {rep['seen']:>9,} {rep['new']:>6,}"
                f" {rep['missing']:>7,} {rep['lost']:>6,} {rep['changed']:>7,}"
                f" {rep['restored']:>8,} {rep['seconds']:>8.2f} {rep['locked_s']:>7.2f}"
                f" {rep['maxrss_mb']:>7.1f}"
                f" {sizes[-1] / 1e6:>8.1f}   {expect}",
                flush=True,
            )
            if rep["note"]:
                print(f"       note: {rep['note']}")
            if rep["profile"]:
                print(rep["profile"])

        churn = reports[1:]
        ratio = churn[0]["seconds"] / import_s
        peak = max(r["maxrss_mb"] for r in churn)
        growth = sizes[-1] / sizes[0]
        print()
        print("results")
        print(f"  baseline ingest (initial export, {snaps[0].links:,} links):"
              f" {reports[0]['seconds']:.2f}s, peak RSS {reports[0]['maxrss_mb']:.1f} MB,"
              f" DB {sizes[0] / 1e6:.1f} MB")  # fmt: skip
        print(f"  sqlite3 .import of churn snapshot 1: {import_s:.2f}s")
        print(f"  linkwatch ingest of churn snapshot 1: {churn[0]['seconds']:.2f}s")
        print(
            f"  write lock held (other writers wait this long): baseline"
            f" {reports[0]['locked_s']:.2f}s of {reports[0]['seconds']:.2f}s, churn 1"
            f" {churn[0]['locked_s']:.2f}s of {churn[0]['seconds']:.2f}s"
        )
        print(
            f"  ingest time ratio (linkwatch churn-1 / sqlite3 .import): {ratio:.2f}"
            f"  target <= {TARGET_RATIO:.1f}  {verdict(ratio <= TARGET_RATIO)}"
        )
        print(
            f"  peak RSS of churn ingests (max of {len(churn)} child processes): {peak:.1f} MB"
            f"  target <= {TARGET_RSS_MB:.0f} MB  {verdict(peak <= TARGET_RSS_MB)}"
        )
        print(
            f"  DB growth over {len(churn)} churn snapshots (size after snapshot {len(churn)}"
            f" / size after the baseline snapshot): {sizes[-1] / 1e6:.1f} MB /"
            f" {sizes[0] / 1e6:.1f} MB = {growth:.3f}x"
            f"  target <= {TARGET_GROWTH:.1f}x  {verdict(growth <= TARGET_GROWTH)}"
        )
        print(
            f"  (for reference: size after snapshot {len(churn)} / size after churn"
            f" snapshot 1 = {sizes[-1] / sizes[1]:.3f}x)"
        )
        ok = ratio <= TARGET_RATIO and peak <= TARGET_RSS_MB and growth <= TARGET_GROWTH
        return 0 if ok else 1
    finally:
        if args.keep:
            print(f"kept {work}")
        elif made_temp:
            shutil.rmtree(work, ignore_errors=True)
        else:
            shutil.rmtree(data, ignore_errors=True)
            for suffix in ("", "-wal", "-shm"):
                Path(str(db) + suffix).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--links", type=int, default=1_000_000, help="links in the export")
    parser.add_argument("--snapshots", type=int, default=10, help="churn snapshots")
    parser.add_argument("--keep", action="store_true", help="keep generated data and DB")
    parser.add_argument("--workdir", help="where to put data (default: a temp dir)")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the churn-1 ingest and print it"
    )
    parser.add_argument("--child-ingest", nargs=3, metavar=("DB", "FILE", "TAKEN_AT"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args(argv)
    if args.child_ingest:
        db, file, taken = args.child_ingest
        child_ingest(Path(db), Path(file), taken, args.profile)
        return 0
    if args.links < 100 or args.snapshots < 2:
        parser.error("need --links >= 100 and --snapshots >= 2")
    return bench(args)


if __name__ == "__main__":
    sys.exit(main())
