"""Rendering an alert as plain text, Slack Block Kit and HTML, escaping third-party text."""

from __future__ import annotations

import html
from typing import Any

from alerts.message import AlertMessage
from daemon.store.reads import LostDomain

# Slack limits (api.slack.com/reference/block-kit): header text 150, section text 3000.
_SLACK_HEADER_MAX = 150
_SLACK_SECTION_MAX = 3000
_SLACK_TEXT_MAX = 4000


def escape_mrkdwn(text: str) -> str:
    """Escape the three characters Slack reads as control sequences (`&`, `<`, `>`)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _number(value: float | None) -> str:
    if value is None:
        return "no data"
    return f"{value:g}" if value != int(value) else str(int(value))


def title(msg: AlertMessage) -> str:
    """One line naming the transition, severity, site and rule."""
    state = "RESOLVED" if msg.transition == "resolved" else "FIRING"
    return f"[{state} {msg.severity}] {msg.site}: {msg.rule}"


def measurement(msg: AlertMessage) -> str:
    """The value against the threshold and the window."""
    return (
        f"{msg.metric} = {_number(msg.value)} (threshold {msg.op} {_number(msg.threshold)})"
        f" over {msg.window}, at {msg.at}"
    )


def _domain_line(d: LostDomain) -> tuple[str, str]:
    """(head, link) of one lost domain line, unescaped."""
    dr = f"DR {_number(d.domain_rating)}" if d.domain_rating is not None else "DR n/a"
    scope = "all links lost" if d.domain_lost else "some links lost"
    head = f"{d.refdomain} ({dr}, {scope})"
    anchor = f' anchor "{d.anchor}"' if d.anchor else " no anchor text"
    link = f"{d.url_from} → {d.url_to}{anchor}, reason: {d.reason or 'unknown'}"
    return head, link


def render_text(msg: AlertMessage) -> str:
    """The plain-text form: console, e-mail text part and Slack's notification fallback."""
    lines = [title(msg), msg.summary, measurement(msg)]
    if msg.lost_domains:
        lines.append("Strongest lost referring domains:")
        for d in msg.lost_domains:
            head, link = _domain_line(d)
            lines.append(f"- {head}: {link}")
    return "\n".join(lines)


def render_slack(msg: AlertMessage) -> tuple[str, list[dict[str, Any]]]:
    """(`text` fallback, Block Kit blocks) for chat.postMessage."""
    e = escape_mrkdwn
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _clip(title(msg), _SLACK_HEADER_MAX)},
        },
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": _clip(f"*{e(msg.summary)}*\n{e(measurement(msg))}", _SLACK_SECTION_MAX),
            },
        },
    ]
    if msg.lost_domains:
        rows = []
        for d in msg.lost_domains:
            head, link = _domain_line(d)
            rows.append(f"• *{e(head)}*\n      {e(link)}")
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": _clip(
                        "*Strongest lost referring domains*\n" + "\n".join(rows),
                        _SLACK_SECTION_MAX,
                    ),
                },
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": e(f"linkwatch · rule {msg.rule}")}],
        }
    )
    return _clip(e(render_text(msg)), _SLACK_TEXT_MAX), blocks


def render_html(msg: AlertMessage) -> str:
    """The HTML e-mail part; every piece of text is escaped."""
    h = html.escape
    colour = "#2e7d32" if msg.transition == "resolved" else "#c62828"
    parts = [
        '<!DOCTYPE html><html><body style="font-family:sans-serif">',
        f'<h2 style="color:{colour}">{h(title(msg))}</h2>',
        f"<p><strong>{h(msg.summary)}</strong></p>",
        f"<p>{h(measurement(msg))}</p>",
    ]
    if msg.lost_domains:
        parts.append("<h3>Strongest lost referring domains</h3><ul>")
        for d in msg.lost_domains:
            head, link = _domain_line(d)
            parts.append(f"<li><strong>{h(head)}</strong><br>{h(link)}</li>")
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)
