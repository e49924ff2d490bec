"""Building settings files, rule files and exports for tests."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

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
    path: Path, links: Iterable[tuple[str, str, str, int]], *, utf16: bool = False
) -> Path:
    """An Ahrefs backlinks export of (url_from, url_to, anchor, domain rating) rows."""
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
            "",
            "2025-01-01 00:00:00",
            "2026-01-01 00:00:00",
            "",
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
