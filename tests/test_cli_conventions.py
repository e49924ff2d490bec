"""CLI conventions (issue 7): --version, -h, -v after the verb, the settings file default,
shell-exportable secret names, `links` columns and formats, and case-insensitive --site."""

from __future__ import annotations

import csv
import importlib.metadata
import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import daemon.settings_core
from daemon.cli import main
from daemon.settings import ConfigError, config_path, load_settings
from tests.helpers import AHREFS_HEADER, write_ahrefs, write_settings

ROOT = Path(__file__).resolve().parent.parent
SITE = "example.com"
SLACK = '[notifiers.seo-slack]\nkind = "slack"\nchannel = "#seo-alerts"\n'
TWO_SITES = (
    '[[sites]]\ndomain = "example.com"\nsources = ["exports"]\n'
    '[[sites]]\ndomain = "other.org"\nrole = "competitor"\nsources = ["exports"]\n'
)


def run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, list(args))
    # A traceback is never an answer: only SystemExit may end a command.
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    return res.exit_code, res.output


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("LINKWATCH_CONFIG", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    level = logging.getLogger().level
    yield
    logging.getLogger().setLevel(level)


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield prefix
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _command_paths(command, (*prefix, name))
        else:
            yield (*prefix, name)


COMMANDS = sorted(_command_paths(main))


# --- --version, -h, -v -------------------------------------------------------------------


def test_version_is_the_installed_package_version() -> None:
    code, out = run("--version")
    assert code == 0
    assert out == f"linkwatch {importlib.metadata.version('linkwatch')}\n"
    # After a verb as well, without needing a settings file.
    for verb in (("status",), ("silence", "list"), ("rules", "check")):
        assert run(*verb, "--version") == (0, out), verb


def test_version_without_an_installed_package_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    code, out = run("--version")
    assert code == 0 and out.startswith("linkwatch unknown (not installed")


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "linkwatch")
def test_h_is_help_and_v_is_accepted_everywhere(path: tuple[str, ...]) -> None:
    code, short = run(*path, "-h")
    assert code == 0 and short.startswith(f"Usage: linkwatch {' '.join(path)}".rstrip())
    assert run(*path, "--help") == (0, short)
    assert "-v, --verbose" in short and "-h, --help" in short


def test_verbose_after_the_verb_turns_on_debug_logging(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    assert run("-c", str(settings), "status")[0] == 0
    assert logging.getLogger().level == logging.INFO
    assert run("-c", str(settings), "status", "-v")[0] == 0
    assert logging.getLogger().level == logging.DEBUG
    assert run("-c", str(settings), "status")[0] == 0
    assert logging.getLogger().level == logging.INFO
    assert run("-c", str(settings), "--verbose", "status")[0] == 0
    assert logging.getLogger().level == logging.DEBUG


# --- the settings file ---------------------------------------------------------------------


@pytest.fixture
def etc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """/etc/linkwatch/settings.toml moved under tmp_path (not created); cwd an empty folder."""
    path = tmp_path / "etc" / "linkwatch" / "settings.toml"
    monkeypatch.setattr(daemon.settings_core, "ETC_CONFIG", path)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return path


def test_settings_file_order(etc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    etc.parent.mkdir(parents=True)
    etc.write_text("")
    assert config_path(None) == etc
    Path("settings.toml").write_text("")
    assert config_path(None) == Path("settings.toml")
    monkeypatch.setenv("LINKWATCH_CONFIG", "env.toml")
    assert config_path(None) == Path("env.toml")
    assert config_path("given.toml") == Path("given.toml")


def test_the_etc_settings_file_is_read_when_there_is_no_local_one(etc: Path) -> None:
    etc.parent.mkdir(parents=True)
    write_settings(etc.parent)
    code, out = run("status")
    assert code == 0 and "example.com (own)" in out


@pytest.mark.parametrize("verb", [("status",), ("check",), ("rules", "check"), ("doctor",)])
def test_no_settings_file_anywhere_exits_2_naming_the_paths(
    etc: Path, verb: tuple[str, ...]
) -> None:
    code, out = run(*verb)
    assert code == 2
    assert out.startswith("linkwatch: no settings file")
    assert "./settings.toml" in out and str(etc) in out and "$LINKWATCH_CONFIG" in out
    assert "cp settings.example.toml settings.toml" in out


# --- secrets from the environment and systemd credentials ----------------------------------


def test_a_shell_exportable_name_sets_a_hyphenated_notifier(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = write_settings(tmp_path, notifiers=SLACK)
    (tmp_path / "exports" / SITE).mkdir(parents=True)
    with pytest.raises(ConfigError, match="LINKWATCH_NOTIFIERS__seo_slack__TOKEN"):
        load_settings(settings)
    monkeypatch.setenv("LINKWATCH_NOTIFIERS__SEO_SLACK__TOKEN", "xoxb-from-shell")
    token = load_settings(settings).notifiers["seo-slack"].token  # type: ignore[union-attr]
    assert token.get_secret_value() == "xoxb-from-shell"
    # `check` sees it too, so it no longer notes the secret as missing.
    code, out = run("-c", str(settings), "check")
    assert code == 0 and "not set here" not in out


def test_without_secrets_the_environment_still_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = write_settings(tmp_path, notifiers=SLACK)
    loose = load_settings(settings, require_secrets=False)
    assert loose.notifiers["seo-slack"].token.get_secret_value() != "x"  # type: ignore[union-attr]
    monkeypatch.setenv("linkwatch_notifiers__Seo-Slack__token", "x")
    loose = load_settings(settings, require_secrets=False)
    assert loose.notifiers["seo-slack"].token.get_secret_value() == "x"  # type: ignore[union-attr]


def test_source_names_are_matched_the_same_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = write_settings(tmp_path)
    text = settings.read_text().replace("exports", "Seo-Exports")
    settings.write_text(text.replace('path = "Seo-Exports/', 'path = "exports/'))
    monkeypatch.setenv("LINKWATCH_SOURCES__SEO_EXPORTS__CONFIRM_AFTER", "7")
    assert load_settings(settings).sources["Seo-Exports"].confirm_after == 7


def test_credentials_are_matched_like_environment_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = write_settings(tmp_path, notifiers=SLACK)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "notifiers__SEO_SLACK__token").write_text("xoxb-credential\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    token = load_settings(settings).notifiers["seo-slack"].token  # type: ignore[union-attr]
    assert token.get_secret_value() == "xoxb-credential"
    (creds / "notifiers__seo-slak__token").write_text("typo\n")
    with pytest.raises(ConfigError, match=r"notifiers__seo-slak__.*no notifier 'seo-slak'"):
        load_settings(settings)


def test_an_unknown_name_in_the_environment_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = write_settings(tmp_path, notifiers=SLACK)
    monkeypatch.setenv("LINKWATCH_NOTIFIERS__SEO_SLAK__TOKEN", "x")
    code, out = run("-c", str(settings), "status")
    assert code == 2
    assert out == (
        "linkwatch: environment variable LINKWATCH_NOTIFIERS__SEO_SLAK__…: no notifier "
        "'seo_slak' in the settings file (its notifiers: seo-slack)\n"
    )


def test_names_alike_to_the_environment_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    twin = SLACK + '[notifiers.SEO_slack]\nkind = "console"\n'
    settings = write_settings(tmp_path, notifiers=twin)
    code, out = run("-c", str(settings), "check")
    assert code == 2
    assert f"{settings}: notifiers: 'seo-slack' and 'SEO_slack' are one name" in out
    monkeypatch.setenv("LINKWATCH_NOTIFIERS__SEO_SLACK__TOKEN", "x")
    with pytest.raises(ConfigError, match=r"could be notifiers 'seo-slack' or 'SEO_slack'"):
        load_settings(settings)


# --- links ---------------------------------------------------------------------------------

HOSTILE = 'comma, "quotes"\nnew line \x1b[31mred\x1b[0m é'


def _flags_export(path: Path, rows: list[tuple[str, str, str, str, str]]) -> Path:
    """An Ahrefs export of (url_from, anchor, nofollow, ugc, sponsored) rows."""
    with path.open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(AHREFS_HEADER)
        for i, (src, anchor, nofollow, ugc, sponsored) in enumerate(rows):
            page = [f"P{i}", src, "en", "55", f"https://{SITE}/", anchor]
            flags = [nofollow, ugc, sponsored]
            out.writerow([*page, *flags, "", "2025-01-01 00:00:00", "2026-01-01 00:00:00", ""])
    return path


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    """A site with a live dofollow link, a live nofollow+ugc one with hostile anchor text,
    and one missing since the second snapshot."""
    settings = write_settings(tmp_path)
    first = [
        ("https://a.example.org/p", "plain", "false", "false", "false"),
        ("https://b.example.org/p", HOSTILE, "true", "true", "false"),
        ("https://c.example.org/p", "gone", "false", "false", "true"),
    ]
    _flags_export(tmp_path / "1.csv", first)
    _flags_export(tmp_path / "2.csv", first[:2])
    for name, day in (("1.csv", "2026-02-01"), ("2.csv", "2026-02-03T12:00:00Z")):
        file = str(tmp_path / name)
        code, out = run("-c", str(settings), "import", "--site", SITE, "--taken-at", day, file)
        assert code == 0, out
    return settings


def test_links_table_has_a_header_and_every_column(
    ledger: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ledger.parent)
    code, out = run("-c", str(ledger), "links", "--site", SITE)
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == [
        "STATE", "DR", "METRIC", "TOX", "FIRST", "SEEN", "LAST", "SEEN", "REL", "URL_FROM",
        "URL_TO", "ANCHOR", "LOST", "REASON", "SEEN", "BY",
    ]  # fmt: skip
    assert len(rows) == 3
    by_page = {next(w for w in r.split() if w.startswith("https://")): r for r in rows}
    # The export gives no toxicity: its column is blank. The series still lists the link (*).
    assert by_page["https://a.example.org/p"].split() == [
        "live", "55", "Ahrefs", "DR", "2026-02-01", "00:00", "2026-02-03", "12:00", "dofollow",
        "https://a.example.org/p", "https://example.com/", "plain",
        "exports/ahrefs", "2026-02-01..2026-02-03*",
    ]  # fmt: skip
    # Gone since the second snapshot: last listed by the first.
    assert by_page["https://c.example.org/p"].split() == [
        "missing", "55", "Ahrefs", "DR", "2026-02-01", "00:00", "2026-02-01", "00:00",
        "sponsored", "https://c.example.org/p", "https://example.com/", "gone",
        "exports/ahrefs", "2026-02-01..2026-02-01",
    ]  # fmt: skip
    hostile = by_page["https://b.example.org/p"]
    assert "nofollow ugc" in hostile
    # Control characters from an export are shown escaped, never sent to the terminal.
    assert "\x1b" not in out and "\\x1b[31mred" in hostile and "\\nnew line" in hostile
    # Columns line up: every row's URL_FROM starts where the header's does.
    assert {r.index("https://") for r in rows} == {header.index("URL_FROM")}


def test_links_json_has_exactly_the_documented_keys(ledger: Path) -> None:
    code, out = run("-c", str(ledger), "links", "--site", SITE, "--format", "json")
    assert code == 0
    rows = {r["url_from"]: r for r in map(json.loads, out.splitlines())}
    assert rows["https://b.example.org/p"] == {
        "url_from": "https://b.example.org/p",
        "url_to": "https://example.com/",
        "anchor": HOSTILE,
        "state": "live",
        "lost_reason": None,
        "domain_rating": 55.0,
        "first_seen": "2026-02-01T00:00:00+00:00",
        "last_seen": "2026-02-03T12:00:00+00:00",
        "sources": ["exports"],
        "rating_metric": "Ahrefs DR",
        "toxicity": None,
        # Each series that listed the link, and what it said of it last.
        "sightings": [
            {
                "series": "exports/ahrefs",
                "coverage": "complete",
                "first_seen": "2026-02-01T00:00:00+00:00",
                "last_seen": "2026-02-03T12:00:00+00:00",
                "seeing": True,
                "domain_rating": 55.0,
                "rating_metric": "Ahrefs DR",
                "toxicity": None,
            }
        ],
    }
    gone = rows["https://c.example.org/p"]
    assert (gone["state"], gone["sources"], gone["last_seen"]) == (
        "missing",
        [],
        "2026-02-01T00:00:00+00:00",
    )
    [seen] = gone["sightings"]
    assert (seen["seeing"], seen["last_seen"]) == (False, "2026-02-01T00:00:00+00:00")
    # The old flag stays as an alias.
    assert run("-c", str(ledger), "links", "--site", SITE, "--json") == (0, out)


def test_links_csv_round_trips_third_party_text(ledger: Path) -> None:
    code, out = run("-c", str(ledger), "links", "--site", SITE, "--format", "csv")
    assert code == 0
    header, *rows = list(csv.reader(io.StringIO(out, newline="")))
    # Columns added later come last: a script reading by position keeps working.
    assert header == [
        "state", "domain_rating", "first_seen", "last_seen", "rel",
        "url_from", "url_to", "anchor", "lost_reason", "sources",
        "rating_metric", "toxicity", "seen_by",
    ]  # fmt: skip
    records = {r[5]: dict(zip(header, r, strict=True)) for r in rows}
    hostile = records["https://b.example.org/p"]
    assert hostile["anchor"] == HOSTILE and hostile["rel"] == "nofollow ugc"
    assert hostile["sources"] == "exports" and records["https://c.example.org/p"]["sources"] == ""
    assert (hostile["rating_metric"], hostile["toxicity"]) == ("Ahrefs DR", "")
    assert hostile["seen_by"] == (
        "exports/ahrefs 2026-02-01T00:00:00+00:00..2026-02-03T12:00:00+00:00*"
    )


def test_links_json_and_another_format_are_refused(ledger: Path) -> None:
    code, out = run("-c", str(ledger), "links", "--site", SITE, "--json", "--format", "csv")
    assert code == 2 and out.startswith("linkwatch: --json and --format csv disagree")


@pytest.mark.parametrize("output", ["table", "csv", "json"])
def test_links_into_head_exits_0_quietly(tmp_path: Path, output: str) -> None:
    settings = write_settings(tmp_path)
    many = [
        (f"https://r{i}.example.org/{'p' * 80}", f"https://{SITE}/", "a", 1) for i in range(3000)
    ]
    write_ahrefs(tmp_path / "many.csv", many)
    assert run("-c", str(settings), "import", "--site", SITE, str(tmp_path / "many.csv"))[0] == 0
    command = [sys.executable, "-m", "daemon.cli", "-c", str(settings), "links"]
    producer = subprocess.Popen(
        [*command, "--site", SITE, "--format", output],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert producer.stdout is not None and producer.stderr is not None
    head = subprocess.run(["head", "-1"], stdin=producer.stdout, capture_output=True, check=True)
    producer.stdout.close()  # only head holds the read end: its exit breaks the pipe
    stderr = producer.stderr.read().decode()
    assert producer.wait(timeout=60) == 0, stderr
    assert stderr == ""
    assert len(head.stdout.splitlines()) == 1


# --- --site --------------------------------------------------------------------------------


def _two_sites(tmp_path: Path) -> tuple[Path, Path]:
    settings = write_settings(tmp_path, sites=TWO_SITES)
    for site in ("example.com", "other.org"):
        (tmp_path / "exports" / site).mkdir(parents=True)
    export = write_ahrefs(
        tmp_path / "e.csv", [("https://r.example.org/", f"https://{SITE}/", "a", 1)]
    )
    return settings, export


def _site_commands(export: Path, site: str) -> list[list[str]]:
    return [
        ["poll", "--site", site],
        ["import", "--site", site, "--taken-at", "2026-02-01", str(export)],
        ["metrics", "--site", site],
        ["links", "--site", site],
    ]


@pytest.mark.parametrize("index", range(4), ids=["poll", "import", "metrics", "links"])
def test_site_is_case_insensitive(tmp_path: Path, index: int) -> None:
    settings, export = _two_sites(tmp_path)
    code, out = run("-c", str(settings), *_site_commands(export, "Example.COM")[index])
    assert code == 0, out
    if index == 2:
        assert out.startswith("example.com: window")


@pytest.mark.parametrize("index", range(4), ids=["poll", "import", "metrics", "links"])
def test_an_unknown_site_exits_2_listing_the_sites(tmp_path: Path, index: int) -> None:
    settings, export = _two_sites(tmp_path)
    code, out = run("-c", str(settings), *_site_commands(export, "nope.net")[index])
    assert (code, out) == (
        2,
        "linkwatch: --site: 'nope.net' is not a site (sites: example.com, other.org)\n",
    )
