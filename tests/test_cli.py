"""The command line: exit codes, clear errors, and nothing stored on bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from daemon.cli import main
from daemon.settings import load_settings
from daemon.store import Store
from tests.helpers import write_ahrefs, write_gsc, write_rule, write_settings

GOOD_RULE = (
    'kind = "threshold"\nmetric = "lost_refdomains"\nwindow = "7d"\nop = ">="\nvalue = 3\n'
    'notify = ["console"]\n'
)
LINKS = [
    (f"https://site{i}.example{i % 3}.org/p{i}", "https://example.com/", f"a{i}", i)
    for i in range(10)
]


def _run(settings: Path, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["-c", str(settings), *args])
    return res.exit_code, res.output


def _status(settings: Path) -> list[dict[str, object]]:
    code, out = _run(settings, "status", "--json")
    assert code == 0, out
    return list(json.loads(out))


def test_unknown_export_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    write_rule(tmp_path, "loss", GOOD_RULE)
    good = write_ahrefs(tmp_path / "good.csv", LINKS)
    odd = tmp_path / "refdomains.csv"
    odd.write_text("Domain ascore,Domain,Backlinks\n58,news.example.io,3\n", encoding="utf-8")
    code, out = _run(settings, "import", "--site", "example.com", str(good), str(odd))
    assert code == 2
    assert "['Domain ascore', 'Domain', 'Backlinks']" in out
    assert "ahrefs" in out and "semrush" in out and "generic" in out
    assert "nothing was stored" in out
    [row] = _status(settings)
    assert row["live_links"] == 0 and row["last_snapshot_at"] is None


def test_import_reports_malformed_rows_with_line_numbers(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    path = tmp_path / "links.csv"
    path.write_text(
        "url_from,url_to,anchor\n"
        "https://a.example.org/1,https://example.com/,one\n"
        "not a url,https://example.com/,two\n"
        "https://b.example.org/2,https://example.com/\n",
        encoding="utf-8",
    )
    code, out = _run(settings, "import", "--site", "example.com", str(path))
    assert code == 1
    assert "partial" in out and "2 malformed rows" in out
    assert "line 3: referring page is not a URL" in out
    assert "line 4: expected 3 fields, got 2" in out
    assert _status(settings)[0]["live_links"] == 0


def test_truncated_exports_never_make_links_lost(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    full = write_ahrefs(tmp_path / "full.csv", LINKS)
    cut = write_ahrefs(tmp_path / "cut.csv", LINKS[:3])
    later = write_ahrefs(tmp_path / "full-later.csv", LINKS)
    steps = [(full, "2026-02-01"), (cut, "2026-02-02"), (cut, "2026-02-03"), (later, "2026-02-04")]
    statuses = []
    for path, day in steps:
        code, out = _run(
            settings, "import", "--site", "example.com", "--taken-at", f"{day}T00:00:00Z", str(path)
        )
        statuses.append((code, out.split(": ")[2].split(",")[0]))
    # A suspect snapshot is stored but reported with exit 1; the same file again, whatever
    # time it is given, is the same observation: a duplicate.
    assert statuses == [(0, "baseline"), (1, "suspect"), (0, "duplicate"), (0, "complete")]
    [row] = _status(settings)
    assert row["live_links"] == 10 and row["lost_links"] == 0 and row["missing_links"] == 0


def test_rules_check_names_file_key_and_problem(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    write_rule(tmp_path, "ok", GOOD_RULE)
    code, out = _run(settings, "rules", "check")
    assert (code, out.strip()) == (0, f"1 rules OK in {tmp_path / 'rules.d'}")

    write_rule(tmp_path, "typo", GOOD_RULE.replace('"lost_refdomains"', '"lost_refdomain"'))
    write_rule(tmp_path, "window", GOOD_RULE.replace('"7d"', '"7 days"'))
    write_rule(tmp_path, "notify", GOOD_RULE.replace('"console"', '"slack"'))
    write_rule(tmp_path, "syntax", "kind = \n")
    write_rule(tmp_path, "spec", GOOD_RULE + 'summary = "{site} lost {value:.0f}"\n')
    code, out = _run(settings, "rules", "check")
    assert code == 2
    lines = out.strip().splitlines()
    rules_dir = tmp_path / "rules.d"
    assert any(
        line.startswith(f"{rules_dir / 'typo.toml'}: metric: Input should be") for line in lines
    )
    assert f"{rules_dir / 'window.toml'}: window: expected a duration like 30s" in out
    assert (
        f"{rules_dir / 'notify.toml'}: notify: unknown notifier 'slack' (settings define: console)"
    ) in out
    assert f"{rules_dir / 'syntax.toml'}: not valid TOML" in out
    assert f"{rules_dir / 'spec.toml'}: summary: cannot be rendered" in out
    assert len(lines) == 5


def test_bad_settings_exit_2_with_file_and_key(tmp_path: Path) -> None:
    settings = write_settings(
        tmp_path,
        notifiers='[notifiers.mail]\nkind = "email"\nhost = "h"\nport = "x"\n'
        'sender = "a@b.c"\nrecipients = []\n',
    )
    code, out = _run(settings, "check")
    assert code == 2
    assert f"{settings}: notifiers.mail.port: Input should be a valid integer" in out
    assert f"{settings}: notifiers.mail.recipients: List should have at least 1 item" in out

    code, out = _run(tmp_path / "missing.toml", "status")
    assert code == 2 and "settings file not found" in out


def test_unknown_source_reference_is_a_config_error(tmp_path: Path) -> None:
    settings = write_settings(
        tmp_path, sites='[[sites]]\ndomain = "example.com"\nsources = ["exprts"]\n'
    )
    code, out = _run(settings, "status")
    assert code == 2
    assert "sites[0].sources: unknown source 'exprts' (known: exports)" in out


def test_out_of_order_import_is_refused(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    path = write_ahrefs(tmp_path / "a.csv", LINKS)
    assert (
        _run(
            settings,
            "import",
            "--site",
            "example.com",
            "--taken-at",
            "2026-02-05T00:00:00Z",
            str(path),
        )[0]
        == 0
    )
    code, out = _run(
        settings, "import", "--site", "example.com", "--taken-at", "2026-02-01T00:00:00Z", str(path)
    )
    assert code == 2 and "must be ingested in time order" in out
    assert "before the latest snapshot of example.com/exports (ahrefs) taken at 2026-02-05" in out


def test_a_multi_file_import_with_one_file_out_of_order_stores_none(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    write_ahrefs(tmp_path / "ahrefs_2026-01-10.csv", LINKS)
    write_ahrefs(tmp_path / "ahrefs_2026-01-05.csv", LINKS)
    write_gsc(tmp_path / "gsc_2026-01-03.csv", ["https://new.example.net/x"])
    code, out = _run(
        settings, "import", "--site", "example.com", str(tmp_path / "ahrefs_2026-01-10.csv")
    )
    assert code == 0, out
    code, out = _run(
        settings, "import", "--site", "example.com",
        str(tmp_path / "gsc_2026-01-03.csv"), str(tmp_path / "ahrefs_2026-01-05.csv"),
    )  # fmt: skip
    assert code == 2
    assert "ahrefs_2026-01-05.csv: taken at 2026-01-05" in out and "time order" in out
    assert "nothing was stored" in out
    # The Search Console file, earlier and of another series, was not stored either.
    code, out = _run(settings, "snapshots", "--site", "example.com", "--json")
    assert [json.loads(line)["series"] for line in out.splitlines()] == ["exports/ahrefs"]


def test_an_export_of_another_site_is_refused_naming_that_site(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    ours = write_ahrefs(tmp_path / "ours_2026-11-01.csv", LINKS)
    theirs = [(f"https://x{i}.example.net/p", "https://competitor.io/", "b", 40) for i in range(10)]
    other = write_ahrefs(tmp_path / "competitor_2026-11-02.csv", theirs)
    # A subdomain of the site is the site: its export is read.
    blog = [
        (f"https://y{i}.example.net/p", "https://blog.example.com/a", "c", 40) for i in range(9)
    ]
    sub = write_ahrefs(tmp_path / "blog_2026-11-03.csv", blog)
    code, out = _run(settings, "import", "--site", "example.com", str(ours), str(other))
    assert code == 2
    assert (
        "competitor_2026-11-02.csv: none of its 10 targets is on example.com:"
        " it is an export of competitor.io, not of example.com" in out
    )
    # The file before it in the same import was stored, and the message says so.
    assert "stored before it:" in out and "ours_2026-11-01.csv" in out and "baseline" in out
    code, out = _run(settings, "import", "--site", "example.com", str(sub))
    assert code == 0, out
    code, out = _run(settings, "snapshots", "--site", "example.com", "--json")
    assert [json.loads(line)["status"] for line in out.splitlines()] == ["baseline", "complete"]


def test_import_counts_rows_read_apart_from_the_links_they_fold_into(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    path = tmp_path / "dups.csv"
    path.write_text(
        "url_from,url_to,anchor\n"
        "https://a.org/p,https://example.com/,x\n"
        "https://a.org/p,https://example.com/,y\n"
        "https://A.org/p#frag,https://www.example.com/,z\n"
        "not a url,https://example.com/,w\n"
        "https://b.org/p,https://example.com/,v\n",
        encoding="utf-8",
    )
    code, out = _run(
        settings, "import", "--site", "example.com", "--taken-at", "2026-01-01", str(path)
    )
    assert code == 1, out  # partial: a malformed row
    assert (
        "dups.csv: filed under series exports/generic: 5 rows read, 1 refused;"
        " 2 repeated an earlier row's link: 2 links listed" in out
    )
    assert "partial, 2 rows (4 read: 2 repeated an earlier row's link), 2 seen" in out


def test_notify_test_uses_the_named_notifier(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    code, out = _run(settings, "notify-test", "console")
    assert code == 0
    assert "Test message from linkwatch to notifier console" in out
    code, out = _run(settings, "notify-test", "nope")
    assert code == 2 and "unknown notifier 'nope'" in out


def test_config_from_environment_variable(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    res = CliRunner().invoke(main, ["status"], env={"LINKWATCH_CONFIG": str(settings)})
    assert res.exit_code == 0, res.output
    assert "example.com (own): 0 live links" in res.output


def test_poll_records_an_unreadable_export_and_reads_the_next(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    folder = tmp_path / "exports" / "example.com"
    folder.mkdir(parents=True)
    # A UTF-16 export cut off inside its header, then a good export dated after it.
    (folder / "backlinks_2026-03-01.csv").write_bytes(
        b"\xff\xfe" + "Referring".encode("utf-16-le")[:-1]
    )
    write_ahrefs(folder / "backlinks_2026-03-02.csv", LINKS)
    code, out = _run(settings, "poll")
    assert code == 1, out
    assert "backlinks_2026-03-01.csv taken 2026-03-01T00:00:00+00:00: error" in out
    assert "cannot read the header" in out
    assert "2 snapshots, 0 alert changes" in out
    [row] = _status(settings)
    assert row["live_links"] == 10
    store = Store(load_settings(settings).storage.path)
    statuses = [(s["origin"], s["status"]) for s in store.snapshots("example.com")]
    store.close()
    assert statuses == [
        ("backlinks_2026-03-01.csv", "error"),
        ("backlinks_2026-03-02.csv", "baseline"),
    ]


def test_import_refuses_a_source_the_site_does_not_have(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    path = write_ahrefs(tmp_path / "a.csv", LINKS)
    code, out = _run(settings, "import", "--site", "example.com", "--source", "exprots", str(path))
    assert code == 2
    assert "--source: 'exprots' is not a source of example.com (its sources: exports)" in out
    assert _status(settings)[0]["last_snapshot_at"] is None


def test_rule_files_that_used_to_crash_are_refused_by_name(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    write_rule(tmp_path, "table-kind", '[kind]\nx = 1\nmetric = "lost_links"\n')
    write_rule(
        tmp_path,
        "huge-window",
        GOOD_RULE.replace('window = "7d"', 'window = "999999999999d"'),
    )
    write_rule(tmp_path, "long-window", GOOD_RULE.replace('window = "7d"', 'window = "1000000w"'))
    code, out = _run(settings, "rules", "check")
    assert code == 2, out
    assert "table-kind.toml: kind: expected one of" in out
    assert "huge-window.toml: window:" in out and "long-window.toml: window:" in out


def test_an_import_overtaken_by_a_delete_exits_1_and_a_second_try_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process deletes the snapshot that made the file's rows known while the file
    is read: nothing is stored, exit 1 (not a usage error), and the same command works."""
    import daemon.store.ledger as ledger

    settings = write_settings(tmp_path)
    db = load_settings(settings).storage.path
    first = [*LINKS[:9]]
    day1 = write_ahrefs(tmp_path / "example.com_2026-01-01.csv", first)
    day2 = write_ahrefs(tmp_path / "example.com_2026-01-02.csv", LINKS)
    day3 = write_ahrefs(tmp_path / "example.com_2026-01-03.csv", LINKS)
    for day in (day1, day2):
        assert _run(settings, "import", "--site", "example.com", str(day))[0] == 0
    store = Store(db)
    (added,) = store.conn.execute("SELECT max(id) FROM snapshots").fetchone()
    store.close()
    staged = ledger._stage_any

    def stage_then_delete(*args: Any, **kwargs: Any) -> tuple[int, int, int]:
        counts = staged(*args, **kwargs)
        other = Store(db)
        try:
            other.delete_snapshot(added, datetime.now(UTC))
        finally:
            other.close()
        return counts

    monkeypatch.setattr(ledger, "_stage_any", stage_then_delete)
    code, out = _run(settings, "import", "--site", "example.com", str(day3))
    assert code == 1
    assert "changed by another process" in out and "import it again" in out
    assert "Traceback" not in out
    monkeypatch.undo()
    code, out = _run(settings, "import", "--site", "example.com", str(day3))
    assert code == 0, out
    [row] = _status(settings)
    assert row["live_links"] == 10
