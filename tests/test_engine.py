"""Alert state machine: told once on firing, resolution per send_resolved, no data is not zero."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from alerts.engine import evaluate
from alerts.rules import Rule, load_rules
from daemon.settings import load_settings
from daemon.store import GuardSettings, Store
from sources.exports import ExportFile
from tests.helpers import write_ahrefs, write_rule, write_settings

T = datetime(2026, 4, 1, tzinfo=UTC)
LINKS = [(f"https://www.ref{i}.org/p", "https://example.com/", f"a{i}", 10 * i) for i in range(4)]
SITES = (
    '[[sites]]\ndomain = "example.com"\nsources = ["exports"]\n'
    '[[sites]]\ndomain = "quiet.example.net"\nsources = ["exports"]\n'
)


def _setup(tmp_path: Path, send_resolved: bool) -> tuple[Store, list[Rule], list[str]]:
    settings = load_settings(write_settings(tmp_path, sites=SITES))
    write_rule(
        tmp_path,
        "loss",
        'kind = "threshold"\nmetric = "lost_links"\nwindow = "3d"\nop = ">="\nvalue = 2\n'
        f'notify = ["console"]\nsend_resolved = {str(send_resolved).lower()}\n',
    )
    store = Store(settings.storage.path)
    for s in settings.sites:
        store.ensure_site(s.domain, s.role)
    for day, rows in ((0, LINKS), (1, LINKS[2:]), (2, LINKS[2:])):
        path = write_ahrefs(tmp_path / f"e{day}.csv", rows)
        at = T + timedelta(days=day)
        store.ingest(
            "example.com",
            "exports",
            ExportFile(path, "example.com").snapshot(at),
            GuardSettings(),
            at,
        )
    return store, load_rules(settings), settings.own_sites()


def _queued(store: Store) -> list[tuple[str, str]]:
    return [(r["transition"], r["notifier"]) for r in reversed(store.outbox())]


def test_fires_once_and_resolution_follows_send_resolved(tmp_path: Path) -> None:
    for send_resolved in (True, False):
        folder = tmp_path / str(send_resolved)
        folder.mkdir()
        store, rules, own = _setup(folder, send_resolved)
        fired = evaluate(store, rules, own, T + timedelta(days=2, hours=1))
        # The quiet site has no snapshot: no data, no alert, nothing stored for it.
        assert [(t.site, t.state, t.value) for t in fired] == [("example.com", "firing", 2.0)]
        assert evaluate(store, rules, own, T + timedelta(days=2, hours=2)) == []
        resolved = evaluate(store, rules, own, T + timedelta(days=6))
        assert [(t.site, t.state) for t in resolved] == [("example.com", "resolved")]
        expected = [("firing", "console")] + ([("resolved", "console")] if send_resolved else [])
        assert _queued(store) == expected
        # Staying resolved tells nothing more.
        assert evaluate(store, rules, own, T + timedelta(days=6, hours=1)) == []
        store.close()
