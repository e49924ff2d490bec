"""Soak test: the daemon polling many sites for minutes against a flaky local Slack.

Builds a work folder with N sites (`site000.example` ...), each a csv_dir folder holding a
baseline Ahrefs export, a threshold rule `lost_links >= 1` over a window and a `slack`
notifier whose `base_url` points at a Slack Web API stand-in this script runs in a thread.
The stand-in answers `chat.postMessage` (storing each post with its metadata),
`conversations.history` (with metadata, newest first, paged) and `conversations.list`,
and is flaky: some posts fail (HTTP 500, `internal_error`), are rate limited (429,
Retry-After: 1), are slow, or are stored and then never answered (a dropped connection
or no answer before the client's timeout), so the "is it already there?" lookup runs.

The daemon runs as a child process (`linkwatch run`, in this script's `--daemon-child`
mode, which only adds an APScheduler event listener that records every poll job run,
skip and misfire to a file). Meanwhile a thread drops new exports into the site folders:
per site a cycle of files in which one link goes missing, is lost (fires the rule), comes
back; the alert resolves once the lost event leaves the window. After the load phase no
more files come; the daemon gets a drain period to deliver retries, then SIGTERM.

It prints the daemon's RSS at start (after the first minute) and end, polls done vs due,
notifications expected (outbox rows) vs sent, duplicates (posts whose metadata key Slack
already had) and lost notifications, each with PASS or FAIL; exit status 1 if any fails.

Usage: python bench/soak.py [--sites 200] [--minutes 10] [--interval 5s] [--keep]
This is a benchmark, not a test: it takes minutes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

REPO = Path(__file__).resolve().parent.parent
SEED = 20260109

TOKEN = "xoxb-soak-token"
CHANNEL = "C0SOAKTEST"  # an id, so linkwatch needs no conversations.list
CHANNEL_NAME = "soak-alerts"
SLACK_TIMEOUT = 3.0
EVALUATE_EVERY = 5.0
DELIVER_EVERY = 2.0
LINKS_PER_SITE = 20
CYCLE = 8  # files per site cycle: drop, drop (lost), restore, then unchanged ones

TARGET_RSS_GROWTH = 10.0  # percent

# Share of chat.postMessage calls answered each way (the rest: ok at once).
P_HTTP_500 = 0.05
P_INTERNAL = 0.05
P_RATELIMITED = 0.05
P_HANG = 0.005  # stored, then no answer before the client's timeout
P_DROP = 0.005  # stored, then the connection is closed without an answer
P_SLOW = 0.05  # answered ok after SLOW_S
SLOW_S = 2.0
HANG_S = SLACK_TIMEOUT + 2.0
P_HISTORY_500 = 0.03

AHREFS_HEADER = [
    "Referring page title", "Referring page URL", "Language", "Domain rating", "Target URL",
    "Anchor", "Nofollow", "UGC", "Sponsored", "Lost status", "First seen", "Last seen", "Lost",
]  # fmt: skip


def parse_seconds(text: str) -> float:
    """`5s`, `2m`, `1h` or a plain number of seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if m is None:
        raise argparse.ArgumentTypeError(f"not a duration like 5s, 2m: {text!r}")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def fmt_s(seconds: float) -> str:
    return f"{seconds:g}s"


# --- the Slack stand-in ----------------------------------------------------------------


@dataclass
class Posted:
    ts: str
    text: str
    metadata: dict[str, Any] | None
    key: str | None


@dataclass
class SlackState:
    """What the stand-in received; every field is guarded by `lock`."""

    rng: random.Random
    lock: threading.Lock = field(default_factory=threading.Lock)
    messages: list[Posted] = field(default_factory=list)
    keys: Counter[str] = field(default_factory=Counter)
    post_outcomes: Counter[str] = field(default_factory=Counter)
    history_calls: Counter[str] = field(default_factory=Counter)
    history_max_scanned: int = 0
    other_calls: Counter[str] = field(default_factory=Counter)
    last_ts: float = 0.0

    def store(self, args: dict[str, Any]) -> Posted:
        with self.lock:
            now = max(time.time(), self.last_ts + 1e-6)
            self.last_ts = now
            meta = args.get("metadata")
            if isinstance(meta, str):
                meta = json.loads(meta)
            payload = (meta or {}).get("event_payload") or {}
            key = payload.get("key") if isinstance(payload, dict) else None
            posted = Posted(f"{now:.6f}", str(args.get("text", "")), meta, key)
            self.messages.append(posted)
            if key is not None:
                self.keys[key] += 1
            return posted

    def choose(self, choices: list[tuple[str, float]]) -> str:
        with self.lock:
            r = self.rng.random()
        for name, p in choices:
            if r < p:
                return name
            r -= p
        return "ok"

    def count(self, counter: Counter[str], name: str) -> None:
        with self.lock:
            counter[name] += 1


class SlackServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: SlackState) -> None:
        super().__init__(("127.0.0.1", 0), SlackHandler)
        self.state = state

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api/"


class SlackHandler(BaseHTTPRequestHandler):
    server: SlackServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _args(self) -> dict[str, Any]:
        url = urlsplit(self.path)
        args: dict[str, Any] = dict(parse_qsl(url.query))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            body = self.rfile.read(length)
            if (self.headers.get("Content-Type") or "").startswith("application/json"):
                args.update(json.loads(body))
            else:
                args.update(parse_qsl(body.decode()))
        return args

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        ctype = "text/html" if isinstance(body, bytes) else "application/json; charset=utf-8"
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        state = self.server.state
        method = urlsplit(self.path).path.rsplit("/", 1)[-1]
        args = self._args()
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._send(200, {"ok": False, "error": "invalid_auth"})
            return
        if method == "chat.postMessage":
            self._post(state, args)
        elif method == "conversations.history":
            self._history(state, args)
        elif method == "conversations.list":
            state.count(state.other_calls, method)
            channels = [{"id": CHANNEL, "name": CHANNEL_NAME, "is_archived": False}]
            self._send(200, {"ok": True, "channels": channels, "response_metadata": {}})
        elif method == "auth.test":
            state.count(state.other_calls, method)
            self._send(200, {"ok": True, "user_id": "U0SOAK", "team_id": "T0SOAK"})
        else:
            state.count(state.other_calls, method)
            self._send(200, {"ok": False, "error": "unknown_method"})

    def _post(self, state: SlackState, args: dict[str, Any]) -> None:
        if args.get("channel") not in (CHANNEL, f"#{CHANNEL_NAME}"):
            state.count(state.post_outcomes, "channel_not_found")
            self._send(200, {"ok": False, "error": "channel_not_found"})
            return
        outcome = state.choose(
            [
                ("http_500", P_HTTP_500),
                ("internal_error", P_INTERNAL),
                ("ratelimited", P_RATELIMITED),
                ("hang", P_HANG),
                ("drop", P_DROP),
                ("slow", P_SLOW),
            ]
        )
        state.count(state.post_outcomes, outcome)
        if outcome == "http_500":
            self._send(500, b"<html><body>500 Internal Server Error</body></html>")
        elif outcome == "internal_error":
            self._send(200, {"ok": False, "error": "internal_error"})
        elif outcome == "ratelimited":
            self._send(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"})
        elif outcome in ("hang", "drop"):
            state.store(args)
            if outcome == "hang":
                time.sleep(HANG_S)
            self.close_connection = True  # no answer at all
        else:
            if outcome == "slow":
                time.sleep(SLOW_S)
            posted = state.store(args)
            message = {"type": "message", "text": posted.text, "ts": posted.ts}
            self._send(200, {"ok": True, "channel": CHANNEL, "ts": posted.ts, "message": message})

    def _history(self, state: SlackState, args: dict[str, Any]) -> None:
        if state.choose([("fail", P_HISTORY_500)]) == "fail":
            state.count(state.history_calls, "http_500")
            self._send(500, b"<html><body>500 Internal Server Error</body></html>")
            return
        if args.get("channel") != CHANNEL:
            state.count(state.history_calls, "channel_not_found")
            self._send(200, {"ok": False, "error": "channel_not_found"})
            return
        oldest = float(args.get("oldest") or 0)
        limit = int(args.get("limit") or 100)
        start = int(args.get("cursor") or 0)
        with state.lock:
            newer = [m for m in state.messages if float(m.ts) > oldest]
            state.history_max_scanned = max(state.history_max_scanned, len(newer))
            state.history_calls["ok"] += 1
        newer.reverse()  # newest first, as Slack answers
        page = newer[start : start + limit]
        more = start + limit < len(newer)
        with_meta = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        out = []
        for m in page:
            item: dict[str, Any] = {"type": "message", "ts": m.ts, "text": m.text}
            if with_meta and m.metadata is not None:
                item["metadata"] = m.metadata
            out.append(item)
        self._send(
            200,
            {
                "ok": True,
                "messages": out,
                "has_more": more,
                "response_metadata": {"next_cursor": str(start + limit) if more else ""},
            },
        )


# --- the workdir and the export dropper --------------------------------------------------


def domain(i: int) -> str:
    return f"site{i:03d}.example"


def write_settings(work: Path, sites: int, interval: float, base_url: str, window: float) -> Path:
    lines = [
        "[storage]",
        'path = "linkwatch.db"',
        "[daemon]",
        'rules_dir = "rules.d"',
        f'evaluate_every = "{fmt_s(EVALUATE_EVERY)}"',
        f'deliver_every = "{fmt_s(DELIVER_EVERY)}"',
    ]
    for i in range(sites):
        lines += ["[[sites]]", f'domain = "{domain(i)}"', 'sources = ["exports"]']
    lines += [
        "[sources.exports]",
        'kind = "csv_dir"',
        'path = "exports/{domain}"',
        f'interval = "{fmt_s(interval)}"',
        'settle = "0s"',
        "[notifiers.slack]",
        'kind = "slack"',
        f'token = "{TOKEN}"',
        f'channel = "{CHANNEL}"',
        f'base_url = "{base_url}"',
        f"timeout = {SLACK_TIMEOUT:g}",
    ]
    path = work / "settings.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rules = work / "rules.d"
    rules.mkdir(exist_ok=True)
    (rules / "lost.toml").write_text(
        'kind = "threshold"\nmetric = "lost_links"\n'
        f'window = "{fmt_s(window)}"\nop = ">="\nvalue = 1\nnotify = ["slack"]\n',
        encoding="utf-8",
    )
    return path


def write_export(folder: Path, i: int, taken: int, without_first: bool) -> Path:
    """An Ahrefs export of site i's links at epoch second `taken` (link 0 left out if
    `without_first`), written under a temporary name and renamed into place."""
    stamp = datetime.fromtimestamp(taken, tz=UTC)
    last_seen = stamp.strftime("%Y-%m-%d %H:%M:%S")
    rows = [",".join(AHREFS_HEADER)]
    for j in range(1 if without_first else 0, LINKS_PER_SITE):
        rows.append(
            f"Page {j},https://ref{j:02d}.links{i:03d}.com/post/{j},en,{10 + j},"
            f"https://{domain(i)}/,anchor {j},false,false,false,,2025-01-01 00:00:00,"
            f"{last_seen},"
        )
    path = folder / f"{domain(i)}-backlinks_{stamp:%Y-%m-%d_%H-%M-%S}.csv"
    tmp = path.with_suffix(".part")
    tmp.write_text("\n".join(rows) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


@dataclass
class SitePlan:
    index: int
    folder: Path
    next_at: float
    pos: int
    last_taken: int


@dataclass
class Dropper:
    """Drops one export per site every `every` seconds until `until` (wall clock)."""

    plans: list[SitePlan]
    every: float
    until: float
    files: int = 0
    lost_at: list[tuple[str, int]] = field(default_factory=list)  # (site, taken) of lost files
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def run(self) -> None:
        while not self.stop.is_set():
            now = time.time()
            if now >= self.until:
                return
            for plan in self.plans:
                if plan.next_at > now:
                    continue
                taken = max(int(time.time()), plan.last_taken + 1)
                write_export(plan.folder, plan.index, taken, without_first=plan.pos in (0, 1))
                if plan.pos == 1:
                    self.lost_at.append((domain(plan.index), taken))
                plan.last_taken = taken
                plan.pos = (plan.pos + 1) % CYCLE
                plan.next_at += self.every
                self.files += 1
            self.stop.wait(0.1)

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, name="dropper", daemon=True)
        self.thread.start()


# --- the daemon child and its probe --------------------------------------------------------


def daemon_child(probe: Path, argv: list[str]) -> None:
    """Run `linkwatch ARGV`, recording the scheduler's job events to `probe` (JSON lines)."""
    sys.path.insert(0, str(REPO))
    from apscheduler.events import (
        EVENT_JOB_ERROR,
        EVENT_JOB_EXECUTED,
        EVENT_JOB_MAX_INSTANCES,
        EVENT_JOB_MISSED,
        JobEvent,
    )

    import daemon.scheduler as scheduler
    from daemon.cli import main as cli_main

    names = {
        EVENT_JOB_EXECUTED: "exec",
        EVENT_JOB_ERROR: "error",
        EVENT_JOB_MISSED: "missed",
        EVENT_JOB_MAX_INSTANCES: "skip",
    }
    out = probe.open("a", encoding="utf-8", buffering=1)
    lock = threading.Lock()

    def listener(event: JobEvent) -> None:
        runs = getattr(event, "scheduled_run_times", None) or [
            getattr(event, "scheduled_run_time", None)
        ]
        due = [r.timestamp() for r in runs if r is not None]
        line = json.dumps({"e": names[event.code], "job": event.job_id, "due": due,
                           "t": time.time()})  # fmt: skip
        with lock:
            out.write(line + "\n")

    build = scheduler.build_scheduler

    def build_with_probe(app: Any, now: datetime) -> Any:
        sched = build(app, now)
        sched.add_listener(listener, sum(names))
        return sched

    scheduler.build_scheduler = build_with_probe
    cli_main(args=argv, prog_name="linkwatch")


def rss_mb(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    m = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) / 1024 if m else None


@dataclass
class PollStats:
    nominal_due: int  # runs due at the configured interval, from the first run to the stop
    done: int  # poll job runs (executed or failed)
    missed: int  # runs that should have come given the trigger's own schedule, and did not
    skipped: int  # runs APScheduler skipped: the job was still running or queued
    misfired: int  # runs APScheduler dropped as too late (misfire_grace_time)
    errors: int
    mean_gap: float  # seconds between consecutive runs of a job, on average
    max_gap: float
    lag: list[float]  # run end - due time, per poll run
    eval_lag: list[float]


def jitter_of(interval: float) -> float:
    """The jitter daemon/scheduler.py gives a poll job: min(60, interval / 10)."""
    return min(60.0, interval / 10)


def poll_stats(
    probe: Path, sites: int, interval: float, t_start: float, t_stop: float
) -> PollStats:
    """Poll runs done vs due. APScheduler's IntervalTrigger adds each run's jitter to the
    next one, so consecutive runs of a job are interval .. interval + jitter apart: a gap
    longer than that (or no run for two intervals before the stop) is a missed run."""
    text = probe.read_text() if probe.exists() else ""
    events = [json.loads(line) for line in text.splitlines() if line.strip()]
    poll_dues = [d for e in events if e["job"].startswith("poll:") for d in e["due"]]
    start = min(poll_dues) if poll_dues else t_start
    nominal = sites * (int((t_stop - start) // interval) + 1)
    dues: dict[str, list[float]] = defaultdict(list)
    skipped = misfired = errors = 0
    lag: list[float] = []
    eval_lag: list[float] = []
    for e in events:
        if e["e"] in ("exec", "error") and e["job"] == "evaluate":
            eval_lag.extend(e["t"] - d for d in e["due"])
        if not e["job"].startswith("poll:"):
            continue
        if e["e"] == "skip":
            skipped += len(e["due"]) or 1
        elif e["e"] == "missed":
            misfired += 1
        elif e["e"] in ("exec", "error"):
            errors += e["e"] == "error"
            for d in e["due"]:
                lag.append(e["t"] - d)
                dues[e["job"]].append(d)
    longest = interval + jitter_of(interval) + 0.05
    missed = (sites - len(dues)) * (int((t_stop - start) // interval) + 1)
    gaps: list[float] = []
    for times in dues.values():
        times.sort()
        for a, b in itertools.pairwise(times):
            gaps.append(b - a)
            if b - a > longest:
                missed += round((b - a - jitter_of(interval) / 2) / interval) - 1
        tail = t_stop - times[-1]
        if tail > 2 * longest:
            missed += int(tail // longest) - 1
    done = sum(len(t) for t in dues.values())
    mean_gap = sum(gaps) / len(gaps) if gaps else 0.0
    return PollStats(nominal, done, missed, skipped, misfired, errors, mean_gap,
                     max(gaps, default=0.0), lag, eval_lag)  # fmt: skip


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def count_log(log: Path) -> Counter[str]:
    patterns = {
        "missed (log)": "was missed by",
        "skipped (log)": "maximum number of running instances",
        "ERROR lines": " ERROR ",
        "tracebacks": "Traceback",
        "database busy": "database busy",
        "delivery retries": "failed, retry in",
        "found already there": "is already there",
        "sent without check": "could not check for an earlier copy",
        "alerts firing": ": firing (",
        "alerts resolved": ": resolved (",
        "ingests": " taken ",
    }
    counts: Counter[str] = Counter()
    with log.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            for name, needle in patterns.items():
                if needle in line:
                    counts[name] += 1
    return counts


def pending_rows(db: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error:
        return -1
    try:
        row = conn.execute(
            "SELECT count(*) FROM outbox WHERE notifier = 'slack'"
            " AND status IN ('pending', 'sending')"
        ).fetchone()
        return int(row[0])
    except sqlite3.Error:
        return -1
    finally:
        conn.close()


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# --- the soak --------------------------------------------------------------------------------


def soak(args: argparse.Namespace) -> int:
    made_temp = args.workdir is None
    work = Path(tempfile.mkdtemp(prefix="linkwatch-soak-")) if made_temp else Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    for name in ("linkwatch.db", "linkwatch.db-wal", "linkwatch.db-shm", "probe.jsonl"):
        (work / name).unlink(missing_ok=True)
    shutil.rmtree(work / "exports", ignore_errors=True)
    rng = random.Random(args.seed)
    state = SlackState(random.Random(args.seed + 1))
    server = SlackServer(state)
    threading.Thread(target=server.serve_forever, name="slack", daemon=True).start()
    proc: subprocess.Popen[bytes] | None = None
    dropper: Dropper | None = None
    try:
        config = write_settings(work, args.sites, args.interval, server.base_url, args.window)
        t0 = time.time()
        plans = []
        for i in range(args.sites):
            folder = work / "exports" / domain(i)
            folder.mkdir(parents=True)
            write_export(folder, i, int(t0) - 1, without_first=False)
            pos = rng.randrange(CYCLE)
            plans.append(
                SitePlan(
                    i,
                    folder,
                    t0 + 2 + rng.uniform(0, args.file_every),
                    pos if pos not in (1, 2) else 3,  # a cycle never starts at its lost file
                    int(t0) - 1,
                )
            )
        load_s = args.minutes * 60
        print(
            f"workdir {work}: {args.sites} sites polled every {fmt_s(args.interval)}, a new"
            f" export per site every {fmt_s(args.file_every)}, rule lost_links >= 1 over"
            f" {fmt_s(args.window)}; load {args.minutes:g} min, then up to {fmt_s(args.drain)}"
            f" drain; Slack stand-in at {server.base_url}",
            flush=True,
        )
        probe = work / "probe.jsonl"
        log_path = work / "daemon.log"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--daemon-child", str(probe),
               "--", "-c", str(config), "run"]  # fmt: skip
        with log_path.open("wb") as log_fh:
            proc = subprocess.Popen(cmd, cwd=work, stdout=log_fh, stderr=subprocess.STDOUT)
        t_start = time.time()
        dropper = Dropper(plans, args.file_every, t_start + load_s)
        dropper.start()

        rss_at = min(60.0, load_s / 3)
        rss_start: float | None = None
        samples: list[tuple[float, float]] = []
        t_drain_min = t_start + load_s + args.window + 3 * EVALUATE_EVERY + 10
        t_drain_max = t_start + load_s + max(args.drain, args.window + 3 * EVALUATE_EVERY + 10)
        next_report = t_start + 60
        drained = False
        while True:
            time.sleep(2)
            now = time.time()
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace").splitlines()[-15:]
                print(f"daemon exited early with {proc.returncode}; the end of {log_path}:")
                print("\n".join("    " + line for line in tail))
                break
            rss = rss_mb(proc.pid)
            if rss is not None:
                samples.append((now - t_start, rss))
                if rss_start is None and now - t_start >= rss_at:
                    rss_start = rss
            if now >= next_report:
                next_report += 60
                print(
                    f"  t={now - t_start:4.0f}s rss {rss or 0:.1f} MB, files dropped"
                    f" {dropper.files}, slack posts {sum(state.post_outcomes.values())},"
                    f" outbox pending {pending_rows(work / 'linkwatch.db')}",
                    flush=True,
                )
            if now >= t_drain_min and pending_rows(work / "linkwatch.db") == 0:
                drained = True
                break
            if now >= t_drain_max:
                break
        rss_end = samples[-1][1] if samples else None
        t_stop = time.time()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        exit_code = proc.returncode
        dropper.stop.set()
        return report(
            args, work, state, dropper, t_start, t_stop, rss_start, rss_end, samples, drained,
            exit_code,
        )  # fmt: skip
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if dropper is not None:
            dropper.stop.set()
        server.shutdown()
        server.server_close()
        if args.keep:
            print(f"kept {work}")
        elif made_temp:
            shutil.rmtree(work, ignore_errors=True)


def report(
    args: argparse.Namespace,
    work: Path,
    state: SlackState,
    dropper: Dropper,
    t_start: float,
    t_stop: float,
    rss_start: float | None,
    rss_end: float | None,
    samples: list[tuple[float, float]],
    drained: bool,
    exit_code: int,
) -> int:
    ps = poll_stats(work / "probe.jsonl", args.sites, args.interval, t_start, t_stop)
    logc = count_log(work / "daemon.log")
    conn = sqlite3.connect(work / "linkwatch.db")
    try:
        rows = conn.execute(
            "SELECT idempotency_key, transition, status, attempts, last_error FROM outbox"
            " WHERE notifier = 'slack'"
        ).fetchall()
        snapshots = dict(conn.execute("SELECT status, count(*) FROM snapshots GROUP BY status"))
    except sqlite3.OperationalError as exc:  # the daemon never got as far as its schema
        print(f"  database unreadable: {exc}")
        rows, snapshots = [], {}
    finally:
        conn.close()

    by_status = Counter(r[2] for r in rows)
    by_transition = Counter(r[1] for r in rows)
    found_again = sum(1 for r in rows if (r[4] or "").startswith("found already delivered"))
    unchecked = sum(1 for r in rows if (r[4] or "").startswith("could not check"))
    attempts = Counter(min(r[3], 5) for r in rows if r[2] == "sent")
    with state.lock:
        posts = sum(state.post_outcomes.values())
        outcomes = dict(state.post_outcomes)
        stored = len(state.messages)
        keys = Counter(state.keys)
        history = dict(state.history_calls)
        scanned = state.history_max_scanned
        other = dict(state.other_calls)
    duplicates = sum(n - 1 for n in keys.values())
    outbox_keys = {r[0] for r in rows}
    sent_keys = {r[0] for r in rows if r[2] == "sent"}
    dead = by_status.get("dead", 0)
    sent_not_in_slack = len(sent_keys - set(keys))
    stray = len(set(keys) - outbox_keys)
    pending = by_status.get("pending", 0) + by_status.get("sending", 0)
    pending_in_slack = sum(1 for r in rows if r[2] in ("pending", "sending") and r[0] in keys)
    lost = dead + sent_not_in_slack
    fires_scripted = len(dropper.lost_at)
    resolves_scripted = sum(
        1 for _, taken in dropper.lost_at if taken + args.window + 2 * EVALUATE_EVERY < t_stop
    )

    run_s = t_stop - t_start
    shortfall = ps.nominal_due - ps.done
    print()
    print(
        f"soak summary: {args.sites} sites, poll interval {fmt_s(args.interval)}, load"
        f" {args.minutes:g} min + drain {run_s - args.minutes * 60:.0f} s"
        f" ({'outbox empty' if drained else 'drain limit reached'}); daemon exit {exit_code}"
    )
    print(
        f"  polls: done {ps.done:,} / due {ps.nominal_due:,} at the nominal interval"
        f" (shortfall {shortfall:,} = {100 * shortfall / max(ps.nominal_due, 1):.1f} %);"
        f" gap between runs of a job mean {ps.mean_gap:.2f}s max {ps.max_gap:.2f}s"
        f" (interval {fmt_s(args.interval)} + jitter 0..{jitter_of(args.interval):g}s)"
    )
    print(
        f"  polls missed (gap > interval + jitter, or none for 2 intervals at the end):"
        f" {ps.missed:,}; skipped as still running {ps.skipped:,}, misfired {ps.misfired:,},"
        f" failed {ps.errors}; finish lag after due p50 {pct(ps.lag, 0.5):.2f}s"
        f" p99 {pct(ps.lag, 0.99):.2f}s max {max(ps.lag, default=0):.2f}s"
        f"  target missed == 0  {verdict(ps.missed == 0)}"
    )
    print(
        f"  evaluate job finish lag p50 {pct(ps.eval_lag, 0.5):.2f}s max"
        f" {max(ps.eval_lag, default=0):.2f}s; snapshots {sum(snapshots.values()):,}"
        f" {dict(sorted(snapshots.items()))}; export files dropped {dropper.files:,}"
        f" (+{args.sites} baselines)"
    )
    if rss_start is not None and rss_end is not None:
        growth = 100 * (rss_end - rss_start) / rss_start
        peak = max(r for _, r in samples)
        rss_ok = growth < TARGET_RSS_GROWTH
        print(
            f"  RSS: start {rss_start:.1f} MB (at {min(60.0, args.minutes * 20):.0f} s), end"
            f" {rss_end:.1f} MB, peak {peak:.1f} MB, growth {growth:+.1f} %"
            f"  target < {TARGET_RSS_GROWTH:g} %  {verdict(rss_ok)}"
        )
    else:
        rss_ok = False
        print("  RSS: not measured (the daemon ended early)  FAIL")
    print(
        f"  notifications: expected {len(rows):,} (outbox rows: firing"
        f" {by_transition.get('firing', 0)}, resolved {by_transition.get('resolved', 0)};"
        f" scripted firing {fires_scripted}, resolved {resolves_scripted}); sent"
        f" {by_status.get('sent', 0):,} (of which found already there {found_again}, sent"
        f" without check {unchecked}), pending {pending} (already in Slack"
        f" {pending_in_slack}), dead {dead}"
    )
    print(
        f"  sent rows by attempts: {dict(sorted(attempts.items()))} (5 = 5 or more);"
        f" slack posts {posts:,} {dict(sorted(outcomes.items()))}; stored {stored:,};"
        f" history calls {history} (max posts in one lookup range {scanned}); other {other}"
    )
    print(
        f"  duplicates: {duplicates} (posts whose metadata key Slack already had)"
        f"  target 0  {verdict(duplicates == 0)}"
    )
    print(
        f"  lost: {lost} (dead {dead}, marked sent but not in Slack {sent_not_in_slack});"
        f" posts of no outbox row {stray}  target 0  {verdict(lost == 0 and stray == 0)}"
    )
    scripted_ok = (
        by_transition.get("firing", 0) == fires_scripted
        and by_transition.get("resolved", 0) == resolves_scripted
    )
    print(
        f"  transitions match the script: {'yes' if scripted_ok else 'NO'};"
        f" pending at stop: {pending}  target 0  {verdict(pending == 0)}"
    )
    print(f"  daemon log: {dict(sorted(logc.items()))}")
    ok = ps.missed == 0 and duplicates == 0 and lost == 0 and stray == 0 and rss_ok
    ok = ok and pending == 0
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--daemon-child"]:
        sep = argv.index("--")
        daemon_child(Path(argv[1]), argv[sep + 1 :])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sites", type=int, default=200, help="sites (default 200)")
    parser.add_argument("--minutes", type=float, default=10, help="load phase (default 10)")
    parser.add_argument(
        "--interval", type=parse_seconds, default=5.0, help="poll interval (default 5s)"
    )
    parser.add_argument(
        "--file-every",
        type=parse_seconds,
        default=30.0,
        help="a new export per site this often (default 30s)",
    )
    parser.add_argument(
        "--window", type=parse_seconds, default=60.0, help="the rule's window (default 60s)"
    )
    parser.add_argument(
        "--drain",
        type=parse_seconds,
        default=300.0,
        help="at most this long after the load for retries to be delivered (default 300s)",
    )
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--workdir", help="where to put everything (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the workdir")
    args = parser.parse_args(argv)
    if args.sites < 1 or args.minutes <= 0:
        parser.error("need --sites >= 1 and --minutes > 0")
    if args.window + 2 * EVALUATE_EVERY >= (CYCLE - 2) * args.file_every:
        parser.error("--window must end well before a site's next lost link: raise --file-every")
    return soak(args)


if __name__ == "__main__":
    sys.exit(main())
