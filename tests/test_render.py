"""Renderings of a notification: hostile third-party text stays text, Slack's limits hold
whatever the size, lost domains are listed once per message, dates are Slack date tokens."""

from __future__ import annotations

import html
import json
import re
from dataclasses import replace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from alerts.message import AlertMessage, LinkItem, Notification
from alerts.render import (
    escape_mrkdwn,
    header,
    mark_resolved,
    merged_lost_domains,
    render_html,
    render_slack,
    render_text,
    slack_date,
    slack_link,
    subject,
    title,
)
from daemon.store.reads import LostDomain
from daemon.textsafe import one_line
from tests.conftest import _block_ok

AT = "2026-03-01T12:00:00+00:00"
EPOCH = 1772366400  # 2026-03-01 12:00 UTC


def _alert(**kw: Any) -> AlertMessage:
    fields: dict[str, Any] = {
        "transition": "firing",
        "rule": "refdomain-loss",
        "site": "example.com",
        "severity": "critical",
        "metric": "lost_refdomains",
        "value": 12,
        "op": ">=",
        "threshold": 10,
        "window": "7d",
        "summary": "example.com lost 12 referring domains in 7d",
        "at": AT,
        "fingerprint": "fp0000000000000000000001",
        "since": AT,
    }
    fields.update(kw)
    return AlertMessage(**fields)


def _domain(name: str, dr: float | None = 50, lost: bool = True, **kw: Any) -> LostDomain:
    fields: dict[str, Any] = {
        "refdomain": name,
        "domain_rating": dr,
        "domain_lost": lost,
        "url_from": f"https://{name}/page",
        "url_to": "https://example.com/",
        "anchor": f"anchor of {name}",
        "reason": "removed",
    }
    fields.update(kw)
    return LostDomain(**fields)


def _one(alert: AlertMessage) -> Notification:
    return Notification(alert.site, (alert,))


def _mrkdwn(blocks: list[dict[str, Any]]) -> list[str]:
    """Every mrkdwn string of the blocks."""
    out: list[str] = []
    for b in blocks:
        texts = [b.get("text"), *b.get("fields", []), *b.get("elements", [])]
        out += [t["text"] for t in texts if isinstance(t, dict) and t.get("type") == "mrkdwn"]
    return out


def _controls(mrkdwn: str) -> list[str]:
    """The `<…>` control sequences Slack would act on in a mrkdwn string."""
    return re.findall(r"<([^>]*)>", mrkdwn)


def _slack_unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _assert_no_forged_controls(text: str, blocks: list[dict[str, Any]]) -> None:
    """Only links to http(s) URLs and date tokens, each whole: nothing pings or forges."""
    for mrkdwn in [text, *_mrkdwn(blocks)]:
        for control in _controls(mrkdwn):
            if control.startswith("!date^"):
                assert re.fullmatch(r"!date\^\d+\^\{date_short_pretty\} \{time\}\|[^<>|]+", control)
                continue
            url, bar, shown = control.partition("|")
            assert bar and re.match(r"https?://", url), control
            assert "|" not in url and "<" not in url and "<" not in shown


# ---------------------------------------------------------------------------- escaping


def test_a_hostile_anchor_cannot_ping_the_channel_or_forge_a_link() -> None:
    hostile = "<!channel> & <https://evil.example|click here> <!here>"
    alert = _alert(
        summary="summary <!everyone>",
        lost_domains=(_domain("big-daily.io", anchor=hostile),),
        links=(LinkItem("x.org", "https://x.org/a", "https://example.com/", anchor=hostile),),
        kind="link_lost",
    )
    text, blocks = render_slack(_one(alert))
    _assert_no_forged_controls(text, blocks)
    everything = text + json.dumps(blocks)
    assert "<!channel>" not in everything and "<!here>" not in everything
    assert "<!everyone>" not in everything
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|click here&gt;" in everything
    # The plain text (e-mail, console) shows it as it is: there it is only text.
    assert hostile in render_text(_one(alert))


def test_a_url_cannot_break_out_of_its_slack_link() -> None:
    alert = _alert(lost_domains=(_domain("x.io", url_from="https://x/|<!here>"),))
    text, blocks = render_slack(_one(alert))
    _assert_no_forged_controls(text, blocks)
    [listing] = [t for t in _mrkdwn(blocks) if "Strongest lost referring domains" in t]
    assert "<https://x/%7C&lt;!here&gt;|x.io>" in listing
    assert "<!here>" not in json.dumps(blocks)
    assert slack_link("https://a.example/?q=1&r=<b>", "a") == (
        "<https://a.example/?q=1&amp;r=&lt;b&gt;|a>"
    )
    # Whitespace cannot split the link either.
    assert slack_link("https://a.example/x y\n>z", "a") == "<https://a.example/x%20y%0A&gt;z|a>"


def test_a_link_that_is_not_http_is_shown_as_text_only() -> None:
    for url in ("javascript:alert(1)", "slack://open", "<!here>", "mailto:x@y", "//x.example"):
        assert slack_link(url, "shown <b>") == "shown &lt;b&gt;"
    alert = _alert(lost_domains=(_domain("evil.io", url_from="javascript:alert(1)"),))
    _, blocks = render_slack(_one(alert))
    assert "javascript:" not in json.dumps(blocks)
    page = render_html(_one(alert))
    assert 'href="javascript' not in page and "evil.io" in page


def test_entities_in_third_party_text_round_trip() -> None:
    anchor = "Tom &amp; Jerry &lt;3 & friends"
    alert = _alert(lost_domains=(_domain("t.io", anchor=anchor),), summary=anchor)
    _, blocks = render_slack(_one(alert))
    # What Slack shows after decoding its three entities is exactly the original text.
    assert any(anchor in _slack_unescape(t) for t in _mrkdwn(blocks))
    assert f"*{escape_mrkdwn(anchor)}*" in _mrkdwn(blocks)[0]
    assert "Tom &amp;amp; Jerry &amp;lt;3 &amp; friends" in _mrkdwn(blocks)[0]
    page = render_html(_one(alert))
    assert html.escape(anchor) in page and anchor not in page
    assert anchor in render_text(_one(alert))


@given(st.text())
def test_mrkdwn_escaping_round_trips_and_leaves_no_control_character(text: str) -> None:
    escaped = escape_mrkdwn(text)
    assert "<" not in escaped and ">" not in escaped
    assert _slack_unescape(escaped) == text


@given(st.text(), st.text())
def test_any_url_and_text_make_at_most_one_whole_link(url: str, shown: str) -> None:
    rendered = slack_link(url, shown)
    controls = _controls(rendered)
    assert len(controls) <= 1 and rendered.count("<") == len(controls)
    if controls:
        target, _, label = controls[0].partition("|")
        assert re.match(r"https?://", target, re.IGNORECASE)
        assert "|" not in target and not re.search(r"\s", target)
        assert _slack_unescape(label) == (shown or url)


def test_html_escapes_script_and_attribute_breakouts() -> None:
    attack = '<script>alert("x")</script>'
    alert = _alert(
        summary=attack,
        labels=(("team", attack),),
        lost_domains=(
            _domain("s.io", anchor=attack, url_from='https://s.io/"onmouseover="alert(1)'),
        ),
    )
    page = render_html(_one(alert))
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert 'href="https://s.io/&quot;onmouseover=&quot;alert(1)"' in page
    assert '"onmouseover="' not in page


# ---------------------------------------------------------------------------- limits


def test_two_hundred_lost_domains_and_five_alerts_fit_slacks_limits() -> None:
    domains = tuple(_domain(f"d{i:03}.example", dr=200 - i) for i in range(200))
    long = "x" * 5000
    alerts = tuple(
        _alert(
            rule=f"rule-{i}-{long}",
            fingerprint=f"fp{i}",
            summary=f"<!channel> {long}",
            labels=tuple((f"k{j}", long) for j in range(12)),
            lost_domains=domains,
            more_domains=50,
            kind="link_lost",
            links=tuple(
                LinkItem(f"l{j}.io", f"https://l{j}.io/{long}", long, anchor=long)
                for j in range(200)
            ),
            more_links=7,
        )
        for i in range(5)
    )
    n = Notification("example.com", alerts)
    text, blocks = render_slack(n)
    assert len(text) <= 4000 and len(blocks) <= 50
    assert all(_block_ok(b) for b in blocks), [b for b in blocks if not _block_ok(b)]
    assert len(blocks[0]["text"]["text"]) <= 150
    assert all(len(b.get("fields", [])) <= 10 for b in blocks)
    _assert_no_forged_controls(text, blocks)
    # Each alert has its own part, and the 200 domains (+50 more) are one list, once.
    assert sum(b.get("block_id", "").startswith("lw-alert:") for b in blocks) == 5
    listings = [t for t in _mrkdwn(blocks) if t.startswith("*Strongest lost referring domains*")]
    assert len(listings) == 1
    shown = listings[0].count("\n• ")
    assert 0 < shown <= 10
    assert listings[0].endswith(f"+{250 - shown} more")
    links = [t for t in _mrkdwn(blocks) if t.startswith("*Lost links*")]
    assert len(links) == 5 and all(t.endswith(f"+{207 - t.count('• ')} more") for t in links)
    assert "+240 more" in render_text(n) and "+240 more" in render_html(n)


def test_a_list_section_keeps_whole_lines_and_counts_the_rest() -> None:
    # Each line is long enough that fewer than ten fit in 3000 characters.
    domains = tuple(
        _domain(f"{'a' * 100}{i}.io", anchor="y" * 100, url_to="https://example.com/" + "z" * 300)
        for i in range(10)
    )
    _, blocks = render_slack(_one(_alert(lost_domains=domains)))
    [listing] = [t for t in _mrkdwn(blocks) if t.startswith("*Strongest lost")]
    items = listing.split("\n• ")[1:]
    assert len(listing) <= 3000 and 0 < len(items) < 10
    assert items[-1].endswith(f"+{10 - len(items)} more")
    assert all(i.count("<") == i.count(">") for i in items)


def test_sixty_alerts_are_cut_to_fifty_blocks_with_a_note() -> None:
    alerts = tuple(_alert(fingerprint=f"fp{i}", rule=f"r{i}") for i in range(60))
    text, blocks = render_slack(Notification("example.com", alerts))
    assert len(blocks) == 50 and all(_block_ok(b) for b in blocks)
    assert "more blocks not shown" in blocks[-2]["elements"][0]["text"]
    assert blocks[-1]["elements"][0]["text"].startswith("linkwatch · example.com")
    assert len(text) <= 4000 and text.endswith("…")


def test_clipping_never_leaves_half_an_entity_or_link() -> None:
    summary = "&" * 3000  # 15000 characters once escaped
    _, blocks = render_slack(_one(_alert(summary=summary)))
    section = blocks[1]["text"]["text"]
    assert len(section) <= 3000 and section.endswith("&amp;…")
    # A date token cut short would show as broken markup: it goes whole or not at all.
    site = "s" * 1960
    _, blocks = render_slack(Notification(site, (_alert(site=site),)))
    footer = blocks[-1]["elements"][0]["text"]
    assert footer == f"linkwatch · {site} · …" and _block_ok(blocks[-1])


def test_one_line_swollen_by_escaping_does_not_hide_the_lines_after_it() -> None:
    # 900 `&` are 4500 characters once escaped: the line used to end the list at once.
    hostile_url = "https://evil.example/?" + "&" * 900
    amps = "&" * 300
    good = tuple(
        LinkItem(f"s{i}.org", f"https://s{i}.org/p", "https://example.com/", "a", 90 - i)
        for i in range(11)
    )
    for hostile in (
        LinkItem("evil.example", hostile_url, "https://example.com/", "x", 99),
        # Every shown part clipped, yet five times longer escaped.
        LinkItem("e" * 200, "https://e.example/", "https://example.com/" + amps, amps, 99, amps),
    ):
        alert = _alert(kind="link_lost", links=(hostile, *good))
        restored = _alert(transition="resolved", reason="restored", restored=(hostile, *good))
        for n, title_ in ((_one(alert), "*Lost links*"), (_one(restored), "*Restored links*")):
            text, blocks = render_slack(n)
            assert all(_block_ok(b) for b in blocks) and len(text) <= 4000
            _assert_no_forged_controls(text, blocks)
            [listing] = [t for t in _mrkdwn(blocks) if t.startswith(title_)]
            items = listing.split("\n")[1:]
            assert len(items) == 11 and items[-1] == "+2 more", listing
            assert all(len(i) <= 1000 for i in items)
            # The hostile entry is shown (as text, not a link), the others as links.
            assert items[0].startswith("• e") and "<https://evil" not in items[0]
            for i in range(9):
                assert f"<https://s{i}.org/p|s{i}.org>" in listing
    # Lost referring domains are listed by the same code.
    domains = (
        _domain("evil.example", dr=99, url_from=hostile_url),
        *(_domain(f"d{i}.io", dr=90 - i) for i in range(11)),
    )
    _, blocks = render_slack(_one(_alert(lost_domains=domains)))
    [listing] = [t for t in _mrkdwn(blocks) if t.startswith("*Strongest lost")]
    assert listing.count("\n• ") == 10 and listing.endswith("\n+2 more")
    assert "<https://d8.io/page|d8.io>" in listing


# ---------------------------------------------------------------------------- content


def test_lost_domains_are_listed_once_per_message_strongest_first() -> None:
    shared = (_domain("shared.io", dr=40), _domain("partly.io", dr=90, lost=False))
    seven = _alert(
        rule="loss-7d", fingerprint="a", lost_domains=(*shared, _domain("only7.io", dr=70))
    )
    thirty = _alert(
        rule="loss-30d",
        fingerprint="b",
        lost_domains=(_domain("only30.io", dr=None), *shared),
        more_domains=4,
    )
    ranked, more = merged_lost_domains([seven, thirty])
    assert [d.refdomain for d in ranked] == [
        "only7.io",
        "shared.io",
        "only30.io",
        "partly.io",
    ]
    # The 30-day alert knows of 7 domains; 4 are listed: at least 3 more.
    assert more == 3
    n = Notification("example.com", (seven, thirty))
    text, blocks = render_slack(n)
    everything = [text, json.dumps(blocks), render_text(n), render_html(n)]
    for rendered in everything:
        assert rendered.count("shared.io/page") == 1, rendered
    listing = next(t for t in _mrkdwn(blocks) if t.startswith("*Strongest"))
    assert listing.index("|only7.io>") < listing.index("|shared.io>") < listing.index("|partly.io>")
    assert listing.endswith("+3 more")


def test_a_domain_reported_as_wholly_lost_by_one_alert_is_shown_so() -> None:
    weak = _alert(fingerprint="a", lost_domains=(_domain("x.io", lost=False),))
    strong = _alert(fingerprint="b", lost_domains=(_domain("x.io", lost=True),))
    [d], more = merged_lost_domains([weak, strong])
    assert d.domain_lost and more == 0


def test_a_resolved_alerts_losses_are_not_listed_as_current() -> None:
    resolved = _alert(
        transition="resolved",
        reason="restored",
        reason_text="",
        lost_domains=(_domain("back.io"),),
        restored=(LinkItem("back.io", "https://back.io/p", "https://example.com/", "hi", 30),),
        firing_for="2d 3h",
    )
    text = render_text(_one(resolved))
    assert "Strongest lost" not in text
    assert "Restored links:\n- back.io (https://back.io/p) (DR 30)" in text
    assert "Why: the lost links were restored" in text and "Fired for: 2d 3h" in text


def test_fields_say_value_window_since_duration_reason_and_labels() -> None:
    alert = _alert(
        transition="resolved",
        at="2026-03-02T12:00:00+00:00",
        firing_for="1d",
        reason="window_passed",
        reason_text="the lost domains left the 7d window",
        labels=(("team", "seo"), ("tier", "1")),
    )
    _, blocks = render_slack(_one(alert))
    fields = {f["text"].split("\n")[0]: f["text"].split("\n", 1)[1] for f in blocks[2]["fields"]}
    assert fields == {
        "*Value*": "lost_refdomains = 12 (threshold &gt;= 10)",
        "*Window*": "7d",
        "*Firing since*": f"<!date^{EPOCH}^{{date_short_pretty}} {{time}}|2026-03-01 12:00 UTC>",
        "*Fired for*": "1d",
        "*Resolved*": (
            f"<!date^{EPOCH + 86400}^{{date_short_pretty}} {{time}}|2026-03-02 12:00 UTC>"
        ),
        "*Why*": "the lost domains left the 7d window",
        "*Labels*": "team=seo, tier=1",
    }
    assert blocks[0]["text"]["text"] == ":white_check_mark: RESOLVED · example.com · refdomain-loss"


def test_headers_name_the_severity_state_site_and_rule() -> None:
    assert header(_one(_alert())) == ":red_circle: FIRING critical · example.com · refdomain-loss"
    assert header(_one(_alert(severity="warning", transition="reminder"))) == (
        ":large_orange_circle: STILL FIRING warning · example.com · refdomain-loss"
    )
    assert header(_one(_alert(severity="info", transition="update"))).startswith(
        ":large_blue_circle: UPDATED info"
    )
    grouped = Notification(
        "example.com",
        (
            _alert(severity="warning"),
            _alert(severity="critical", transition="reminder"),
            _alert(transition="resolved"),
        ),
    )
    assert header(grouped) == (
        ":red_circle: example.com: 3 alerts (1 firing, 1 still firing, 1 resolved)"
    )
    assert title(grouped) == (
        "[FIRING critical] example.com: 3 alerts (1 firing, 1 still firing, 1 resolved)"
    )
    all_resolved = Notification("example.com", (_alert(transition="resolved"),) * 2)
    assert header(all_resolved).startswith(":white_check_mark: example.com: 2 alerts")


def test_an_update_lists_the_links_that_joined_and_a_reminder_how_long_it_fired() -> None:
    joined = tuple(
        LinkItem(
            f"n{i}.io", f"https://n{i}.io/p", "https://example.com/", f"a{i}", 10 + i, "removed"
        )
        for i in range(12)
    )
    update = _alert(transition="update", kind="link_lost", links=joined, more_links=3)
    text = render_text(_one(update))
    assert 'More lost links:\n- n0.io (https://n0.io/p) (DR 10, removed) anchor "a0"' in text
    assert text.endswith("+5 more") and "n10.io" not in text
    _, blocks = render_slack(_one(update))
    [links] = [t for t in _mrkdwn(blocks) if t.startswith("*More lost links*")]
    assert links.count("• <https://n") == 10 and links.endswith("+5 more")
    assert "As of: 2026-03-01 12:00 UTC" in text
    reminder = _alert(transition="reminder", firing_for="3d 4h", kind="link_new", links=joined[:1])
    text = render_text(_one(reminder))
    assert "Firing for: 3d 4h" in text and "New links:\n- n0.io" in text


def test_a_test_message_says_so_everywhere() -> None:
    test = _one(
        _alert(
            transition="test",
            rule="notify-test",
            site="linkwatch",
            severity="info",
            metric="",
            value=None,
            op="",
            threshold=None,
            window="",
            summary="Test message from linkwatch to notifier seo-slack",
            since=None,
        )
    )
    text, blocks = render_slack(test)
    assert blocks[0]["text"]["text"] == ":test_tube: TEST · linkwatch notifier test — not an alert"
    assert text.startswith("[TEST] linkwatch notifier test — not an alert")
    assert "not an alert: nothing needs doing" in blocks[1]["text"]["text"]
    assert "FIRING" not in text + json.dumps(blocks)
    assert subject(test) == "[linkwatch] TEST: notifier test, not an alert"
    assert "not an alert" in render_html(test) and "seo-slack" in render_html(test)


def test_third_party_text_is_one_inert_line_in_the_text_rendering() -> None:
    forged = 'x"\n\nWhy: the lost links were restored\x1b]0;pwned\x07'
    evil = LinkItem(
        "e.org\r\nAs of: never", "https://e.org/\x9b2J", "https://example.com/\t", forged, 80
    )
    alert = _alert(
        kind="link_lost",
        summary="lost\nWhy: forged\x7f",
        labels=(("team", "seo\u2028x"),),
        links=(evil,),
        lost_domains=(_domain("d.io", anchor="\x1b[31mred\x1b[0m", reason="gone\nWhy: x"),),
    )
    benign = _alert(
        kind="link_lost",
        summary="lost",
        labels=(("team", "seo"),),
        links=(LinkItem("e.org", "https://e.org/", "https://example.com/", "x", 80),),
        lost_domains=(_domain("d.io", anchor="red", reason="gone"),),
    )
    text = render_text(_one(alert))
    # Each piece of third-party text stays on its own line: no line is added or forged.
    assert text.count("\n") == render_text(_one(benign)).count("\n")
    assert not [line for line in text.split("\n") if line.startswith(("Why:", "As of: never"))]
    # No control character is left but the line breaks linkwatch writes; each is shown.
    assert not [c for c in text if c != "\n" and not c.isprintable()], repr(text)
    for shown in ("\\n\\nWhy: the lost", "\\x1b]0;pwned\\x07", "\\x1b[31mred", "\\x9b2J"):
        assert shown in text, shown
    assert "e.org\\r\\nAs of: never" in text and "seo\\u2028x" in text
    assert "lost\\nWhy: forged\\x7f" in text and "example.com/\\t" in text
    # The Slack fallback text is the same rendering.
    fallback, _ = render_slack(_one(alert))
    assert "\x1b" not in fallback and "\nWhy:" not in fallback


def test_one_line_is_the_helper_of_the_links_table_too() -> None:
    from daemon.cli import _cell

    hostile = "a\tb\nc\x1b[2J\x00\x7f\x85\u202e\xa0é €"
    assert one_line(hostile) == "a\\tb\\nc\\x1b[2J\\x00\\x7f\\x85\\u202e é €"
    assert _cell(hostile) == one_line(hostile)
    assert one_line("plain «text» & <b>") == "plain «text» & <b>"


# ---------------------------------------------------------------------------- dates


def test_dates_are_slack_date_tokens_with_a_utc_fallback() -> None:
    token = "{date_short_pretty} {time}"
    assert slack_date(AT) == f"<!date^{EPOCH}^{token}|2026-03-01 12:00 UTC>"
    assert slack_date("2026-03-01T14:00:00+02:00") == slack_date(AT)
    assert slack_date("2026-03-01T12:00:00") == slack_date(AT)  # naive is UTC
    assert slack_date("not a <date>") == "not a &lt;date&gt;"
    assert slack_date(None) == ""
    _, blocks = render_slack(_one(_alert(at="2026-03-01T12:30:00+00:00")))
    assert blocks[-1]["elements"][0]["text"].endswith(
        f"<!date^{EPOCH + 1800}^{token}|2026-03-01 12:30 UTC>"
    )
    assert "Firing since: 2026-03-01 12:00 UTC" in render_text(_one(_alert()))


# ---------------------------------------------------------------------------- chat.update


def test_marking_a_single_alert_post_resolved_rewrites_header_and_is_idempotent() -> None:
    text, blocks = render_slack(_one(_alert()))
    done = _alert(transition="resolved", at="2026-03-02T12:00:00+00:00", reason="restored")
    new_text, new_blocks = mark_resolved(text, blocks, [done])
    assert new_blocks[0]["text"]["text"] == (
        ":white_check_mark: RESOLVED · critical · example.com · refdomain-loss"
    )
    assert new_text.startswith("RESOLVED: [FIRING critical]")
    mark = new_blocks[2]
    assert mark["block_id"] == f"lw-resolved:{done.fingerprint}"
    assert mark["elements"][0]["text"] == (
        f":white_check_mark: *resolved* <!date^{EPOCH + 86400}^{{date_short_pretty}} {{time}}"
        "|2026-03-02 12:00 UTC>: the lost links were restored"
    )
    assert new_blocks[:2] == [new_blocks[0], blocks[1]] and new_blocks[3:] == blocks[2:]
    assert mark_resolved(new_text, new_blocks, [done]) == (new_text, new_blocks)
    assert all(_block_ok(b) for b in new_blocks)


def test_a_grouped_post_says_resolved_only_once_every_alert_has() -> None:
    first, second = _alert(fingerprint="a1"), _alert(fingerprint="b2", rule="other")
    text, blocks = render_slack(Notification("example.com", (first, second)))
    one = replace(first, transition="resolved", reason_text="<!channel> said so")
    text1, blocks1 = mark_resolved(text, blocks, [one])
    assert blocks1[0] == blocks[0] and text1 == text
    ids = [b.get("block_id") for b in blocks1]
    assert ids.index("lw-resolved:a1") == ids.index("lw-alert:a1") + 1
    assert "&lt;!channel&gt; said so" in json.dumps(blocks1)
    two = replace(second, transition="resolved")
    text2, blocks2 = mark_resolved(text1, blocks1, [two])
    assert blocks2[0]["text"]["text"].startswith(":white_check_mark: RESOLVED · example.com")
    assert text2.startswith("RESOLVED: ")


def test_a_post_without_linkwatch_block_ids_is_marked_as_one_alert() -> None:
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "[FIRING critical] x: r"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "old"}},
    ]
    _, marked = mark_resolved("old", blocks, [_alert(transition="resolved", fingerprint="")])
    assert marked[0]["text"]["text"] == ":white_check_mark: RESOLVED · [FIRING critical] x: r"
    assert marked[1]["type"] == "context" and marked[2] == blocks[1]


def test_a_post_of_fifty_blocks_is_still_marked_and_says_resolved() -> None:
    link = (LinkItem("a.org", "https://a.org/p", "https://example.com/", "a", 50),)
    alerts = tuple(
        _alert(
            fingerprint=f"fp{i:02}",
            rule=f"r{i}",
            kind="link_lost",
            links=link,
            lost_domains=(_domain("a.org"),),
        )
        for i in range(12)
    )
    text, blocks = render_slack(Notification("example.com", alerts))
    assert len(blocks) == 50
    done = [replace(a, transition="resolved", reason="restored") for a in alerts]
    # One by one, as each alert resolves: a mark for each, within Slack's limits.
    for i, alert in enumerate(done):
        text, blocks = mark_resolved(text, blocks, [alert])
        assert len(blocks) <= 50 and all(_block_ok(b) for b in blocks)
        ids = [b.get("block_id") for b in blocks]
        assert ids.index(f"lw-resolved:{alert.fingerprint}") == (
            ids.index(f"lw-alert:{alert.fingerprint}") + 1
        )
        head = blocks[0]["text"]["text"]
        assert head.startswith(":white_check_mark: RESOLVED") == (i == len(done) - 1), head
    ids = [b.get("block_id") for b in blocks]
    assert sum(str(i).startswith("lw-resolved:") for i in ids) == 12
    assert sum(str(i).startswith("lw-alert:") for i in ids) == 12
    assert text.startswith("RESOLVED: ") and blocks[-1]["elements"][0]["text"].startswith(
        "linkwatch · example.com"
    )
    assert mark_resolved(text, blocks, done) == (text, blocks)
    # All at once, too.
    text, blocks = render_slack(Notification("example.com", alerts))
    text, blocks = mark_resolved(text, blocks, done)
    assert blocks[0]["text"]["text"].startswith(":white_check_mark: RESOLVED · example.com")
    assert len(blocks) <= 50 and all(_block_ok(b) for b in blocks)
    assert sum(str(b.get("block_id")).startswith("lw-resolved:") for b in blocks) == 12
