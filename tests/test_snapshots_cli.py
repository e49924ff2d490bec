"""`linkwatch snapshots`: the list of a site's snapshots, and deleting a mistaken one."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from click.testing import CliRunner

from daemon.cli import main
from tests.helpers import write_ahrefs, write_settings

SITE = "example.com"


def run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, list(args))
    # A traceback is never an answer: only SystemExit may end a command.
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    return res.exit_code, res.output


def links(n: range) -> list[tuple[str, str, str, int]]:
    return [(f"https://ref{i}.example.org/p", f"https://{SITE}/", f"a{i}", 40) for i in n]


def imp(settings: Path, file: Path, day: str) -> tuple[int, str]:
    return run("-c", str(settings), "import", "--site", SITE, "--taken-at", day, str(file))


def history(tmp_path: Path) -> Path:
    """Four imports: a baseline of 10, a mistaken one of another profile, a truncated
    (suspect) one, and one more of the real profile."""
    settings = write_settings(tmp_path)
    write_ahrefs(tmp_path / "1.csv", links(range(10)))
    write_ahrefs(tmp_path / "wrong.csv", links(range(50, 62)))
    write_ahrefs(tmp_path / "short.csv", links(range(3)))
    write_ahrefs(tmp_path / "4.csv", links(range(9)))
    for name, day in (
        ("1.csv", "2026-02-01"),
        ("wrong.csv", "2026-02-02"),
        ("short.csv", "2026-02-03"),
        ("4.csv", "2026-02-04"),
    ):
        imp(settings, tmp_path / name, day)
    return settings


def listing(settings: Path) -> list[dict[str, object]]:
    code, out = run("-c", str(settings), "snapshots", "--site", SITE, "--json")
    assert code == 0, out
    return [json.loads(line) for line in out.splitlines()]


def states(settings: Path) -> dict[str, str]:
    code, out = run("-c", str(settings), "links", "--site", SITE, "--format", "json")
    assert code == 0, out
    return {r["url_from"]: r["state"] for r in map(json.loads, out.splitlines())}


def test_snapshots_lists_each_snapshot_with_its_series_status_and_counts(tmp_path: Path) -> None:
    settings = history(tmp_path)
    code, out = run("-c", str(settings), "snapshots", "--site", "EXAMPLE.com")
    assert code == 0, out
    header, *rows = out.splitlines()
    assert header.split() == [
        "ID", "SERIES", "COVERAGE", "TAKEN", "INGESTED", "STATUS", "LISTED", "SEEN", "NEW",
        "MISSING", "RESTORED", "LOST", "CHANGED", "MALFORMED", "NOTE",
    ]  # fmt: skip
    assert [r.split()[:3] for r in rows] == [
        [str(n), "exports/ahrefs", "complete"] for n in (1, 2, 3, 4)
    ]
    second = rows[1].split()
    # id, series, coverage, taken (day, time), ingested (day, time), status, then counts.
    assert second[3:5] == ["2026-02-02", "00:00"]
    assert second[7:16] == ["complete", "12", "12", "12", "10", "0", "0", "0", "0"]
    assert rows[2].split()[7] == "suspect" and "under 50%" in rows[2]
    records = listing(settings)
    assert set(records[0]) == {
        "id", "series", "coverage", "taken_at", "ingested_at", "status", "listed", "seen",
        "new", "missing", "restored", "lost", "changed", "unconfirmed", "malformed",
        "origin", "note",
    }  # fmt: skip
    assert [(r["origin"], r["status"]) for r in records] == [
        ("1.csv", "baseline"),
        ("wrong.csv", "complete"),
        ("short.csv", "suspect"),
        ("4.csv", "complete"),
    ]
    assert records[0]["taken_at"] == "2026-02-01T00:00:00+00:00"


def test_deleting_a_mistaken_import_rebuilds_the_links(tmp_path: Path) -> None:
    settings = history(tmp_path)
    assert states(settings)[links(range(50, 51))[0][0]] == "missing"
    wrong = listing(settings)[1]
    code, out = run("-c", str(settings), "snapshots", "delete", str(wrong["id"]))
    assert code == 0, out
    assert out.splitlines() == [
        "deleted snapshot 2 of example.com (exports/ahrefs, taken 2026-02-02T00:00:00+00:00,"
        " complete)",
        "  rebuilt example.com's links by applying its 2 accepted snapshots again",
    ]
    # The mistaken profile is gone; the real one reads as if it had never been imported:
    # link 9 went missing on the 4th, nothing was new, nothing lost.
    after = states(settings)
    ninth = links(range(9, 10))[0][0]
    assert after == {**{u: "live" for u, *_ in links(range(9))}, ninth: "missing"}
    assert [(r["origin"], r["new"], r["missing"], r["lost"]) for r in listing(settings)] == [
        ("1.csv", 0, 0, 0),
        ("short.csv", 0, 0, 0),
        ("4.csv", 0, 1, 0),
    ]


def test_a_snapshot_that_changed_nothing_just_goes(tmp_path: Path) -> None:
    settings = history(tmp_path)
    short = listing(settings)[2]
    before = states(settings)
    code, out = run("-c", str(settings), "snapshots", "delete", str(short["id"]))
    assert code == 0, out
    assert "it had changed no link: nothing else to rebuild" in out
    assert states(settings) == before
    assert [r["origin"] for r in listing(settings)] == ["1.csv", "wrong.csv", "4.csv"]


def test_a_delete_that_cannot_be_rebuilt_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    write_ahrefs(tmp_path / "1.csv", links(range(10)))
    write_ahrefs(tmp_path / "2.csv", links(range(30)))
    write_ahrefs(tmp_path / "3.csv", links(range(8)))  # under half of 30: suspect
    for n, day in ((1, "2026-02-01"), (2, "2026-02-02"), (3, "2026-02-03")):
        imp(settings, tmp_path / f"{n}.csv", day)
    db = tmp_path / "linkwatch.db"
    before = (
        sqlite3.connect(db).execute("SELECT count(*), sum(state = 'live') FROM links").fetchone()
    )
    code, out = run("-c", str(settings), "snapshots", "delete", "2")
    assert code == 2
    assert out.startswith("linkwatch: snapshot 2 was not deleted: snapshot 3 (3.csv, taken")
    assert "Delete snapshot 3 first" in out and out.rstrip().endswith("nothing was changed")
    assert [r["status"] for r in listing(settings)] == ["baseline", "complete", "suspect"]
    after = (
        sqlite3.connect(db).execute("SELECT count(*), sum(state = 'live') FROM links").fetchone()
    )
    assert after == before


def test_a_deleted_file_can_be_imported_again(tmp_path: Path) -> None:
    settings = history(tmp_path)
    code, _ = run("-c", str(settings), "snapshots", "delete", "4")
    assert code == 0
    # The same file again is no duplicate of a deleted snapshot: it is read as new.
    code, out = imp(settings, tmp_path / "4.csv", "2026-02-04")
    assert code == 0 and "complete" in out, out


def test_bad_ids_and_missing_options_exit_2_with_a_message(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    # No database yet: nothing to delete, and none is created.
    code, out = run("-c", str(settings), "snapshots", "delete", "7")
    db = tmp_path / "linkwatch.db"
    assert (code, out.strip()) == (2, f"linkwatch: no snapshot 7: {db} holds nothing yet")
    assert not (tmp_path / "linkwatch.db").exists()
    settings = history(tmp_path)
    code, out = run("-c", str(settings), "snapshots", "delete", "99")
    assert (code, out.strip()) == (
        2,
        "linkwatch: no snapshot 99 (see `linkwatch snapshots --site SITE`)",
    )
    for bad in ("abc", "0", "-3", str(2**63)):
        code, out = run("-c", str(settings), "snapshots", "delete", "--", bad)
        assert code == 2 and "ID" in out, (bad, out)
    code, out = run("-c", str(settings), "snapshots")
    assert (code, out.strip()) == (
        2,
        "linkwatch: give --site SITE to list its snapshots (or: snapshots delete ID)",
    )
    code, out = run("-c", str(settings), "snapshots", "--site", "nope.org")
    assert code == 2 and "'nope.org' is not a site" in out


def test_a_site_without_snapshots_says_so(tmp_path: Path) -> None:
    settings = write_settings(
        tmp_path,
        sites='[[sites]]\ndomain = "example.com"\nrole = "own"\nsources = ["exports"]\n'
        '[[sites]]\ndomain = "quiet.org"\nrole = "competitor"\nsources = ["exports"]\n',
    )
    write_ahrefs(tmp_path / "1.csv", links(range(3)))
    imp(settings, tmp_path / "1.csv", "2026-02-01")
    code, out = run("-c", str(settings), "snapshots", "--site", "quiet.org")
    assert (code, out.strip()) == (0, "quiet.org: no snapshots yet")
    code, out = run("-c", str(settings), "snapshots", "--site", "quiet.org", "--json")
    assert (code, out) == (0, "")


def test_delete_with_site_refuses_another_sites_snapshot(tmp_path: Path) -> None:
    settings = write_settings(
        tmp_path,
        sites='[[sites]]\ndomain = "example.com"\nrole = "own"\nsources = ["exports"]\n'
        '[[sites]]\ndomain = "other.com"\nrole = "competitor"\nsources = ["exports"]\n',
    )
    write_ahrefs(tmp_path / "a.csv", links(range(3)))
    write_ahrefs(
        tmp_path / "b.csv",
        [(f"https://b{i}.org/p", "https://other.com/", "x", 1) for i in range(3)],
    )
    assert imp(settings, tmp_path / "a.csv", "2026-01-01")[0] == 0
    code, _ = run(
        "-c", str(settings), "import", "--site", "other.com", "--taken-at", "2026-01-01",
        str(tmp_path / "b.csv"),
    )  # fmt: skip
    assert code == 0
    code, out = run("-c", str(settings), "snapshots", "--site", SITE, "delete", "2")
    assert code == 2
    assert "snapshot 2 was not deleted: it is a snapshot of other.com, not of example.com" in out
    code, out = run("-c", str(settings), "snapshots", "--site", "other.com", "--json")
    assert [json.loads(line)["id"] for line in out.splitlines()] == [2]
    # Its own site's snapshot goes; without --site any snapshot does, naming its site.
    code, out = run("-c", str(settings), "snapshots", "--site", "Other.com", "delete", "2")
    assert code == 0 and out.startswith("deleted snapshot 2 of other.com"), out
    code, out = run("-c", str(settings), "snapshots", "delete", "1")
    assert code == 0 and out.startswith("deleted snapshot 1 of example.com"), out


def test_a_series_that_stopped_while_a_later_one_goes_on_is_warned_about(tmp_path: Path) -> None:
    # After an upgrade a format's files may file under a new series (Semrush Backlink
    # Audit: semrush -> semrush_audit): the old series would keep its links live forever.
    settings = write_settings(tmp_path)
    write_ahrefs(tmp_path / "1.csv", links(range(10)))
    imp(settings, tmp_path / "1.csv", "2026-02-01")
    generic = tmp_path / "g.csv"
    generic.write_text(
        "url_from,url_to\n" + "".join(f"{u},{t}\n" for u, t, _, _ in links(range(1, 10))),
        encoding="utf-8",
    )
    assert imp(settings, generic, "2026-02-03")[0] == 0
    res = CliRunner().invoke(main, ["-c", str(settings), "snapshots", "--site", SITE])
    assert res.exit_code == 0
    assert (
        "warning: series exports/ahrefs has had no snapshot since exports/generic began"
        " (2026-02-03T00:00:00+00:00); 1 live links only it sees" in res.stderr
    )
    assert "--format ahrefs" in res.stderr and "warning" not in res.stdout
    res = CliRunner().invoke(main, ["-c", str(settings), "status"])
    assert res.exit_code == 0 and "warning: series exports/ahrefs" in res.stderr
    assert "warning" not in res.stdout
    # `doctor` says so too, among its findings (a warning: exit 0).
    (tmp_path / "exports" / SITE).mkdir(parents=True, exist_ok=True)
    res = CliRunner().invoke(main, ["-c", str(settings), "doctor"])
    assert (
        f"warn site {SITE}: series exports/ahrefs has had no snapshot since exports/generic"
        " began (2026-02-03T00:00:00+00:00); 1 live links only it sees stay live until it"
        " lists them again; fix: if its exports now file under exports/generic"
    ) in res.output, res.output
    # The remedy: the old series lists what it sees now, twice; its link is lost.
    write_ahrefs(tmp_path / "4.csv", links(range(1, 10)))
    write_ahrefs(tmp_path / "5.csv", links(range(1, 10)))
    assert imp(settings, tmp_path / "4.csv", "2026-02-04")[0] == 0
    assert imp(settings, tmp_path / "5.csv", "2026-02-05")[0] == 0
    assert states(settings)["https://ref0.example.org/p"] == "lost"
    res = CliRunner().invoke(main, ["-c", str(settings), "snapshots", "--site", SITE])
    assert res.exit_code == 0 and "warning" not in res.output
    res = CliRunner().invoke(main, ["-c", str(settings), "status"])
    assert res.exit_code == 0 and "warning" not in res.output
    res = CliRunner().invoke(main, ["-c", str(settings), "doctor"])
    assert "ok   series: no series stopped while holding live links" in res.output, res.output


def test_a_rebuild_over_sightings_without_digests_keeps_one_interval_per_link(
    tmp_path: Path,
) -> None:
    # A database upgraded from before m005 has sightings without digests (NULL): a row
    # listed again with the same (unknown) values continues its sighting, as before.
    settings = history(tmp_path)
    db = tmp_path / "linkwatch.db"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE sightings SET digest = NULL")
    conn.close()
    code, out = run("-c", str(settings), "snapshots", "delete", str(listing(settings)[1]["id"]))
    assert code == 0, out
    with sqlite3.connect(db) as conn:
        rows, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT link_key) FROM sightings"
        ).fetchone()
    conn.close()
    assert rows == distinct == 10
