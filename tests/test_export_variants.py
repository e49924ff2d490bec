"""Every real export variant: how it is recognised (header, translated header, shape) and
what its rows say; domain-level exports; tables that hold no links; zip archives."""

from __future__ import annotations

import codecs
import os
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from daemon.cli import main
from sources.csv_dir import CsvDirSettings, CsvDirSource
from sources.exports import ExportFile, open_archive, open_export_files
from sources.formats import FORMATS, NO_LINK_FORMATS
from sources.formats.values import (
    _MONTH_NAMES,
    domain_name,
    moz_legacy_spam_score,
    parse_datetime,
)
from sources.model import Backlink, FormatError, RefDomain, SnapshotResult, SourceError
from tests.helpers import write_settings

EXPORTS = Path(__file__).parent / "fixtures" / "exports"
SITE = "example.com"
TAKEN = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
ZIP = "gsc_links_2026-01-10.zip"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def links(path: Path, fmt: str | None = None) -> tuple[ExportFile, SnapshotResult, list[Backlink]]:
    """Open a link-level export and read every record."""
    export = ExportFile(path, SITE, fmt)
    result = export.snapshot(TAKEN)
    assert result.domain_records is None
    return export, result, list(result.records)


def domains(path: Path) -> tuple[ExportFile, SnapshotResult, list[RefDomain]]:
    """Open a domain-level export and read every referring domain."""
    export = ExportFile(path, SITE)
    result = export.snapshot(TAKEN)
    assert result.domain_records is not None
    assert list(result.records) == []  # a domain-level snapshot lists no link
    return export, result, list(result.domain_records)


def write(path: Path, text: str, *, bom: bool = False) -> Path:
    path.write_bytes((codecs.BOM_UTF8 if bom else b"") + text.encode("utf-8"))
    return path


# --- which format, and how it was told -----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "variant", "recognised", "language"),
    [
        ("ahrefs_backlinks_utf16.csv", "ahrefs", "backlinks", "header", None),
        ("ahrefs_backlinks_2023_utf16.csv", "ahrefs", "backlinks", "header", None),
        ("ahrefs_backlinks_2020.csv", "ahrefs", "backlinks (before 2021)", "header", None),
        ("ahrefs_refdomains_utf16.csv", "ahrefs_domains", "referring domains", "header", None),
        ("semrush_backlinks.csv", "semrush", "backlinks", "header", None),
        ("semrush_backlinks_legacy.csv", "semrush", "backlinks (before 2020)", "header", None),
        ("semrush_backlink_audit.csv", "semrush_audit", "backlink audit", "header", None),
        ("semrush_refdomains.csv", "semrush_domains", "referring domains", "header", None),
        ("majestic_backlinks.csv", "majestic", "advanced report", "header", None),
        ("majestic_api_names.csv", "majestic", "API field names", "header", None),
        ("moz_inbound_links.csv", "moz", "inbound links (Open Site Explorer)", "header", None),
        (
            "moz_inbound_links_11col.csv",
            "moz",
            "inbound links (Open Site Explorer, 11 columns)",
            "header",
            None,
        ),
        ("bing_backlinks.csv", "bing", "backlinks", "header", None),
        ("bing_referring_domains.csv", "bing_domains", "referring domains", "header", None),
        ("gsc_latest_links.csv", "gsc", "Latest links", "header", None),
        ("gsc_more_sample_links.csv", "gsc", "More sample links", "header", None),
        ("gsc_top_linking_sites.csv", "gsc_sites", "Top linking sites", "header", None),
        ("gsc_latest_links_he.csv", "gsc", "Latest links", "translated header", "Hebrew"),
        ("gsc_latest_links_es.csv", "gsc", "Latest links", "translated header", "Spanish"),
        ("gsc_latest_links_it.csv", "gsc", "Latest links", "translated header", "Italian"),
        (
            "gsc_top_linking_sites_he.csv",
            "gsc_sites",
            "Top linking sites",
            "translated header",
            "Hebrew",
        ),
        ("gsc_latest_links_ja_shape.csv", "gsc", "Latest links", "shape", None),
        ("gsc_latest_links_de_shape.csv", "gsc", "Latest links", "shape", None),
        ("gsc_more_sample_links_fr_shape.csv", "gsc", "More sample links", "shape", None),
        ("gsc_top_linking_sites_de_shape.csv", "gsc_sites", "Top linking sites", "shape", None),
    ],
)
def test_each_variant_is_recognised_and_says_how(
    name: str, kind: str, variant: str, recognised: str, language: str | None
) -> None:
    export = ExportFile(EXPORTS / name, SITE)
    try:
        assert export.format.kind == kind
        assert export.detection.variant.name == variant
        assert export.detection.recognised == recognised
        assert export.detection.variant.language == language
        described = export.detection.describe()
        assert f"format {kind} " in described and f"recognised by {recognised}" in described
        if language:
            assert f"({language})" in described
    finally:
        export.close()


def test_coverage_of_each_format() -> None:
    coverage = {kind: fmt.coverage for kind, fmt in FORMATS.items()}
    assert coverage == {
        "ahrefs": "complete",
        "semrush_audit": "complete",
        "semrush": "complete",
        "majestic": "complete",
        "moz": "complete",
        "bing": "complete",
        "gsc": "sample",
        "ahrefs_domains": "domains",
        "semrush_domains": "domains",
        "bing_domains": "domains",
        "gsc_sites": "domains",
        "generic": "complete",
    }
    # `sample` stays what the store's migration and the ledger read.
    assert [k for k, f in FORMATS.items() if f.sample] == ["gsc"]
    assert all(f.coverage == "none" and f.refusal for f in NO_LINK_FORMATS.values())
    assert not set(FORMATS) & set(NO_LINK_FORMATS)


# --- Ahrefs ---------------------------------------------------------------------------------


def test_ahrefs_before_2021() -> None:
    _, result, records = links(EXPORTS / "ahrefs_backlinks_2020.csv")
    dr = "Ahrefs DR"
    assert records == [
        Backlink(
            "https://blog.example.org/best-widget-tools/",
            "https://example.com/",
            "Example Widgets",
            nofollow=False,
            domain_rating=61.0,
            first_seen_at=utc("2019-03-18 07:41"),
            rating_metric=dr,
        ),
        Backlink(
            "https://forum.example.net/t/widgets/8841",
            "https://example.com/pricing",
            "example.com/pricing",
            nofollow=True,
            domain_rating=44.0,
            first_seen_at=utc("2019-07-02 11:05"),
            rating_metric=dr,
        ),
        Backlink(
            "https://directory.example.info/widgets/page-2",
            "https://example.com/features",
            "Example Widgets - Features",
            nofollow=False,
            domain_rating=9.0,
            first_seen_at=utc("2018-05-14 03:12"),
            lost=True,
            lost_reason="unknown",
            rating_metric=dr,
        ),
        # `Redirect` says nothing of rel; `broken` is no word linkwatch knows: still live.
        Backlink(
            "https://reviews.example.co.uk/example-widgets",
            "https://example.com/old-page",
            "full review",
            nofollow=None,
            domain_rating=38.0,
            first_seen_at=utc("2019-12-20 08:00"),
            rating_metric=dr,
        ),
    ]
    assert result.complete


@pytest.mark.parametrize(
    ("status", "day_lost", "lost"),
    [
        ("live", "", False),
        ("new", "", False),
        ("Lost", "", True),
        ("lost", "02/10/2019 00:00", True),
        ("live", "02/10/2019 00:00", True),  # a date in Day Lost is the loss
        ("removed", "", False),  # unknown words never make a link lost
        ("unknown", "", False),
        ("", "", False),
    ],
)
def test_ahrefs_before_2021_only_lost_or_a_day_lost_means_lost(
    tmp_path: Path, status: str, day_lost: str, lost: bool
) -> None:
    path = write(
        tmp_path / "old-ahrefs.csv",
        "#,Domain Rating,Referring Page URL,Link URL,TextPre,Link Anchor,TextPost,Type,"
        "Backlink Status,First Seen,Last Check,Day Lost,Redirect chain (from),"
        "Redirect chain (to)\n"
        f"1,12,https://a.example.org/p,https://example.com/,,Widgets,,Dofollow,{status},"
        f"18/03/2019 07:41,09/01/2020 22:10,{day_lost},,\n",
    )
    _, result, [record] = links(path)
    assert record.lost is lost
    assert record.lost_reason == ("unknown" if lost else None)
    assert result.complete


def test_ahrefs_referring_domains_are_domain_level() -> None:
    export, result, found = domains(EXPORTS / "ahrefs_refdomains_utf16.csv")
    assert export.encoding == "utf-16" and export.delimiter == "\t"
    assert not result.sample
    dr = "Ahrefs DR"
    assert found == [
        RefDomain("news.example.io", 3, 72.0, dr, utc("2023-11-27 19:22:08")),
        RefDomain("blog.example.org", 5, 61.0, dr, utc("2024-03-18 07:41:55")),
        RefDomain("forum.example.net", 2, 44.0, dr, utc("2025-07-02 11:05:40")),
        RefDomain("reviews.example.co.uk", 1, 38.0, dr, utc("2025-12-20 08:00:01")),
        RefDomain("directory.example.info", 1, 9.0, dr, utc("2022-05-14 03:12:44"), lost=True),
    ]
    assert result.complete


def test_a_rating_outside_0_to_100_is_ignored_and_told(tmp_path: Path) -> None:
    path = write(
        tmp_path / "ahrefs.csv",
        "Referring page URL,Target URL,Domain rating\n"
        "https://a.example.org/,https://example.com/,61\n"
        "https://b.example.org/,https://example.com/,610\n",
    )
    _, result, records = links(path)
    # The link is kept (a bad metric must not make the snapshot partial); its rating is not.
    assert [(r.domain_rating, r.rating_metric) for r in records] == [
        (61.0, "Ahrefs DR"),
        (None, "Ahrefs DR"),
    ]
    assert result.complete
    assert result.notes == ["1 rows: Ahrefs DR outside 0-100, ignored"]


def test_ahrefs_is_spam_is_a_toxicity_of_100() -> None:
    _, _, records = links(EXPORTS / "ahrefs_backlinks_utf8.csv")
    assert [r.toxicity for r in records] == [0.0, 0.0, 0.0, 100.0, 0.0]
    assert {r.rating_metric for r in records} == {"Ahrefs DR"}


# --- Semrush --------------------------------------------------------------------------------


def test_semrush_backlink_audit_keeps_the_toxic_score() -> None:
    _, result, records = links(EXPORTS / "semrush_backlink_audit.csv")
    assert records == [
        Backlink(
            "https://blog.example.org/best-widget-tools/",
            "https://example.com/",
            "Example Widgets",
            nofollow=False,
            domain_rating=47.0,
            first_seen_at=utc("2024-03-19"),
            rating_metric="Semrush AS",
            toxicity=3.0,
        ),
        Backlink(
            "https://links.example.net/dir/page-9",
            "https://example.com/",
            "cheap widgets",
            nofollow=True,
            domain_rating=2.0,
            first_seen_at=utc("2025-11-02"),
            rating_metric="Semrush AS",
            toxicity=87.0,
        ),
    ]
    assert result.complete


def test_a_toxic_score_over_100_is_a_malformed_row(tmp_path: Path) -> None:
    path = write(
        tmp_path / "audit.csv",
        "Source URL,Target URL,Anchor,Toxic Score,No Follow\n"
        "https://a.example.org/,https://example.com/,a,101,FALSE\n",
    )
    _, result, records = links(path)
    assert records == []
    assert result.report.examples == ["line 2: expected a toxicity score from 0 to 100, got '101'"]


def test_semrush_backlinks_before_2020() -> None:
    _, result, records = links(EXPORTS / "semrush_backlinks_legacy.csv")
    assert [(r.url_from, r.url_to, r.anchor, r.nofollow, r.first_seen_at) for r in records] == [
        (
            "https://blog.example.org/best-widget-tools/",
            "https://example.com/",
            "Example Widgets",
            False,
            utc("2019-03-19"),
        ),
        (
            "https://forum.example.net/t/widgets/8841",
            "https://example.com/pricing",
            "example.com/pricing",
            True,
            utc("2019-07-03"),
        ),
    ]
    # The backlinks export carries only the page's score, which is no domain rating.
    assert {(r.domain_rating, r.rating_metric, r.lost) for r in records} == {(None, None, False)}
    assert result.complete


def test_semrush_referring_domains() -> None:
    _, result, found = domains(EXPORTS / "semrush_refdomains.csv")
    assert found[:2] == [
        RefDomain("news.example.io", 3, 58.0, "Semrush AS", utc("2023-11-28")),
        RefDomain("blog.example.org", 5, 47.0, "Semrush AS", utc("2024-03-19")),
    ]
    assert len(found) == 5 and not any(d.lost for d in found)
    assert result.complete


# --- Majestic -------------------------------------------------------------------------------


def test_majestic_advanced_report_names_trust_flow() -> None:
    _, result, records = links(EXPORTS / "majestic_backlinks.csv")
    assert [(r.domain_rating, r.rating_metric, r.nofollow) for r in records] == [
        (24.0, "Majestic TF", False),
        (9.0, "Majestic TF", True),
        (37.0, "Majestic TF", True),
        (0.0, "Majestic TF", False),
        (11.0, "Majestic TF", False),
    ]
    assert result.complete


def test_majestic_api_field_names() -> None:
    _, result, records = links(EXPORTS / "majestic_api_names.csv")
    assert records == [
        Backlink(
            "https://blog.example.org/best-widget-tools/",
            "https://example.com/",
            "example widgets",
            nofollow=False,
            domain_rating=24.0,
            first_seen_at=utc("2024-03-20"),
            rating_metric="Majestic TF",
        ),
        Backlink(
            "https://forum.example.net/t/widgets/8841",
            "https://example.com/pricing",
            "example.com/pricing",
            nofollow=True,
            domain_rating=9.0,
            first_seen_at=utc("2025-07-05"),
            lost=True,
            lost_reason="removed",
            rating_metric="Majestic TF",
        ),
    ]
    assert result.complete


# --- Moz ------------------------------------------------------------------------------------


def test_moz_after_its_preamble_with_urls_given_a_scheme() -> None:
    export, result, records = links(EXPORTS / "moz_inbound_links.csv")
    assert export.header_names[:3] == ["URL", "Title", "Anchor Text"]
    assert [(r.url_from, r.url_to) for r in records][:2] == [
        ("https://blog.example.org/best-widget-tools/", "https://example.com/"),
        ("https://forum.example.net/t/widgets/8841", "https://example.com/pricing"),
    ]
    assert [r.nofollow for r in records] == [False, True, False, True, False]
    assert [r.domain_rating for r in records] == [52.0, 41.0, 66.0, 12.0, 30.0]
    assert {r.rating_metric for r in records} == {"Moz DA"}
    # Spam Score 1, 3, 1, 17, 2 of 17 flags, on the 0-100 scale.
    assert [r.toxicity for r in records] == [5.9, 17.6, 5.9, 100.0, 11.8]
    assert result.complete


def test_moz_older_columns_read_followable() -> None:
    _, result, records = links(EXPORTS / "moz_inbound_links_11col.csv")
    assert [(r.url_from, r.nofollow, r.domain_rating) for r in records] == [
        ("https://blog.example.org/best-widget-tools/", False, 52.0),
        ("https://forum.example.net/t/widgets/8841", True, 41.0),
    ]
    assert result.complete


def test_moz_link_explorer_spam_score_is_a_percentage(tmp_path: Path) -> None:
    path = write(
        tmp_path / "moz.csv",
        "Moz Link Explorer export\n\n"
        "URL,Title,Anchor Text,Domain Authority,Spam Score,Target URL\n"
        "blog.example.org/p,Title,Widgets,52,3%,example.com/\n"
        "forum.example.net/t/1,Title,Widgets,41,60%,example.com/x\n",
    )
    export, result, records = links(path)
    assert export.detection.variant.name == "inbound links (Link Explorer)"
    assert [(r.toxicity, r.domain_rating) for r in records] == [(3.0, 52.0), (60.0, 41.0)]
    assert result.complete


def test_moz_rows_after_a_preamble_are_counted_by_file_line(tmp_path: Path) -> None:
    header = (EXPORTS / "moz_inbound_links.csv").read_text("utf-8-sig").splitlines()[:7]
    bad = "forum.example.net/t/2,T,a,18,22,41,2,840,External,example.com/x,No,Yes,No,No,No"
    path = write(tmp_path / "moz.csv", "\n".join([*header, bad]) + "\n")
    _, result, records = links(path)
    assert len(records) == 1
    # Line 8 of the file: 5 preamble lines (one blank), the header, a good row, this one.
    assert result.report.examples == [
        "line 8: expected a Moz Spam Score (flags) from 0 to 17, got '18'"
    ]


@pytest.mark.parametrize(
    ("text", "expected"), [("0", 0.0), ("1", 5.9), ("17", 100.0), ("45%", 45.0), ("", None)]
)
def test_moz_legacy_spam_score_scale(text: str, expected: float | None) -> None:
    assert moz_legacy_spam_score(text) == expected


# --- Bing -----------------------------------------------------------------------------------


def test_bing_referring_domains_are_urls_read_as_domains() -> None:
    _, result, found = domains(EXPORTS / "bing_referring_domains.csv")
    assert [(d.domain, d.links) for d in found] == [
        ("news.example.io", 3),
        ("blog.example.org", 5),
        ("forum.example.net", 2),
        ("reviews.example.co.uk", 1),
        ("directory.example.info", 1),
    ]
    assert result.complete


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("bing_anchors.csv", "it holds no links and no referring domains"),
        ("gsc_top_linked_pages_external.csv", "it names no linking page and no linking site"),
        ("gsc_top_linked_pages_pt_shape.csv", "recognised by shape"),
        ("gsc_pages_report_de.csv", "every page it lists is on example.com itself"),
        ("ahrefs_broken_backlinks.csv", "holds only broken backlinks, not the profile"),
    ],
)
def test_tables_without_links_are_refused_saying_so(name: str, words: str) -> None:
    with pytest.raises(FormatError) as info:
        open_export_files(EXPORTS / name, SITE)
    message = str(info.value)
    assert name in message and words in message and "nothing to import" in message


def test_a_table_without_links_is_refused_by_its_snapshot_too() -> None:
    export = ExportFile(EXPORTS / "bing_anchors.csv", SITE)
    assert export.format.kind == "bing_anchors"
    with pytest.raises(FormatError, match="holds no links"):
        export.snapshot(TAKEN)


def test_ahrefs_broken_backlinks_are_never_filed_as_the_profile(tmp_path: Path) -> None:
    # They carry every backlinks column: read as the complete `ahrefs` series, each weekly
    # list of a few broken links would make the rest of the profile missing, then lost.
    path = EXPORTS / "ahrefs_broken_backlinks.csv"
    export = ExportFile(path, SITE)
    assert (export.format.kind, export.format.coverage) == ("ahrefs_broken", "none")
    export.close()
    # Not even when the format is forced.
    with pytest.raises(FormatError, match="holds only broken backlinks, not the profile"):
        open_export_files(path, SITE, "ahrefs")
    # In an archive it is skipped with a note, like Top linked pages.
    archive = tmp_path / "ahrefs.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(path, "broken.csv")
        z.write(EXPORTS / "ahrefs_backlinks_utf8.csv", "backlinks.csv")
    [opened] = open_archive(archive, SITE)
    assert opened.format.kind == "ahrefs"
    assert any("broken.csv: skipped: broken backlinks (ahrefs_broken)" in n for n in opened.notes)
    opened.close()
    # `linkwatch import` refuses it and stores nothing.
    code, out = _import(write_settings(tmp_path), path)
    assert code == 2 and "holds only broken backlinks" in out and "nothing was stored" in out


# --- Search Console -------------------------------------------------------------------------

PAGES = ["https://blog.example.org/best-widget-tools/", "https://forum.example.net/t/widgets/8841"]


@pytest.mark.parametrize(
    ("name", "pages"),
    [
        ("gsc_latest_links_he.csv", PAGES),
        ("gsc_latest_links_es.csv", PAGES),
        ("gsc_latest_links_it.csv", PAGES),
        ("gsc_latest_links_ja_shape.csv", [*PAGES, "https://news.example.io/partners"]),
        ("gsc_latest_links_de_shape.csv", [*PAGES, "https://news.example.io/partners"]),
        ("gsc_more_sample_links_fr_shape.csv", [PAGES[0], "https://news.example.io/partners"]),
    ],
)
def test_search_console_linking_pages_in_any_language(name: str, pages: list[str]) -> None:
    export, result, records = links(EXPORTS / name)
    assert export.format.sample and result.sample
    assert [r.url_from for r in records] == pages
    assert {r.url_to for r in records} == {""}  # the target stays unknown
    assert result.complete


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gsc_top_linking_sites.csv", [("example.org", 12), ("example.io", 9)]),
        ("gsc_top_linking_sites_he.csv", [("example.org", 12), ("example.io", 1240)]),
        ("gsc_top_linking_sites_de_shape.csv", [("example.org", 1240), ("example.io", 9)]),
    ],
)
def test_search_console_top_linking_sites_are_domain_level(
    name: str, expected: list[tuple[str, int]]
) -> None:
    _, result, found = domains(EXPORTS / name)
    assert [(d.domain, d.links) for d in found][:2] == expected
    assert not result.sample
    assert result.complete


def test_a_search_console_sample_is_never_a_domain_series_nor_the_reverse() -> None:
    assert FORMATS["gsc"].coverage == "sample" and FORMATS["gsc_sites"].coverage == "domains"


def test_forcing_gsc_reads_a_file_of_unknown_language_by_shape() -> None:
    export, _, records = links(EXPORTS / "gsc_latest_links_ja_shape.csv", "gsc")
    assert export.detection.recognised == "shape" and len(records) == 3
    with pytest.raises(FormatError, match="does not fit format 'gsc'"):
        ExportFile(EXPORTS / "gsc_top_linking_sites_de_shape.csv", SITE, "gsc")


# --- shape detection never guesses -----------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        # No header: the first line is data.
        "https://a.example.org/p,2026-01-09\nhttps://b.example.org/p,2026-01-05\n",
        # Rows of two shapes.
        "Seite,Datum\nhttps://a.example.org/p,09.01.2026\nhttps://b.example.org/p,bald\n",
        # URLs and words.
        "Seite,Text\nhttps://a.example.org/p,Widgets\n",
        # Host names and one count (no Search Console table has that shape).
        "Website,Seiten\nexample.org,12\n",
        # The right header shape, but not one data row.
        "Seite,Datum\n",
    ],
)
def test_a_file_fitting_no_shape_is_refused_listing_the_formats(tmp_path: Path, text: str) -> None:
    path = write(tmp_path / "unknown.csv", text)
    with pytest.raises(FormatError) as info:
        ExportFile(path, SITE)
    message = str(info.value)
    assert "not a backlink export linkwatch knows" in message
    for kind in FORMATS:
        assert kind in message


def test_shape_looks_at_rows_not_only_the_header(tmp_path: Path) -> None:
    """One header, two files: URLs and dates read as Latest links, host names and counts as
    Top linking sites; a header alone decides nothing."""
    dates = write(tmp_path / "a.csv", "Spalte A,Spalte B\nhttps://a.example.org/p,09.01.2026\n")
    assert ExportFile(dates, SITE).detection.variant.name == "Latest links"
    three = "Spalte A,Spalte B,Spalte C\n"
    sites = write(tmp_path / "b.csv", three + "example.org,12,3\n")
    assert ExportFile(sites, SITE).detection.variant.name == "Top linking sites"


def test_a_shape_detected_file_cut_short_is_partial(tmp_path: Path) -> None:
    """The rows read ahead to judge the shape are read again, with the file's end intact."""
    path = write(
        tmp_path / "cut.csv",
        "リンク元ページ,前回のクロール\nhttps://a.example.org/p,2026/09/28\nhttps://b.example.org/p,2026/0",
    )
    _, result, records = links(path)
    assert [r.url_from for r in records] == ["https://a.example.org/p"]
    assert result.report.examples == ["line 3: last row has no line end: the file may be cut short"]
    assert not result.complete


def test_shape_reads_many_rows_after_the_peeked_ones(tmp_path: Path) -> None:
    rows = "".join(f"https://r{i}.example.org/p,{1 + i % 28:02d}.01.2026\n" for i in range(200))
    _, result, records = links(write(tmp_path / "de.csv", "Seite,Datum\n" + rows))
    assert len(records) == 200 and result.complete
    assert result.line == 201


# --- zip archives ---------------------------------------------------------------------------


def test_a_links_report_zip_gives_one_snapshot_per_usable_table() -> None:
    opened = open_export_files(EXPORTS / ZIP, SITE)
    assert [(f.origin, f.format.kind) for f in opened] == [
        (f"{ZIP}:Top linking sites.csv", "gsc_sites"),
        (f"{ZIP}:Latest links.csv", "gsc"),
    ]
    notes = opened[0].notes
    assert len(notes) == 2
    assert notes[0].startswith(
        f"{ZIP}:Top linked pages - externally.csv: skipped: Top linked pages (gsc_pages)"
    )
    assert notes[1].startswith(f"{ZIP}:Top linking text.csv: skipped: Top linking text (gsc_text)")
    sites = opened[0].snapshot(TAKEN)
    assert sites.origin == f"{ZIP}:Top linking sites.csv" and sites.notes == notes
    assert sites.domain_records is not None
    assert [d.domain for d in sites.domain_records] == ["example.org", "example.io"]
    latest = opened[1].snapshot(TAKEN)
    assert [r.url_from for r in latest.records] == PAGES
    assert latest.complete and latest.sample
    assert latest.digest is not None and latest.digest != sites.digest


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 10, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return path


def _mark_encrypted(path: Path) -> None:
    """Set the "encrypted" flag of every member (zipfile cannot write encrypted archives):
    in the local headers (flags at offset 6) and the central directory (offset 8)."""
    data = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature)
        while at != -1:
            data[at + offset] |= 0x1
            at = data.find(signature, at + 4)
    path.write_bytes(bytes(data))


LATEST = b"Linking page,Last crawled\nhttps://a.example.org/p,2026-01-09\n"


@pytest.mark.parametrize(
    ("members", "words"),
    [
        ({"../escape.csv": LATEST}, "names a path outside the archive"),
        ({"/etc/links.csv": LATEST}, "names a path outside the archive"),
        ({"big.csv": b"0" * (4 << 20)}, "a zip bomb"),
        ({f"t{i}.csv": LATEST for i in range(101)}, "101 members"),
    ],
)
def test_unsafe_archives_are_refused(tmp_path: Path, members: dict[str, bytes], words: str) -> None:
    path = _zip(tmp_path / "links.zip", members)
    with pytest.raises(SourceError) as info:
        open_export_files(path, SITE)
    assert words in str(info.value) and "links.zip" in str(info.value)


def test_an_encrypted_member_is_refused(tmp_path: Path) -> None:
    path = _zip(tmp_path / "links.zip", {"Latest links.csv": LATEST})
    _mark_encrypted(path)
    with pytest.raises(SourceError, match=r"'Latest links\.csv' is encrypted"):
        open_export_files(path, SITE)


def _deflate64(path: Path) -> Path:
    """An archive whose member says it is compressed with Deflate64 (method 9), which Windows
    uses for big files and zipfile cannot read."""
    _zip(path, {"Latest links.csv": LATEST})
    data = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        data[data.find(signature) + offset] = 9
    path.write_bytes(bytes(data))
    return path


def _damaged(path: Path, rows: int = 3000, at: int = 40) -> Path:
    """An archive whose member's deflate stream is damaged `at` bytes into it."""
    body = "".join(f"https://ref{i}.example.org/page/{i * 7919},2026-01-09\n" for i in range(rows))
    _zip(path, {"Latest links.csv": b"Linking page,Last crawled\n" + body.encode()})
    data = bytearray(path.read_bytes())
    [info] = zipfile.ZipFile(path).infolist()
    start = info.header_offset + 30 + len(info.filename)
    for i in range(start + at, start + at + 20):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def test_a_member_zipfile_cannot_decompress_is_refused_saying_why(tmp_path: Path) -> None:
    path = _deflate64(tmp_path / "links.zip")
    with pytest.raises(SourceError, match=r"'Latest links\.csv' is compressed with method 9"):
        open_export_files(path, SITE)
    with pytest.raises(SourceError, match="compressed with method 9"):
        ExportFile(path, SITE, member="Latest links.csv")


def test_a_damaged_member_is_a_source_error_not_a_crash(tmp_path: Path) -> None:
    path = _damaged(tmp_path / "links.zip")
    with pytest.raises(SourceError, match="damaged archive member"):
        open_export_files(path, SITE)
    # Found damaged only past the header (not hashed first): the snapshot is cut short and
    # says why, as for a bad CRC.
    late = _damaged(tmp_path / "late.zip", rows=20000, at=30000)
    export = ExportFile(late, SITE, member="Latest links.csv", digest=False)
    result = export.snapshot(TAKEN)
    list(result.records)
    assert result.error is not None and "read failed near line" in result.error


@pytest.mark.parametrize("make", [_deflate64, _damaged])
def test_csv_dir_records_an_unreadable_archive_and_reads_the_other_files(
    tmp_path: Path, make: Callable[[Path], Path]
) -> None:
    src, folder = _folder_source(tmp_path)
    make(folder / "links_2026-01-10.zip")
    write(folder / "good_2026-01-09.csv", "url_from,url_to\nhttps://a.org/p,https://example.com/\n")
    found = src.pending(SITE, set(), TAKEN, sleep=lambda _: None)
    problems = {p.path.name: p.problem for p in found}
    assert problems["good_2026-01-09.csv"] is None
    assert problems["links_2026-01-10.zip"] is not None
    assert "links_2026-01-10.zip" in problems["links_2026-01-10.zip"]


@pytest.mark.parametrize("make", [_deflate64, _damaged])
def test_import_of_an_unreadable_archive_exits_2_with_a_message(
    tmp_path: Path, make: Callable[[Path], Path]
) -> None:
    path = make(tmp_path / "links.zip")
    code, out = _import(write_settings(tmp_path), path)
    assert code == 2, out
    assert out.startswith("linkwatch: ") and "links.zip" in out and "Traceback" not in out


def test_an_archive_expanding_past_the_cap_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sources.exports

    monkeypatch.setattr(sources.exports, "MAX_ZIP_BYTES", 100)
    path = _zip(tmp_path / "links.zip", {"a.csv": LATEST, "b.csv": LATEST})
    with pytest.raises(SourceError, match="expand to more than 100 bytes"):
        open_export_files(path, SITE)


def test_an_archive_without_links_is_refused_naming_each_member(tmp_path: Path) -> None:
    path = _zip(
        tmp_path / "links.zip",
        {
            "Top linking text.csv": b"Linking text,Links\nwidgets,5\n",
            "Chart.png": b"\x89PNG",
            "Metadata.csv": b"Property,Value\nSearch type,Web\n",
            "folder/": b"",
        },
    )
    with pytest.raises(FormatError) as info:
        open_export_files(path, SITE)
    message = str(info.value)
    assert "no member of the archive holds links or referring domains" in message
    assert "Top linking text.csv: skipped" in message and "Chart.png: skipped: not a CSV" in message
    assert "Metadata.csv: skipped: not a backlink export linkwatch knows" in message
    # Each member's note is short: the formats known are not listed once per member.
    assert "known formats" not in message


def test_a_damaged_archive_is_a_source_error(tmp_path: Path) -> None:
    path = tmp_path / "links.zip"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(SourceError, match="not a readable zip archive"):
        open_export_files(path, SITE)


def test_an_archive_named_otherwise_is_still_read_as_one(tmp_path: Path) -> None:
    path = _zip(tmp_path / "download.csv", {"Latest links.csv": LATEST})
    [export] = open_export_files(path, SITE)
    assert export.origin == "download.csv:Latest links.csv"


def test_archive_members_are_classified_without_hashing_them() -> None:
    opened = open_archive(EXPORTS / ZIP, SITE, digest=False)
    assert [f.digest for f in opened] == [None, None]
    for f in opened:
        f.close()


# --- csv_dir reads archives member by member --------------------------------------------------


def _folder_source(tmp_path: Path) -> tuple[CsvDirSource, Path]:
    folder = tmp_path / SITE
    folder.mkdir()
    settings = CsvDirSettings(kind="csv_dir", path=str(tmp_path / "{domain}"), settle="0s")
    return CsvDirSource("exports", settings), folder


def test_csv_dir_reads_zip_archives_by_default(tmp_path: Path) -> None:
    src, folder = _folder_source(tmp_path)
    assert "*.zip" in src.settings.patterns
    archive = folder / ZIP
    archive.write_bytes((EXPORTS / ZIP).read_bytes())
    found = src.pending(SITE, set(), TAKEN, sleep=lambda _: None)
    assert [(p.origin, p.problem) for p in found] == [
        (f"{ZIP}:Latest links.csv", None),
        (f"{ZIP}:Top linking sites.csv", None),
    ]
    assert found[0].taken_at == datetime(2026, 1, 10, tzinfo=UTC)  # the date in its name
    results = [src.open(SITE, p) for p in found]
    assert [r.origin for r in results] == [p.origin for p in found]
    assert all(r.origin_stamp == found[0].stamp for r in results)
    # The members skipped are told with the first table of the archive.
    assert [len(r.notes) for r in results] == [0, 2]
    assert [x.url_from for x in results[0].records] == PAGES
    assert results[1].domain_records is not None and len(list(results[1].domain_records)) == 2

    # Once stored, the tables are not read again; a member whose read failed is retried.
    stored = {(p.origin, p.stamp) for p in found}
    assert src.pending(SITE, stored, TAKEN, sleep=lambda _: None) == []
    retry = {(found[0].origin, found[0].stamp), (ZIP, "retry")}
    assert [p.origin for p in src.pending(SITE, retry, TAKEN, sleep=lambda _: None)] == [
        found[1].origin
    ]
    # An archive judged as a whole (refused) is not looked at again until it changes.
    assert src.pending(SITE, {(ZIP, found[0].stamp)}, TAKEN, sleep=lambda _: None) == []


def test_csv_dir_does_not_reopen_an_archive_whose_tables_are_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sources.csv_dir

    src, folder = _folder_source(tmp_path)
    src.settings = src.settings.model_copy(update={"settle": timedelta(seconds=5)})
    archive = folder / ZIP
    archive.write_bytes((EXPORTS / ZIP).read_bytes())
    opened: list[str] = []
    real = sources.csv_dir.open_archive

    def counting(path: Path, *args: object, **kwargs: object) -> list[ExportFile]:
        opened.append(path.name)
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sources.csv_dir, "open_archive", counting)
    sleeps: list[float] = []
    found = src.pending(SITE, set(), TAKEN, sleep=sleeps.append)
    assert (opened, sleeps) == ([ZIP], [5.0]) and len(found) == 2
    # Its tables stored: the archive as it is counts as read, neither opened nor waited for.
    stored = {(p.origin, p.stamp) for p in found}
    opened.clear()
    sleeps.clear()
    assert src.pending(SITE, stored, TAKEN, sleep=sleeps.append) == []
    assert (opened, sleeps) == ([], [])
    # A table whose read is to be retried: the archive is looked at again to find it.
    assert len(src.pending(SITE, {*stored, (ZIP, "retry")}, TAKEN, sleep=sleeps.append)) == 0
    assert opened == [ZIP]
    # Changed, it is read again.
    opened.clear()
    archive.write_bytes((EXPORTS / ZIP).read_bytes() + b"")
    os.utime(archive, ns=(1, 1))
    again = src.pending(SITE, stored, TAKEN, sleep=sleeps.append)
    assert opened == [ZIP] and len(again) == 2


def test_csv_dir_refuses_an_archive_without_links_once(tmp_path: Path) -> None:
    src, folder = _folder_source(tmp_path)
    _zip(folder / "anchors.zip", {"Top linking text.csv": b"Linking text,Links\nwidgets,5\n"})
    [refused] = src.pending(SITE, set(), TAKEN, sleep=lambda _: None)
    assert refused.member is None
    assert refused.problem is not None and "no member of the archive holds links" in refused.problem


# --- values ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("28/09/2026", "2026-09-28"),
        ("28/09/2026 14:05", "2026-09-28 14:05"),
        ("15.09.2026", "2026-09-15"),
        ("28 Sep 2026", "2026-09-28"),
        ("Sep 15, 2026", "2026-09-15"),
        ("8 may 2026", "2026-05-08"),  # Spanish
        ("28 sept 2026", "2026-09-28"),
        ("28 de septiembre de 2026", "2026-09-28"),
        ("28 set 2026", "2026-09-28"),  # Italian
        ("3 dic 2026", "2026-12-03"),
        ("15 août 2026", "2026-08-15"),  # French
        ("1 févr. 2026", "2026-02-01"),
        ("28. Sept. 2026", "2026-09-28"),  # German
        ("3 März 2026", "2026-03-03"),
        ("5 okt 2026", "2026-10-05"),
        ("28 de set. de 2026", "2026-09-28"),  # Portuguese
        ("2 out 2026", "2026-10-02"),
        ("12 mei 2026", "2026-05-12"),  # Dutch
        ("2026/09/28", "2026-09-28"),  # Japanese
        ("2026年9月28日", "2026-09-28"),
    ],
)
def test_localised_dates(text: str, expected: str) -> None:
    assert parse_datetime(text) == utc(expected)


@pytest.mark.parametrize("text", ["28 Foo 2026", "31/02/2026", "32.01.2026", "Sep 31, 2026"])
def test_dates_that_are_not_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="expected a date"):
        parse_datetime(text)


def test_no_month_spelling_names_two_months() -> None:
    spellings = [name for names in _MONTH_NAMES for name in names]
    assert len(spellings) == len(set(spellings))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://www.msn.com/", "msn.com"),
        ("News.Example.IO.", "news.example.io"),
        ("example.org", "example.org"),
        ("http://straße.example.de/x", "xn--strae-oqa.example.de"),
    ],
)
def test_domain_names_have_one_spelling(text: str, expected: str) -> None:
    assert domain_name(text) == expected


@pytest.mark.parametrize("text", ["", "localhost", "not a domain", "https:///x"])
def test_non_domains_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="expected a domain name"):
        domain_name(text)


# --- the import command ----------------------------------------------------------------------


def _import(settings: Path, *files: Path) -> tuple[int, str]:
    args = ["-c", str(settings), "import", "--site", SITE, *map(str, files)]
    res = CliRunner().invoke(main, args)
    return res.exit_code, res.output


def test_import_says_how_each_file_was_recognised_and_where_it_was_filed(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    code, out = _import(settings, EXPORTS / "gsc_latest_links_ja_shape.csv")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("example.com/exports/gsc: gsc_latest_links_ja_shape.csv taken")
    assert "format gsc (" in lines[1] and lines[1].endswith("Latest links, recognised by shape")
    assert lines[2] == (
        "  gsc_latest_links_ja_shape.csv: filed under series exports/gsc: 3 rows read, 0 refused"
    )


def test_import_of_a_zip_names_each_table_and_what_was_skipped(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    _, out = _import(settings, EXPORTS / ZIP)
    assert f"{ZIP}:Latest links.csv" in out and f"{ZIP}:Top linking sites.csv" in out
    assert f"{ZIP}:Top linking text.csv: skipped" in out
    assert "recognised by header" in out
    assert "filed under series exports/gsc:" in out


def test_import_refuses_a_table_without_links_and_stores_nothing(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    code, out = _import(settings, EXPORTS / "bing_backlinks.csv", EXPORTS / "bing_anchors.csv")
    assert code == 2
    assert "bing_anchors.csv" in out and "holds no links" in out
    assert "nothing was stored" in out


def test_import_of_referring_domains_counts_domains_and_changes_no_link(tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    code, out = _import(settings, EXPORTS / "bing_backlinks.csv")
    assert code == 0, out
    links_before = (
        CliRunner()
        .invoke(main, ["-c", str(settings), "links", "--site", SITE, "--format", "csv"])
        .output
    )
    code, out = _import(settings, EXPORTS / "ahrefs_refdomains_utf16.csv")
    assert code == 0, out
    first = out.splitlines()[0]
    assert first.startswith("example.com/exports/ahrefs_domains: ahrefs_refdomains_utf16.csv")
    assert " referring domains, " in first and " missing, " not in first
    assert "filed under series exports/ahrefs_domains" in out
    links_after = (
        CliRunner()
        .invoke(main, ["-c", str(settings), "links", "--site", SITE, "--format", "csv"])
        .output
    )
    assert links_after == links_before
