"""Exports with a loss -> ledger -> rule -> exactly one Slack message and one e-mail."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from daemon.cli import main
from tests.conftest import SLACK_TOKEN, SlackStandIn, SmtpServer
from tests.helpers import write_ahrefs, write_rule, write_settings

HOSTILE_ANCHOR = "<!channel> & <https://evil.example|click here> <script>x</script>"

BASE = [
    ("https://news.big-daily.io/partners", "https://example.com/", HOSTILE_ANCHOR, 80),
    ("https://blog.widget-weekly.net/best-tools", "https://example.com/", "Example Widgets", 64),
    ("https://www.widget-weekly.net/list", "https://example.com/pricing", "pricing", 64),
    ("https://forum.tinkerers.org/t/1", "https://example.com/", "example.com", 30),
    ("https://reviews.gadgets.co.uk/x", "https://example.com/features", "features", 55),
    ("https://stays.example.org/a", "https://example.com/", "stays", 20),
    ("https://stays2.example.net/b", "https://example.com/", "stays too", 25),
]
# Lost: big-daily.io (one link), gadgets.co.uk; widget-weekly.net loses one of two links only.
AFTER = [BASE[1], BASE[3], BASE[5], BASE[6]]


def _setup(tmp_path: Path, slack: SlackStandIn, smtp: SmtpServer) -> Path:
    settings = write_settings(
        tmp_path,
        notifiers=(
            f'[notifiers.seo-slack]\nkind = "slack"\ntoken = "{SLACK_TOKEN}"\n'
            f'channel = "#seo-alerts"\nbase_url = "{slack.base_url}"\n'
            f'[notifiers.team-email]\nkind = "email"\nhost = "{smtp.host}"\nport = {smtp.port}\n'
            'security = "none"\nsender = "linkwatch@example.com"\n'
            'recipients = ["seo@example.com", "lead@example.com"]\n'
        ),
    )
    write_rule(
        tmp_path,
        "refdomain-loss",
        'kind = "threshold"\nmetric = "lost_refdomains"\nwindow = "7d"\nop = ">="\nvalue = 2\n'
        'severity = "critical"\nnotify = ["seo-slack", "team-email"]\n'
        'summary = "{site} lost {value} referring domains in {window}"\n',
    )
    exports = tmp_path / "in"
    exports.mkdir()
    runner = CliRunner()
    for i, (rows, day) in enumerate([(BASE, "01"), (AFTER, "05"), (AFTER, "08")]):
        path = write_ahrefs(exports / f"export-{i}.csv", rows, utf16=i == 0)
        res = runner.invoke(
            main,
            [
                "-c",
                str(settings),
                "import",
                "--site",
                "example.com",
                "--taken-at",
                f"2026-01-{day}T06:00:00Z",
                str(path),
            ],
        )
        assert res.exit_code == 0, res.output
    return settings


def test_loss_is_told_once_in_slack_and_by_email(
    tmp_path: Path, slack: SlackStandIn, smtp: SmtpServer
) -> None:
    settings = _setup(tmp_path, slack, smtp)
    runner = CliRunner()

    res = runner.invoke(
        main, ["-c", str(settings), "evaluate", "--at", "2026-01-09T00:00:00Z", "--commit"]
    )
    assert res.exit_code == 0, res.output
    assert "firing: refdomain-loss example.com (value 2)" in res.output

    assert len(slack.messages) == 1
    msg = slack.messages[0]
    assert msg["channel"] == "#seo-alerts"
    text = msg["text"]
    assert "example.com" in text and "refdomain-loss" in text
    assert "lost_refdomains = 2 (threshold &gt;= 2)" in text and "Window: 7d" in text
    everything = text + json.dumps(msg["blocks"])
    # Third-party anchor text cannot ping the channel or forge a link.
    assert "<!channel>" not in everything and "<https://evil" not in everything
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|click here&gt;" in everything
    header = msg["blocks"][0]["text"]["text"]
    assert header == ":red_circle: FIRING critical · example.com · refdomain-loss"
    [listing] = [
        b["text"]["text"]
        for b in msg["blocks"]
        if b["type"] == "section"
        and b.get("text", {}).get("text", "").startswith("*Strongest lost referring domains*")
    ]
    # Strongest lost domain first, with its lost link and anchor; the partly lost
    # widget-weekly.net comes after wholly lost domains.
    assert (
        listing.index("|big-daily.io> (DR 80, all links lost)")
        < listing.index("|gadgets.co.uk> (DR 55, all links lost)")
        < listing.index("|widget-weekly.net> (DR 64, some links lost)")
    )
    assert "<https://news.big-daily.io/partners|big-daily.io>" in listing

    assert len(smtp.messages) == 1
    sender, rcpts, mail = smtp.messages[0]
    assert sender == "linkwatch@example.com"
    assert rcpts == ["seo@example.com", "lead@example.com"]
    assert mail["Subject"] == "[linkwatch] [critical] example.com: refdomain-loss"
    parts = {
        p.get_content_type(): p.get_payload(decode=True).decode()
        for p in mail.walk()
        if not p.is_multipart()
    }
    assert "example.com lost 2 referring domains in 7d" in parts["text/plain"]
    assert HOSTILE_ANCHOR in parts["text/plain"]
    html = parts["text/html"]
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "big-daily.io</a> (DR 80, all links lost)" in html

    # A second evaluation of the still-firing alert sends nothing.
    res = runner.invoke(
        main, ["-c", str(settings), "evaluate", "--at", "2026-01-09T01:00:00Z", "--commit"]
    )
    assert res.exit_code == 0, res.output
    assert "0 alert changes; 0 notifications sent" in res.output
    assert len(slack.messages) == 1
    assert len(smtp.messages) == 1


def test_status_json_counts_live_links_only(
    tmp_path: Path, slack: SlackStandIn, smtp: SmtpServer
) -> None:
    settings = _setup(tmp_path, slack, smtp)
    res = CliRunner().invoke(main, ["-c", str(settings), "status", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["site"] for r in rows] == ["example.com"]
    assert rows[0]["live_links"] == 4
    # widget-weekly.net, tinkerers.org, example.org, example.net
    assert rows[0]["live_refdomains"] == 4
    assert rows[0]["lost_links"] == 3


def test_resolution_is_told_when_the_loss_leaves_the_window(
    tmp_path: Path, slack: SlackStandIn, smtp: SmtpServer
) -> None:
    settings = _setup(tmp_path, slack, smtp)
    runner = CliRunner()
    assert (
        runner.invoke(
            main, ["-c", str(settings), "evaluate", "--at", "2026-01-09T00:00:00Z", "--commit"]
        ).exit_code
        == 0
    )
    res = runner.invoke(
        main, ["-c", str(settings), "evaluate", "--at", "2026-01-20T00:00:00Z", "--commit"]
    )
    assert res.exit_code == 0, res.output
    assert "resolved: refdomain-loss example.com (value 0)" in res.output
    assert len(slack.messages) == 2
    resolved = slack.messages[1]
    assert resolved["blocks"][0]["text"]["text"].startswith(":white_check_mark: RESOLVED")
    # In the thread of the post that told it fired, which now says it resolved.
    [(channel, ts)] = list(slack.posts)[:1]
    assert (resolved["channel"], resolved.get("thread_ts")) == (channel, ts)
    assert [(u["channel"], u["ts"]) for u in slack.updates] == [(channel, ts)]
    assert slack.posts[(channel, ts)]["blocks"][0]["text"]["text"].startswith(
        ":white_check_mark: RESOLVED"
    )
    assert len(smtp.messages) == 2
    fired, told = smtp.messages[0][2], smtp.messages[1][2]
    assert told["In-Reply-To"] == fired["Message-ID"] == told["References"]
    assert told["Subject"] == "Re: " + fired["Subject"]
