"""The six ways a hostile user made the ledger cry wolf (issue 5), each through the CLI.

Every scenario imports real export files with `linkwatch import` and reads the answer
with `linkwatch metrics --json` and `linkwatch links --json`, as a user would.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from daemon.cli import main
from tests.helpers import write_ahrefs, write_gsc, write_semrush, write_settings

SITE = "example.com"


def run(settings: Path, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["-c", str(settings), *args])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    return res.exit_code, res.output


def imp(settings: Path, path: Path, taken: str) -> tuple[int, str]:
    return run(settings, "import", "--site", SITE, "--taken-at", taken, str(path))


def metrics(settings: Path, at: str, window: str = "7d") -> dict[str, float | None]:
    code, out = run(settings, "metrics", "--site", SITE, "--at", at, "--window", window, "--json")
    assert code == 0, out
    return dict(json.loads(out))


def states(settings: Path) -> dict[str, str]:
    code, out = run(settings, "links", "--site", SITE, "--json")
    assert code == 0, out
    return {row["url_from"]: row["state"] for row in map(json.loads, out.splitlines())}


def page(n: int) -> str:
    """Link n's referring page, each on its own registrable domain."""
    return f"https://blog.ref{n}.org/post"


def links(ns: range | list[int]) -> list[tuple[str, str, str, int]]:
    return [(page(n), f"https://{SITE}/", f"anchor {n}", n) for n in ns]


def test_two_providers_are_two_series_and_lose_nothing(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    common, ahrefs_only, semrush_only = range(60), range(60, 100), range(100, 130)
    write_ahrefs(tmp_path / "a.csv", links([*common, *ahrefs_only]))
    assert imp(settings, tmp_path / "a.csv", "2026-02-01")[0] == 0
    for day in ("2026-02-02", "2026-02-03"):
        write_semrush(tmp_path / f"s{day}.csv", links([*common, *semrush_only]))
        code, out = imp(settings, tmp_path / f"s{day}.csv", day)
        assert code == 0 and "example.com/exports/semrush" in out, out
    got = metrics(settings, "2026-02-04")
    assert (got["lost_links"], got["lost_refdomains"], got["live_links"]) == (0, 0, 130)
    assert set(states(settings).values()) == {"live"}


def test_a_search_console_sample_neither_keeps_links_nor_counts_as_gains(
    tmp_path: Path,
) -> None:
    settings = write_settings(tmp_path)
    write_ahrefs(tmp_path / "0.csv", links(range(1, 21)))
    imp(settings, tmp_path / "0.csv", "2026-02-01")
    # An old sample: link 1 and one the exports never listed.
    write_gsc(tmp_path / "gsc.csv", [page(1), page(11)])
    code, out = imp(settings, tmp_path / "gsc.csv", "2026-02-02")
    assert code == 0 and "example.com/exports/gsc" in out, out
    for day in ("2026-02-03", "2026-02-04", "2026-02-05", "2026-02-06"):
        write_ahrefs(tmp_path / f"{day}.csv", links(range(7, 21)))
        assert imp(settings, tmp_path / f"{day}.csv", day)[0] == 0
    now = states(settings)
    assert [now[page(n)] for n in range(1, 7)] == ["lost"] * 6
    assert now[page(11)] == "live"
    got = metrics(settings, "2026-02-06")
    assert (got["lost_links"], got["new_links"]) == (6, 0)
    assert (got["lost_refdomains"], got["new_refdomains"], got["net_refdomains"]) == (6, 0, -6)


def test_rows_marked_lost_are_part_of_the_export(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    write_ahrefs(tmp_path / "0.csv", links(range(10)))
    imp(settings, tmp_path / "0.csv", "2026-02-01")
    marked = {page(n): "Link removed" for n in range(6)}
    write_ahrefs(tmp_path / "1.csv", links(range(10)), lost=marked)
    code, out = imp(settings, tmp_path / "1.csv", "2026-02-02")
    assert code == 0, out
    assert "complete, 10 rows, 4 seen" in out and "6 lost" in out
    now = states(settings)
    assert sorted(now.values()) == ["live"] * 4 + ["lost"] * 6
    code, out = run(settings, "links", "--site", SITE, "--state", "lost", "--json")
    assert {json.loads(line)["lost_reason"] for line in out.splitlines()} == {"removed"}


def test_the_same_truncated_export_three_times_is_not_a_collapse(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    write_ahrefs(tmp_path / "0.csv", links(range(10)))
    imp(settings, tmp_path / "0.csv", "2026-02-01")
    write_ahrefs(tmp_path / "cut.csv", links(range(3)))
    outs = [imp(settings, tmp_path / "cut.csv", "2026-02-02") for _ in range(3)]
    assert [code for code, _ in outs] == [1, 0, 0]
    assert "suspect" in outs[0][1]
    assert all("duplicate" in out for _, out in outs[1:])
    assert set(states(settings).values()) == {"live"}


def test_a_later_baseline_does_not_change_the_past(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    # ref1.org has two links; the Ahrefs series loses one, then the other.
    two = [
        (page(1), f"https://{SITE}/", "a", 1),
        ("https://ref1.org/other", f"https://{SITE}/", "b", 1),
    ]
    write_ahrefs(tmp_path / "0.csv", [*two, *links(range(2, 4))])
    imp(settings, tmp_path / "0.csv", "2026-01-30")
    write_ahrefs(tmp_path / "1.csv", links(range(2, 4)))
    imp(settings, tmp_path / "1.csv", "2026-01-31")
    # The same content exported again later (another file) confirms the loss.
    (tmp_path / "1b.csv").write_bytes((tmp_path / "1.csv").read_bytes())
    imp(settings, tmp_path / "1b.csv", "2026-02-01")
    before = metrics(settings, "2026-02-03")
    assert before["lost_refdomains"] == 1 and before["lost_refdomains_pct"] == 33.33
    # A second provider's first export, dated after, lists ref1.org again.
    write_semrush(tmp_path / "s.csv", [*two, *links(range(2, 4))])
    imp(settings, tmp_path / "s.csv", "2026-02-04")
    assert metrics(settings, "2026-02-03") == before
    code, out = run(settings, "links", "--site", SITE, "--state", "live", "--json")
    assert code == 0 and page(1) in out


def test_header_only_exports_are_never_believed(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    write_ahrefs(tmp_path / "0.csv", links(range(200)))
    imp(settings, tmp_path / "0.csv", "2026-02-01")
    for day in ("2026-02-02", "2026-02-03", "2026-02-04", "2026-02-05"):
        write_ahrefs(tmp_path / f"{day}.csv", [])
        code, out = imp(settings, tmp_path / f"{day}.csv", day)
        assert code == 1 and "suspect" in out and "no rows" in out, out
    assert metrics(settings, "2026-02-05")["live_links"] == 200


def test_one_legacy_byte_does_not_rekey_the_whole_file(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    accented = [(f"https://café{n}.example.org/é", f"https://{SITE}/", "a", n) for n in range(20)]
    plain = links(range(20, 30))
    write_ahrefs(tmp_path / "0.csv", [*accented, *plain])
    imp(settings, tmp_path / "0.csv", "2026-02-01")
    text = (tmp_path / "0.csv").read_bytes()
    # One anchor saved by a legacy tool: a lone Windows-1252 byte.
    broken = text.replace(b'"anchor 25"', b'"anchor \xe925"')
    assert broken != text
    (tmp_path / "1.csv").write_bytes(broken)
    code, out = imp(settings, tmp_path / "1.csv", "2026-02-02")
    assert code == 0 and "0 new, 0 missing" in out, out
    assert set(states(settings).values()) == {"live"}


def test_a_download_cut_inside_its_last_row_is_partial(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    write_ahrefs(tmp_path / "0.csv", links(range(100)))
    imp(settings, tmp_path / "0.csv", "2026-02-01")
    text = (tmp_path / "0.csv").read_bytes()
    (tmp_path / "1.csv").write_bytes(text[: int(len(text) * 0.7)])
    code, out = imp(settings, tmp_path / "1.csv", "2026-02-02")
    assert code == 1 and "partial" in out and "cut short" in out, out
    assert set(states(settings).values()) == {"live"}


def test_spellings_of_one_url_are_one_link(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    first = [
        ("https://пример.рф/страница", f"https://{SITE}/", "a", 1),
        ("https://blog.example.org/~user/post", f"https://{SITE}/", "b", 2),
    ]
    second = [
        (
            "https://xn--e1afmkfd.xn--p1ai/%D1%81%D1%82%D1%80%D0%B0%D0%BD%D0%B8%D1%86%D0%B0",
            f"https://{SITE}/",
            "a",
            1,
        ),
        ("https://BLOG.example.org/%7Euser/post", f"https://{SITE}/", "b", 2),
    ]
    write_ahrefs(tmp_path / "0.csv", first)
    imp(settings, tmp_path / "0.csv", "2026-02-01")
    for day in ("2026-02-02", "2026-02-03"):
        write_ahrefs(tmp_path / f"{day}.csv", second)
        code, out = imp(settings, tmp_path / f"{day}.csv", day)
        assert code == 0 and "0 new, 0 missing" in out, out
    assert sorted(states(settings).values()) == ["live", "live"]


def test_status_shows_the_latest_snapshot_by_ingest(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    folder = tmp_path / "exports" / SITE
    folder.mkdir(parents=True)
    (folder / "broken.csv").write_text("Domain,Backlinks\nx.org,3\n", encoding="utf-8")
    assert run(settings, "poll")[0] == 1
    code, out = run(settings, "status")
    assert "error" in out
    write_ahrefs(folder / "example.com-backlinks_2026-01-01_00-00-00.csv", links(range(5)))
    assert run(settings, "poll")[0] == 0
    code, out = run(settings, "status")
    assert (
        code == 0
        and "5 live links" in out
        and ": baseline" in out
        and "(taken 2026-01-01T00:00:00" in out
    )


def test_metrics_prints_the_nine_metrics_and_writes_nothing(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    write_ahrefs(tmp_path / "0.csv", links(range(10)))
    imp(settings, tmp_path / "0.csv", "2026-02-01")
    write_ahrefs(tmp_path / "1.csv", links(range(8)))
    imp(settings, tmp_path / "1.csv", "2026-02-02")
    write_ahrefs(tmp_path / "2.csv", links(range(8)))
    imp(settings, tmp_path / "2.csv", "2026-02-03")
    db = tmp_path / "linkwatch.db"
    before = {p.name: p.read_bytes() for p in tmp_path.glob("linkwatch.db*")}
    got = metrics(settings, "2026-02-03T12:00:00Z", "2d")
    assert got == {
        "new_links": 0,
        "lost_links": 2,
        "net_links": -2,
        "new_refdomains": 0,
        "lost_refdomains": 2,
        "net_refdomains": -2,
        "lost_refdomains_pct": 20.0,
        "live_links": 8,
        "live_refdomains": 8,
    }
    assert metrics(settings, "2026-01-31")["live_links"] is None  # before any snapshot
    code, out = run(settings, "metrics", "--site", SITE, "--at", "2026-02-03")
    assert code == 0 and "lost_refdomains" in out and "20" in out
    after = {p.name: p.read_bytes() for p in tmp_path.glob("linkwatch.db*")}
    assert db.exists() and after == before


def test_a_link_only_an_old_sample_vouches_for_becomes_unconfirmed(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    text = settings.read_text().replace('settle = "0s"\n', 'settle = "0s"\nsample_ttl = "2d"\n')
    settings.write_text(text)
    write_ahrefs(tmp_path / "0.csv", links(range(10)))
    imp(settings, tmp_path / "0.csv", "2026-02-01")
    write_gsc(tmp_path / "gsc.csv", [page(1), page(50)])
    imp(settings, tmp_path / "gsc.csv", "2026-02-02")
    write_ahrefs(tmp_path / "1.csv", links(range(10)))
    code, out = imp(settings, tmp_path / "1.csv", "2026-02-05")
    assert code == 0 and "1 unconfirmed" in out, out
    code, out = run(settings, "status", "--json")
    [row] = json.loads(out)
    assert (row["live_links"], row["unconfirmed_links"], row["lost_links"]) == (10, 1, 0)
    assert row["last_snapshot_status"] == "complete"
    assert row["last_snapshot_at"].startswith("2026-02-05")
    code, out = run(settings, "links", "--site", SITE, "--state", "unconfirmed", "--json")
    [link] = map(json.loads, out.splitlines())
    assert (link["url_from"], link["url_to"]) == (page(50), "")
    # Neither a loss nor a lost domain: it fades from the live count only.
    got = metrics(settings, "2026-02-05")
    assert (got["lost_links"], got["lost_refdomains"], got["live_links"]) == (0, 0, 10)


def test_a_file_imported_by_hand_and_then_rewritten_is_read_again_by_poll(
    tmp_path: Path,
) -> None:
    settings = write_settings(tmp_path)
    folder = tmp_path / "exports" / SITE
    folder.mkdir(parents=True)
    path = write_ahrefs(folder / "backlinks.csv", links(range(10)))
    os.utime(path, (1_767_225_600, 1_767_225_600))  # 2026-01-01
    assert run(settings, "import", "--site", SITE, str(path))[0] == 0
    assert run(settings, "poll")[0] == 0  # the same file: nothing new
    assert "1 snapshots" not in run(settings, "poll")[1]
    write_ahrefs(path, links(range(1, 10)))
    os.utime(path, (1_767_312_000, 1_767_312_000))  # 2026-01-02
    code, out = run(settings, "poll")
    assert code == 0 and "1 snapshots" in out, out
    assert states(settings)[page(0)] == "missing"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ('sample_ttl = "1000000w"', "sample_ttl: expected a duration between"),
        ('sample_ttl = "1h"', "sample_ttl: must be between 1d and 10 years"),
        ("sample_ttl = -5", "sample_ttl: expected a duration between 0s and 10"),
        ('interval = "99999999999d"', "interval: duration '99999999999d' is too"),
        ("interval = 1e300", "interval: expected a duration of at most 10 years"),
        ('settle = "-5s"', "settle: "),
    ],
)
def test_out_of_range_source_settings_exit_2(tmp_path: Path, setting: str, message: str) -> None:
    settings = write_settings(tmp_path)
    keep = "" if setting.startswith("settle") else 'settle = "0s"\n'
    settings.write_text(settings.read_text().replace('settle = "0s"\n', f"{keep}{setting}\n"))
    code, out = run(settings, "check")
    assert code == 2 and message in out, out


def test_impossible_times_are_usage_errors(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    write_ahrefs(tmp_path / "0.csv", links(range(3)))
    code, out = imp(settings, tmp_path / "0.csv", "0001-01-01T00:30:00+01:00")
    assert code == 2 and "--taken-at" in out and "0001-01-01" in out
    # A typo a year ahead would date every later event after it: refused.
    code, out = imp(settings, tmp_path / "0.csv", "2999-01-01")
    assert code == 2 and "after now" in out and states(settings) == {}
    code, out = run(settings, "metrics", "--site", SITE, "--at", "9999-12-31T23:00:00-05:00")
    assert code == 2 and "--at" in out
    for window, message in (("99999999999w", "is too long"), ("0s", "must be a positive")):
        code, out = run(settings, "metrics", "--site", SITE, "--window", window)
        assert code == 2 and "'--window'" in out and message in out, out


def test_a_symlinked_export_is_reported_by_source_health_and_never_read(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    folder = tmp_path / "exports" / SITE
    folder.mkdir(parents=True)
    outside = write_ahrefs(tmp_path / "outside.csv", links(range(5)))
    (folder / "link.csv").symlink_to(outside)
    code, out = run(settings, "poll")
    assert code == 1 and "refused: a symbolic link" in out
    assert states(settings) == {}


def test_a_giant_header_or_field_is_refused_not_swallowed(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    (tmp_path / "wide.csv").write_text("url_from,url_to," + "x" * 70_000 + "\n", "utf-8")
    code, out = imp(settings, tmp_path / "wide.csv", "2026-02-01")
    assert code == 2 and "header line is 70,017 characters long" in out and len(out) < 2000
    big = "url_from,url_to,anchor\n" + "".join(
        f"https://ref{i}.org/p,https://{SITE}/,{'a' * (70_000 if i == 2 else 3)}\n"
        for i in range(4)
    )
    (tmp_path / "big.csv").write_text(big, "utf-8")
    code, out = imp(settings, tmp_path / "big.csv", "2026-02-01")
    assert code == 1 and "partial" in out and "field larger than field limit" in out
