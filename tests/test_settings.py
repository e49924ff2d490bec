"""Settings: relative paths, secrets from the environment and systemd credentials."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from daemon.cli import main
from daemon.service import Linkwatch
from daemon.settings import ConfigError, config_path, load_settings
from daemon.settings_core import load_core_settings
from daemon.store.reads import stopped_series_note
from tests.helpers import write_ahrefs, write_settings

SLACK = '[notifiers.seo-slack]\nkind = "slack"\ntoken = "xoxb-from-file"\nchannel = "#seo-alerts"\n'


def test_relative_paths_resolve_against_the_settings_folder(tmp_path: Path) -> None:
    settings = load_settings(write_settings(tmp_path))
    assert settings.storage.path == tmp_path / "linkwatch.db"
    assert settings.daemon.rules_dir == tmp_path / "rules.d"
    assert settings.sources["exports"].path == str(tmp_path / "exports" / "{domain}")


def test_secret_from_environment_wins_over_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_settings(tmp_path, notifiers=SLACK)
    monkeypatch.setenv("LINKWATCH_NOTIFIERS__seo-slack__TOKEN", "xoxb-from-env")
    token = load_settings(path).notifiers["seo-slack"].token  # type: ignore[union-attr]
    assert token.get_secret_value() == "xoxb-from-env"
    assert "xoxb-from-env" not in repr(load_settings(path))


def test_secret_from_systemd_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_settings(tmp_path, notifiers=SLACK)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "notifiers__seo-slack__token").write_text("xoxb-from-credential\n")
    # Credentials the unit loads for others are none of linkwatch's business.
    (creds / "tls__cert").write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    token = load_settings(path).notifiers["seo-slack"].token  # type: ignore[union-attr]
    assert token.get_secret_value() == "xoxb-from-credential"


def test_unknown_key_and_bad_toml_are_named(tmp_path: Path) -> None:
    path = write_settings(tmp_path, extra="[storage.extra]\n")
    with pytest.raises(ConfigError, match="storage"):
        load_settings(path)
    path.write_text("[storage\n")
    with pytest.raises(ConfigError, match=r"settings.toml: not valid TOML: .*line 1"):
        load_settings(path)
    path.write_text('[daemon]\nrules_dirr = "x"\n')
    with pytest.raises(ConfigError, match=r"settings.toml: daemon.rules_dirr: unknown key"):
        load_settings(path)


def test_config_path_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LINKWATCH_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "settings.toml").write_text("")
    assert config_path(None) == Path("settings.toml")
    monkeypatch.setenv("LINKWATCH_CONFIG", str(tmp_path / "a.toml"))
    assert config_path(None) == tmp_path / "a.toml"
    assert config_path(tmp_path / "b.toml") == tmp_path / "b.toml"


def test_password_over_plain_smtp_is_refused(tmp_path: Path) -> None:
    path = write_settings(
        tmp_path,
        notifiers='[notifiers.mail]\nkind = "email"\nhost = "h"\nsecurity = "none"\n'
        'username = "u"\npassword = "p"\nsender = "a@b.c"\nrecipients = ["x@y.z"]\n',
    )
    with pytest.raises(ConfigError, match=r"notifiers.mail: .*password would travel unencrypted"):
        load_settings(path)


def test_slack_base_url_must_be_http(tmp_path: Path) -> None:
    path = write_settings(tmp_path, notifiers=SLACK + 'base_url = "slack.internal/api/"\n')
    with pytest.raises(ConfigError, match=r"notifiers.seo-slack.base_url: String should match"):
        load_settings(path)


def test_a_retired_source_is_reported_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_settings(tmp_path)
    links = [(f"https://r{i}.example.org/p", "https://example.com/", "a", 1) for i in range(3)]
    export = write_ahrefs(tmp_path / "old.csv", links)
    app = Linkwatch.open(load_settings(path))

    now = datetime(2026, 5, 1, tzinfo=UTC)
    app.import_exports(
        "example.com", [export], source="semrush", format_kind=None, taken_at=now, now=now
    )
    app.close()
    with caplog.at_level("WARNING"):
        Linkwatch.open(load_settings(path)).close()
    said = (
        "example.com: source 'semrush' is no longer configured; 3 live links were seen only by it"
    )
    assert said in caplog.text
    # The reading commands, which load no source, say it too: there a user looks.
    for verb in (
        ["status"],
        ["metrics", "--site", "example.com"],
        ["links", "--site", "example.com"],
    ):
        caplog.clear()
        with caplog.at_level("WARNING"):
            result = CliRunner().invoke(main, ["-c", str(path), *verb])
        assert result.exit_code == 0, result.output
        assert said in caplog.text + result.output, verb


def _with_path(folder: Path, template: str) -> Path:
    """A settings file whose csv_dir source uses `template` as its folder."""
    path = write_settings(folder)
    text = path.read_text(encoding="utf-8")
    old = 'path = "exports/{domain}"'
    assert old in text
    # A TOML literal string keeps backslashes and quotes out of the way.
    path.write_text(text.replace(old, f"path = '{template}'"), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("exports/{site}", "unknown placeholder {site}; the only placeholder is {domain}"),
        ("exports/{0}", "unknown placeholder {0}; the only placeholder is {domain}"),
        ("exports/{}", "unknown placeholder {}; the only placeholder is {domain}"),
        (
            "exports/{domain.__class__}",
            "placeholder {domain.__class__}: attribute and index access are not allowed",
        ),
        (
            "exports/{domain[0]}",
            "placeholder {domain[0]}: attribute and index access are not allowed",
        ),
        (
            "exports/{domain:>100000000}",
            "placeholder {domain:>100000000}: conversions and format specs are not allowed",
        ),
        ("exports/{domain!r}", "placeholder {domain!r}: conversions and format specs"),
        ("exports/{domain", "unbalanced braces (expected '}' before end of string)"),
        ("exports/domain}", "unbalanced braces (Single '}' encountered in format string)"),
    ],
)
def test_source_path_may_use_only_the_domain_placeholder(
    tmp_path: Path, template: str, message: str
) -> None:
    path = _with_path(tmp_path, template)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(caught.value).startswith(f"{path}: sources.exports.path: {message}")


@pytest.mark.parametrize("template", ["exports/{domain}/ahrefs", "exports/all", "a{{b}}/{domain}"])
def test_source_path_with_domain_or_no_placeholder_is_allowed(
    tmp_path: Path, template: str
) -> None:
    settings = load_settings(_with_path(tmp_path, template))
    assert settings.sources["exports"].path == str(tmp_path / template)


def test_bad_source_path_exits_2_through_the_cli(tmp_path: Path) -> None:
    path = _with_path(tmp_path, "exports/{site}")
    result = CliRunner().invoke(main, ["-c", str(path), "check"])
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert (
        f"{path}: sources.exports.path: unknown placeholder {{site}}; "
        "the only placeholder is {domain}" in result.output
    )
    assert "Traceback" not in result.output


@pytest.mark.parametrize("domain", ["../etc", "https://example.com", "example .com", "a..b.com"])
def test_site_domain_must_be_a_hostname(tmp_path: Path, domain: str) -> None:
    path = write_settings(
        tmp_path, sites=f'[[sites]]\ndomain = "{domain}"\nsources = ["exports"]\n'
    )
    with pytest.raises(ConfigError, match=r"sites\[0\]\.domain: .* is not a hostname"):
        load_settings(path)


@pytest.mark.parametrize(
    "domain", ["example.com", "sub-1.example.co.uk", "bücher.de", "xn--bcher-kva.de"]
)
def test_hostnames_and_idna_domains_are_allowed(tmp_path: Path, domain: str) -> None:
    path = write_settings(
        tmp_path, sites=f'[[sites]]\ndomain = "{domain}"\nsources = ["exports"]\n'
    )
    assert load_settings(path).own_sites() == [domain]


def test_every_reference_error_is_reported_at_once(tmp_path: Path) -> None:
    path = write_settings(
        tmp_path,
        sites='[[sites]]\ndomain = "example.com"\nsources = ["exprts", "semrush"]\n'
        '[[sites]]\ndomain = "../etc"\nsources = ["exports"]\n',
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(caught.value).splitlines() == [
        f"{path}: sites[0].sources: unknown source 'exprts' (known: exports)",
        f"{path}: sites[0].sources: unknown source 'semrush' (known: exports)",
        f"{path}: sites[1].domain: '../etc' is not a hostname "
        "(label '': use letters, digits and inner hyphens, no scheme, path or port)",
    ]


def _cli(path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["-c", str(path), *args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_a_block_given_whole_as_json_reads_alike_in_every_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A reading command leaves the block's keys to the plugin, yet takes the block as the
    # daemon does: a JSON table, never a string quoted back (it holds a token).
    path = write_settings(tmp_path, notifiers=SLACK)
    (tmp_path / "exports" / "example.com").mkdir(parents=True)
    block = '{"kind": "slack", "channel": "#x", "token": "xoxb-SECRET-123"}'
    monkeypatch.setenv("LINKWATCH_NOTIFIERS__SEO_SLACK", block)
    for verb in ("status", "check"):
        code, out = _cli(path, verb)
        assert code == 0, out
    token = load_settings(path).notifiers["seo-slack"].token  # type: ignore[union-attr]
    assert token.get_secret_value() == "xoxb-SECRET-123"
    # A list is no table, in every command alike, and the value is not quoted.
    monkeypatch.setenv("LINKWATCH_NOTIFIERS__SEO_SLACK", '["xoxb-SECRET-123"]')
    for verb in ("status", "check"):
        code, out = _cli(path, verb)
        assert code == 2 and "notifiers.seo-slack: Input should be a valid dictionary" in out
        assert "SECRET" not in out


def test_an_environment_value_that_is_not_json_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_settings(tmp_path)
    for var in ("LINKWATCH_SOURCES", "LINKWATCH_STORAGE"):
        monkeypatch.setenv(var, "{not json")
        for verb in ("status", "check", "poll"):
            code, out = _cli(path, verb)
            assert code == 2, out
            assert (
                f"environment: {var} or a {var}__… variable holds a value that is not valid"
                ' JSON where a table or list is expected (write a list as JSON, like ["a",'
                ' "b"], or set a table\'s keys one per variable)'
            ) in out
        monkeypatch.delenv(var)
    # JSON nested past Python's recursion limit: refused as well, never a traceback.
    monkeypatch.setenv("LINKWATCH_SITES", "[" * 5000)
    for verb in ("status", "check"):
        code, out = _cli(path, verb)
        assert code == 2 and "LINKWATCH_… variable holds JSON nested too deeply" in out, out


def test_every_block_that_is_no_table_is_named_at_once(tmp_path: Path) -> None:
    path = write_settings(tmp_path, notifiers='[notifiers]\nseo-slack = "xoxb-TYPO-SECRET"\n')
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("[sources.exports]", "[sources]\nx = 3\n[sources.exports]"))
    for verb, more in (("status", ""), ("check", " or object to extract fields from")):
        code, out = _cli(path, verb)
        assert code == 2, out
        assert f"{path}: sources.x: Input should be a valid dictionary{more}" in out
        assert f"{path}: notifiers.seo-slack: Input should be a valid dictionary{more}" in out
        assert "SECRET" not in out


def test_the_reading_commands_settings_resolve_as_the_daemons(tmp_path: Path) -> None:
    path = write_settings(tmp_path)
    core, full = load_core_settings(path), load_settings(path)
    assert core.storage.path == full.storage.path == tmp_path / "linkwatch.db"
    assert core.daemon.rules_dir == full.daemon.rules_dir == tmp_path / "rules.d"
    assert core.config_path == full.config_path == path
    assert list(core.sources) == ["exports"] and list(core.notifiers) == ["console"]


def test_the_database_path_the_environment_gives_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_settings(tmp_path)
    (tmp_path / "a-folder").mkdir()
    monkeypatch.setenv("LINKWATCH_STORAGE__PATH", str(tmp_path / "a-folder"))
    for verb in ("status", "check"):
        code, out = _cli(path, verb)
        assert code == 2 and f"storage.path: {tmp_path / 'a-folder'} is a folder" in out, out


def test_a_reading_command_names_every_problem_on_its_own_line(tmp_path: Path) -> None:
    (tmp_path / "db-folder").mkdir()
    path = write_settings(
        tmp_path, sites='[[sites]]\ndomain = "bad domain"\nsources = ["exports"]\n'
    )
    path.write_text(path.read_text().replace('"linkwatch.db"', '"db-folder"'))
    code, out = _cli(path, "status")
    assert code == 2
    assert out.splitlines() == [
        f"linkwatch: {path}: sites[0].domain: 'bad domain' is not a hostname (label"
        " 'bad domain': use letters, digits and inner hyphens, no scheme, path or port)",
        f"{path}: storage.path: {tmp_path / 'db-folder'} is a folder; name the database"
        f" file inside it, e.g. {tmp_path / 'db-folder' / 'linkwatch.db'}",
    ]


def test_a_settings_file_that_cannot_be_read_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = tmp_path / "settings.toml"
    binary.write_bytes(b"\xff\xfe[storage]\n")
    monkeypatch.setenv("LINKWATCH_CONFIG", str(tmp_path))  # a folder
    for path, code_given in ((binary, ["-c", str(binary)]), (tmp_path, [])):
        result = CliRunner().invoke(main, [*code_given, "status"])
        assert result.exit_code == 2, result.output
        assert f"{path}: cannot read: " in result.output


MAIL = (
    '[notifiers.mail]\nkind = "email"\nhost = "smtp.example.com"\nsender = "a@example.com"\n'
    'recipients = ["b@example.com"]\n'
)


def test_a_bad_value_from_the_environment_is_named_as_its(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_settings(tmp_path, notifiers=MAIL, extra='[storage]\nmaintenance_at = "03:30"\n')
    path.write_text(path.read_text().replace('[storage]\npath = "linkwatch.db"\n', "", 1))
    # No credentials folder where one is said to be: nothing from it, and no crash.
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "no-such-folder"))
    monkeypatch.setenv("LINKWATCH_STORAGE__MAINTENANCE_AT", "25:00")
    monkeypatch.setenv("linkwatch_notifiers__MAIL__port", "0")
    code, out = _cli(path, "check")
    assert code == 2
    assert out.splitlines() == [
        "environment variable LINKWATCH_STORAGE__MAINTENANCE_AT: storage.maintenance_at:"
        " expected a time of day in UTC like 03:30 (HH:MM), got '25:00'",
        "environment variable linkwatch_notifiers__MAIL__port: notifiers.mail.port: Input"
        " should be greater than or equal to 1",
    ]
    # A whole table from the environment: its keys are its, the file's keys the file's.
    monkeypatch.delenv("LINKWATCH_STORAGE__MAINTENANCE_AT")
    monkeypatch.delenv("linkwatch_notifiers__MAIL__port")
    monkeypatch.setenv("LINKWATCH_DAEMON", '{"group_wait": "5h"}')
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace('rules_dir = "rules.d"\n', 'rules_dir = "rules.d"\nevaluate_every = "0s"\n')
    )
    code, out = _cli(path, "status")
    assert code == 2
    assert "environment variable LINKWATCH_DAEMON: daemon.group_wait: expected a duration" in out
    assert f"{path}: daemon.evaluate_every: " in out
    # A whole section holding a table holding the key.
    monkeypatch.delenv("LINKWATCH_DAEMON")
    path.write_text(text)
    monkeypatch.setenv("LINKWATCH_NOTIFIERS", '{"mail": {"port": 0}}')
    code, out = _cli(path, "check")
    assert code == 2 and out.splitlines() == [
        "environment variable LINKWATCH_NOTIFIERS: notifiers.mail.port: Input should be"
        " greater than or equal to 1"
    ], out


def test_a_bad_value_from_a_credential_is_named_as_its(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_settings(tmp_path, notifiers=MAIL)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "notifiers__mail__timeout").write_text("0\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    code, out = _cli(path, "check")
    assert code == 2
    assert (
        f"credential file {creds}/notifiers__mail__timeout: notifiers.mail.timeout: Input"
        " should be greater than 0"
    ) in out


def test_a_rule_file_error_is_never_put_on_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_settings(tmp_path)
    rule = tmp_path / "rules.d" / "loss.toml"
    rule.write_text(
        'kind = "threshold"\nmetric = "lost_links"\nwindow = "7d"\nop = ">="\n'
        'value = 1\nseverity = "warning"\nnotify = ["console"]\nwindoww = 3\n'
    )
    monkeypatch.setenv("LINKWATCH_WINDOWW", "3")
    code, out = _cli(path, "rules", "check")
    assert code == 2 and f"{rule}: windoww: unknown key" in out, out


def test_a_path_the_system_cannot_even_look_at_is_a_settings_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A name longer than the file system allows: every command says so, none crashes
    # where it first looks at the folder or file.
    path = write_settings(tmp_path, notifiers=MAIL)
    long = "a" * 300
    monkeypatch.setenv("LINKWATCH_DAEMON__RULES_DIR", long)
    for verb in (["check"], ["rules", "check"], ["evaluate"], ["status"]):
        code, out = _cli(path, *verb)
        assert code == 2, out
        assert (
            f"{path}: daemon.rules_dir: {tmp_path / long} cannot be checked: File name too long"
        ) in out
    monkeypatch.delenv("LINKWATCH_DAEMON__RULES_DIR")
    monkeypatch.setenv("LINKWATCH_NOTIFIERS__MAIL__CA_FILE", long)
    for verb in (["check"], ["poll"]):
        code, out = _cli(path, *verb)
        assert code == 2, out
        assert f"{path}: notifiers.mail.ca_file: {tmp_path / long} cannot be checked: " in out


def test_a_database_path_that_cannot_be_used_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_settings(tmp_path)
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('"linkwatch.db"', '"link\\u0000watch.db"'), encoding="utf-8")
    code, out = _cli(path, "status")
    assert code == 2 and out.splitlines() == [
        f"linkwatch: {path}: storage.path: contains a NUL character"
    ], out
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("LINKWATCH_STORAGE__PATH", "d" * 300 + "/linkwatch.db")
    code, out = _cli(path, "status")
    assert code == 2 and out.splitlines() == [
        f"linkwatch: {path}: storage.path: {tmp_path / ('d' * 300) / 'linkwatch.db'} cannot be"
        " checked: File name too long"
    ], out


def test_the_advice_for_a_stopped_series_names_its_format() -> None:
    # A source's name may hold a slash; the format is what follows the last one.
    began = datetime(2026, 2, 3, tzinfo=UTC)
    found, fix = stopped_series_note(
        "example.com", "my/exports/ahrefs", "my/exports/generic", began, 3
    )
    assert found == (
        "series my/exports/ahrefs has had no snapshot since my/exports/generic began"
        " (2026-02-03T00:00:00+00:00); 3 live links only it sees stay live until it lists"
        " them again"
    )
    assert fix == (
        "if its exports now file under my/exports/generic (after an upgrade:"
        " docs/evidence.md), import the latest two of them again with"
        " `linkwatch import --site example.com --format ahrefs`"
    )


@pytest.mark.parametrize(
    ("notifier", "key"),
    [
        (SLACK.replace('"xoxb-from-file"', '" "'), "notifiers.seo-slack.token"),
        (MAIL + 'username = "u"\npassword = ""\n', "notifiers.mail.password"),
    ],
)
def test_an_empty_or_blank_notifier_secret_is_refused(
    tmp_path: Path, notifier: str, key: str
) -> None:
    # Slack would answer not_authed at the first alert, a mail server refuse the login:
    # said at load, naming the key, the setting is fixed before anything is missed.
    path = write_settings(tmp_path, notifiers=notifier)
    with pytest.raises(ConfigError, match=rf"{re.escape(key)}: is empty: give the secret"):
        load_settings(path)
