"""URL normalisation, link keys and referring domains."""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

import tldextract

# The Public Suffix List bundled with tldextract; no download at run time, ever.
_EXTRACT = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

_URL = re.compile(
    r"^\s*(?:(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*)://(?:[^@/?#\s]*@)?)?"
    r"(?P<host>\[[^\]]*\]|[^/?#:@\s]*)(?::(?P<port>\d*))?(?P<rest>[/?][^#]*)?(?:#.*)?$"
)
_DEFAULT_PORTS = {"", "80", "443"}


def split_url(url: str) -> tuple[str, str] | None:
    """Return (host, path-and-query) of a URL, host lower-cased; None if it has no host.

    Scheme-less URLs (Moz exports) are accepted.
    """
    m = _URL.match(url)
    if m is None:
        return None
    _, host, port, rest = m.groups()
    host = host.lower().rstrip(".")
    if "." not in host and not host.startswith("["):
        return None
    if port and port not in _DEFAULT_PORTS:
        host = f"{host}:{port}"
    rest = (rest or "/").rstrip()
    if not rest.startswith("/"):
        rest = "/" + rest
    return host, rest


def join_normalized(host: str, rest: str) -> str:
    """The normalised URL of split parts: `www.` dropped from the host."""
    return (host[4:] if host.startswith("www.") else host) + rest


def normalize_url(url: str) -> str | None:
    """The form two sources agree on: no scheme, no `www.`, no default port, no fragment."""
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
    result = _EXTRACT.extract_str(host, include_psl_private_domains=False)
    return result.top_domain_under_public_suffix or result.domain or host


def host_name(host: str) -> str:
    """A host without its port."""
    return host.rsplit(":", 1)[0] if ":" in host and not host.endswith("]") else host
