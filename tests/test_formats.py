"""Export formats: encoding, delimiter and format detection, field values, malformed rows."""

from __future__ import annotations

import codecs
import csv
import io
import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from daemon.store import GuardSettings, Store
from sources.exports import ExportFile, detect_delimiter, detect_encoding, taken_at_from_name
from sources.formats import FORMATS
from sources.formats.values import map_lost_reason, parse_bool, parse_datetime, parse_number
from sources.model import Backlink, FormatError, SnapshotResult, SourceError
from sources.urls import canonical_escapes, link_key, normalize_url, registrable_domain

EXPORTS = Path(__file__).parent / "fixtures" / "exports"
SITE = "example.com"
TAKEN = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def read_export(
    path: Path, site: str = SITE, format_kind: str | None = None
) -> tuple[ExportFile, SnapshotResult, list[Backlink]]:
    """Open an export, stream every record, and return the file, its snapshot and records."""
    export = ExportFile(path, site, format_kind)
    result = export.snapshot(TAKEN)
    records = list(result.records)
    return export, result, records


@dataclass(frozen=True)
class Row:
    """What one row of a sample export says, field by field."""

    url_from: str
    url_to: str
    anchor: str | None
    nofollow: bool | None
    ugc: bool | None
    sponsored: bool | None
    domain_rating: float | None
    first_seen_at: datetime | None
    lost: bool = False
    lost_reason: str | None = None
    rating_metric: str | None = None
    toxicity: float | None = None

    def backlink(self, **changes: object) -> Backlink:
        return Backlink(
            url_from=self.url_from,
            url_to=self.url_to,
            anchor=self.anchor,
            nofollow=self.nofollow,
            ugc=self.ugc,
            sponsored=self.sponsored,
            domain_rating=self.domain_rating,
            first_seen_at=self.first_seen_at,
            lost=self.lost,
            lost_reason=self.lost_reason,
            rating_metric=self.rating_metric,
            toxicity=self.toxicity,
        )._replace(**changes)


# The rows of the Ahrefs samples, as the files spell them (current and 2023 column sets).
AHREFS_ROWS = [
    Row(
        "https://blog.example.org/best-widget-tools/",
        "https://example.com/",
        "Example Widgets",
        False,
        False,
        False,
        61.0,
        utc("2024-03-18 07:41:55"),
        rating_metric="Ahrefs DR",
        toxicity=0.0,
    ),
    Row(
        "https://forum.example.net/t/widgets/8841",
        "https://example.com/pricing",
        "example.com/pricing",
        True,
        True,
        False,
        44.0,
        utc("2025-07-02 11:05:40"),
        rating_metric="Ahrefs DR",
        toxicity=0.0,
    ),
    Row(
        "https://news.example.io/partners",
        "https://example.com/",
        "sponsor: Example",
        False,
        False,
        True,
        72.0,
        utc("2023-11-27 19:22:08"),
        rating_metric="Ahrefs DR",
        toxicity=0.0,
    ),
    Row(
        "https://directory.example.info/widgets/page-2",
        "https://example.com/features",
        "Example Widgets \u2013 Features",
        False,
        False,
        False,
        9.0,
        utc("2022-05-14 03:12:44"),
        lost=True,
        lost_reason="removed",
        rating_metric="Ahrefs DR",
        toxicity=100.0,
    ),
    Row(
        "https://reviews.example.co.uk/example-widgets",
        "https://example.com/old-page",
        "full review",
        False,
        False,
        False,
        38.0,
        utc("2025-12-20 08:00:01"),
        rating_metric="Ahrefs DR",
        toxicity=0.0,
    ),
]

SEMRUSH_ROWS = [
    Row(
        "https://blog.example.org/best-widget-tools/",
        "https://example.com/",
        "Example Widgets",
        False,
        False,
        False,
        None,
        utc("2024-03-19"),
    ),
    Row(
        "https://forum.example.net/t/widgets/8841",
        "https://example.com/pricing",
        "example.com/pricing",
        True,
        True,
        False,
        None,
        utc("2025-07-03"),
    ),
    Row(
        "https://news.example.io/partners",
        "https://example.com/",
        "sponsor: Example",
        False,
        False,
        True,
        None,
        utc("2023-11-28"),
    ),
    Row(
        "https://directory.example.info/widgets/page-2",
        "https://example.com/features",
        "",
        False,
        False,
        False,
        None,
        utc("2022-05-15"),
        lost=True,
        lost_reason="unknown",
    ),
    Row(
        "https://reviews.example.co.uk/example-widgets",
        "https://example.com/old-page",
        "full review",
        False,
        False,
        False,
        None,
        utc("2025-12-21"),
    ),
]

# The 2023 column set has no `Is spam`: toxicity unknown.
AHREFS_2023_ROWS = [replace(row, toxicity=None) for row in AHREFS_ROWS[:3]]

GSC_PAGES = [
    "https://blog.example.org/best-widget-tools/",
    "https://forum.example.net/t/widgets/8841",
    "https://news.example.io/partners",
    "https://reviews.example.co.uk/example-widgets",
    "https://directory.example.info/widgets/page-2",
]


@pytest.mark.parametrize(
    ("name", "encoding", "delimiter", "kind", "expected"),
    [
        ("ahrefs_backlinks_utf16.csv", "utf-16", "\t", "ahrefs", AHREFS_ROWS),
        ("ahrefs_backlinks_2023_utf16.csv", "utf-16", "\t", "ahrefs", AHREFS_2023_ROWS),
        ("ahrefs_backlinks_utf8.csv", "utf-8-sig", ",", "ahrefs", AHREFS_ROWS),
        ("semrush_backlinks.csv", "utf-8", ",", "semrush", SEMRUSH_ROWS),
        ("semrush_backlinks_semicolon.csv", "utf-8", ";", "semrush", SEMRUSH_ROWS),
    ],
)
def test_sample_exports_parse_to_what_the_file_says(
    name: str, encoding: str, delimiter: str, kind: str, expected: list[Row]
) -> None:
    export, result, records = read_export(EXPORTS / name)
    assert export.encoding == encoding
    assert export.delimiter == delimiter
    assert export.format.kind == kind
    assert result.format == kind
    assert result.origin == name
    assert records == [row.backlink() for row in expected]
    assert result.report.malformed == 0
    assert result.complete


@pytest.mark.parametrize("site", ["example.com", "shop.example.com"])
def test_gsc_latest_links_name_the_linking_page_only(site: str) -> None:
    export, result, records = read_export(EXPORTS / "gsc_latest_links.csv", site=site)
    assert export.format.kind == "gsc" and export.format.sample
    assert [r.url_from for r in records] == GSC_PAGES
    # The target is unknown: left empty, never invented as the home page.
    assert {r.url_to for r in records} == {""}
    assert all(r.anchor is None and r.nofollow is None and not r.lost for r in records)
    assert result.complete


def test_generic_csv_written_by_hand(tmp_path: Path) -> None:
    path = tmp_path / "generic.csv"
    path.write_text(
        "url_from,url_to,anchor,nofollow,first_seen,last_seen,domain_rating\n"
        'https://blog.example.org/a,https://example.com/x,Widgets,false,2025-01-02,2026-01-01,"1,240"\n'
        'https://www.example.net/b,https://example.com/,"Anchor, with comma",TRUE,,,"12,5"\n'
        "https://news.example.io/c,https://example.com/,Plain,No,2024-05-06 07:08:09,,12,5\n",
        encoding="utf-8",
    )
    export, result, records = read_export(path)
    assert export.format.kind == "generic"
    assert records == [
        Backlink(
            url_from="https://blog.example.org/a",
            url_to="https://example.com/x",
            anchor="Widgets",
            nofollow=False,
            domain_rating=1240.0,
            first_seen_at=utc("2025-01-02"),
        ),
        Backlink(
            url_from="https://www.example.net/b",
            url_to="https://example.com/",
            anchor="Anchor, with comma",
            nofollow=True,
            domain_rating=12.5,
        ),
    ]
    # The last row has one cell too many: an unquoted decimal comma.
    assert result.report.malformed == 1
    assert result.report.examples == ["line 4: expected 7 fields, got 8"]
    assert not result.complete


def test_generic_csv_optional_columns(tmp_path: Path) -> None:
    path = tmp_path / "generic.csv"
    path.write_text(
        "URL_TO , url_from\nhttps://example.com/p,https://forum.example.net/t/1\n",
        encoding="utf-8",
    )
    _, result, records = read_export(path)
    assert records == [Backlink("https://forum.example.net/t/1", "https://example.com/p")]
    assert result.complete


# --- Ahrefs variants generated from the sample ---------------------------------------------


def ahrefs_table() -> tuple[list[str], list[list[str]]]:
    """The header and rows of the current Ahrefs sample."""
    text = (EXPORTS / "ahrefs_backlinks_utf16.csv").read_bytes().decode("utf-16")
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t"))
    return rows[0], rows[1:]


def write_table(
    path: Path,
    header: list[str],
    rows: list[list[str]],
    *,
    delimiter: str = ",",
    encoding: str = "utf-8",
    bom: bytes = b"",
) -> Path:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, delimiter=delimiter, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(bom + buf.getvalue().encode(encoding))
    return path


@pytest.mark.parametrize(
    ("delimiter", "encoding", "bom", "detected"),
    [
        (",", "utf-8", b"", "utf-8"),
        (";", "utf-8", b"", "utf-8"),
        (";", "utf-8", codecs.BOM_UTF8, "utf-8-sig"),
        ("\t", "utf-8", b"", "utf-8"),
        ("\t", "utf-16-le", b"", "utf-16-le"),
        ("\t", "utf-16-be", codecs.BOM_UTF16_BE, "utf-16"),
    ],
)
def test_ahrefs_in_other_encodings_and_delimiters(
    tmp_path: Path, delimiter: str, encoding: str, bom: bytes, detected: str
) -> None:
    header, rows = ahrefs_table()
    path = write_table(
        tmp_path / "ahrefs.csv", header, rows, delimiter=delimiter, encoding=encoding, bom=bom
    )
    export, result, records = read_export(path)
    assert export.format.kind == "ahrefs"
    assert export.encoding == detected
    assert export.delimiter == delimiter
    assert records == [row.backlink() for row in AHREFS_ROWS]
    assert result.complete


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, -1])
def test_ahrefs_column_order_does_not_matter(tmp_path: Path, seed: int) -> None:
    header, rows = ahrefs_table()
    order = list(range(len(header)))
    if seed == -1:
        order.reverse()
    else:
        random.Random(seed).shuffle(order)
    assert order != list(range(len(header)))
    path = write_table(
        tmp_path / "shuffled.csv",
        [header[i] for i in order],
        [[row[i] for i in order] for row in rows],
    )
    _, result, records = read_export(path)
    assert records == [row.backlink() for row in AHREFS_ROWS]
    assert result.complete


def test_ahrefs_header_names_compare_case_and_space_insensitively(tmp_path: Path) -> None:
    header, rows = ahrefs_table()
    header = [f"  {name.upper()}  ".replace(" ", "  ") for name in header]
    path = write_table(tmp_path / "shouty.csv", header, rows)
    export, _, records = read_export(path)
    assert export.format.kind == "ahrefs"
    assert records == [row.backlink() for row in AHREFS_ROWS]


# --- forcing a format, unknown formats -----------------------------------------------------

AMBIGUOUS = (
    "Source Url,Target Url,Anchor text,FlagNoFollow\n"
    "https://forum.example.net/t/1,https://example.com/,Widgets,+\n"
)


def test_header_fitting_two_formats_is_detected_as_the_first_and_can_be_forced(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ambiguous.csv"
    path.write_text(AMBIGUOUS, encoding="utf-8")
    export, _, records = read_export(path)
    assert export.format.kind == "majestic"
    assert records[0].nofollow is True  # Majestic: any non-empty flag cell is set

    export, _, records = read_export(path, format_kind="bing")
    assert export.format.kind == "bing"
    assert records == [Backlink("https://forum.example.net/t/1", "https://example.com/", "Widgets")]


def test_forcing_the_right_format_reads_the_file() -> None:
    export, result, records = read_export(EXPORTS / "semrush_backlinks.csv", format_kind="semrush")
    assert export.format.kind == "semrush"
    assert records == [row.backlink() for row in SEMRUSH_ROWS]
    assert result.complete


@pytest.mark.parametrize(
    ("name", "forced"),
    [
        ("semrush_backlinks.csv", "ahrefs"),
        ("ahrefs_backlinks_utf16.csv", "semrush"),
        ("gsc_latest_links.csv", "generic"),
        ("ahrefs_backlinks_utf8.csv", "gsc"),
    ],
)
def test_forcing_a_format_the_header_does_not_fit_is_refused(name: str, forced: str) -> None:
    with pytest.raises(FormatError) as info:
        ExportFile(EXPORTS / name, SITE, forced)
    message = str(info.value)
    assert f"does not fit format {forced!r}" in message
    assert name in message


def test_forcing_an_unknown_format_lists_the_known_ones() -> None:
    with pytest.raises(FormatError) as info:
        ExportFile(EXPORTS / "semrush_backlinks.csv", SITE, "opensiteexplorer")
    message = str(info.value)
    assert "'opensiteexplorer'" in message
    for kind in FORMATS:
        assert kind in message


def test_unknown_format_error_names_the_headers_seen_and_known_formats(tmp_path: Path) -> None:
    anchors = tmp_path / "example.com-backlinks_anchors.csv"
    anchors.write_text(
        "Anchor,Domains,Backlinks,First seen,Last seen\n"
        "Example Widgets,3,5,2024-03-19,2026-01-10\n",
        encoding="utf-8",
    )
    with pytest.raises(FormatError) as info:
        ExportFile(anchors, SITE)
    message = str(info.value)
    for header in ("Anchor", "Domains", "Backlinks", "Last seen"):
        assert header in message
    for kind in ("ahrefs", "semrush", "majestic", "bing", "gsc", "generic"):
        assert kind in message

    random_csv = tmp_path / "people.csv"
    random_csv.write_text("name;age;favourite colour\nBob;3;red\n", encoding="utf-8")
    with pytest.raises(FormatError) as info:
        ExportFile(random_csv, SITE)
    message = str(info.value)
    assert "'name', 'age', 'favourite colour'" in message
    assert "people.csv" in message
    for kind in FORMATS:
        assert kind in message


def test_missing_file_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot read"):
        ExportFile(tmp_path / "nope.csv", SITE)


# --- legacy encodings ----------------------------------------------------------------------


def test_cp1252_file_decodes_non_ascii_anchor(tmp_path: Path) -> None:
    path = tmp_path / "legacy.csv"
    path.write_bytes(
        b"url_from,url_to,anchor\r\n"
        b"https://caf\xe9.example.org/menu,https://example.com/,"
        b"Caf\xe9 cr\xe8me \x96 \x93best\x94\r\n"
    )
    export, result, records = read_export(path)
    # Only the line that is not UTF-8 falls back to Windows-1252.
    assert export.encoding == "utf-8+cp1252"
    assert export.legacy_lines == 1
    assert records[0].anchor == "Caf\u00e9 cr\u00e8me \u2013 \u201cbest\u201d"
    assert records[0].url_from == "https://caf\u00e9.example.org/menu"
    assert result.complete


def test_cp1252_file_whose_first_non_ascii_byte_is_past_the_sniffed_head(tmp_path: Path) -> None:
    """A long legacy export: the accented anchor sits after the first 64 KiB."""
    lines = [b"url_from,url_to,anchor"]
    lines += [
        b"https://site%d.example.org/p,https://example.com/,plain %d" % (i, i) for i in range(2000)
    ]
    lines.append(b"https://late.example.org/p,https://example.com/,Caf\xe9")
    path = tmp_path / "legacy-long.csv"
    path.write_bytes(b"\r\n".join(lines) + b"\r\n")
    assert path.stat().st_size > 1 << 16
    _, _, records = read_export(path)
    assert len(records) == 2001
    assert records[-1].anchor == "Caf\u00e9"


@pytest.mark.parametrize("end", [b"\r\n", b""])
def test_short_cp1252_file_ending_in_its_only_accented_byte(tmp_path: Path, end: bytes) -> None:
    """The file's last byte before its line end (or its very last byte) is 0xE9."""
    path = tmp_path / "legacy-short.csv"
    path.write_bytes(
        b"url_from,url_to,anchor\r\nhttps://a.example.org/,https://example.com/,Caf\xe9" + end
    )
    export, result, records = read_export(path)
    assert export.encoding == "utf-8+cp1252"
    if end:
        assert records[0].anchor == "Caf\u00e9"
        assert result.complete
    else:
        # Without a line end the row may be cut short: not read, and the snapshot partial.
        assert records == []
        assert not result.complete


def test_utf8_multibyte_character_split_at_the_sniff_boundary(tmp_path: Path) -> None:
    head = b"url_from,url_to,anchor\n"
    filler = b"https://a.example.org/p,https://example.com/,"
    pad = (1 << 16) - len(head) - len(filler) - 1
    body = filler + b"x" * pad + "\u00e9".encode()  # the 2-byte character straddles 64 KiB
    path = tmp_path / "utf8.csv"
    path.write_bytes(head + body + b"\n")
    export, _, records = read_export(path)
    assert export.encoding == "utf-8"
    assert records[0].anchor == "x" * pad + "\u00e9"


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (codecs.BOM_UTF16_LE + "a\tb".encode("utf-16-le"), "utf-16"),
        (codecs.BOM_UTF16_BE + "a\tb".encode("utf-16-be"), "utf-16"),
        (codecs.BOM_UTF8 + b"a,b", "utf-8-sig"),
        ("ab,c".encode("utf-16-le"), "utf-16-le"),
        ("ab,c".encode("utf-16-be"), "utf-16-be"),
        ("a,\u00e9".encode(), "utf-8"),
        # Legacy bytes no longer decide for the whole file: lines decode one by one.
        (b"a,\xe9 b\n", "utf-8"),
    ],
)
def test_detect_encoding(head: bytes, expected: str) -> None:
    assert detect_encoding(head) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [("a\tb\tc", "\t"), ("a;b;c", ";"), ("a,b,c", ","), ("a;b,c", ","), ("abc", ",")],
)
def test_detect_delimiter(line: str, expected: str) -> None:
    assert detect_delimiter(line) == expected


# --- malformed rows ------------------------------------------------------------------------

MALFORMED = (
    "url_from,url_to,anchor,nofollow\n"
    "https://a.example.org/1,https://example.com/,one,false\n"  # 2 good
    "https://b.example.org/2,https://example.com/,two\n"  # 3 field count
    ",https://example.com/,three,false\n"  # 4 empty URL
    "https://c.example.org/3,https://example.com/,four,maybe\n"  # 5 bad boolean
    "\n"  # 6 blank: skipped, still counted as a line
    'https://d.example.org/4,https://example.com/,"two\nlines",true\n'  # 7-8 good
    "https://e.example.org/5,https://example.com/,five,false,extra\n"  # 9 field count
    "not a url,https://example.com/,six,false\n"  # 10 referring page not a URL
    "https://f.example.org/6,,seven,false\n"  # 11 empty target
    "https://g.example.org/7,https://example.com/,eight,no\n"  # 12 good
)


def test_malformed_rows_are_counted_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(MALFORMED, encoding="utf-8")
    _, result, records = read_export(path)
    assert [r.url_from for r in records] == [
        "https://a.example.org/1",
        "https://d.example.org/4",
        "not a url",  # the reader passes it on; the store rejects it (next test)
        "https://g.example.org/7",
    ]
    assert records[1].anchor == "two\nlines"
    assert records[1].nofollow is True
    assert records[3].nofollow is False
    assert result.report.malformed == 5
    assert result.report.examples == [
        "line 3: expected 4 fields, got 3",
        "line 4: empty referring page URL",
        "line 5: expected true/false, got 'maybe'",
        "line 9: expected 4 fields, got 5",
        "line 11: empty target URL",
    ]
    assert not result.complete


def test_non_url_referring_page_is_malformed_at_ingest(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(MALFORMED, encoding="utf-8")
    result = ExportFile(path, SITE).snapshot(TAKEN)
    store = Store(tmp_path / "lw.db")
    try:
        store.ensure_site(SITE, "own")
        outcome = store.ingest(SITE, "files", result, GuardSettings(), TAKEN)
        assert outcome.status == "partial"
        assert outcome.malformed == 6
        assert "line 10: referring page is not a URL: 'not a url'" in outcome.examples
        assert not result.complete
        assert list(store.links(SITE)) == []
        [snap] = store.snapshots(SITE)
        assert (snap["status"], snap["malformed"], snap["seen"]) == ("partial", 6, 3)
    finally:
        store.close()


def test_blank_trailing_header_cells_do_not_make_every_row_malformed(tmp_path: Path) -> None:
    """A spreadsheet re-save adds empty columns: the header ends `,,` and so does every row."""
    path = tmp_path / "resaved.csv"
    path.write_text(
        "url_from,url_to,anchor,,\n"
        "https://a.example.org/1,https://example.com/,one,,\n"
        "https://b.example.org/2,https://example.com/,two,,\n",
        encoding="utf-8",
    )
    _, result, records = read_export(path)
    assert result.report.examples == []
    assert [(r.url_from, r.anchor) for r in records] == [
        ("https://a.example.org/1", "one"),
        ("https://b.example.org/2", "two"),
    ]
    assert result.complete


def test_malformed_examples_are_capped_but_all_counted(tmp_path: Path) -> None:
    path = tmp_path / "many-bad.csv"
    bad = "".join(f"https://x{i}.example.org/,https://example.com/,a,bogus\n" for i in range(30))
    path.write_text("url_from,url_to,anchor,nofollow\n" + bad, encoding="utf-8")
    _, result, records = read_export(path)
    assert records == []
    assert result.report.malformed == 30
    assert len(result.report.examples) == 20
    assert result.report.examples[0] == "line 2: expected true/false, got 'bogus'"
    assert result.report.examples[-1].startswith("line 21: ")


def test_file_name_gives_the_snapshot_time() -> None:
    name = Path("example.com-backlinks-subdomains_2026-01-09_22-10-03.csv")
    assert taken_at_from_name(name) == datetime(2026, 1, 9, 22, 10, 3, tzinfo=UTC)
    assert taken_at_from_name(Path("example.com-backlinks_2026-01-10.csv")) == datetime(
        2026, 1, 10, tzinfo=UTC
    )
    assert taken_at_from_name(Path("example.com-backlinks.csv")) is None
    assert taken_at_from_name(Path("x_2026-02-30.csv")) is None


# --- values --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "nonempty", "expected"),
    [
        ("true", False, True),
        ("FALSE", False, False),
        (" Yes ", False, True),
        ("no", False, False),
        ("1", False, True),
        ("0", False, False),
        ("", False, False),
        ("+", True, True),
        ("anything", True, True),
        ("", True, False),
    ],
)
def test_parse_bool(text: str, nonempty: bool, expected: bool) -> None:
    assert parse_bool(text, nonempty_is_true=nonempty) is expected


@pytest.mark.parametrize("text", ["maybe", "truthy", "2", "nofollow"])
def test_parse_bool_rejects_other_words(text: str) -> None:
    with pytest.raises(ValueError, match="expected true/false"):
        parse_bool(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("61", 61.0),
        ("12.4", 12.4),
        ("12,4", 12.4),
        ("1,240", 1240.0),
        ("1,234,567.5", 1234567.5),
        ("1\u00a0240", 1240.0),
        ("1 240", 1240.0),
        ("-3", -3.0),
        ("", None),
        ("   ", None),
    ],
)
def test_parse_number_examples(text: str, expected: float | None) -> None:
    assert parse_number(text) == expected


@pytest.mark.parametrize("text", ["abc", "12a", "1.2.3", "1,2,3", "12,34,5"])
def test_parse_number_rejects_non_numbers(text: str) -> None:
    with pytest.raises(ValueError, match="expected a number"):
        parse_number(text)


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_parse_number_integers_with_and_without_separators(n: int) -> None:
    assert parse_number(str(n)) == n
    assert parse_number(f"{n:,}") == n
    assert parse_number(f" {n:,} ".replace(",", "\u00a0")) == n


@given(
    st.integers(min_value=0, max_value=10**9),
    st.text(alphabet="0123456789", min_size=1, max_size=2),
    st.booleans(),
)
def test_parse_number_decimal_comma_and_point(whole: int, frac: str, negative: bool) -> None:
    sign = "-" if negative else ""
    expected = float(f"{sign}{whole}.{frac}")
    assert parse_number(f"{sign}{whole},{frac}") == expected
    assert parse_number(f"{sign}{whole}.{frac}") == expected
    assert parse_number(f"{sign}{whole:,}.{frac}") == expected


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_parse_number_round_trips_floats(x: float) -> None:
    assert parse_number(repr(x)) == x


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-18 07:41:55", datetime(2024, 3, 18, 7, 41, 55, tzinfo=UTC)),
        ("2026-01-09", datetime(2026, 1, 9, tzinfo=UTC)),
        ("2024-02-10T14:20:00Z", datetime(2024, 2, 10, 14, 20, tzinfo=UTC)),
        ("2024-01-01 10:00:00 +02:00", datetime(2024, 1, 1, 8, 0, tzinfo=UTC)),
        ("Sep 15, 2026", datetime(2026, 9, 15, tzinfo=UTC)),
        ("15.09.2026", datetime(2026, 9, 15, tzinfo=UTC)),
        ("28/09/2026", datetime(2026, 9, 28, tzinfo=UTC)),
        ("28 Sep 2026", datetime(2026, 9, 28, tzinfo=UTC)),
        ("", None),
    ],
)
def test_parse_datetime(text: str, expected: datetime | None) -> None:
    assert parse_datetime(text) == expected


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        (("Link removed", ""), "removed"),
        (("removedfromhtml",), "removed"),
        (("notfound",), "not_found"),
        (("Page not found (404)",), "not_found"),
        (("NOT_FOUND",), "not_found"),
        (("pageredirected",), "redirected"),
        (("lostredirect",), "redirected"),
        (("noindex",), "noindex"),
        (("notcanonical",), "not_canonical"),
        (("pageerror",), "page_error"),
        (("", "Link removed"), "removed"),
        (("", ""), "unknown"),
        (("manual",), "unknown"),
        ((), "unknown"),
    ],
)
def test_map_lost_reason(texts: tuple[str, ...], expected: str) -> None:
    assert map_lost_reason(*texts) == expected


# --- URLs ----------------------------------------------------------------------------------

_LABEL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10)
_SEGMENT = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~%",
    min_size=1,
    max_size=8,
)


@st.composite
def hosts(draw: st.DrawFn) -> str:
    labels = draw(st.lists(_LABEL, min_size=1, max_size=3))
    tld = draw(st.sampled_from(["com", "org", "net", "io", "co.uk", "de", "info"]))
    host = ".".join([*labels, tld])
    assume(not host.startswith("www."))
    return host


@st.composite
def paths(draw: st.DrawFn) -> str:
    segments = draw(st.lists(_SEGMENT, max_size=4))
    path = "/" + "/".join(segments) if segments or draw(st.booleans()) else ""
    if draw(st.booleans()):
        path += "?" + draw(_LABEL) + "=" + draw(_LABEL)
    return path


@st.composite
def spellings(draw: st.DrawFn, host: str, path: str) -> str:
    """One of the many ways a tool writes the same URL."""
    scheme = draw(st.sampled_from(["http://", "https://", "HTTPS://", "", "https://user@"]))
    www = draw(st.sampled_from(["", "www.", "WWW."]))
    cased = "".join(
        c.upper() if upper else c
        for c, upper in zip(
            host, draw(st.lists(st.booleans(), min_size=len(host), max_size=len(host))), strict=True
        )
    )
    port = draw(st.sampled_from(["", ":80", ":443"]))
    dot = draw(st.sampled_from(["", "."])) if not port else ""
    fragment = draw(st.sampled_from(["", "#", "#top", "#a/b?c"]))
    return f"{scheme}{www}{cased}{dot}{port}{path}{fragment}"


@settings(max_examples=200, deadline=None)
@given(st.data(), hosts(), paths(), hosts(), paths())
def test_spellings_of_one_url_share_one_link_key(
    data: st.DataObject, host: str, path: str, to_host: str, to_path: str
) -> None:
    # Escapes in the path come out in their one canonical form.
    expected = host + canonical_escapes(path if path.startswith("/") else "/" + path)
    a = data.draw(spellings(host, path))
    b = data.draw(spellings(host, path))
    assert normalize_url(a) == expected
    assert normalize_url(b) == expected
    to_a = normalize_url(data.draw(spellings(to_host, to_path)))
    to_b = normalize_url(data.draw(spellings(to_host, to_path)))
    assert to_a is not None and to_b is not None
    assert link_key(expected, to_a) == link_key(expected, to_b)
    key = link_key(normalize_url(a) or "", to_a)
    assert key == link_key(normalize_url(b) or "", to_b)
    assert -(2**63) <= key < 2**63


@settings(max_examples=200, deadline=None)
@given(hosts(), paths(), paths(), st.text(alphabet="abc", min_size=1, max_size=3))
def test_different_paths_give_different_keys(host: str, p1: str, p2: str, to: str) -> None:
    n1, n2 = normalize_url(f"https://{host}{p1}"), normalize_url(f"https://{host}{p2}")
    assume(n1 != n2)
    assert n1 is not None and n2 is not None
    target = f"example.com/{to}"
    assert link_key(n1, target) != link_key(n2, target)
    # from and to are not interchangeable
    assert link_key(n1, n2) != link_key(n2, n1)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://example.org/Page", "https://example.org/page"),
        ("https://example.org/a", "https://example.org/a/"),
        ("https://example.org/a?x=1", "https://example.org/a?x=2"),
        ("https://example.org:8080/a", "https://example.org/a"),
        ("https://blog.example.org/a", "https://example.org/a"),
    ],
)
def test_distinct_urls_stay_distinct(a: str, b: str) -> None:
    assert normalize_url(a) != normalize_url(b)


@pytest.mark.parametrize("url", ["not a url", "", "localhost/x", "javascript:void(0)", "mailto:"])
def test_non_urls_normalize_to_none(url: str) -> None:
    assert normalize_url(url) is None


@pytest.mark.parametrize(
    ("host", "domain"),
    [
        ("blog.example.org", "example.org"),
        ("www.example.org", "example.org"),
        ("reviews.example.co.uk", "example.co.uk"),
        ("example.io", "example.io"),
    ],
)
def test_registrable_domain(host: str, domain: str) -> None:
    assert registrable_domain(host) == domain


# Labels around the Public Suffix List's hard parts: multi-label suffixes (co.uk), a
# wildcard with its exception (*.ck, !www.ck; *.kawasaki.jp, !city.kawasaki.jp), a private
# suffix (github.io: ignored), IDN and punycode labels, digits, empty labels, upper case.
_HOST_LABELS = st.sampled_from(
    [
        "example", "blog", "www", "co", "uk", "com", "ck", "jp", "kawasaki", "city", "github",
        "io", "xn--p1ai", "рф", "bücher", "de", "1", "255", "a-b", "_dmarc", "", "EXAMPLE",
        "notatld", "org", "kg", "appspot", "s3", "amazonaws", "xn--bcher-kva",
    ]
)  # fmt: skip


@settings(max_examples=400)
@given(st.lists(_HOST_LABELS, min_size=1, max_size=5))
# A wildcard's exception and its wildcard, each below a further label.
@example(["blog", "www", "ck"])
@example(["blog", "example", "ck"])
@example(["blog", "city", "kawasaki", "jp"])
def test_registrable_domain_agrees_with_tldextract(labels: list[str]) -> None:
    from sources.urls import _registrable_any

    host = ".".join(labels)
    assert registrable_domain.__wrapped__(host) == _registrable_any(host)


def test_every_mapped_lost_reason_is_in_the_taxonomy() -> None:
    from sources.formats.values import _REASON_FRAGMENTS, map_lost_reason
    from sources.model import LOST_REASONS

    assert {reason for _, reason in _REASON_FRAGMENTS} <= set(LOST_REASONS)
    assert map_lost_reason("Link removed") == "removed"
    assert map_lost_reason("", "") == "unknown" and "unknown" in LOST_REASONS


@pytest.mark.parametrize(
    ("header", "row"),
    [
        (
            "Referring page URL,Target URL,Anchor,Lost",
            "https://r.example.org/,https://example.com/,a,{}",
        ),
        (
            "Referring Page URL,Link URL,Link Anchor,Day Lost",
            "https://r.example.org/,https://example.com/,a,{}",
        ),
        (
            "SourceURL,TargetURL,AnchorText,DateLost",
            "https://r.example.org/,https://example.com/,a,{}",
        ),
    ],
)
@pytest.mark.parametrize(
    ("cell", "lost"),
    [
        ("", False),
        ("-", False),
        ("0", False),
        ("n/a", False),
        ("false", False),
        ("never", False),
        ("2026-01-20 00:00:00", True),
        ("2026-01-20", True),
        ("20/01/2026", True),
        ("01/20/2026", True),
    ],
)
def test_only_a_readable_lost_date_marks_a_row_lost(
    tmp_path: Path, header: str, row: str, cell: str, lost: bool
) -> None:
    # docs/exports.md: `Lost` / `Day Lost` / `DateLost` mark a row lost holding a date; a
    # placeholder must never cry wolf.
    path = tmp_path / "export.csv"
    path.write_text(f"{header}\n{row.format(cell)}\n", encoding="utf-8")
    _, result, [record] = read_export(path)
    assert record.lost is lost
    assert result.complete


def test_a_placeholder_in_a_referring_domains_lost_cell_leaves_the_domain_listed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "refdomains.csv"
    path.write_text(
        "Domain,DR,Links to target,Lost\n"
        "a.example.org,40,3,-\nb.example.org,40,3,0\nc.example.org,40,3,2026-01-20 00:00:00\n",
        encoding="utf-8",
    )
    result = ExportFile(path, SITE).snapshot(TAKEN)
    assert result.domain_records is not None
    assert [d.lost for d in result.domain_records] == [False, False, True]


@pytest.mark.parametrize("text", ["inf", "-inf", "Infinity", "nan", "NaN", " inf ", "1e999"])
def test_parse_number_rejects_non_finite_numbers(text: str) -> None:
    with pytest.raises(ValueError, match="expected a finite number"):
        parse_number(text)


@pytest.mark.parametrize("cell", ["inf", "nan", "1e999"])
def test_a_non_finite_rating_is_malformed_or_ignored_as_the_rating_rules_say(
    tmp_path: Path, cell: str
) -> None:
    # Generic CSV (no metric name): the row is malformed, never stored as `Inf`.
    generic = tmp_path / "generic.csv"
    generic.write_text(
        f"url_from,url_to,domain_rating\nhttps://a.org/p,https://example.com/,{cell}\n"
        "https://b.org/p,https://example.com/,40\n",
        encoding="utf-8",
    )
    _, result, records = read_export(generic)
    assert [r.domain_rating for r in records] == [40.0]
    assert result.report.malformed == 1 and not result.complete
    # A named provider rating: ignored and counted, the link kept.
    ahrefs = tmp_path / "ahrefs.csv"
    ahrefs.write_text(
        f"Referring page URL,Target URL,Domain rating\nhttps://a.org/p,https://example.com/,{cell}\n",
        encoding="utf-8",
    )
    _, result, [record] = read_export(ahrefs)
    assert record.domain_rating is None and result.complete
    assert result.notes == ["1 rows: Ahrefs DR outside 0-100, ignored"]


@pytest.mark.parametrize(
    ("cell", "links"),
    [
        ("999999999999999", 999999999999999),
        ("99999999999999999999", None),
        ("1,000,000,000,000,000", None),
    ],
)
def test_a_count_of_too_many_digits_is_a_malformed_row(
    tmp_path: Path, cell: str, links: int | None
) -> None:
    path = tmp_path / "bing_domains.csv"
    path.write_text(
        f'Domain,Backlinks Count\nhttps://news.example.io/,"{cell}"\n', encoding="utf-8"
    )
    result = ExportFile(path, SITE).snapshot(TAKEN)
    assert result.domain_records is not None
    found = [d.links for d in result.domain_records]
    assert found == ([] if links is None else [links])
    assert result.complete is (links is not None)


def _read_generally(text: str) -> datetime | str:
    """How parse_datetime reads an ISO date-time with no shortcut: ISO after ` +` is joined
    to its time, UTC when no zone; "error" when that fails."""
    try:
        dt = datetime.fromisoformat(text.strip().replace(" +", "+"))
        return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    except (ValueError, OverflowError):
        return "error"


@given(
    st.datetimes(max_value=datetime(9999, 12, 30)),
    st.sampled_from([" ", "T"]),
    st.sampled_from(["", " +00:00", "+00:00", " +02:00", " -00:00", "Z", " +00:0"]),
)
def test_common_date_times_read_as_the_general_path_reads_them(
    moment: datetime, sep: str, zone: str
) -> None:
    """The shortcut for `YYYY-MM-DD HH:MM:SS` and `… +00:00` gives what the general
    reading gives, to the time zone object."""
    text = moment.replace(microsecond=0).isoformat(sep=sep) + zone
    try:
        got: datetime | str | None = parse_datetime(text)
    except ValueError:
        got = "error"
    want = _read_generally(text)
    if want == "error":
        # The general path's last resort (localised dates) reads none of these either.
        assert got in ("error", None)
    else:
        assert got == want
        assert isinstance(got, datetime) and got.tzinfo is UTC
