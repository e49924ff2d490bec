"""A file is evidence only if it is whole; lines decode one by one; URLs have one spelling."""

from __future__ import annotations

import codecs
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sources.exports import ExportFile, _Lines
from sources.model import Backlink, SnapshotResult
from sources.urls import link_key, normalize_url, registrable_domain, split_url
from tests.helpers import write_ahrefs

SITE = "example.com"
TAKEN = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
CUT_SHORT = "last row has no line end: the file may be cut short"
OPEN_QUOTE = "file ends inside a quoted field: the file may be cut short"


def read(path: Path) -> tuple[ExportFile, SnapshotResult, list[Backlink]]:
    export = ExportFile(path, SITE)
    result = export.snapshot(TAKEN)
    return export, result, list(result.records)


def keys(records: list[Backlink]) -> list[int]:
    out = []
    for r in records:
        norm_from, norm_to = normalize_url(r.url_from), normalize_url(r.url_to)
        assert norm_from is not None and norm_to is not None
        out.append(link_key(norm_from, norm_to))
    return out


# --- per-line decoding ---------------------------------------------------------------------

LEGACY_ROW = 15  # of 30: UTF-8 rows before and after it


def mixed_rows(legacy: bool) -> bytes:
    """30 rows, 20 with "é" in their URLs (UTF-8); row LEGACY_ROW's anchor is "Café".

    With `legacy` that anchor's "é" is the single Windows-1252 byte 0xE9.
    """
    lines = [b"url_from,url_to,anchor"]
    for i in range(30):
        if i == LEGACY_ROW:
            cafe = b"Caf\xe9" if legacy else "Café".encode()
            lines.append(b"https://plain.example.org/%d,https://example.com/,%s" % (i, cafe))
        elif i % 3 == 0:
            lines.append(b"https://plain.example.org/%d,https://example.com/,plain" % i)
        else:
            # Accents in the host (IDNA) and in the paths (percent-encoding).
            src = f"https://café{i % 2}.example.org/menu-é-{i}"
            lines.append(f"{src},https://example.com/crème,été {i}".encode())
    return b"\n".join(lines) + b"\n"


def test_one_legacy_line_does_not_change_how_the_other_lines_decode(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.csv"
    legacy.write_bytes(mixed_rows(legacy=True))
    clean = tmp_path / "clean.csv"
    clean.write_bytes(mixed_rows(legacy=False))

    export, result, records = read(legacy)
    clean_export, clean_result, clean_records = read(clean)

    assert len(records) == 30
    assert result.complete and clean_result.complete
    accented = [r for r in records if "é" in r.url_from]
    assert len(accented) == 20
    assert all("Ã" not in r.url_from + r.url_to for r in records)
    assert records[LEGACY_ROW].anchor == "Café"
    assert records == clean_records
    assert keys(records) == keys(clean_records)
    assert (export.encoding, export.legacy_lines) == ("utf-8+cp1252", 1)
    assert (clean_export.encoding, clean_export.legacy_lines) == ("utf-8", 0)


def test_legacy_lines_past_the_first_chunk_and_with_a_bom(tmp_path: Path) -> None:
    """Big files decode in 1 MiB chunks; a legacy line late in the file stays one line."""
    rows = [
        f"https://site{i}.example.org/é/{i},https://example.com/,é {i}".encode()
        for i in range(30_000)
    ]
    rows[20_000] = b"https://late.example.org/p,https://example.com/,Caf\xe9 cr\xe8me"
    rows[29_999] = b"https://last.example.org/p,https://example.com/,\x93quoted\x94"
    path = tmp_path / "big.csv"
    path.write_bytes(codecs.BOM_UTF8 + b"url_from,url_to,anchor\r\n" + b"\r\n".join(rows) + b"\r\n")
    assert path.stat().st_size > 1 << 20  # more than one chunk
    export, result, records = read(path)
    assert result.complete
    assert len(records) == 30_000
    assert records[19_999].anchor == "é 19999"
    assert records[20_000].anchor == "Café crème"
    assert records[20_001].url_from == "https://site20001.example.org/é/20001"
    assert records[29_999].anchor == "\u201cquoted\u201d"
    assert (export.encoding, export.legacy_lines) == ("utf-8-sig+cp1252", 2)


def test_a_line_that_is_valid_utf8_is_utf8_even_among_legacy_lines(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes(
        b"url_from,url_to,anchor\n"
        b"https://a.example.org/,https://example.com/,Caf\xe9\n"
        b"https://b.example.org/,https://example.com/,Caf\xc3\xa9\n"
        b"https://c.example.org/,https://example.com/,\xe9t\xe9 \x80\n"
    )
    export, result, records = read(path)
    assert [r.anchor for r in records] == ["Café", "Café", "été €"]
    assert export.legacy_lines == 2
    assert result.complete


_PIECES = st.sampled_from(
    [
        b"a",
        b",",
        b'"',
        b" ",
        b"\n",
        b"\r",
        b"\r\n",
        "é".encode(),
        "€".encode(),
        "\u2028".encode(),  # a line separator to str.splitlines, not to csv
        b"\x85",  # NEL in Latin-1, "…" in Windows-1252, invalid alone in UTF-8
        b"\xe9",
        b"\xc3",  # a UTF-8 lead byte without its continuation
        b"\x81",  # undefined in Windows-1252
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=60), st.integers(min_value=1, max_value=12))
def test_lines_decode_one_by_one_whatever_the_chunk_size(pieces: list[bytes], chunk: int) -> None:
    data = b"".join(pieces)
    expected = []
    legacy = 0
    # The rule, line by line (bytes.splitlines cuts at \n, \r\n and \r, as csv counts).
    for line in data.splitlines(keepends=True):
        try:
            expected.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            expected.append(line.decode("cp1252", "replace"))
            legacy += 1
    lines = _Lines(io.BytesIO(data), "utf-8", chunk)
    assert list(lines.lines) == expected
    assert lines.legacy == legacy
    last = expected[-1] if expected else "\n"
    assert lines.unterminated == (last[-1] not in "\r\n" and bool(last.strip()))


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(list('ab,"\r\n\u2028\x85é€😀')), max_size=60),
    st.integers(min_value=1, max_value=12),
    st.sampled_from(["utf-16", "utf-16-le", "utf-16-be"]),
)
def test_utf16_lines_are_cut_as_newline_empty_cuts_them(text: str, chunk: int, enc: str) -> None:
    lines = _Lines(io.BytesIO(text.encode(enc)), enc, chunk)
    assert list(lines.lines) == list(io.StringIO(text, newline=""))
    assert lines.legacy == 0


def _states(lines: _Lines) -> list[tuple[str, int]]:
    """Each line with the state the reader sees once it has it, then the state past the end."""
    seen = [(line, lines.state) for line in lines.lines]
    return [*seen, ("", lines.state)]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_PIECES, max_size=40),
    st.integers(min_value=1, max_value=12),
    st.integers(min_value=0, max_value=30),
    st.integers(min_value=0, max_value=30),
)
def test_lines_read_ahead_are_replayed_with_their_state(
    pieces: list[bytes], chunk: int, ahead: int, dropped: int
) -> None:
    """Reading ahead (to find a header after a preamble, or to judge a file's shape) changes
    neither the lines the reader then gets nor what it is told about the file's end."""
    data = b"".join(pieces)
    plain = _states(_Lines(io.BytesIO(data), "utf-8", chunk))
    peeking = _Lines(io.BytesIO(data), "utf-8", chunk)
    peeked = peeking.peek(ahead)
    assert peeked == [line for line, _ in plain[:-1]][:ahead]
    dropped = min(dropped, len(peeked))
    peeking.drop(dropped)
    assert _states(peeking) == plain[dropped:]


# --- cut-off files -------------------------------------------------------------------------

GENERIC = (
    "url_from,url_to,anchor\n"
    "https://a.example.org/1,https://example.com/,one\n"
    "https://b.example.org/2,https://example.com/,two\n"
)


def test_file_cut_inside_its_last_row_is_partial(tmp_path: Path) -> None:
    path = tmp_path / "cut.csv"
    path.write_text(GENERIC + "https://c.example.org/3,https://exa", encoding="utf-8")
    _, result, records = read(path)
    assert [r.url_from for r in records] == ["https://a.example.org/1", "https://b.example.org/2"]
    assert result.report.examples == [f"line 4: {CUT_SHORT}"]
    assert not result.complete


@pytest.mark.parametrize("cut", [1, 25, 80])
def test_quoted_ahrefs_export_cut_mid_row_is_partial(tmp_path: Path, cut: int) -> None:
    links = [(f"https://s{i}.example.org/p", "https://example.com/", f"a{i}", 10) for i in range(5)]
    path = write_ahrefs(tmp_path / "ahrefs.csv", links)
    whole = path.read_bytes()
    path.write_bytes(whole[: whole.rstrip(b"\r\n").rfind(b"\n") + 1 + cut])
    _, result, records = read(path)
    assert [r.url_from for r in records] == [link[0] for link in links[:4]]
    assert result.report.examples == [f"line 6: {CUT_SHORT}"]
    assert not result.complete


def test_file_ending_inside_an_open_quote_is_partial(tmp_path: Path) -> None:
    path = tmp_path / "open-quote.csv"
    path.write_text(
        GENERIC + 'https://c.example.org/3,https://example.com/,"three\nstill three\n',
        encoding="utf-8",
    )
    _, result, records = read(path)
    assert len(records) == 2
    # Named by the line the row starts on.
    assert result.report.examples == [f"line 4: {OPEN_QUOTE}"]
    assert not result.complete


def test_an_unclosed_quote_that_swallows_the_rest_of_the_file_is_partial(tmp_path: Path) -> None:
    path = tmp_path / "unclosed.csv"
    path.write_text(
        "url_from,url_to,anchor\n"
        'https://a.example.org/1,https://example.com/,"one\n'
        "https://b.example.org/2,https://example.com/,two\n"
        "https://c.example.org/3,https://example.com/,three\n",
        encoding="utf-8",
    )
    _, result, records = read(path)
    assert records == []
    assert result.report.examples == [f"line 2: {OPEN_QUOTE}"]
    assert not result.complete


def test_cut_inside_a_multi_line_quoted_field_names_the_line_the_row_starts_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cut-multi.csv"
    path.write_text(GENERIC + 'https://c.example.org/3,https://example.com/,"three\nand', "utf-8")
    _, result, records = read(path)
    assert len(records) == 2
    assert result.report.examples == [f"line 4: {CUT_SHORT}"]


@pytest.mark.parametrize("odd", [False, True])
def test_utf16_ahrefs_export_cut_mid_row_is_partial(tmp_path: Path, odd: bool) -> None:
    links = [(f"https://s{i}.example.org/p", "https://example.com/", f"a{i}", 10) for i in range(5)]
    path = write_ahrefs(tmp_path / "ahrefs16.csv", links, utf16=True)
    whole = path.read_bytes()
    last_row = whole.rfind("\n".encode("utf-16-le"), 0, len(whole) - 2) + 2
    end = last_row + 60 + (1 if odd else 0)
    path.write_bytes(whole[:end])
    export, result, records = read(path)
    assert export.encoding == "utf-16"
    assert [r.url_from for r in records] == [link[0] for link in links[:4]]
    assert not result.complete
    if odd:
        # Half a UTF-16 code unit at the end: the decoder's error makes it partial.
        assert result.error is not None and "read failed" in result.error
    else:
        assert result.report.examples == [f"line 6: {CUT_SHORT}"]


@pytest.mark.parametrize("utf16", [False, True])
def test_whole_ahrefs_export_with_crlf_line_ends_is_complete(tmp_path: Path, utf16: bool) -> None:
    links = [(f"https://s{i}.example.org/p", "https://example.com/", f"a{i}", 10) for i in range(5)]
    path = write_ahrefs(tmp_path / "ahrefs.csv", links, utf16=utf16)
    assert path.read_bytes().endswith("\r\n".encode("utf-16-le") if utf16 else b"\r\n")
    _, result, records = read(path)
    assert [r.url_from for r in records] == [link[0] for link in links]
    assert result.report.examples == []
    assert result.complete


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_whole_file_is_complete_whatever_its_line_ends(tmp_path: Path, newline: str) -> None:
    path = tmp_path / "whole.csv"
    path.write_bytes(GENERIC.replace("\n", newline).encode())
    _, result, records = read(path)
    assert len(records) == 2
    assert result.complete


def test_header_only_without_a_final_newline_has_no_rows_and_nothing_to_report(
    tmp_path: Path,
) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("url_from,url_to,anchor", encoding="utf-8")
    _, result, records = read(path)
    assert records == []
    assert result.report.examples == []
    assert result.complete


def test_trailing_blank_remnant_is_not_a_cut_row(tmp_path: Path) -> None:
    path = tmp_path / "blank-end.csv"
    path.write_text(GENERIC + "  ", encoding="utf-8")
    _, result, records = read(path)
    assert len(records) == 2
    assert result.complete


# --- canonical URLs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://пример.рф/",
        "http://ПРИМЕР.РФ",
        "https://xn--e1afmkfd.xn--p1ai/",
        "HTTPS://XN--E1AFMKFD.XN--P1AI:443/",
        "https://www.пример.рф./",
        "пример。рф",  # an ideographic full stop, which IDNA reads as a dot
    ],
)
def test_idna_hosts_have_one_spelling(url: str) -> None:
    assert normalize_url(url) == "xn--e1afmkfd.xn--p1ai/"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://example.org/%7Eu", "https://example.org/~u"),
        ("https://example.org/%7eu", "https://example.org/~u"),
        ("https://example.org/%41%2d%2E%5f", "https://example.org/A-._"),
        ("https://example.org/a%2fb", "https://example.org/a%2Fb"),
        ("https://example.org/ü", "https://example.org/%C3%BC"),
        ("https://example.org/ü", "https://example.org/%c3%bc"),
        ("https://example.org/?q=день", "https://example.org/?q=%D0%B4%D0%B5%D0%BD%D1%8C"),
        ("https://example.org/100%", "https://example.org/100%25"),
        ("https://bücher.example/ä?x=ö#frag", "https://xn--bcher-kva.example/%C3%A4?x=%C3%B6"),
    ],
)
def test_spellings_of_one_path_agree(a: str, b: str) -> None:
    assert normalize_url(a) == normalize_url(b)
    norm = normalize_url(a)
    assert norm is not None and norm.isascii()
    assert link_key(norm, "example.com/") == link_key(normalize_url(b) or "", "example.com/")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://example.org/a%2Fb", "https://example.org/a/b"),
        ("https://example.org/a%3Fb", "https://example.org/a?b"),
        ("https://example.org/%C3%BC", "https://example.org/%C3%9C"),
        ("https://example.org/ü", "https://example.org/u"),
    ],
)
def test_reserved_escapes_stay_distinct(a: str, b: str) -> None:
    assert normalize_url(a) != normalize_url(b)


def test_examples_of_normal_forms() -> None:
    assert normalize_url("https://example.org/%7Eu") == "example.org/~u"
    assert normalize_url("https://example.org/a%2fb") == "example.org/a%2Fb"
    assert normalize_url("https://example.org/ü") == "example.org/%C3%BC"
    assert normalize_url("https://example.org/%") == "example.org/%25"


def test_hosts_idna_cannot_encode_are_lower_cased_not_refused() -> None:
    long_label = "Я" * 70
    assert normalize_url(f"https://{long_label}.example/x") == f"{long_label.lower()}.example/x"
    assert normalize_url("https://a..я.com/") == "a..я.com/"


@pytest.mark.parametrize(
    ("url", "domain"),
    [
        ("https://blog.пример.рф/", "xn--e1afmkfd.xn--p1ai"),
        ("https://shop.xn--e1afmkfd.xn--p1ai/", "xn--e1afmkfd.xn--p1ai"),
        ("https://www.bücher.de/", "xn--bcher-kva.de"),
        ("https://news.例子.中国/", "xn--fsqu00a.xn--fiqs8s"),
    ],
)
def test_registrable_domain_of_idna_hosts(url: str, domain: str) -> None:
    parts = split_url(url)
    assert parts is not None
    assert registrable_domain(parts[0]) == domain


_ASCII_LABEL = "abcdefghijklmnopqrstuvwxyz0123456789"
_UNICODE_LABEL = "абвгдежзийклмнопрстуфхцчшщыэюяäöüéèñçøåαβγδεζηθ中文例子日本語한국어"
_UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
_RESERVED = ":/?[]@!$&'()*+,;="  # `#` starts the fragment, which is dropped
_NON_ASCII = st.characters(min_codepoint=0x80, codec="utf-8").filter(
    lambda c: not c.isspace()  # trailing white space is trimmed from a raw URL only
)
_PATH_CHAR = st.one_of(st.sampled_from(_UNRESERVED), st.sampled_from(_RESERVED), _NON_ASCII)


@st.composite
def unicode_hosts(draw: st.DrawFn) -> str:
    label = st.text(
        alphabet=st.sampled_from(_ASCII_LABEL + _UNICODE_LABEL), min_size=1, max_size=10
    )
    labels = draw(st.lists(label, min_size=1, max_size=3))
    tld = draw(st.sampled_from(["com", "org", "рф", "中国", "de", "co.uk"]))
    host = ".".join([*labels, tld])
    try:
        ascii_form = host.encode("idna").decode("ascii")
    except UnicodeError:
        assume(False)
    assume(not ascii_form.startswith("www."))
    return host


@st.composite
def url_pairs(draw: st.DrawFn) -> tuple[str, str, str]:
    """(raw spelling, percent-encoded and punycode spelling, the canonical form)."""
    host = draw(unicode_hosts())
    chars = draw(st.lists(_PATH_CHAR, max_size=30))
    raw_host = "".join(
        c.upper() if draw(st.booleans()) and c.upper().lower() == c else c for c in host
    )
    raw_path = "/" + "".join(chars)
    encoded_path = "/"
    canonical_path = "/"
    for c in chars:
        if c in _RESERVED:
            encoded_path += c
            canonical_path += c
            continue
        escaped = "".join(f"%{b:02X}" for b in c.encode())
        if draw(st.booleans()):
            escaped = escaped.lower()
        if c in _UNRESERVED:
            encoded_path += escaped if draw(st.booleans()) else c
            canonical_path += c
        else:
            encoded_path += escaped
            canonical_path += escaped.upper()
    scheme = draw(st.sampled_from(["https://", "http://", "HTTPS://", ""]))
    ascii_host = host.lower().encode("idna").decode("ascii")
    return (
        f"{scheme}{raw_host}{raw_path}",
        f"{scheme}{ascii_host}{encoded_path}",
        f"{ascii_host}{canonical_path}",
    )


@settings(max_examples=300, deadline=None)
@given(url_pairs())
def test_raw_and_encoded_spellings_normalise_alike_and_idempotently(
    pair: tuple[str, str, str],
) -> None:
    raw, encoded, canonical = pair
    norm = normalize_url(raw)
    assert norm == canonical
    assert normalize_url(encoded) == canonical
    assert normalize_url(canonical) == canonical
    assert norm.isascii()


def test_hosts_follow_idna_2008_as_browsers_do() -> None:
    # IDNA 2003 would map ß to ss: another domain than the one providers spell.
    assert normalize_url("https://straße.de/blog") == "xn--strae-oqa.de/blog"
    assert normalize_url("https://xn--strae-oqa.de/blog") == "xn--strae-oqa.de/blog"
    assert registrable_domain("xn--strae-oqa.de") == "xn--strae-oqa.de"


# --- a file without line ends ----------------------------------------------------------------


class _Endless(io.RawIOBase):
    """`size` bytes of `fill` without a line end, counting how much was read."""

    def __init__(self, size: int, fill: bytes = b"a") -> None:
        self.left, self.fill, self.served = size, fill, 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        n -= n % len(self.fill)
        self.left -= n
        self.served += n
        return self.fill * (n // len(self.fill))


@pytest.mark.parametrize(("encoding", "fill"), [("utf-8", b"a"), ("utf-16-le", b"a\x00")])
def test_a_file_without_line_ends_is_refused_before_it_is_held_whole(
    encoding: str, fill: bytes
) -> None:
    from sources.exports import MAX_LINE, LineTooLongError

    raw = _Endless(100 << 20, fill)
    lines = _Lines(raw, encoding, chunk=64 * 1024)
    with pytest.raises(LineTooLongError, match=f"{MAX_LINE:,}"):
        lines.peek(1)
    assert raw.served <= 2 * MAX_LINE * len(fill)  # stopped long before the end


def test_a_one_line_file_is_refused_naming_the_file_and_the_limit(tmp_path: Path) -> None:
    from sources.exports import MAX_LINE
    from sources.model import SourceError

    path = tmp_path / "dump.csv"
    path.write_bytes(b"x" * (MAX_LINE * 3))
    with pytest.raises(SourceError) as info:
        ExportFile(path, SITE)
    assert str(path) in str(info.value) and f"{MAX_LINE:,}" in str(info.value)


def test_a_line_too_long_after_good_rows_ends_the_snapshot_with_an_error(tmp_path: Path) -> None:
    from sources.exports import MAX_LINE

    path = tmp_path / "export.csv"
    head = b"url_from,url_to\nhttps://a.org/p,https://example.com/\n"
    path.write_bytes(head + b"y" * (MAX_LINE * 5) + b"\n")
    _, result, records = read(path)
    assert len(records) == 1
    assert result.error is not None and "without a line end" in result.error
