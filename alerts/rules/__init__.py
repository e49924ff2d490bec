"""Rule files: one rule per TOML file in rules_dir, the file name is the rule's name."""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from alerts.rules.common import RULE_NAME
from alerts.rules.competitor_pace import CompetitorPaceRule
from alerts.rules.config_health import ConfigHealthRule
from alerts.rules.link_lost import LinkLostRule
from alerts.rules.link_new import LinkNewRule
from alerts.rules.source_health import SourceHealthRule
from alerts.rules.spike import SpikeRule
from alerts.rules.threshold import ThresholdRule
from daemon.settings import Settings, format_validation_error

log = logging.getLogger(__name__)

# What the engine evaluates; config_health is built in, never read from a file.
Rule = (
    ThresholdRule
    | SpikeRule
    | LinkLostRule
    | LinkNewRule
    | CompetitorPaceRule
    | SourceHealthRule
    | ConfigHealthRule
)
FileRule = (
    type[ThresholdRule]
    | type[SpikeRule]
    | type[LinkLostRule]
    | type[LinkNewRule]
    | type[CompetitorPaceRule]
    | type[SourceHealthRule]
)
RULE_KINDS: dict[str, FileRule] = {
    cls.kind: cls
    for cls in (
        ThresholdRule,
        SpikeRule,
        LinkLostRule,
        LinkNewRule,
        CompetitorPaceRule,
        SourceHealthRule,
    )
}


class RulesError(Exception):
    """Rule files with errors; `errors` holds one `file: key: message` line each."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def _load_one(path: Path, settings: Settings) -> tuple[Rule | None, list[str]]:
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        return None, [f"{path}: not valid TOML: {exc}"]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [f"{path}: cannot read: {exc}"]
    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in RULE_KINDS:
        known = ", ".join(sorted(RULE_KINDS))
        return None, [f"{path}: kind: expected one of {known}, got {kind!r}"]
    try:
        rule = RULE_KINDS[kind].from_file(path.stem, raw)
    except ValidationError as exc:
        return None, format_validation_error(path, exc).splitlines()
    except (ValueError, TypeError, OverflowError) as exc:
        # Whatever a rule file holds, it is refused with its name, never a crash.
        return None, [f"{path}: {exc}"]
    errors = []
    for name in rule.notify:
        if name not in settings.notifiers:
            known = ", ".join(sorted(settings.notifiers)) or "none defined"
            errors.append(f"{path}: notify: unknown notifier {name!r} (settings define: {known})")
    domains = {s.domain for s in settings.sites}
    for site in rule.sites or ():
        if site not in domains:
            errors.append(
                f"{path}: sites: unknown site {site!r} (settings define: "
                f"{', '.join(sorted(domains)) or 'none'})"
            )
    if errors:
        return None, errors
    return rule, []


# --- rule file discovery: one answer for the daemon, `rules check` and `check` ----------

# Editors and package managers leave these beside the files they edit; none is a rule.
_BACKUP_SUFFIXES = (".bak", ".orig", ".swp", ".tmp", ".rpmnew", ".rpmsave")


def ignored_because(name: str) -> str | None:
    """Why a file in rules_dir is not a rule file (None: it is one, by its name)."""
    if name.startswith("."):
        return "hidden file (editor lock or temporary copy)"
    if name.endswith("~") or (name.startswith("#") and name.endswith("#")):
        return "editor backup file"
    if name.endswith(_BACKUP_SUFFIXES) or ".dpkg-" in name:
        return "backup or package-manager file"
    if not name.endswith(".toml"):
        return "not a *.toml file"
    return None


def rule_files(folder: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The rule files of a folder, sorted, and the entries ignored with the reason why."""
    files: list[Path] = []
    ignored: list[tuple[Path, str]] = []
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return [], []
    for path in entries:
        why = ignored_because(path.name)
        if why is None and path.is_dir():
            why = "a folder"
        if why is None:
            files.append(path)
        else:
            ignored.append((path, why))
    return files, ignored


def name_problem(path: Path) -> str | None:
    """Why a rule file's name cannot be a rule's name, as `file: message`, or None."""
    if path.stem == ConfigHealthRule.name:
        return (
            f"{path}: file name: {path.stem!r} is the daemon's built-in alert on refused "
            "configuration; rename the file"
        )
    if RULE_NAME.fullmatch(path.stem):
        return None
    return (
        f"{path}: file name: {path.stem!r} cannot be a rule name: rule names are "
        "[a-z0-9_-]+ (lowercase letters, digits, _ and -); rename the file"
    )


def load_rule_file(path: Path, settings: Settings) -> Rule:
    """One rule file, named by its file, checked against the settings' notifiers and sites;
    RulesError lists its problems."""
    problem = name_problem(path)
    if problem is not None:
        raise RulesError([problem])
    rule, errors = _load_one(path, settings)
    if rule is None:
        raise RulesError(errors)
    return rule


def rules_signature(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """(name, size, mtime) of every rule file: cheap to compare on each evaluation."""
    if not folder.is_dir():
        return ()
    entries = []
    for path in rule_files(folder)[0]:
        try:
            st = path.stat()
        except OSError:
            continue
        entries.append((path.name, st.st_size, st.st_mtime_ns))
    return tuple(entries)


def load_rules(settings: Settings) -> list[Rule]:
    """Every rule in the settings' rules_dir; RulesError lists every problem found."""
    folder = settings.daemon.rules_dir
    if not folder.is_dir():
        raise RulesError([f"{folder}: rules_dir does not exist or is not a folder"])
    rules: list[Rule] = []
    errors: list[str] = []
    files, ignored = rule_files(folder)
    for path, why in ignored:
        log.debug("%s: ignored: %s", path, why)
    for path in files:
        try:
            rules.append(load_rule_file(path, settings))
        except RulesError as exc:
            errors.extend(exc.errors)
    if errors:
        raise RulesError(errors)
    return rules


@dataclass
class RuleBook:
    """The rule set in force: a reload with errors keeps the last good set."""

    settings: Settings
    rules: list[Rule]
    last_errors: list[str]
    signature: tuple[tuple[str, int, int], ...] = ()

    @classmethod
    def load(cls, settings: Settings) -> RuleBook:
        """Load the rules; raise RulesError if the first load fails."""
        signature = rules_signature(settings.daemon.rules_dir)
        return cls(settings, load_rules(settings), [], signature)

    def reload_if_changed(self) -> bool:
        """Reload when a rule file was added, removed or edited; True if rules were reloaded."""
        signature = rules_signature(self.settings.daemon.rules_dir)
        if signature == self.signature:
            return False
        self.signature = signature
        return self.reload()

    def reload(self) -> bool:
        """Reload from disk; on errors keep the current rules and return False."""
        try:
            self.rules = load_rules(self.settings)
        except RulesError as exc:
            self.last_errors = exc.errors
            for line in exc.errors:
                log.error("rules not reloaded, keeping %d rules: %s", len(self.rules), line)
            return False
        self.last_errors = []
        log.info("rules reloaded: %d rules", len(self.rules))
        return True


__all__ = [
    "RULE_KINDS",
    "ConfigHealthRule",
    "Rule",
    "RuleBook",
    "RulesError",
    "ignored_because",
    "load_rule_file",
    "load_rules",
    "rule_files",
]
