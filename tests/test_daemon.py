"""The real daemon process: first poll at start, alert once, SIGTERM, restart, rule reload."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.helpers import write_ahrefs, write_rule, write_settings

ROOT = Path(__file__).resolve().parent.parent
RULE = (
    'kind = "threshold"\nmetric = "lost_refdomains"\nwindow = "7d"\nop = ">="\nvalue = 2\n'
    'notify = ["console"]\nsummary = "{site} lost {value} referring domains"\n'
)


class Daemon:
    def __init__(self, settings: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.out = log.with_suffix(".out")
        self.err = log.with_suffix(".err")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon.cli", "-c", str(settings), "run"],
            cwd=ROOT,
            stdout=self.out.open("w"),
            stderr=self.err.open("w"),
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )

    def wait_for(self, text: str, stream: str = "err", timeout: float = 20) -> str:
        path = self.err if stream == "err" else self.out
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            content = path.read_text()
            if text in content:
                return content
            assert self.proc.poll() is None, self.err.read_text()
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not seen in {stream}:\n{path.read_text()}")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def _site(tmp_path: Path) -> Path:
    # A short group_wait: what one poll raises still goes out as one message, soon; and
    # delivery wakes every second (not every 10 s) so the tests do not wait for it.
    settings = write_settings(tmp_path, extra='deliver_every = "1s"\ngroup_wait = "1s"\n')
    write_rule(tmp_path, "refdomain-loss", RULE)
    folder = tmp_path / "exports" / "example.com"
    folder.mkdir(parents=True)
    links = [
        (f"https://www.site{i}.org/p", "https://example.com/", f"anchor {i}", 10 + i)
        for i in range(6)
    ]
    # The daemon evaluates at the real clock, so the exports are dated days before today.
    today = datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0)
    for days_ago, rows in ((6, links), (4, links[3:]), (2, links[3:])):
        stamp = (today - timedelta(days=days_ago)).strftime("%Y-%m-%d_%H-%M-%S")
        write_ahrefs(folder / f"example.com-backlinks_{stamp}.csv", rows)
    return settings


def test_daemon_alerts_once_stops_on_sigterm_and_resumes(tmp_path: Path) -> None:
    settings = _site(tmp_path)
    first = Daemon(settings, tmp_path / "first")
    out = first.wait_for("example.com lost 3 referring domains", stream="out")
    assert out.count("[FIRING warning] example.com: refdomain-loss") == 1
    first.wait_for("linkwatch running")
    log = first.wait_for("3 lost")
    assert log.count(": baseline, 6 rows, 6 seen") == 1
    assert log.count(": complete, 3 rows, 3 seen, 0 new, 3 missing") == 1
    assert first.stop() == 0
    assert "linkwatch stopped" in first.err.read_text()

    # A restart neither re-ingests the exports nor tells the alert again, and a
    # bad rule file dropped in while running keeps the last good rules.
    second = Daemon(settings, tmp_path / "second")
    second.wait_for("linkwatch running: 1 sites, 1 rules")
    shutil.copy(
        settings.parent / "rules.d" / "refdomain-loss.toml", settings.parent / "rules.d" / "zz.toml"
    )
    (settings.parent / "rules.d" / "broken.toml").write_text('kind = "threshold"\n')
    second.proc.send_signal(signal.SIGHUP)
    second.wait_for("configuration not reloaded, the running one stays")
    # The refused reload is told (config_health), the site's alert is not told again.
    out = second.wait_for("[FIRING critical] linkwatch: config_health", stream="out")
    assert "broken.toml" in out
    assert "refdomain-loss" not in out
    assert second.stop() == 0
    assert "taken" not in second.err.read_text()


def test_daemon_speaks_systemd_notify(tmp_path: Path) -> None:
    settings = _site(tmp_path)
    address = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(address))
        sock.settimeout(20)
        daemon = Daemon(
            settings,
            tmp_path / "notify",
            env={"NOTIFY_SOCKET": str(address), "WATCHDOG_USEC": "400000"},
        )
        messages = [sock.recv(4096).decode() for _ in range(4)]
        ready = [m for m in messages if m.startswith("READY=1")]
        assert len(ready) == 1
        assert "STATUS=linkwatch running: 1 sites, 1 rules" in ready[0]
        assert sum(m == "WATCHDOG=1" for m in messages) >= 2
        daemon.proc.send_signal(signal.SIGTERM)
        while not (m := sock.recv(4096).decode()).startswith("STOPPING=1"):
            assert m == "WATCHDOG=1"
        assert daemon.proc.wait(timeout=30) == 0
