"""Building settings files, rule files and exports for tests."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from daemon.store import AlertState, Store, Tell

AHREFS_HEADER = [
    "Referring page title",
    "Referring page URL",
    "Language",
    "Domain rating",
    "Target URL",
    "Anchor",
    "Nofollow",
    "UGC",
    "Sponsored",
    "Lost status",
    "First seen",
    "Last seen",
    "Lost",
]


def write_ahrefs(
    path: Path,
    links: Iterable[tuple[str, str, str, int]],
    *,
    utf16: bool = False,
    lost: dict[str, str] | None = None,
) -> Path:
    """An Ahrefs backlinks export of (url_from, url_to, anchor, domain rating) rows;
    `lost` maps referring pages the export marks lost to their `Lost status`."""
    lost = lost or {}
    rows = [AHREFS_HEADER] + [
        [
            f"Page {i}",
            src,
            "en",
            str(dr),
            dst,
            anchor,
            "false",
            "false",
            "false",
            lost.get(src, ""),
            "2025-01-01 00:00:00",
            "2026-01-01 00:00:00",
            "2026-01-20 00:00:00" if src in lost else "",
        ]
        for i, (src, dst, anchor, dr) in enumerate(links)
    ]
    if utf16:
        with path.open("w", encoding="utf-16", newline="") as f:
            csv.writer(f, delimiter="\t", quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerows(
                rows
            )
    else:
        with path.open("w", encoding="utf-8", newline="") as f:
            csv.writer(f, quoting=csv.QUOTE_ALL).writerows(rows)
    return path


def write_settings(
    folder: Path,
    *,
    sites: str = '[[sites]]\ndomain = "example.com"\nrole = "own"\nsources = ["exports"]\n',
    notifiers: str = '[notifiers.console]\nkind = "console"\n',
    extra: str = "",
) -> Path:
    """A settings.toml in `folder` with a csv_dir source over `exports/{domain}`."""
    path = folder / "settings.toml"
    (folder / "rules.d").mkdir(exist_ok=True)
    path.write_text(
        '[storage]\npath = "linkwatch.db"\n[daemon]\nrules_dir = "rules.d"\n'
        + extra
        + sites
        + '[sources.exports]\nkind = "csv_dir"\npath = "exports/{domain}"\nsettle = "0s"\n'
        + notifiers,
        encoding="utf-8",
    )
    return path


def write_rule(folder: Path, name: str, body: str) -> Path:
    """A rule file rules.d/NAME.toml."""
    path = folder / "rules.d" / f"{name}.toml"
    path.write_text(body, encoding="utf-8")
    return path


SEMRUSH_HEADER = (
    "Page ascore,Source title,Source url,Target url,Anchor,External links,Internal links,"
    "Nofollow,Sponsored,Ugc,Text,Frame,Form,Image,Sitewide,First seen,Last seen,New link,"
    "Lost link"
)


def write_semrush(path: Path, links: Iterable[tuple[str, str, str, int]]) -> Path:
    """A Semrush backlinks export of (url_from, url_to, anchor, page ascore) rows."""
    lines = [SEMRUSH_HEADER] + [
        f"{score},Title,{src},{dst},{anchor},10,20,false,false,false,true,false,false,false,"
        "false,2025-01-01,2026-01-01,false,false"
        for src, dst, anchor, score in links
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_gsc(path: Path, pages: Iterable[str]) -> Path:
    """A Search Console "Latest links" export naming referring pages."""
    lines = ["Linking page,Last crawled"] + [f"{page},2026-01-05" for page in pages]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def queue_alert(
    store: Store,
    fingerprint: str,
    site: str,
    notifiers: list[str],
    message: dict[str, Any],
    at: datetime,
    expected: AlertState | None = None,
) -> bool:
    """Persist a firing alert and queue its message to `notifiers`, as the engine does."""
    state = AlertState(
        fingerprint=fingerprint,
        rule=str(message.get("rule", "refdomain-loss")),
        kind="threshold",
        site=site,
        labels=(),
        state="firing",
        value=message.get("value"),
        since_at=at,
        active_at=at,
        fired_at=at,
        held_at=at,
        notified_at=at,
        told="firing",
        evaluated_at=at,
    )
    return store.apply_alert(
        expected, state, [("firing", None)], [Tell(n, message) for n in notifiers], at
    )


def cli_command(settings: Path, *args: str | bytes) -> list[str | bytes]:
    """The argv of a `linkwatch` command run in a process of its own, with `settings`."""
    return [sys.executable, "-m", "daemon.cli", "-c", str(settings), *args]
