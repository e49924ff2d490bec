"""API poll benchmark: a DataForSEO poll into the ledger against a bare paging loop.

Serves DataForSEO's documented `POST v3/backlinks/backlinks/live` answer (the fields of
`tests/fixtures/api/dataforseo_backlinks_live_response.json`'s items) for a deterministic
profile of N links from a loopback HTTP server in its own process (so it shares no GIL
with the client). Items are made on the fly, page by page; pages are read by `offset` up
to 20,000 and by `search_after_token` (honoured only with every other parameter
unchanged), as documented. Then, in one run, each in a child process so its peak RSS is
its own:

* the baseline: a bare paging loop with the same HTTP client (`requests.Session`, pages
  of 1000, Basic auth): POST each page, decode the JSON (`response.json()`), follow offset
  / token to the end; then, for reference only, the same loop decoding with msgspec, as
  the adapter does;
* the full poll: `Linkwatch.poll_source` on a fresh database, through a `dataforseo`
  source pointing at the server (the fetch and the ingest into the ledger): the baseline
  snapshot of N links, then (unless --no-churn) a churn snapshot as a second poll;
* rows/s of each, the ratio full / bare (target >= 0.50) and the peak RSS of the polls
  (target <= 300 MB); for reference, the ratio's ceiling: the faster loop's paging plus
  the ledger's write, which starts only after the last page.

Usage: python bench/api_bench.py [--links N] [--latency S] [--no-churn] [--profile] [--keep]
       [--workdir DIR]
This is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from array import array
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# The ingest benchmark's hash and vocabulary (this script's folder is on sys.path).
from ingest_bench import LANGS, SECTIONS, mix

REPO = Path(__file__).resolve().parent.parent
SITE = "example.com"
SOURCE = "api"
LOGIN = "bench@example.com"
PASSWORD = "bench-password"
PATH = "/v3/backlinks/backlinks/live"
SEED = 20260110
POLL_AT = datetime(2026, 1, 10, 6, 0, tzinfo=UTC)

PAGE_SIZE = 1000  # the documented maximum `limit`, the adapter's default page
MAX_OFFSET = 20_000  # the documented maximum `offset`; later pages follow the token
TARGET_RATIO = 0.50
TARGET_RSS_MB = 300.0
# Other processes' CPU load (cores) during a measurement above which the run is called noisy.
NOISY = 0.15

# Churn snapshot: drop 0.5% of the links, add 0.5% new ones, change 0.05% of the anchors.
DROP_EVERY = 200
ADD_SHARE = 200
CHANGE_EVERY = 2000
N_TARGETS = 500


# --- the profile and its items ---------------------------------------------------------


def _j(text: str) -> str:
    """`text` as the inside of a JSON string (raw UTF-8, as the API sends it)."""
    return json.dumps(text, ensure_ascii=False)[1:-1]


ANCHORS = [_j(a) for a in [
    "example", "Example.com home", "backlink monitoring", "click here", "this article",
    "read more", "the best link tracker", "SEO tools, compared", 'the "honest" review',
    "Café & Bistro guide", "link velocity explained", "https://example.com/",
    "learn more about backlinks", "source", "here", "example — official site",
    "negative SEO", "how we track lost links", "Übersicht der Backlinks", "widgets",
]]  # fmt: skip
TITLES = [_j(t) for t in [
    "How to audit your backlinks", "Top 10 SEO tools", "Weekly link roundup",
    "Café reviews, Vol. 2", "Why link velocity matters", 'A guide to "rel" attributes',
    "Notes on site migrations", "Marketing \u2013 the basics", "Resources", "Our partners",
]]  # fmt: skip
TEXT_PRE = [_j(t) for t in ["As shown by", "We recommend", "According to", "See also:", ""]]
TEXT_POST = [_j(t) for t in ["for details.", "(2024).", "— worth a read.", "and more.", ""]]
TLDS = ["com", "com", "com", "org", "net", "io", "de", "co.uk"]
COUNTRIES = ["US", "US", "GB", "DE", "FR", "ES", "IT", "NL", "CA", "AU"]
PLATFORMS = ['["cms","blogs"]', '["news"]', '["ecommerce"]', '["unknown"]', '["forum"]']
LOCATIONS = ["article", "article", "article", "footer", "aside", "header", "section"]
# (attributes, dofollow) as the API renders them: most links are plain follow links.
ATTRIBUTES = [("null", "true")] * 10 + [
    ('["nofollow"]', "false"),
    ('["nofollow"]', "false"),
    ('["ugc"]', "false"),
    ('["sponsored"]', "false"),
    ('["noopener","noreferrer"]', "true"),
    ('["nofollow","noopener"]', "false"),
]
DAY0 = datetime(2018, 6, 1, tzinfo=UTC)
# first_seen grows with the link's place in the profile (the source asks for it ascending).
SPAN_S = 2400 * 86400
PREV_SEEN = "2025-12-20 08:00:00 +00:00"
LAST_SEEN = "2026-01-09 22:10:03 +00:00"

ITEM = (
    '{"type":"backlink","domain_from":"%s","url_from":"%s","url_from_https":%s,'
    '"domain_to":"example.com","url_to":"%s","url_to_https":true,"tld_from":"%s",'
    '"is_new":%s,"is_lost":false,"backlink_spam_score":%d,"rank":%d,"page_from_rank":%d,'
    '"domain_from_rank":%d,"domain_from_platform_type":%s,"domain_from_is_ip":false,'
    '"domain_from_ip":"%s","domain_from_country":"%s","page_from_external_links":%d,'
    '"page_from_internal_links":%d,"page_from_size":%d,"page_from_encoding":"utf-8",'
    '"page_from_language":"%s","page_from_title":"%s #%d","page_from_status_code":200,'
    '"first_seen":"%s","prev_seen":"' + PREV_SEEN + '","last_seen":"' + LAST_SEEN + '",'
    '"item_type":"%s","attributes":%s,"dofollow":%s,"original":%s,"alt":%s,"image_url":%s,'
    '"anchor":"%s","text_pre":"%s","text_post":"%s","semantic_location":"%s",'
    '"links_count":1,"group_count":0,"is_broken":false,"url_to_status_code":200,'
    '"url_to_spam_score":0,"url_to_redirect_target":null,"ranked_keywords_info":null,'
    '"is_indirect_link":false,"indirect_link_path":null}'
)


class Profile:
    """The links the server lists, in order: snapshot 0 is links 0..N-1; snapshot 1 drops
    every link whose hash says so, adds N/200 new ones at the end (they are the newest by
    first_seen) and changes the anchor of a few."""

    def __init__(self, n_links: int, snapshot: int = 0) -> None:
        self.n_links = n_links
        self.snapshot = snapshot
        self.n_domains = max(1, n_links * 3 // 10)
        self.step = SPAN_S / max(1, n_links)
        self.days = [(DAY0 + timedelta(days=d)).strftime("%Y-%m-%d") for d in range(3000)]
        self.added = self.dropped = self.changed = 0
        self.order: Sequence[int]
        if snapshot == 0:
            self.order = range(n_links)
        else:
            kept = array("I", (i for i in range(n_links) if not self.is_dropped(i)))
            self.dropped = n_links - len(kept)
            self.added = max(1, n_links // ADD_SHARE)
            kept.extend(range(n_links, n_links + self.added))
            self.order = kept
            self.changed = sum(
                1 for i in range(n_links) if not self.is_dropped(i) and self.anchor_changed(i)
            )

    def is_dropped(self, link: int) -> bool:
        return self.snapshot > 0 and link < self.n_links and mix(link ^ 0x5A5A) % DROP_EVERY == 0

    def anchor_changed(self, link: int) -> bool:
        """True if the link's anchor differs in this snapshot (never an image link's)."""
        return (
            self.snapshot > 0
            and link < self.n_links
            and mix(link ^ 0xC3C3) % CHANGE_EVERY == 0
            and (mix(SEED * 1_000_003 + link) >> 44) % 25 != 0
        )

    def item(self, link: int) -> str:
        """One item of the answer, as the API renders it (compact JSON)."""
        h = mix(SEED * 1_000_003 + link)
        g = mix(h)
        dom = h % self.n_domains
        dh = mix(dom + 17)
        tld = TLDS[dh % 8]
        sub = (g >> 2) % 4
        host = (
            f"site{dom}.{tld}" if sub == 0 else f"www.site{dom}.{tld}" if sub < 3 else
            f"blog.site{dom}.{tld}"
        )  # fmt: skip
        https = g % 11 != 0
        url_from = (
            f"{'https' if https else 'http'}://{host}/{SECTIONS[(g >> 8) % 7]}/{link}-"
            f"{(g >> 12) % 9973}"
        )
        if g % 7 == 0:
            url_from += f"?ref=r{(g >> 16) % 100}"
        target = min((h >> 20) % N_TARGETS, (h >> 32) % N_TARGETS)
        url_to = "https://example.com/" if target == 0 else f"https://example.com/page/{target}"
        image = (h >> 44) % 25 == 0
        if image:
            anchor = ""
            alt = '"Example logo"'
            image_url = f'"https://{host}/img/{link}.png"'
        else:
            version = 1 if self.anchor_changed(link) else 0
            anchor = ANCHORS[((h >> 40) + version) % len(ANCHORS)]
            alt = image_url = "null"
        attributes, dofollow = ATTRIBUTES[(g >> 24) % len(ATTRIBUTES)]
        secs = int(link * self.step) + (g >> 40) % 60
        day, rest = divmod(secs, 86400)
        first_seen = (
            f"{self.days[day]} {rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d} +00:00"
        )
        return ITEM % (
            host,
            url_from,
            "true" if https else "false",
            url_to,
            tld,
            "true" if link >= self.n_links else "false",
            (g >> 28) % 101,
            (h >> 8) % 101,
            (g >> 32) % 101,
            dh % 101,
            PLATFORMS[(dh >> 8) % len(PLATFORMS)],
            f"{(dh >> 16) % 223 + 1}.{(dh >> 24) % 256}.{(dh >> 32) % 256}.{dom % 254 + 1}",
            COUNTRIES[(dh >> 40) % len(COUNTRIES)],
            (g >> 44) % 400,
            (g >> 50) % 900,
            20_000 + (h >> 48) % 200_000,
            LANGS[(dh >> 48) % len(LANGS)],
            TITLES[(g >> 4) % len(TITLES)],
            link,
            first_seen,
            "image" if image else "anchor",
            attributes,
            dofollow,
            "true" if (h >> 56) % 3 else "false",
            alt,
            image_url,
            anchor,
            TEXT_PRE[(g >> 54) % len(TEXT_PRE)],
            TEXT_POST[(g >> 57) % len(TEXT_POST)],
            LOCATIONS[(g >> 60) % len(LOCATIONS)],
        )

    def items(self, start: int, limit: int) -> tuple[bytes, int]:
        """The JSON array of the items at positions start..start+limit, and their count."""
        ids = self.order[start : start + limit]
        item = self.item
        return ("[" + ",".join([item(i) for i in ids]) + "]").encode(), len(ids)


def _signature(task: dict[str, Any]) -> int:
    """What must not change while paging by token: every parameter but the position."""
    rest = {k: v for k, v in task.items() if k not in ("offset", "search_after_token")}
    return zlib.crc32(json.dumps(rest, sort_keys=True).encode())


def _token(position: int, snapshot: int, signature: int) -> str:
    # Opaque to the client; shaped like the documented token ({"after": [...]}).
    raw = json.dumps({"after": [position, snapshot, signature]}, separators=(",", ":"))
    return base64.b64encode(raw.encode()).decode()


def _untoken(token: str) -> tuple[int, int, int] | None:
    try:
        after = json.loads(base64.b64decode(token))["after"]
        return int(after[0]), int(after[1]), int(after[2])
    except (ValueError, TypeError, LookupError):
        return None


# --- the server ------------------------------------------------------------------------


class BenchServer(ThreadingHTTPServer):
    """Serves one profile. After answering a page it renders the next one, while the client
    reads and decodes: a sequential poll then waits for the network, not for the generator
    (rendering only after the answer is sent keeps it from holding the GIL the send needs).
    """

    daemon_threads = True

    def __init__(self, n_links: int, latency: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.n_links = n_links
        # Seconds each data call takes before its answer starts (the API's own work).
        self.latency = latency
        self.profile = Profile(n_links)
        expected = base64.b64encode(f"{LOGIN}:{PASSWORD}".encode()).decode()
        self.auth = f"Basic {expected}"
        self.lock = threading.Lock()
        # The one page rendered ahead: (snapshot, start, limit) -> (items, count).
        self.ahead: tuple[tuple[int, int, int], tuple[bytes, int]] | None = None
        self.pages = self.bytes_sent = self.ahead_hits = 0

    def page(self, profile: Profile, start: int, limit: int) -> tuple[bytes, int]:
        """The items at start..start+limit: the page rendered ahead if it is that one."""
        key = (profile.snapshot, start, limit)
        with self.lock:
            ahead, self.ahead = self.ahead, None
        if ahead is not None and ahead[0] == key:
            self.ahead_hits += 1
            return ahead[1]
        return profile.items(start, limit)

    def render_ahead(self, profile: Profile, start: int, limit: int) -> None:
        """Render the page a sequential reader asks for next (at most one page is held)."""
        if start < len(profile.order):
            rendered = profile.items(start, limit)
            with self.lock:
                self.ahead = ((profile.snapshot, start, limit), rendered)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: BenchServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        # As API front ends do: no Nagle delay on the last segment of an answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(self, body: bytes, status: int = 200) -> None:
        # Status line, headers and body in one write.
        head = (
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
            f"Date: {self.date_time_string()}\r\n"
            "Content-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.wfile.write(head.encode("ascii") + body)
        self.server.bytes_sent += len(body)

    def _status(self, code: int, message: str, http: int = 200) -> None:
        body = {"version": "0.1.20251208", "status_code": code, "status_message": message}
        self._send(json.dumps(body).encode(), http)

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        srv = self.server
        if self.path == "/_bench/snapshot":
            srv.profile = Profile(srv.n_links, int(json.loads(raw)["snapshot"]))
            p = srv.profile
            counts = {"links": len(p.order), "added": p.added, "dropped": p.dropped}
            self._send(json.dumps({**counts, "changed": p.changed}).encode())
            return
        if self.path == "/_bench/stats":
            ru = resource.getrusage(resource.RUSAGE_SELF)
            stats = {"pages": srv.pages, "bytes": srv.bytes_sent, "ahead_hits": srv.ahead_hits}
            self._send(json.dumps({**stats, "cpu_s": ru.ru_utime + ru.ru_stime}).encode())
            return
        if self.path != PATH:
            self._status(40400, "Not Found.", 404)
            return
        if self.headers.get("Authorization") != srv.auth:
            self._status(40100, "You are not authorized to access this resource.", 401)
            return
        try:
            tasks = json.loads(raw)
            task = tasks[0]
        except (ValueError, LookupError, TypeError):
            self._status(40000, "Invalid JSON in the POST body.")
            return
        if task.get("target") != SITE or task.get("mode") != "as_is":
            self._status(40501, "Invalid Field: 'target'.")
            return
        limit = int(task.get("limit", 100))
        if not 1 <= limit <= PAGE_SIZE:
            self._status(40501, "Invalid Field: 'limit'.")
            return
        profile = srv.profile
        token = task.get("search_after_token")
        signature = _signature(task)
        if token is not None:
            # The token says where to go on from; every other parameter must be the same as
            # in the request that gave it (an `offset` that stays the same is ignored).
            after = _untoken(str(token))
            if after is None or after[1:] != (profile.snapshot, signature):
                self._status(40501, "Invalid Field: 'search_after_token'.")
                return
            start = after[0]
        else:
            start = int(task.get("offset", 0))
            if not 0 <= start <= MAX_OFFSET:
                self._status(40501, "Invalid Field: 'offset'.")
                return
        items, count = srv.page(profile, start, limit)
        srv.pages += 1
        cost = round(0.02 + 0.00003 * count, 5)
        data = {"api": "backlinks", "function": "backlinks", **task}
        result = (
            f'{{"target":"{SITE}","mode":"as_is","custom_mode":null,'
            f'"total_count":{len(profile.order)},"items_count":{count},'
            f'"search_after_token":"{_token(start + count, profile.snapshot, signature)}","items":'
        ).encode()
        head = (
            '{"version":"0.1.20251208","status_code":20000,"status_message":"Ok.",'
            f'"time":"0.0500 sec.","cost":{cost},"tasks_count":1,"tasks_error":0,"tasks":[{{'
            '"id":"01101234-0000-0000-0000-000000000000","status_code":20000,'
            f'"status_message":"Ok.","time":"0.0450 sec.","cost":{cost},"result_count":1,'
            '"path":["v3","backlinks","backlinks","live"],'
            f'"data":{json.dumps(data, separators=(",", ":"))},"result":['
        ).encode()
        if srv.latency:
            time.sleep(srv.latency)
        self._send(b"".join((head, result, items, b"}]}]}")))
        if count == limit:
            srv.render_ahead(profile, start + count, limit)


def serve(n_links: int, latency: float) -> None:
    """Run the server until killed; its port goes to stdout first."""
    server = BenchServer(n_links, latency)
    print(server.server_address[1], flush=True)
    server.serve_forever(poll_interval=0.5)


def _control(base_url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(
        base_url + path.lstrip("/"), data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(req, timeout=600) as resp:
        answer: dict[str, Any] = json.loads(resp.read())
    return answer


# --- the measured children -------------------------------------------------------------


def child_bare(base_url: str, decoder: str) -> None:
    """The baseline: page through the profile with a bare requests.Session, nothing else
    (decoding each answer with `response.json()`, or with msgspec as the adapter does)."""
    import msgspec
    import requests

    session = requests.Session()
    url = base_url + PATH.lstrip("/")
    task_base: dict[str, Any] = {
        "target": SITE,
        "mode": "as_is",
        "backlinks_status_type": "live",
        "include_subdomains": True,
        "exclude_internal_backlinks": True,
        "rank_scale": "one_hundred",
        "order_by": ["first_seen,asc"],
        "limit": PAGE_SIZE,
    }
    rows = pages = offset = 0
    token: str | None = None
    t0 = time.perf_counter()
    while True:
        task = dict(task_base)
        if token is None:
            task["offset"] = offset
        else:
            task["search_after_token"] = token
        response = session.post(url, json=[task], auth=(LOGIN, PASSWORD), timeout=(10, 120))
        response.raise_for_status()
        body = msgspec.json.decode(response.content) if decoder == "msgspec" else response.json()
        data = body["tasks"][0]["result"][0]
        items = data["items"]
        pages += 1
        rows += len(items)
        offset += len(items)
        if len(items) < PAGE_SIZE or offset >= data["total_count"]:
            break
        if token is not None or offset + PAGE_SIZE > MAX_OFFSET:
            token = data["search_after_token"]
    seconds = time.perf_counter() - t0
    session.close()
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps({"seconds": seconds, "rows": rows, "pages": pages, "maxrss_mb": rss_kb / 1024})
    )


def child_poll(settings_path: Path, at: str, profile: bool) -> None:
    """The full poll: the daemon's own poll of the API source into the ledger."""
    sys.path.insert(0, str(REPO))
    from daemon.service import Linkwatch
    from daemon.settings import load_settings
    from sources.api import ApiSource, Page

    t0 = time.perf_counter()
    app = Linkwatch.open(load_settings(settings_path))
    open_s = time.perf_counter() - t0
    now = datetime.fromisoformat(at)
    # Time spent in the source's page generator (HTTP call, JSON decoding, items to
    # Backlinks): the rest of the poll is the ledger's (staging, then the write).
    src = app.sources[SOURCE]
    assert isinstance(src, ApiSource)
    real_pages = src.pages
    in_source = [0.0]

    def timed_pages(*args: Any, **kwargs: Any) -> Iterator[Page]:
        clock = time.perf_counter
        pages = real_pages(*args, **kwargs)
        while True:
            t = clock()
            page = next(pages, None)
            in_source[0] += clock() - t
            if page is None:
                return
            yield page

    src.pages = timed_pages  # type: ignore[method-assign]
    prof_text = ""
    t0 = time.perf_counter()
    if profile:
        import cProfile
        import io
        import pstats

        prof = cProfile.Profile()
        outcomes = prof.runcall(app.poll_source, SITE, SOURCE, now)
        seconds = time.perf_counter() - t0
        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf)
        stats.sort_stats("cumulative").print_stats(30)
        stats.sort_stats("tottime").print_stats(25)
        prof_text = buf.getvalue()
    else:
        outcomes = app.poll_source(SITE, SOURCE, now)
        seconds = time.perf_counter() - t0
    app.close()
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    (o,) = outcomes
    print(
        json.dumps(
            {
                "seconds": seconds,
                "source_s": in_source[0],
                "open_seconds": open_s,
                "locked_s": o.locked_s,
                "maxrss_mb": rss_kb / 1024,
                "status": o.status,
                "seen": o.seen,
                "new": o.new,
                "missing": o.missing,
                "restored": o.restored,
                "lost": o.lost,
                "changed": o.changed,
                "note": o.note,
                "profile": prof_text,
            }
        )
    )


def _cpu() -> tuple[float, float]:
    """(CPU-seconds the machine has been busy, CPU-seconds of this script and its finished
    children); the busy figure is NaN where /proc/stat is not there."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            ticks = [int(x) for x in fh.readline().split()[1:9]]
        # user nice system idle iowait irq softirq steal: all but idle and iowait.
        busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        busy = float("nan")
    ours = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        ours += ru.ru_utime + ru.ru_stime
    return busy, ours


def _measured(base_url: str, args: list[str]) -> tuple[dict[str, Any], dict[str, Any], float]:
    """A child's report, what the server did meanwhile, and the CPU-seconds other processes
    of the machine used meanwhile (neither this script, its child nor the server)."""
    s0 = _control(base_url, "/_bench/stats", {})
    busy0, ours0 = _cpu()
    report = _run_child(args)
    busy1, ours1 = _cpu()
    s1 = _control(base_url, "/_bench/stats", {})
    served = {k: s1[k] - s0[k] for k in s0}
    others = max(0.0, (busy1 - busy0) - (ours1 - ours0) - served["cpu_s"])
    return report, served, others


def _per_second(cpu_s: float, seconds: float) -> float:
    """CPU-seconds per second; NaN for a measurement too short for /proc/stat's ticks."""
    return cpu_s / seconds if seconds >= 2 else float("nan")


def _load(cores: float) -> str:
    """Other processes' load: busy CPU-seconds per second (1.00 = one core, all the time)."""
    return "n/a" if cores != cores else f"{cores:.2f}"


def _run_child(args: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"child {args[0]} failed (exit {proc.returncode})")
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return report


def write_settings(work: Path, base_url: str) -> Path:
    """A settings file with one site polled by one `dataforseo` source at the server."""
    (work / "rules.d").mkdir(exist_ok=True)
    path = work / "settings.toml"
    path.write_text(
        f'[storage]\npath = "{work / "linkwatch.db"}"\n[daemon]\nrules_dir = "rules.d"\n'
        f'[[sites]]\ndomain = "{SITE}"\nrole = "own"\nsources = ["{SOURCE}"]\n'
        f'[sources.{SOURCE}]\nkind = "dataforseo"\nbase_url = "{base_url}"\n'
        f'login = "{LOGIN}"\npassword = "{PASSWORD}"\npage_size = {PAGE_SIZE}\n'
        # 1000 calls/s at most: far above what one poll makes, so nothing is throttled.
        "requests_per_second = 1000\n"
        '[notifiers.console]\nkind = "console"\n',
        encoding="utf-8",
    )
    return path


# --- the run ---------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench(args: argparse.Namespace) -> int:
    made_temp = args.workdir is None
    work = Path(tempfile.mkdtemp(prefix="linkwatch-apibench-")) if made_temp else Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    db = work / "linkwatch.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    server = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve",
            "--links",
            str(args.links),
            "--latency",
            str(args.latency),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        base_url = f"http://127.0.0.1:{port}/"
        settings = write_settings(work, base_url)
        print(
            f"workdir {work}: {args.links:,} links, server {base_url} (pid {server.pid}),"
            f" {args.latency * 1000:g} ms per data call"
        )

        print("bare paging loop (requests.Session, pages of 1000, JSON decoded) ...", flush=True)
        bare, stats, others = _measured(base_url, ["--child-bare", base_url])
        # For reference only: the same loop decoding with msgspec, as the adapter does.
        fast, _, _ = _measured(base_url, ["--child-bare", base_url, "--decoder", "msgspec"])
        fast_rate = fast["rows"] / fast["seconds"]
        bare_rate = bare["rows"] / bare["seconds"]
        busy = [_per_second(others, bare["seconds"])]
        print(
            f"  {bare['rows']:,} rows in {bare['pages']:,} pages ({stats['bytes'] / 1e6:,.0f} MB"
            f" of JSON): {bare['seconds']:.2f}s, {bare_rate:,.0f} rows/s, peak RSS"
            f" {bare['maxrss_mb']:.1f} MB; server CPU {stats['cpu_s']:.1f}s,"
            f" {stats['ahead_hits']:,} pages rendered ahead; other processes {_load(busy[-1])}",
            flush=True,
        )
        print(
            f"  the same loop decoding with msgspec (as the adapter does; for reference):"
            f" {fast['seconds']:.2f}s, {fast_rate:,.0f} rows/s",
            flush=True,
        )
        if bare["rows"] != args.links:
            print(f"  MISMATCH: expected {args.links:,} rows")

        print("full poll: Linkwatch.poll_source, fetch + ingest (each in a child process) ...")
        hdr = (
            f"  {'poll':>8} {'status':>8} {'seen':>9} {'new':>6} {'missing':>7} {'lost':>5}"
            f" {'changed':>7} {'seconds':>8} {'source s':>8} {'ledger s':>8} {'lock s':>7}"
            f" {'rows/s':>8} {'full/bare':>9} {'rss MB':>7} {'others':>6}"
            "   expected new/missing/changed"
        )
        print(hdr, flush=True)
        polls: list[tuple[str, dict[str, Any]]] = []
        plan = [("baseline", 0)] + ([] if args.no_churn else [("churn", 1)])
        for label, snapshot in plan:
            if snapshot:
                expected = _control(base_url, "/_bench/snapshot", {"snapshot": snapshot})
                expect = f"{expected['added']}/{expected['dropped']}/{expected['changed']}"
            else:
                expected = {"links": args.links}
                expect = "(silent baseline)"
            at = POLL_AT + timedelta(days=snapshot)
            rep, _, others = _measured(
                base_url,
                ["--child-poll", str(settings), at.isoformat()]
                + (["--profile"] if args.profile and snapshot == 0 else []),
            )
            polls.append((label, rep))
            busy.append(_per_second(others, rep["seconds"]))
            rate = rep["seen"] / rep["seconds"]
            got_ok = rep["seen"] == expected["links"] and (
                snapshot == 0
                or (rep["new"], rep["missing"], rep["changed"])
                == (expected["added"], expected["dropped"], expected["changed"])
            )
            if not got_ok:
                expect += "  MISMATCH"
            print(
                f"  {label:>8} {rep['status']:>8} {rep['seen']:>9,} {rep['new']:>6,}"
                f" {rep['missing']:>7,} {rep['lost']:>5,} {rep['changed']:>7,}"
                f" {rep['seconds']:>8.2f} {rep['source_s']:>8.2f}"
                f" {rep['seconds'] - rep['source_s']:>8.2f} {rep['locked_s']:>7.2f}"
                f" {rate:>8,.0f} {rate / bare_rate:>9.2f} {rep['maxrss_mb']:>7.1f}"
                f" {_load(busy[-1]):>6}   {expect}",
                flush=True,
            )
            if rep["note"]:
                print(f"       note: {rep['note']}")
            if rep["profile"]:
                print(rep["profile"])

        full = polls[0][1]
        full_rate = full["seen"] / full["seconds"]
        ratio = full_rate / bare_rate
        peak = max(rep["maxrss_mb"] for _, rep in polls)
        print()
        print("results")
        print(
            f"  bare paging loop: {bare['rows']:,} rows in {bare['seconds']:.2f}s ="
            f" {bare_rate:,.0f} rows/s"
        )
        print(
            f"  full poll (baseline snapshot): {full['seen']:,} rows in {full['seconds']:.2f}s ="
            f" {full_rate:,.0f} rows/s: {full['source_s']:.2f}s in the source (HTTP, JSON,"
            f" items to Backlinks), {full['seconds'] - full['source_s']:.2f}s in the ledger"
            f" (write lock held {full['locked_s']:.2f}s of it)"
        )
        if len(polls) > 1:
            churn = polls[1][1]
            churn_rate = churn["seen"] / churn["seconds"]
            print(
                f"  full poll (churn snapshot): {churn['seen']:,} rows in"
                f" {churn['seconds']:.2f}s = {churn_rate:,.0f} rows/s"
                f" (write lock held {churn['locked_s']:.2f}s): {churn_rate / bare_rate:.2f} of"
                " the bare rate"
            )
        print(
            f"  for reference, against the bare loop decoding with msgspec: baseline"
            f" {full_rate / fast_rate:.2f}"
            + (
                f", churn {polls[1][1]['seen'] / polls[1][1]['seconds'] / fast_rate:.2f}"
                if len(polls) > 1
                else ""
            )
        )
        # The ledger writes once the last page is in (a partial fetch must change nothing,
        # and holding the write lock through a fetch would stall every other writer): no
        # poll can beat the faster loop's paging plus that write.
        fastest = min(bare["seconds"], fast["seconds"])
        ceiling = (full["seen"] / (fastest + full["locked_s"])) / bare_rate
        print(
            f"  for reference, the ratio's ceiling in this run, were reading and staging free:"
            f" the faster loop's {fastest:.2f}s of paging plus the ledger's write"
            f" ({full['locked_s']:.2f}s, after the last page) = {ceiling:.2f}"
        )
        print(
            f"  rows/s ratio (full poll / bare loop): {ratio:.2f}"
            f"  target >= {TARGET_RATIO:.2f}  {verdict(ratio >= TARGET_RATIO)}"
        )
        print(
            f"  peak RSS of the full poll (max of {len(polls)} child processes): {peak:.1f} MB"
            f"  target <= {TARGET_RSS_MB:.0f} MB  {verdict(peak <= TARGET_RSS_MB)}"
        )
        noisiest = max((b for b in busy if b == b), default=0.0)
        if noisiest > NOISY:
            print(
                f"  note: other processes kept up to {_load(noisiest)} of a CPU busy during a"
                " measurement: the figures are noisy, run again on an idle machine"
            )
        return 0 if ratio >= TARGET_RATIO and peak <= TARGET_RSS_MB else 1
    finally:
        server.terminate()
        server.wait(timeout=30)
        if args.keep:
            print(f"kept {work}")
        elif made_temp:
            shutil.rmtree(work, ignore_errors=True)
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(str(db) + suffix).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--links", type=int, default=1_000_000, help="links in the profile")
    parser.add_argument("--no-churn", action="store_true", help="skip the second (churn) poll")
    parser.add_argument("--keep", action="store_true", help="keep the settings and the DB")
    parser.add_argument("--workdir", help="where to put the DB (default: a temp dir)")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the baseline poll and print it"
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds the server takes over each data call (default 0: loopback speed)",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-bare", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--decoder", default="json", help=argparse.SUPPRESS)
    parser.add_argument("--child-poll", nargs=2, metavar=("SETTINGS", "AT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.links, args.latency)
        return 0
    if args.child_bare:
        child_bare(args.child_bare, args.decoder)
        return 0
    if args.child_poll:
        settings, at = args.child_poll
        child_poll(Path(settings), at, args.profile)
        return 0
    if args.links < 2 * PAGE_SIZE:
        parser.error(f"need --links >= {2 * PAGE_SIZE}")
    return bench(args)


if __name__ == "__main__":
    sys.exit(main())
