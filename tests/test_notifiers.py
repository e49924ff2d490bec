"""Notifiers against real loopback servers: Slack threads and edits, e-mail threading
headers, the console, and `notify-test`."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from alerts.message import AlertMessage, LinkItem, Notification
from alerts.notifiers.console import ConsoleNotifier, ConsoleSettings
from alerts.notifiers.email import EmailNotifier, EmailSettings
from alerts.notifiers.slack import SlackNotifier, SlackSettings, make_ref, parse_ref
from daemon.cli import main
from daemon.store.reads import LostDomain
from tests.conftest import SLACK_EPOCH, SLACK_TOKEN, SlackStandIn, SmtpServer
from tests.helpers import write_settings

AT = "2026-03-01T12:00:00+00:00"
LATER = "2026-03-02T12:00:00+00:00"
CHANNEL = "C0SEOALERTS"
# An hour before the stand-in's first post.
SINCE = datetime.fromtimestamp(SLACK_EPOCH - 3600, tz=UTC)


def _alert(transition: str = "firing", fp: str = "fpa", **kw: Any) -> AlertMessage:
    fields: dict[str, Any] = {
        "transition": transition,
        "rule": f"rule-{fp}",
        "site": "example.com",
        "severity": "critical",
        "metric": "lost_refdomains",
        "value": 12,
        "op": ">=",
        "threshold": 10,
        "window": "7d",
        "summary": "example.com lost 12 referring domains in 7d",
        "at": AT if transition == "firing" else LATER,
        "fingerprint": fp,
        "since": AT,
    }
    if transition == "resolved":
        fields.update(reason="restored", firing_for="1d")
    fields.update(kw)
    return AlertMessage(**fields)


def _note(
    *alerts: AlertMessage, key: str = "", threads: dict[str, str] | None = None
) -> Notification:
    return Notification("example.com", alerts, key=key, threads=dict(threads or {}))


def _slack(slack: SlackStandIn, channel: str = "#seo-alerts") -> SlackNotifier:
    return SlackNotifier(
        "seo-slack",
        SlackSettings(
            kind="slack", token=SecretStr(SLACK_TOKEN), channel=channel, base_url=slack.base_url
        ),
    )


def _email(server: SmtpServer) -> EmailNotifier:
    return EmailNotifier(
        "team-email",
        EmailSettings(
            kind="email",
            host=server.host,
            port=server.port,
            security="none",
            sender="lw@example.com",
            recipients=["seo@example.com"],
            timeout=5,
        ),
    )


def _post(slack: SlackStandIn, ref: str) -> dict[str, Any]:
    parsed = parse_ref(ref)
    assert parsed is not None
    return slack.posts[parsed]


# ---------------------------------------------------------------------------- Slack


def test_a_firing_post_is_top_level_and_answers_with_its_channel_and_ts(
    slack: SlackStandIn,
) -> None:
    ref = _slack(slack).send(_note(_alert(), key="k1"))
    [posted] = slack.messages
    assert "thread_ts" not in posted and posted["channel"] == "#seo-alerts"
    assert json.loads(ref) == {"channel": CHANNEL, "ts": "1764000000.000001"}
    assert parse_ref(ref) == (CHANNEL, "1764000000.000001")
    assert posted["blocks"][0]["text"]["text"].startswith(":red_circle: FIRING critical")


def test_a_resolution_replies_in_the_thread_and_marks_the_original(
    slack: SlackStandIn,
) -> None:
    notifier = _slack(slack)
    ref = notifier.send(_note(_alert(), key="k1"))
    resolved = _note(_alert("resolved"), key="k2", threads={"fpa": ref})
    assert notifier.send(resolved) == ref
    reply = slack.messages[1]
    assert reply["channel"] == CHANNEL and reply["thread_ts"] == "1764000000.000001"
    assert reply["blocks"][0]["text"]["text"] == (
        ":white_check_mark: RESOLVED · example.com · rule-fpa"
    )
    assert reply["metadata"]["event_payload"]["key"] == "k2"
    # The original now says it resolved, when and why.
    [update] = slack.updates
    assert (update["channel"], update["ts"]) == (CHANNEL, "1764000000.000001")
    original = _post(slack, ref)
    assert original["blocks"][0]["text"]["text"] == (
        ":white_check_mark: RESOLVED · critical · example.com · rule-fpa"
    )
    marks = [b for b in original["blocks"] if b.get("block_id") == "lw-resolved:fpa"]
    assert len(marks) == 1 and "the lost links were restored" in marks[0]["elements"][0]["text"]
    assert original["text"].startswith("RESOLVED: ")
    # Its metadata (the key find_sent looks for) is kept.
    assert original["metadata"]["event_payload"]["key"] == "k1"
    # The thread holds the original and the reply; the channel shows the original only.
    assert [p["ts"] for p in slack.thread(CHANNEL, "1764000000.000001")] == [
        "1764000000.000001",
        "1764000000.000002",
    ]


def test_a_reminder_and_an_update_reply_in_the_thread_without_editing(
    slack: SlackStandIn,
) -> None:
    notifier = _slack(slack)
    ref = notifier.send(_note(_alert()))
    notifier.send(_note(_alert("reminder", firing_for="1d"), threads={"fpa": ref}))
    notifier.send(_note(_alert("update"), threads={"fpa": ref}))
    assert [m.get("thread_ts") for m in slack.messages] == [None, *2 * ["1764000000.000001"]]
    assert slack.messages[1]["blocks"][0]["text"]["text"].startswith(
        ":red_circle: STILL FIRING critical"
    )
    assert slack.updates == []


def test_a_failed_edit_does_not_fail_or_repeat_the_reply(
    slack: SlackStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = _slack(slack)
    ref = notifier.send(_note(_alert()))
    slack.fail_next(200, {"ok": False, "error": "cant_update_message"}, method="chat.update")
    assert notifier.send(_note(_alert("resolved"), key="k2", threads={"fpa": ref})) == ref
    assert len(slack.messages) == 2 and slack.updates == []
    assert slack.failures == []
    assert f"slack {CHANNEL}: could not mark post 1764000000.000001 resolved" in caplog.text
    assert "cant_update_message" in caplog.text


def test_an_original_that_is_gone_is_not_edited_and_the_reply_goes_top_level(
    slack: SlackStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = _slack(slack)
    notifier.send(_note(_alert(fp="other")))
    gone = make_ref(CHANNEL, "1700000000.000009")
    ref = notifier.send(_note(_alert("resolved"), threads={"fpa": gone}))
    assert "thread_ts" not in slack.messages[1] and slack.updates == []
    assert ref == make_ref(CHANNEL, "1764000000.000002")
    assert "original post 1700000000.000009 not found" in caplog.text
    assert "thread" in caplog.text and "thread_not_found" in caplog.text


def test_a_grouped_message_goes_in_its_first_threaded_alerts_thread(
    slack: SlackStandIn,
) -> None:
    notifier = _slack(slack)
    ref_a = notifier.send(_note(_alert(fp="a")))
    ref_b = notifier.send(_note(_alert(fp="b")))
    grouped = _note(
        _alert("reminder", fp="c"),  # no thread of its own
        _alert("resolved", fp="b"),
        _alert("resolved", fp="a"),
        threads={"a": ref_a, "b": ref_b, "c": "not json"},
    )
    assert notifier.send(grouped) == ref_b
    assert slack.messages[2]["thread_ts"] == parse_ref(ref_b)[1]  # type: ignore[index]
    # Both originals say resolved, each edited once.
    assert sorted(u["ts"] for u in slack.updates) == sorted(
        [parse_ref(ref_a)[1], parse_ref(ref_b)[1]]  # type: ignore[index]
    )
    for ref in (ref_a, ref_b):
        assert _post(slack, ref)["blocks"][0]["text"]["text"].startswith(
            ":white_check_mark: RESOLVED"
        )


def test_a_message_with_a_new_alert_is_top_level_and_still_marks_resolved_ones(
    slack: SlackStandIn,
) -> None:
    notifier = _slack(slack)
    ref_a = notifier.send(_note(_alert(fp="a")))
    ref = notifier.send(_note(_alert("resolved", fp="a"), _alert(fp="b"), threads={"a": ref_a}))
    assert "thread_ts" not in slack.messages[1]
    assert ref == make_ref(CHANNEL, "1764000000.000002")
    assert [u["ts"] for u in slack.updates] == ["1764000000.000001"]


def test_a_grouped_original_says_resolved_when_its_last_alert_resolves(
    slack: SlackStandIn,
) -> None:
    notifier = _slack(slack)
    ref = notifier.send(_note(_alert(fp="a"), _alert(fp="b")))
    notifier.send(_note(_alert("resolved", fp="a"), threads={"a": ref, "b": ref}))
    head = _post(slack, ref)["blocks"][0]["text"]["text"]
    assert head.startswith(":red_circle: example.com: 2 alerts")
    notifier.send(_note(_alert("resolved", fp="b"), threads={"a": ref, "b": ref}))
    head = _post(slack, ref)["blocks"][0]["text"]["text"]
    assert head.startswith(":white_check_mark: RESOLVED · example.com: 2 alerts")
    ids = [b.get("block_id") for b in _post(slack, ref)["blocks"]]
    assert ids.count("lw-resolved:a") == ids.count("lw-resolved:b") == 1


def test_an_original_of_fifty_blocks_is_marked_and_says_resolved(slack: SlackStandIn) -> None:
    notifier = _slack(slack)
    domain = LostDomain("a.org", 50, True, "https://a.org/p", "https://example.com/", "a", "x")
    link = (LinkItem("a.org", "https://a.org/p", "https://example.com/", "a", 50),)
    fps = [f"f{i:02}" for i in range(12)]
    ref = notifier.send(
        _note(*(_alert(fp=fp, kind="link_lost", links=link, lost_domains=(domain,)) for fp in fps))
    )
    assert len(_post(slack, ref)["blocks"]) == 50
    threads = dict.fromkeys(fps, ref)
    notifier.send(_note(*(_alert("resolved", fp=fp) for fp in fps[:11]), threads=threads))
    blocks = _post(slack, ref)["blocks"]
    assert blocks[0]["text"]["text"].startswith(":red_circle: example.com: 12 alerts")
    notifier.send(_note(_alert("resolved", fp=fps[11]), threads=threads))
    # Every edit was taken (the stand-in refuses more than 50 blocks or a bad one).
    assert len(slack.updates) == 2
    blocks = _post(slack, ref)["blocks"]
    assert blocks[0]["text"]["text"].startswith(":white_check_mark: RESOLVED · example.com")
    ids = [b.get("block_id") for b in blocks]
    assert all(f"lw-resolved:{fp}" in ids for fp in fps) and len(blocks) <= 50
    assert _post(slack, ref)["text"].startswith("RESOLVED: ")


def test_find_sent_looks_in_the_thread_a_follow_up_goes_to(slack: SlackStandIn) -> None:
    notifier = _slack(slack)
    ref = notifier.send(_note(_alert(), key="k1"))
    follow_up = _note(_alert("resolved"), key="k2", threads={"fpa": ref})
    assert not notifier.find_sent(follow_up, SINCE)
    notifier.send(follow_up)
    assert notifier.find_sent(follow_up, SINCE)
    # A reply is not a top-level post: only the thread shows it.
    assert not notifier.find_sent(replace(follow_up, threads={}, alerts=(_alert(),)), SINCE)
    assert notifier.find_sent(_note(_alert(), key="k1"), SINCE)
    assert not notifier.find_sent(_note(_alert(), key="k3"), SINCE)
    # Posts older than `since` are not looked at.
    later = datetime.fromtimestamp(SLACK_EPOCH + 3600, tz=UTC)
    assert not notifier.find_sent(follow_up, later)


def test_find_sent_falls_back_to_the_channel_when_the_thread_is_gone(
    slack: SlackStandIn,
) -> None:
    notifier = _slack(slack, channel=CHANNEL)
    gone = make_ref(CHANNEL, "1700000000.000009")
    follow_up = _note(_alert("resolved"), key="k2", threads={"fpa": gone})
    notifier.send(follow_up)  # top level: the thread is gone
    assert notifier.find_sent(follow_up, SINCE)


def test_a_test_notification_says_test_and_has_no_thread(slack: SlackStandIn) -> None:
    test = _alert(
        "test",
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
    _slack(slack).send(
        Notification("linkwatch", (test,), threads={"fpa": make_ref(CHANNEL, "1.1")})
    )
    [posted] = slack.messages
    assert "thread_ts" not in posted and "metadata" not in posted
    assert posted["blocks"][0]["text"]["text"].startswith(":test_tube: TEST")


def test_thread_references_of_another_shape_are_ignored() -> None:
    for bad in (
        None,
        "",
        "x",
        "[]",
        '{"channel": "C0SEOALERTS"}',
        '{"channel": "#x", "ts": "1.2"}',
        '{"channel": "C0SEOALERTS", "ts": "1.2; drop"}',
        "<id@example.com>",
    ):
        assert parse_ref(bad) is None
    assert parse_ref(make_ref(CHANNEL, "1.2")) == (CHANNEL, "1.2")


def test_the_stand_in_refuses_a_thread_or_an_edit_of_a_post_that_is_not_there(
    slack: SlackStandIn,
) -> None:
    notifier = _slack(slack)
    notifier.send(_note(_alert()))
    from slack_sdk.errors import SlackApiError

    with pytest.raises(SlackApiError, match="thread_not_found"):
        notifier.client.chat_postMessage(channel=CHANNEL, text="x", thread_ts="1.000001")
    with pytest.raises(SlackApiError, match="message_not_found"):
        notifier.client.chat_update(channel=CHANNEL, ts="1.000001", text="x")
    with pytest.raises(SlackApiError, match="channel_not_found"):
        notifier.client.chat_update(channel="C0OTHER000", ts="1764000000.000001", text="x")
    assert len(slack.messages) == 1 and slack.updates == []


# ---------------------------------------------------------------------------- e-mail


def _parts(mail: Message) -> dict[str, str]:
    return {
        p.get_content_type(): p.get_payload(decode=True).decode()  # type: ignore[union-attr]
        for p in mail.walk()
        if not p.is_multipart()
    }


def test_mails_of_one_alert_share_a_thread(smtp: SmtpServer) -> None:
    notifier = _email(smtp)
    ref = notifier.send(_note(_alert(), key="k1"))
    notifier.send(_note(_alert("reminder", firing_for="1d"), key="k2", threads={"fpa": ref}))
    notifier.send(_note(_alert("resolved"), key="k3", threads={"fpa": ref}))
    first, reminder, resolved = (m for _, _, m in smtp.messages)
    assert ref == first["Message-ID"] and "In-Reply-To" not in first
    assert first["Subject"] == "[linkwatch] [critical] example.com: rule-fpa"
    for follow_up in (reminder, resolved):
        assert follow_up["In-Reply-To"] == ref and follow_up["References"] == ref
        assert follow_up["Subject"] == "Re: [linkwatch] [critical] example.com: rule-fpa"
        assert follow_up["Message-ID"] not in (ref, None)
    assert "RESOLVED" in _parts(resolved)["text/plain"]


def test_a_grouped_mail_refers_to_every_thread_and_replies_to_the_first(
    smtp: SmtpServer,
) -> None:
    notifier = _email(smtp)
    ref_a = notifier.send(_note(_alert(fp="a"), key="ka"))
    ref_b = notifier.send(_note(_alert(fp="b"), key="kb"))
    notifier.send(
        _note(
            _alert("reminder", fp="c"),
            _alert("resolved", fp="b"),
            _alert("resolved", fp="a"),
            threads={"b": ref_b, "a": ref_a, "c": "<x@y>\r\nBcc: evil@example.com"},
        )
    )
    mail = smtp.messages[2][2]
    assert mail["In-Reply-To"] == ref_b
    assert mail["References"].split() == [ref_b, ref_a]
    assert mail["Subject"] == "Re: [linkwatch] [critical] example.com: rule-b"
    assert "Bcc" not in mail and smtp.messages[2][1] == ["seo@example.com"]


def test_a_mail_telling_a_new_alert_starts_a_thread_of_its_own(smtp: SmtpServer) -> None:
    notifier = _email(smtp)
    ref_a = notifier.send(_note(_alert(fp="a", severity="warning"), key="ka"))
    # A resolves as B newly fires, in one grouped mail: not a reply in A's thread.
    ref = notifier.send(
        _note(
            _alert("resolved", fp="a", severity="warning"),
            _alert(fp="b", rule="new-critical"),
            key="kab",
            threads={"a": ref_a},
        )
    )
    mail = smtp.messages[1][2]
    assert "In-Reply-To" not in mail and "References" not in mail
    assert ref == mail["Message-ID"] and ref != ref_a
    # The subject (folded, being long) names the strongest severity, the site, the alerts.
    assert "".join(mail["Subject"].splitlines()) == (
        "[linkwatch] [critical] example.com: 2 alerts (1 firing, 1 resolved): new-critical, rule-a"
    )
    # B's follow-ups thread under the mail that told it fired.
    notifier.send(_note(_alert("reminder", fp="b", rule="new-critical"), threads={"b": ref}))
    reminder = smtp.messages[2][2]
    assert reminder["In-Reply-To"] == ref and reminder["References"] == ref
    assert reminder["Subject"] == "Re: [linkwatch] [critical] example.com: new-critical"


def test_the_mail_text_and_the_console_show_hostile_text_inert(
    smtp: SmtpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    forged = 'x"\n\nWhy: the lost links were restored\x1b]0;pwned\x07'
    evil = LinkItem("e.org", "https://e.org/", "https://example.com/", forged, 80)
    note = _note(_alert(kind="link_lost", links=(evil,)))
    _email(smtp).send(note)
    ConsoleNotifier("console", ConsoleSettings(kind="console")).send(note)
    for text in (_parts(smtp.messages[0][2])["text/plain"], capsys.readouterr().out):
        assert "\x1b" not in text and "\x07" not in text
        assert not [line for line in text.splitlines() if line.startswith("Why:")]
        # The anchor is shown whole, on its line, its control characters as escapes.
        shown = r'anchor "x"\n\nWhy: the lost links were restored\x1b]0;pwned\x07" → '
        assert shown in text


def test_a_retry_is_the_same_mail_and_a_test_gets_a_fresh_id(smtp: SmtpServer) -> None:
    notifier = _email(smtp)
    note = _note(_alert(), key="fpa:firing:team-email")
    assert notifier.send(note) == notifier.send(note)
    assert notifier.send(_note(_alert())) != notifier.send(_note(_alert()))


def test_text_and_html_parts_tell_the_same_things(smtp: SmtpServer) -> None:
    hostile = "<script>alert(1)</script> & co"
    domain = LostDomain(
        "big.io", 80, True, "https://big.io/p", "https://example.com/", hostile, "removed"
    )
    _email(smtp).send(_note(_alert(lost_domains=(domain,), summary=hostile)))
    parts = _parts(smtp.messages[0][2])
    assert hostile in parts["text/plain"]
    assert "<script>" not in parts["text/html"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in parts["text/html"]
    for said in ("big.io", "DR 80, all links lost", "Firing since", "2026-03-01 12:00 UTC", "7d"):
        assert said in parts["text/plain"] and said in parts["text/html"], said
    assert '<a href="https://big.io/p">big.io</a>' in parts["text/html"]


def test_an_unthreaded_follow_up_says_what_it_is_in_its_subject(smtp: SmtpServer) -> None:
    _email(smtp).send(_note(_alert("resolved")))
    assert smtp.messages[0][2]["Subject"] == (
        "[linkwatch] [critical] example.com: rule-fpa (resolved)"
    )


# ---------------------------------------------------------------------------- console, CLI


def test_the_console_prints_the_text_rendering(capsys: pytest.CaptureFixture[str]) -> None:
    notifier = ConsoleNotifier("console", ConsoleSettings(kind="console"))
    assert notifier.send(_note(_alert(), _alert("resolved", fp="b"))) is None
    out = capsys.readouterr().out
    assert out.startswith("[FIRING critical] example.com: 2 alerts (1 firing, 1 resolved)\n")
    assert "\n\n[RESOLVED critical] example.com: rule-b\n" in out


def test_notify_test_posts_a_message_that_says_it_is_a_test(
    tmp_path: Path, slack: SlackStandIn, smtp: SmtpServer
) -> None:
    settings = write_settings(
        tmp_path,
        notifiers=(
            f'[notifiers.seo-slack]\nkind = "slack"\ntoken = "{SLACK_TOKEN}"\n'
            f'channel = "#seo-alerts"\nbase_url = "{slack.base_url}"\n'
            f'[notifiers.team-email]\nkind = "email"\nhost = "{smtp.host}"\nport = {smtp.port}\n'
            'security = "none"\nsender = "linkwatch@example.com"\nrecipients = ["a@example.com"]\n'
        ),
    )
    for name in ("seo-slack", "team-email"):
        res = CliRunner().invoke(main, ["-c", str(settings), "notify-test", name])
        assert res.exit_code == 0, res.output
        assert f"sent a test message through {name}" in res.output
    [posted] = slack.messages
    assert posted["blocks"][0]["text"]["text"] == (
        ":test_tube: TEST · linkwatch notifier test — not an alert"
    )
    assert posted["text"].startswith("[TEST] linkwatch notifier test — not an alert")
    assert "notifier seo-slack" in json.dumps(posted["blocks"])
    [(_, _, mail)] = smtp.messages
    assert mail["Subject"] == "[linkwatch] TEST: notifier test, not an alert"
    assert "Test message from linkwatch to notifier team-email" in _parts(mail)["text/plain"]
