"""Rendering a notification as plain text, Slack Block Kit and HTML, escaping third-party text.

Every rendering is built from the same pieces (`_Part`: one alert's heading, fields and link
lists; the message's lost referring domains), so the three forms say the same things. Text
from outside (anchors, URLs, domains, summaries) is escaped at the last step, per form: in
the plain text, each line is made one inert line (`one_line`: control characters shown as
escapes), so an anchor can neither forge a line nor drive a terminal.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from alerts.message import AlertMessage, LinkItem, Notification
from daemon.store.reads import LostDomain
from daemon.textsafe import one_line

# Slack limits (docs.slack.dev/reference/block-kit): header 150 (plain_text), section text
# 3000, at most 10 fields of 2000 each, 50 blocks; the `text` fallback is kept to 4000.
SLACK_HEADER_MAX = 150
SLACK_SECTION_MAX = 3000
SLACK_FIELD_MAX = 2000
SLACK_FIELDS_MAX = 10
SLACK_BLOCKS_MAX = 50
SLACK_TEXT_MAX = 4000
SLACK_CONTEXT_MAX = 2000
SLACK_BLOCK_ID_MAX = 255

# Items listed per list (links, lost domains); the rest are counted as "+N more".
LIST_MAX = 10
# Third-party strings are clipped so one hostile value cannot crowd out the rest.
ANCHOR_MAX = 100
NAME_MAX = 120
URL_SHOWN_MAX = 200
# A longer URL (as written in the message, escaped) is not made a link: it would use up a
# section on its own.
LINK_URL_MAX = 1000
# A list line longer than this is shortened, so one hostile entry cannot crowd out the rest.
SLACK_LINE_MAX = 1000
# Rules named in a grouped mail's subject.
SUBJECT_RULES = 3

STATE_WORDS = {
    "firing": "FIRING",
    "reminder": "STILL FIRING",
    "update": "UPDATED",
    "resolved": "RESOLVED",
    "test": "TEST",
}
SEVERITY_EMOJI = {
    "critical": ":red_circle:",
    "warning": ":large_orange_circle:",
    "info": ":large_blue_circle:",
}
RESOLVED_EMOJI = ":white_check_mark:"
TEST_EMOJI = ":test_tube:"
_SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}

# Why an alert resolved, when the engine gave no sentence of its own.
REASON_WORDS = {
    "restored": "the lost links were restored",
    "window_passed": "the losses left the rule's window",
    "rule_changed": "the rule was changed",
    "rule_removed": "the rule was removed",
    "condition_cleared": "the condition no longer holds",
}

TEST_TITLE = "linkwatch notifier test — not an alert"
TEST_NOTE = "This is a test of the notifier, not an alert: nothing needs doing."

# Block ids linkwatch gives its blocks, so a later chat.update can find one alert's part.
ALERT_BLOCK = "lw-alert"
RESOLVED_BLOCK = "lw-resolved"

_HTTP = re.compile(r"https?://", re.IGNORECASE)
_LEADING_EMOJI = re.compile(r"^:[a-z0-9_+-]+:\s*")
_LEADING_STATE = re.compile(r"^(FIRING|STILL FIRING|UPDATED)\s+")


# ---------------------------------------------------------------------------- escaping


def escape_mrkdwn(text: str) -> str:
    """Escape the three characters Slack reads as control sequences (`&`, `<`, `>`)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_url(url: str) -> str | None:
    """The URL made safe to stand inside Slack's `<url|text>`, or None when it is not
    http(s) or too long to be a link (once escaped: `&` grows fivefold)."""
    if not _HTTP.match(url) or len(url) > LINK_URL_MAX:
        return None
    # Percent-encoding leaves the address the same while `|` can no longer end the URL part
    # early; whitespace and control characters never belong in a URL. `<`, `>` and `&`
    # are entity-escaped, which Slack decodes in the link target.
    safe = "".join(
        "".join(f"%{b:02X}" for b in ch.encode()) if ch == "|" or _unprintable(ch) else ch
        for ch in url
    )
    escaped = escape_mrkdwn(safe)
    return escaped if len(escaped) <= LINK_URL_MAX else None


def slack_link(url: str, text: str) -> str:
    """`<url|text>` with both parts escaped, or the escaped text alone for an unsafe URL."""
    shown = escape_mrkdwn(text or url)
    target = slack_url(url)
    return f"<{target}|{shown}>" if target is not None else shown


def _unprintable(ch: str) -> bool:
    return ch.isspace() or ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0


def _clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clip_markup(text: str, limit: int) -> str:
    """Slack mrkdwn cut to `limit` without leaving half an entity (`&am`) or half a link or
    date (`<http…`): every `&` and `<` in it is one we wrote, so each opens a whole token."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    lt = cut.rfind("<")
    if lt != -1 and ">" not in cut[lt:]:
        cut = cut[:lt]
    return cut + "…"


# ---------------------------------------------------------------------------- dates


def _instant(iso: str | None) -> datetime | None:
    if not iso:
        return None
    try:
        at = datetime.fromisoformat(iso)
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def plain_date(iso: str | None) -> str:
    """An ISO 8601 instant as `2026-03-01 12:00 UTC` (the text as given if it is not one)."""
    at = _instant(iso)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if at else (iso or "")


def slack_date(iso: str | None, token: str = "{date_short_pretty} {time}") -> str:
    """Slack's date token, shown in each reader's own time zone, with a UTC fallback."""
    at = _instant(iso)
    if at is None:
        return escape_mrkdwn(iso or "")
    return f"<!date^{int(at.timestamp())}^{token}|{plain_date(iso)}>"


# ---------------------------------------------------------------------------- pieces


@dataclass(frozen=True)
class _Link:
    """A link to a third-party page: a Slack link, an HTML anchor, or text and URL."""

    url: str
    text: str


@dataclass(frozen=True)
class _When:
    """An instant: a Slack date token, or UTC text."""

    iso: str | None


_Span = str | _Link | _When
_Line = tuple[_Span, ...]


@dataclass(frozen=True)
class _List:
    """A titled list of lines and how many more there are beyond them."""

    title: str
    lines: tuple[_Line, ...]
    more: int = 0


@dataclass(frozen=True)
class _Part:
    """One alert of a message: its heading, summary, fields and link lists."""

    msg: AlertMessage
    heading: str
    emoji: str
    summary: str
    fields: tuple[tuple[str, _Line], ...]
    lists: tuple[_List, ...]


def _number(value: float | None) -> str:
    if value is None:
        return "no data"
    return f"{value:g}" if value != int(value) else str(int(value))


def _emoji(msg: AlertMessage) -> str:
    if msg.transition == "resolved":
        return RESOLVED_EMOJI
    if msg.transition == "test":
        return TEST_EMOJI
    return SEVERITY_EMOJI.get(msg.severity, ":white_circle:")


def _state(msg: AlertMessage) -> str:
    return STATE_WORDS.get(msg.transition, msg.transition.upper())


def measurement(msg: AlertMessage) -> str:
    """The value against the threshold, e.g. `lost_refdomains = 12 (threshold >= 10)`."""
    shown = f"{msg.metric} = {_number(msg.value)}"
    if msg.threshold is not None and msg.op:
        shown += f" (threshold {msg.op} {_number(msg.threshold)})"
    return shown


def _reason(msg: AlertMessage) -> str:
    if msg.reason_text:
        return msg.reason_text
    if msg.reason:
        return REASON_WORDS.get(msg.reason, msg.reason)
    return REASON_WORDS["condition_cleared"]


def _link_line(item: LinkItem) -> _Line:
    """`domain (DR 55, reason) anchor "…" → target` for one link."""
    details = []
    if item.domain_rating is not None:
        details.append(f"DR {_number(item.domain_rating)}")
    if item.reason:
        details.append(_clip(item.reason, NAME_MAX))
    line: list[_Span] = [_Link(item.url_from, _clip(item.refdomain, NAME_MAX))]
    if details:
        line.append(f" ({', '.join(details)})")
    line.append(f' anchor "{_clip(item.anchor, ANCHOR_MAX)}"' if item.anchor else " no anchor")
    line.append(f" → {_clip(item.url_to, URL_SHOWN_MAX)}")
    return tuple(line)


def _domain_line(d: LostDomain) -> _Line:
    """`domain (DR 80, all links lost), reason: removed, anchor "…" → target`."""
    dr = f"DR {_number(d.domain_rating)}" if d.domain_rating is not None else "DR n/a"
    scope = "all links lost" if d.domain_lost else "some links lost"
    anchor = f'anchor "{_clip(d.anchor, ANCHOR_MAX)}"' if d.anchor else "no anchor"
    return (
        _Link(d.url_from, _clip(d.refdomain, NAME_MAX)),
        f" ({dr}, {scope}), reason: {_clip(d.reason or 'unknown', NAME_MAX)}, {anchor}"
        f" → {_clip(d.url_to, URL_SHOWN_MAX)}",
    )


def _links_title(msg: AlertMessage) -> str:
    noun = {"link_lost": "lost links", "link_new": "new links"}.get(msg.kind, "links")
    return ("More " if msg.transition == "update" else "") + (
        noun if msg.transition == "update" else noun.capitalize()
    )


def _part(msg: AlertMessage) -> _Part:
    """What one alert of a message shows, in every rendering."""
    fields: list[tuple[str, _Line]] = []
    lists: list[_List] = []
    if msg.transition == "test":
        sent = (("Sent", (_When(msg.at),)),)
        return _Part(msg, f"{_state(msg)} · {TEST_TITLE}", _emoji(msg), msg.summary, sent, ())
    if msg.metric:
        fields.append(("Value", (measurement(msg),)))
    if msg.window:
        fields.append(("Window", (msg.window,)))
    if msg.since:
        fields.append(("Firing since", (_When(msg.since),)))
    if msg.firing_for:
        fields.append(
            ("Fired for" if msg.transition == "resolved" else "Firing for", (msg.firing_for,))
        )
    if msg.transition == "resolved":
        fields.append(("Resolved", (_When(msg.at),)))
        fields.append(("Why", (_reason(msg),)))
    elif msg.transition != "firing" or not msg.since:
        fields.append(("As of", (_When(msg.at),)))
    if msg.labels:
        fields.append(("Labels", (", ".join(f"{k}={v}" for k, v in msg.labels),)))
    if msg.links or msg.more_links:
        shown = msg.links[:LIST_MAX]
        more = msg.more_links + len(msg.links) - len(shown)
        lists.append(_List(_links_title(msg), tuple(_link_line(i) for i in shown), more))
    if msg.restored:
        shown = msg.restored[:LIST_MAX]
        lists.append(
            _List(
                "Restored links",
                tuple(_link_line(i) for i in shown),
                len(msg.restored) - len(shown),
            )
        )
    heading = f"{_state(msg)} {msg.severity} · {msg.rule}"
    return _Part(msg, heading, _emoji(msg), msg.summary, tuple(fields), tuple(lists))


def _domain_rank(d: LostDomain) -> tuple[bool, bool, float]:
    """Wholly lost domains first, then by domain rating (as the store ranks them)."""
    return (not d.domain_lost, d.domain_rating is None, -(d.domain_rating or 0))


def merged_lost_domains(alerts: Iterable[AlertMessage]) -> tuple[list[LostDomain], int]:
    """Each lost referring domain of a message's alerts once, strongest first, and how
    many more there are."""
    # Two alerts of one site (say a 7-day and a 30-day rule) name largely the same domains;
    # the message lists them once. Each alert knows its own total (listed + more); the
    # union's total is at least the largest of those, which is what "+N more" counts.
    best: dict[str, LostDomain] = {}
    total = 0
    for msg in alerts:
        total = max(total, len(msg.lost_domains) + max(msg.more_domains, 0))
        for d in msg.lost_domains:
            key = d.refdomain.lower()
            if key not in best or _domain_rank(d) < _domain_rank(best[key]):
                best[key] = d
    ranked = sorted(best.values(), key=_domain_rank)
    return ranked, max(total, len(ranked)) - len(ranked)


def _domains(n: Notification) -> _List | None:
    # A resolved alert's losses no longer call for action: its original post lists them.
    ranked, more = merged_lost_domains(a for a in n.alerts if a.transition != "resolved")
    if not ranked:
        return None
    shown = ranked[:LIST_MAX]
    return _List(
        "Strongest lost referring domains",
        tuple(_domain_line(d) for d in shown),
        more + len(ranked) - len(shown),
    )


def _counts(alerts: Sequence[AlertMessage]) -> str:
    """`2 firing, 1 resolved`, in lifecycle order."""
    seen = [t for t in STATE_WORDS if any(a.transition == t for a in alerts)]
    return ", ".join(
        f"{sum(a.transition == t for a in alerts)} {STATE_WORDS[t].lower()}" for t in seen
    )


def _top_severity(alerts: Sequence[AlertMessage]) -> str | None:
    """The strongest severity among alerts that still fire (None when all resolved)."""
    active = [a.severity for a in alerts if a.transition not in ("resolved", "test")]
    return min(active, key=lambda s: _SEVERITY_RANK.get(s, 9)) if active else None


# ---------------------------------------------------------------------------- titles


def title(n: Notification) -> str:
    """One line saying what the message is: `[FIRING critical] example.com: rule`."""
    if n.test:
        return f"[TEST] {TEST_TITLE}"
    if len(n.alerts) == 1:
        msg = n.alerts[0]
        return f"[{_state(msg)} {msg.severity}] {msg.site}: {msg.rule}"
    top = _top_severity(n.alerts)
    state = f"FIRING {top}" if top else "RESOLVED"
    return f"[{state}] {n.site}: {len(n.alerts)} alerts ({_counts(n.alerts)})"


def header(n: Notification) -> str:
    """The Slack header: an emoji, then what fires where (plain text, at most 150)."""
    if n.test:
        return _clip(f"{TEST_EMOJI} TEST · {TEST_TITLE}", SLACK_HEADER_MAX)
    if len(n.alerts) == 1:
        msg = n.alerts[0]
        if msg.transition == "resolved":
            text = f"{RESOLVED_EMOJI} RESOLVED · {msg.site} · {msg.rule}"
        else:
            text = f"{_emoji(msg)} {_state(msg)} {msg.severity} · {msg.site} · {msg.rule}"
        return _clip(text, SLACK_HEADER_MAX)
    top = _top_severity(n.alerts)
    emoji = SEVERITY_EMOJI.get(top, ":white_circle:") if top else RESOLVED_EMOJI
    text = f"{emoji} {n.site}: {len(n.alerts)} alerts ({_counts(n.alerts)})"
    return _clip(text, SLACK_HEADER_MAX)


def alert_subject(msg: AlertMessage) -> str:
    """An alert's e-mail subject, the same for every mail of its thread."""
    return f"[linkwatch] [{msg.severity}] {msg.site}: {msg.rule}"


def subject(n: Notification) -> str:
    """The subject of a mail that starts a thread (or tells of no thread)."""
    if n.test:
        # ASCII: a subject needs no encoded words to say it is a test.
        return "[linkwatch] TEST: notifier test, not an alert"
    if len(n.alerts) == 1:
        msg = n.alerts[0]
        suffix = "" if msg.transition == "firing" else f" ({_state(msg).lower()})"
        return alert_subject(msg) + suffix
    top = _top_severity(n.alerts)
    return (
        f"[linkwatch] [{top or 'resolved'}] {n.site}: {len(n.alerts)} alerts ({_counts(n.alerts)})"
        f": {_rule_names(n.alerts)}"
    )


def _rule_names(alerts: Sequence[AlertMessage]) -> str:
    """The rules of a grouped message, newly firing and strongest first: `a, b, +2 more`."""
    ranked = sorted(
        alerts,
        key=lambda a: (
            a.transition != "firing",
            a.transition == "resolved",
            _SEVERITY_RANK.get(a.severity, 9),
        ),
    )
    names = list(dict.fromkeys(_clip(a.rule, NAME_MAX) for a in ranked))
    shown = names[:SUBJECT_RULES]
    more = f", +{len(names) - len(shown)} more" if len(names) > len(shown) else ""
    return ", ".join(shown) + more


# ---------------------------------------------------------------------------- plain text


def _plain(line: _Line) -> str:
    out = []
    for span in line:
        if isinstance(span, _Link):
            url = _clip(span.url, URL_SHOWN_MAX)
            out.append(f"{span.text} ({url})" if span.text and span.text != span.url else url)
        elif isinstance(span, _When):
            out.append(plain_date(span.iso))
        else:
            out.append(span)
    return "".join(out)


def _plain_list(listed: _List) -> list[str]:
    lines = [f"{listed.title}:"] + [f"- {_plain(line)}" for line in listed.lines]
    if listed.more:
        lines.append(f"+{listed.more} more")
    return lines


def render_text(n: Notification) -> str:
    """The plain-text form: console, e-mail text part and Slack's notification fallback."""
    lines = [title(n)]
    if n.test:
        lines.append(TEST_NOTE)
    grouped = len(n.alerts) > 1
    for msg in n.alerts:
        part = _part(msg)
        lines.append("")
        if grouped:
            lines.append(title(Notification(n.site, (msg,))))
        lines.append(part.summary)
        lines.extend(f"{label}: {_plain(value)}" for label, value in part.fields)
        for listed in part.lists:
            lines.extend(_plain_list(listed))
    domains = _domains(n)
    if domains is not None:
        lines.append("")
        lines.extend(_plain_list(domains))
    # Each line holds third-party text (anchors, URLs, summaries, reasons): a newline or
    # escape sequence in it is shown escaped, so it stays on its line and inert.
    return "\n".join(one_line(line) for line in lines)


# ---------------------------------------------------------------------------- Slack


def _mrkdwn(line: _Line, links: bool = True) -> str:
    out = []
    for span in line:
        if isinstance(span, _Link):
            out.append(
                slack_link(span.url, span.text) if links else escape_mrkdwn(span.text or span.url)
            )
        elif isinstance(span, _When):
            out.append(slack_date(span.iso))
        else:
            out.append(escape_mrkdwn(span))
    return "".join(out)


def _block_id(prefix: str, fingerprint: str, used: set[str]) -> str | None:
    """`prefix:fingerprint`, unless the fingerprint is missing or already used in this
    message (Slack refuses a message with two equal block ids)."""
    clean = re.sub(r"[^A-Za-z0-9_.-]", "", fingerprint)[: SLACK_BLOCK_ID_MAX - len(prefix) - 1]
    block_id = f"{prefix}:{clean}"
    if not clean or block_id in used:
        return None
    used.add(block_id)
    return block_id


def _section(text: str, block_id: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "section",
        "text": {"type": "mrkdwn", "text": _clip_markup(text, SLACK_SECTION_MAX) or " "},
    }
    if block_id:
        block["block_id"] = block_id
    return block


def _context(text: str, block_id: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": _clip_markup(text, SLACK_CONTEXT_MAX) or " "}],
    }
    if block_id:
        block["block_id"] = block_id
    return block


def _list_section(listed: _List) -> dict[str, Any]:
    """A titled list in one section: whole lines only, the rest counted in "+N more"."""
    head = f"*{escape_mrkdwn(listed.title)}*"
    body = [head]
    size = len(head)
    shown = 0
    # Room for the "+N more" line that may follow.
    room = SLACK_SECTION_MAX - 24
    for line in listed.lines:
        item = "• " + _mrkdwn(line)
        if len(item) > SLACK_LINE_MAX:
            # Escaping can make third-party text five times longer (`&` is `&amp;`): such a
            # line is shown without its link, and cut, so the lines after it still show.
            item = _clip_markup("• " + _mrkdwn(line, links=False), SLACK_LINE_MAX)
        if size + 1 + len(item) > room:
            break
        body.append(item)
        size += 1 + len(item)
        shown += 1
    hidden = listed.more + len(listed.lines) - shown
    if hidden:
        body.append(f"+{hidden} more")
    return _section("\n".join(body))


def _fit(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """At most 50 blocks: beyond that, a note says the rest is in linkwatch (and the
    footer, the last block, stays)."""
    if len(blocks) <= SLACK_BLOCKS_MAX:
        return blocks
    kept = blocks[: SLACK_BLOCKS_MAX - 2]
    note = _context(
        f"_{len(blocks) - len(kept) - 1} more blocks not shown (Slack shows at most"
        f" {SLACK_BLOCKS_MAX}); the full message is in the notification text._"
    )
    return [*kept, note, blocks[-1]]


def _latest(n: Notification) -> str | None:
    """The latest transition instant of a message (ISO 8601)."""
    dated = [(at, a.at) for a in n.alerts if (at := _instant(a.at)) is not None]
    return max(dated)[1] if dated else None


def render_slack(n: Notification) -> tuple[str, list[dict[str, Any]]]:
    """(`text` fallback, Block Kit blocks) for chat.postMessage."""
    e = escape_mrkdwn
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header(n), "emoji": True}}
    ]
    used: set[str] = set()
    grouped = len(n.alerts) > 1
    for i, msg in enumerate(n.alerts):
        part = _part(msg)
        if i:
            blocks.append({"type": "divider"})
        lead = f"*{part.emoji} {e(part.heading)}*\n" if grouped else ""
        summary = f"*{e(part.summary)}*" if part.summary else ""
        if msg.transition == "test":
            summary = f"*{e(TEST_NOTE)}*\n{e(part.summary)}"
        blocks.append(
            _section(
                lead + summary or e(part.heading), _block_id(ALERT_BLOCK, msg.fingerprint, used)
            )
        )
        fields = [
            {
                "type": "mrkdwn",
                "text": _clip_markup(f"*{e(label)}*\n{_mrkdwn(value)}", SLACK_FIELD_MAX),
            }
            for label, value in part.fields[:SLACK_FIELDS_MAX]
        ]
        if fields:
            blocks.append({"type": "section", "fields": fields})
        blocks.extend(_list_section(listed) for listed in part.lists)
    domains = _domains(n)
    if domains is not None:
        blocks.append(_list_section(domains))
    blocks.append(_context(f"linkwatch · {e(n.site)} · {slack_date(_latest(n))}"))
    return _clip_markup(e(render_text(n)), SLACK_TEXT_MAX), _fit(blocks)


def _droppable(blocks: Sequence[dict[str, Any]], own: int) -> int | None:
    """The index of the block a full post can best do without to take a resolved mark:
    a divider, else a detail (fields, a list) of the resolved alert's own part, else any
    detail from the end, else the note of blocks not shown. Never the header, the footer
    (the last block), an alert's opening section or a resolved mark."""

    def kept(i: int) -> bool:
        block_id = str(blocks[i].get("block_id") or "")
        return (
            (i == 0 and blocks[i].get("type") == "header")
            or i == len(blocks) - 1
            or block_id.startswith((ALERT_BLOCK + ":", RESOLVED_BLOCK + ":"))
        )

    candidates = [i for i in range(len(blocks)) if not kept(i)]
    dividers = [i for i in candidates if blocks[i].get("type") == "divider"]
    if dividers:
        # The divider that opens this alert's part, if it has one: the mark sets it apart.
        before = [i for i in dividers if i < own]
        return before[-1] if before else dividers[-1]
    details = [i for i in candidates if blocks[i].get("type") != "context"]
    end = next((i for i in range(own + 1, len(blocks)) if kept(i)), len(blocks))
    mine = [i for i in details if own < i < end]
    if mine:
        return mine[-1]
    if details:
        return details[-1]
    return candidates[-1] if candidates else None


def mark_resolved(
    text: str, blocks: Sequence[dict[str, Any]], resolved: Sequence[AlertMessage]
) -> tuple[str, list[dict[str, Any]]]:
    """A posted message's text and blocks, as Slack returns them, marked to show these
    alerts resolved (marking twice changes nothing)."""
    # A context line under each alert's part; once every alert of the post has resolved,
    # a header and text that say RESOLVED. A post already at Slack's 50 blocks makes room
    # for a mark by dropping its least needed block (see `_droppable`).
    out = [dict(b) for b in blocks]
    now_done: set[str] = set()
    for msg in resolved:
        fp = re.sub(r"[^A-Za-z0-9_.-]", "", msg.fingerprint)
        now_done.add(fp)
        mark_id = f"{RESOLVED_BLOCK}:{fp}" if fp else None
        mark = _context(
            f"{RESOLVED_EMOJI} *resolved* {slack_date(msg.at)}: {escape_mrkdwn(_reason(msg))}",
            mark_id,
        )
        ids = [b.get("block_id") for b in out]
        if mark_id is not None and mark_id in ids:
            out[ids.index(mark_id)] = mark
            continue
        alert_id = f"{ALERT_BLOCK}:{fp}"
        own = ids.index(alert_id) if fp and alert_id in ids else None
        if len(out) >= SLACK_BLOCKS_MAX:
            # An alert the full post does not show (cut to fit) takes no other's room.
            drop = _droppable(out, own) if own is not None else None
            if drop is None:
                continue  # the header below still says resolved once all have
            del out[drop]
            own = [b.get("block_id") for b in out].index(alert_id)
        top = 1 if out and out[0].get("type") == "header" else 0
        out.insert(top if own is None else own + 1, mark)
    marked = [str(b.get("block_id") or "") for b in out]
    alerts = {i.partition(":")[2] for i in marked if i.startswith(ALERT_BLOCK + ":")}
    done = {i.partition(":")[2] for i in marked if i.startswith(RESOLVED_BLOCK + ":")}
    done |= now_done
    # A post made before block ids (or of one alert without a fingerprint) is one alert.
    if alerts <= done or not alerts:
        if out and out[0].get("type") == "header":
            head = str((out[0].get("text") or {}).get("text", ""))
            if not head.startswith(f"{RESOLVED_EMOJI} RESOLVED"):
                rest = _LEADING_STATE.sub("", _LEADING_EMOJI.sub("", head))
                out[0] = {
                    **out[0],
                    "text": {
                        "type": "plain_text",
                        "text": _clip(f"{RESOLVED_EMOJI} RESOLVED · {rest}", SLACK_HEADER_MAX),
                        "emoji": True,
                    },
                }
        if not text.startswith("RESOLVED: "):
            text = _clip_markup("RESOLVED: " + text, SLACK_TEXT_MAX)
    return text, out


# ---------------------------------------------------------------------------- HTML

_STATE_COLOURS = {"resolved": "#2e7d32", "test": "#6a1b9a"}
_SEVERITY_COLOURS = {"critical": "#c62828", "warning": "#ef6c00", "info": "#1565c0"}


def _html_line(line: _Line) -> str:
    h = html.escape
    out = []
    for span in line:
        if isinstance(span, _Link):
            if _HTTP.match(span.url):
                out.append(f'<a href="{h(span.url, quote=True)}">{h(span.text or span.url)}</a>')
            else:
                out.append(h(span.text or span.url))
        elif isinstance(span, _When):
            out.append(h(plain_date(span.iso)))
        else:
            out.append(h(span))
    return "".join(out)


def _html_list(listed: _List) -> list[str]:
    parts = [f"<h4>{html.escape(listed.title)}</h4><ul>"]
    parts += [f"<li>{_html_line(line)}</li>" for line in listed.lines]
    if listed.more:
        parts.append(f"<li>+{listed.more} more</li>")
    parts.append("</ul>")
    return parts


def _colour(msg: AlertMessage) -> str:
    return _STATE_COLOURS.get(msg.transition) or _SEVERITY_COLOURS.get(msg.severity, "#424242")


def render_html(n: Notification) -> str:
    """The HTML e-mail part: the same content as the text part, every piece escaped."""
    h = html.escape
    top = n.alerts[0] if len(n.alerts) == 1 else None
    colour = (
        _colour(top) if top else _SEVERITY_COLOURS.get(_top_severity(n.alerts) or "", "#2e7d32")
    )
    parts = [
        '<!DOCTYPE html><html><body style="font-family:sans-serif">',
        f'<h2 style="color:{colour}">{h(title(n))}</h2>',
    ]
    if n.test:
        parts.append(f"<p><strong>{h(TEST_NOTE)}</strong></p>")
    for msg in n.alerts:
        part = _part(msg)
        if len(n.alerts) > 1:
            parts.append(f'<h3 style="color:{_colour(msg)}">{h(part.heading)}</h3>')
        parts.append(f"<p><strong>{h(part.summary)}</strong></p>")
        if part.fields:
            parts.append('<table cellpadding="3">')
            parts += [
                f'<tr><th align="left">{h(label)}</th><td>{_html_line(value)}</td></tr>'
                for label, value in part.fields
            ]
            parts.append("</table>")
        for listed in part.lists:
            parts += _html_list(listed)
    domains = _domains(n)
    if domains is not None:
        parts += _html_list(domains)
    parts.append("</body></html>")
    return "\n".join(parts)
