"""systemd/linkwatch.service: what the daemon relies on, `systemd-analyze verify` and the
exposure score of `systemd-analyze security`.

The last two run wherever `systemd-analyze` exists (no running systemd needed) and skip
elsewhere.

`verify` checks that every Exec*= executable exists, and /opt/linkwatch/bin/linkwatch
does not exist here, so the verify test rewrites that one path to the linkwatch this
test suite runs from and verifies the copy. Nothing else in the unit changes;
/bin/kill stays as shipped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.cli import main

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "linkwatch.service"
INSTALLED = "/opt/linkwatch/bin/linkwatch"
SETTINGS = "/etc/linkwatch/settings.toml"
MAX_EXPOSURE = 2.0


def _directives(text: str) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> values in file order (a key may repeat, e.g. ExecReload=)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _seconds(value: str) -> float:
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit]
    return total


SERVICE = _directives(UNIT.read_text())["Service"]
UNIT_SECTION = _directives(UNIT.read_text())["Unit"]


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not installed here")
    return found


def test_type_notify_with_watchdog_and_no_restart_on_bad_configuration() -> None:
    assert SERVICE["Type"] == ["notify"]
    assert SERVICE["NotifyAccess"] == ["main"]
    assert _seconds(SERVICE["WatchdogSec"][-1]) >= 10
    assert SERVICE["Restart"] == ["on-failure"]
    # linkwatch exits 2 on bad settings or rules: restarting cannot fix that.
    assert "2" in " ".join(SERVICE["RestartPreventExitStatus"]).split()
    # The daemon promises to exit within 15 s of SIGTERM; systemd must wait longer.
    assert _seconds(SERVICE["TimeoutStopSec"][-1]) > 15
    assert SERVICE["ExecStart"] == [f"{INSTALLED} -c {SETTINGS} run"]
    assert SERVICE["WorkingDirectory"] == ["/var/lib/linkwatch"]
    assert SERVICE["StateDirectory"] == ["linkwatch"]


def test_reload_checks_the_configuration_before_it_signals() -> None:
    # ExecReload= lines run in order and the first failure stops the reload: a bad
    # configuration fails `systemctl reload` and the daemon is never signalled.
    assert SERVICE["ExecReload"] == [
        f"{INSTALLED} -c {SETTINGS} check",
        "/bin/kill -HUP $MAINPID",
    ]


def test_the_unit_calls_verbs_the_cli_has() -> None:
    lines = SERVICE["ExecStart"] + SERVICE["ExecReload"]
    verbs = [line.split()[-1] for line in lines if line.startswith(INSTALLED)]
    assert verbs == ["run", "check"]
    assert all(verb in main.commands for verb in verbs), sorted(main.commands)


def test_documentation_points_at_what_the_readme_installs() -> None:
    (doc,) = UNIT_SECTION["Documentation"]
    assert doc.startswith("file:")
    path = doc.removeprefix("file:")
    readme = (ROOT / "README.md").read_text()
    assert f"README.md {path}" in readme, f"the README's install notes do not put {path}"


def test_readme_keeps_the_configuration_owned_by_root() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "install -d -m 0755 -o root -g root /etc/linkwatch" in readme
    assert "-o linkwatch" not in readme


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    linkwatch = Path(sys.executable).parent / "linkwatch"
    assert linkwatch.is_file(), f"no linkwatch script beside {sys.executable}"
    text = UNIT.read_text()
    assert text.count(INSTALLED) == 2  # ExecStart= and the first ExecReload=
    unit = tmp_path / "linkwatch.service"
    unit.write_text(text.replace(INSTALLED, str(linkwatch)))

    res = subprocess.run(
        [analyze, "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    lines = [line for line in (res.stdout + res.stderr).splitlines() if line.strip()]
    # verify also loads the host's units the service depends on (network-online.target,
    # sysinit.target, ...) and may complain about those on some hosts. Such a line names
    # the other unit first and is tolerated; any other line (ours, or unattributable)
    # fails the test.
    other_unit = re.compile(
        r"^(\S*/)?(?!linkwatch\.service)[\w@.\\-]+"
        r"\.(service|socket|target|mount|slice|timer|path|swap|device|automount|scope)"
        r"(:\d+)?: "
    )
    ours = [line for line in lines if "linkwatch" in line or not other_unit.match(line)]
    assert not ours, "\n".join(lines)
    assert res.returncode == 0, "\n".join(lines)


def test_systemd_analyze_security_exposure_at_most_2() -> None:
    analyze = _systemd_analyze()
    version = subprocess.run(
        [analyze, "--version"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    found = re.search(r"systemd (\d+)", version)
    assert found, version
    if int(found.group(1)) < 250:
        pytest.skip(f"systemd {found.group(1)}: `security --offline` needs systemd 250")
    res = subprocess.run(
        [analyze, "security", "--no-pager", "--offline=true", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    score = re.search(r"Overall exposure level for linkwatch\.service: (\d+(?:\.\d+)?)", res.stdout)
    assert score, res.stdout + res.stderr
    failed = "\n".join(line for line in res.stdout.splitlines() if line.startswith("✗"))
    assert float(score.group(1)) <= MAX_EXPOSURE, failed
