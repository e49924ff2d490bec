"""Every example the project ships is checked: settings, rules, the bundled exports, README."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

from click.testing import CliRunner

from daemon.cli import main
from daemon.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent


def _uncomment_optional(text: str) -> str:
    """The example's commented notifier blocks, switched on."""
    head, _, tail = text.partition("# --- Slack and e-mail")
    lines = []
    for line in tail.splitlines()[1:]:
        body = line.removeprefix("# ")
        if body.startswith(("# ", "--- ")) or body in ("", "#"):
            continue
        lines.append(body)
    return head + "\n".join(lines) + "\n"


def test_settings_example_loads_with_every_block(tmp_path: Path) -> None:
    settings = load_settings(ROOT / "settings.example.toml")
    assert [s.domain for s in settings.sites] == ["example.com"]
    assert set(settings.notifiers) == {"console"}

    full = tmp_path / "settings.toml"
    full.write_text(_uncomment_optional((ROOT / "settings.example.toml").read_text()))
    settings = load_settings(full)
    assert set(settings.notifiers) == {"console", "seo-slack", "team-email"}
    slack = settings.notifiers["seo-slack"]
    assert slack.kind == "slack" and slack.channel == "#seo-alerts"
    email = settings.notifiers["team-email"]
    assert email.kind == "email" and email.security == "starttls" and email.port == 587
    assert {name: s.kind for name, s in settings.sources.items()} == {
        "exports": "csv_dir",
        "d4s": "dataforseo",
        "ahrefs": "ahrefs",
        "moz": "moz",
        "majestic": "majestic",
        "bing": "bing",
    }


def test_issue_settings_block_is_accepted(tmp_path: Path) -> None:
    """The public settings interface exactly as the design card writes it."""
    path = tmp_path / "settings.toml"
    path.write_text(
        '[storage]\npath = "linkwatch.db"\n[daemon]\nrules_dir = "rules.d"\n'
        '[[sites]]\ndomain = "example.com"\nrole = "own"                 # own | competitor\n'
        'sources = ["exports"]\n[sources.exports]\nkind = "csv_dir"\npath = "exports/{domain}"\n'
        '[notifiers.seo-slack]\nkind = "slack"\ntoken = "xoxb-…"\nchannel = "#seo-alerts"\n'
        'base_url = "https://slack.com/api/"   # optional\n'
        '[notifiers.team-email]\nkind = "email"\nhost = "smtp.example.com"\nport = 587\n'
        'security = "starttls"\nusername = "…"\npassword = "…"\n'
        'sender = "linkwatch@example.com"\nrecipients = ["seo@example.com"]\n'
        '[notifiers.console]\nkind = "console"\n'
    )
    settings = load_settings(path)
    assert settings.storage.path == tmp_path / "linkwatch.db"
    assert settings.daemon.rules_dir == tmp_path / "rules.d"
    assert settings.sources["exports"].path == str(tmp_path / "exports/{domain}")
    assert settings.notifiers["seo-slack"].token.get_secret_value() == "xoxb-…"  # type: ignore[union-attr]


def test_example_rules_pass_rules_check() -> None:
    res = CliRunner().invoke(main, ["-c", str(ROOT / "settings.example.toml"), "rules", "check"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("7 rules OK")


def test_bundled_example_shows_the_negative_velocity_alert(tmp_path: Path) -> None:
    for name in ("settings.example.toml", "rules.example", "examples"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tmp_path / name)
        else:
            shutil.copy(src, tmp_path / name)
    # As after a fresh clone: the export files were written a while before the first run.
    written = time.time() - 60
    for path in (tmp_path / "examples").rglob("*.csv"):
        os.utime(path, (written, written))
    res = CliRunner().invoke(main, ["-c", str(tmp_path / "settings.example.toml"), "poll"])
    assert res.exit_code == 0, res.output
    # Both alerts of the site in one message, the lost domains listed once.
    assert "[FIRING critical] example.com: 2 alerts (2 firing)" in res.output
    assert "[FIRING critical] example.com: refdomain-loss" in res.output
    assert "example.com lost 6 referring domains in 7d" in res.output
    assert "[FIRING warning] example.com: link-velocity" in res.output
    assert res.output.count("widget-weekly.net (") == 1
    assert "3 snapshots, 2 alert changes, 1 notifications sent" in res.output


def test_readme_starts_with_the_two_commands_and_ci_runs_the_second() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```sh\n(.+?)\n```", readme)
    assert "linkwatch -c settings.example.toml run" in commands[0]
    assert "pytest" in commands[1]
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def test_every_source_example_in_the_docs_loads(tmp_path: Path) -> None:
    import tomllib

    blocks = []
    for page in ("README.md", "docs/sources.md"):
        text = (ROOT / page).read_text(encoding="utf-8")
        blocks += [(page, b) for b in re.findall(r"```toml\n(.+?)```", text, re.S)]
    with_sources = [(page, b) for page, b in blocks if "[sources." in b]
    assert len(with_sources) >= 6
    for page, block in with_sources:
        parsed = tomllib.loads(block)
        names = list(parsed["sources"])
        sites = (
            ""
            if "[[sites]]" in block
            else (f'[[sites]]\ndomain = "example.com"\nsources = {names!r}\n'.replace("'", '"'))
        )
        path = tmp_path / "settings.toml"
        path.write_text(
            '[storage]\npath = "x.db"\n[notifiers.console]\nkind = "console"\n' + sites + block,
            encoding="utf-8",
        )
        settings = load_settings(path, require_secrets=False)
        assert set(settings.sources) == set(names), (page, block)
