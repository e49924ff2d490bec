"""The shape of a DataForSEO `backlinks/backlinks/live` answer, as far as the source reads it.

Decoding into these types reads only the fields used: a page of 1,000 items (1.2 MB of
JSON, some forty fields an item) decodes in a quarter of the time a generic decode takes,
which builds a dict of every field. Every value is `Any`: the source judges each as it
judges a generic decode's, and an answer off this shape (an item that is no object,
tasks that are no list) is decoded generically and judged as before
(`sources.api.decode_json`). Imported at the first poll: msgspec costs the CLI's start.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType


class LiveItem(msgspec.Struct):
    """One backlink of the answer: the fields `DataForSeoSource` reads (null or missing:
    None, as a generic decode's `dict.get` gives)."""

    url_from: Any = None
    url_to: Any = None
    anchor: Any = None
    attributes: Any = None
    dofollow: Any = None
    is_lost: Any = None
    domain_from_rank: Any = None
    first_seen: Any = None
    backlink_spam_score: Any = None
    page_from_status_code: Any = None


class _Result(msgspec.Struct):
    items: list[LiveItem] | UnsetType | None = UNSET
    total_count: Any = UNSET
    search_after_token: Any = UNSET


class _Task(msgspec.Struct):
    status_code: Any = UNSET
    status_message: Any = UNSET
    result: list[_Result] | UnsetType | None = UNSET


class _Answer(msgspec.Struct):
    status_code: Any = UNSET
    status_message: Any = UNSET
    cost: Any = UNSET
    tasks: list[_Task] | UnsetType | None = UNSET


_DECODER = msgspec.json.Decoder(_Answer)


def decode_live(content: bytes) -> dict[str, Any]:
    """A live-backlinks answer as a generic decode gives it, but its items `LiveItem`s;
    msgspec's errors for an answer of another shape."""
    return _plain(_DECODER.decode(content))


def as_live_item(item: dict[str, Any]) -> LiveItem:
    """A generically decoded item as a `LiveItem`."""
    return msgspec.convert(item, LiveItem)


def _plain(struct: _Answer | _Task | _Result) -> dict[str, Any]:
    """The fields the answer gave (a missing one stays missing, a null one None), with
    tasks and results as dicts."""
    out: dict[str, Any] = {}
    for name in struct.__struct_fields__:
        value = getattr(struct, name)
        if value is UNSET:
            continue
        if name in ("tasks", "result") and value is not None:
            value = [_plain(part) for part in value]
        out[name] = value
    return out
