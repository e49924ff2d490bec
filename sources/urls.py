"""URL normalisation, link keys and referring domains."""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sources.fingerprint import note_code

if TYPE_CHECKING:
    import tldextract


@lru_cache(maxsize=1)
def _extractor() -> tldextract.TLDExtract:
    # Imported on first use: only computing a registrable domain needs it, and a reading
    # command must not pay for loading it (issue 9).
    import tldextract

    # The Public Suffix List bundled with tldextract; no download at run time, ever.
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


_URL = re.compile(
    r"^\s*(?:(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*)://(?:[^@/?#\s]*@)?)?"
    r"(?P<host>\[[^\]]*\]|[^/?#:@\s]*)(?::(?P<port>\d*))?(?P<rest>[/?][^#]*)?(?:#.*)?$"
)
_DEFAULT_PORTS = {"", "80", "443"}

# A percent sign with the two hex digits it should have, or without them; or a run of
# non-ASCII characters.
_TO_CANONICAL = re.compile(r"%(?:[0-9A-Fa-f]{2})?|[^\x00-\x7f]+")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# Every spelling of every escape -> its canonical form: the unreserved character it stands
# for, else the escape in upper case. A lone `%` can only be a literal one: `%25`.
_ESCAPES = {"%": "%25"} | {
    f"%{hi}{lo}": chr(int(hi + lo, 16))
    if chr(int(hi + lo, 16)) in _UNRESERVED
    else f"%{hi}{lo}".upper()
    for hi in "0123456789ABCDEFabcdef"
    for lo in "0123456789ABCDEFabcdef"
}
_BYTE_ESCAPES = [f"%{b:02X}" for b in range(256)]


def _canonical_part(match: re.Match[str]) -> str:
    text = match.group()
    escape = _ESCAPES.get(text)
    if escape is not None:
        return escape
    # Lone surrogates cannot come from decoded text, but must not raise either.
    return "".join([_BYTE_ESCAPES[b] for b in text.encode("utf-8", "surrogatepass")])


def canonical_escapes(rest: str) -> str:
    """Path and query with escapes in one form: unreserved decoded, others upper-case, UTF-8."""
    return _TO_CANONICAL.sub(_canonical_part, rest)


def idna_host(host: str) -> str:
    """A host in IDNA 2008 ASCII form with the UTS 46 mapping browsers use (`straße.de` ->
    `xn--strae-oqa.de`, full-width dots, case); UnicodeError if it is no valid name."""
    if host.isascii():
        return host.lower()
    import idna  # only a Unicode host needs its tables

    return idna.encode(host, uts46=True).decode("ascii")


@lru_cache(maxsize=65_536)
def ascii_host(host: str) -> str:
    """A lower-cased host in IDNA (punycode) form; as it is when IDNA cannot encode it."""
    try:
        return idna_host(host)
    except UnicodeError:
        # An over-long or empty label, or characters IDNA refuses: still one spelling.
        return host


def split_url(url: str) -> tuple[str, str] | None:
    """Return (host, path-and-query) of a URL in canonical form; None if it has no host.

    The host is lower-cased and IDNA-encoded; path and query have canonical escapes (see
    `canonical_escapes`). Scheme-less URLs (Moz exports) are accepted.
    """
    m = _URL.match(url)
    if m is None:
        return None
    _, host, port, rest = m.groups()
    host = host.lower().rstrip(".")
    rest = (rest or "/").rstrip()
    # Nearly every URL is ASCII without escapes, and then it is already canonical.
    if not url.isascii() or "%" in url:
        if not host.isascii():
            # rstrip again: IDNA maps full-width and ideographic dots to `.`.
            host = ascii_host(host).rstrip(".")
        rest = canonical_escapes(rest)
    if "." not in host and not host.startswith("["):
        return None
    if port and port not in _DEFAULT_PORTS:
        host = f"{host}:{port}"
    if not rest.startswith("/"):
        rest = "/" + rest
    return host, rest


def join_normalized(host: str, rest: str) -> str:
    """The normalised URL of split parts: `www.` dropped from the host."""
    return (host[4:] if host.startswith("www.") else host) + rest


def normalize_url(url: str) -> str | None:
    """The form two sources agree on: no scheme, no `www.`, no default port, no fragment."""
    # split_url also makes `пример.рф/ü` and `xn--e1afmkfd.xn--p1ai/%c3%bc` one spelling.
    parts = split_url(url)
    return None if parts is None else join_normalized(*parts)


@lru_cache(maxsize=65_536)
def normalize_target(url: str) -> str | None:
    """`normalize_url` for target URLs, which repeat across a profile, so it is cached."""
    return normalize_url(url)


def link_key(norm_from: str, norm_to: str) -> int:
    """A stable signed 64-bit key for a normalised (url_from, url_to) pair."""
    digest = hashlib.blake2b(f"{norm_from}\n{norm_to}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@lru_cache(maxsize=262_144)
def registrable_domain(host: str) -> str:
    """The registrable domain of a host (`blog.example.co.uk` -> `example.co.uk`)."""
    # A plain lower-case ASCII host name (nearly every host) walks the suffix trie here;
    # tldextract's own path costs ~9x more per host, which an agency's million distinct
    # referring hosts pay in full. Anything else (Unicode, `xn--` labels that need decoding
    # to match the list's Unicode suffixes, IP addresses, upper case) takes that path.
    if _PLAIN_HOST.fullmatch(host) and "xn--" not in host:
        return _registrable_plain(host)
    return _registrable_any(host)


# Lower-case ASCII labels, not ending in a digit: no punycode to decode, no IP address,
# nothing tldextract's lenient host parsing would cut off.
_PLAIN_HOST = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*(?<![0-9])")


def _registrable_any(host: str) -> str:
    result = _extractor().extract_str(host, include_psl_private_domains=False)
    return result.top_domain_under_public_suffix or result.domain or host


@lru_cache(maxsize=1)
def _public_suffix_trie() -> Any:
    # The trie tldextract builds from its bundled list, public suffixes only.
    return _extractor()._get_tld_extractor().tlds_excl_private_trie


def _registrable_plain(host: str) -> str:
    """tldextract's answer for a host `_PLAIN_HOST` matches."""
    labels = host.split(".")
    node = _public_suffix_trie()
    suffix_at = at = len(labels)
    for label in reversed(labels):
        matches = node.matches
        child = matches.get(label)
        if child is not None:
            at -= 1
            node = child
            if node.end:
                suffix_at = at
            continue
        if "*" in matches:
            suffix_at = at if f"!{label}" in matches else at - 1
        break
    if suffix_at == len(labels):
        # No public suffix: tldextract calls the last label the domain.
        return labels[-1]
    if suffix_at == 0:
        # The host is a public suffix itself.
        return host
    return ".".join(labels[suffix_at - 1 :])


def host_name(host: str) -> str:
    """A host without its port."""
    return host.rsplit(":", 1)[0] if ":" in host and not host.endswith("]") else host


# Fingerprints are salted with this code as it runs (sources/fingerprint.py).
note_code(__file__)
