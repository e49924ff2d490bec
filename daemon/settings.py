"""Settings: a TOML file validated by pydantic, secrets overridable from the environment.

`Settings` is the whole file, each source and notifier block validated by its plugin's
model; `daemon.settings_core` holds what every command reads and the file handling.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, SecretStr, ValidationError

from alerts.notifiers import NOTIFIER_KINDS, NotifierSettings
from daemon.settings_core import (
    DEFAULT_CONFIG,
    ENV_CONFIG,
    ENV_PREFIX,
    ETC_CONFIG,
    NAMED_BLOCKS,
    ConfigError,
    CoreSettings,
    DaemonSettings,
    SiteSettings,
    StorageSettings,
    config_path,
    hostname_problem,
    name_key,
    read_settings_file,
    relative_to,
    resolve_core_paths,
    unusable_path,
    validate_file,
)
from daemon.settings_core import format_validation_error as format_core_error
from sources.csv_dir import CsvDirSettings
from sources.registry import SOURCE_KINDS, SourceSettings, build_source

_KINDS = frozenset(NOTIFIER_KINDS) | frozenset(SOURCE_KINDS)
# What a required secret holds when `load_settings(require_secrets=False)` did not find it.
SECRET_STAND_IN = "(not set: checked without secrets)"


class Settings(CoreSettings):
    """Everything linkwatch reads from its settings file."""

    # Narrower than CoreSettings' tables (a dict is invariant, hence the ignores): each
    # block validated by its plugin's model.
    sources: dict[str, Annotated[SourceSettings, Field(discriminator="kind")]] = Field(  # type: ignore[assignment]
        default_factory=dict
    )
    notifiers: dict[str, Annotated[NotifierSettings, Field(discriminator="kind")]] = Field(  # type: ignore[assignment]
        default_factory=dict
    )


def _plugin_settings(block: str, kind: str) -> type[BaseModel] | None:
    """The settings model of a notifier or source kind, or None for an unknown one."""
    if block == "notifiers" and kind in NOTIFIER_KINDS:
        return NOTIFIER_KINDS[kind].Settings
    if block == "sources" and kind in SOURCE_KINDS:
        return SOURCE_KINDS[kind].Settings
    return None


def _is_secret(loc: tuple[int | str, ...]) -> bool:
    """Whether an error location is a plugin's secret (notifiers.NAME.KIND.token)."""
    if len(loc) != 4 or loc[0] not in NAMED_BLOCKS:
        return False
    model = _plugin_settings(str(loc[0]), str(loc[2]))
    field = model.model_fields.get(str(loc[3])) if model is not None else None
    return field is not None and field.annotation is SecretStr


def format_validation_error(
    path: Path, exc: ValidationError, raw: dict[str, Any] | None = None
) -> str:
    """One `file: key: message` line per error; with the settings file's table `raw`, a
    value the environment or a credential gave is named as theirs."""
    return format_core_error(path, exc, kinds=_KINDS, is_secret=_is_secret, raw=raw)


def _secret_placeholders(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` with a stand-in for every required secret the file leaves out."""
    # `linkwatch check` runs where the secrets may live only in the daemon's environment or
    # credentials; the environment still wins over these stand-ins when it has them.
    filled_raw = dict(raw)
    for block_name in NAMED_BLOCKS:
        blocks = raw.get(block_name)
        if not isinstance(blocks, dict):
            continue
        filled: dict[str, Any] = {}
        for name, block in blocks.items():
            kind = block.get("kind") if isinstance(block, dict) else None
            model = _plugin_settings(block_name, kind) if isinstance(kind, str) else None
            if model is None or not isinstance(block, dict):
                filled[name] = block
                continue
            missing = {
                key: SECRET_STAND_IN
                for key, field in model.model_fields.items()
                if field.annotation is SecretStr and field.is_required() and key not in block
            }
            filled[name] = {**block, **missing}
        filled_raw[block_name] = filled
    return filled_raw


def load_settings(path: Path, *, require_secrets: bool = True) -> Settings:
    """Read and validate a settings file; raise ConfigError naming file, key and problem.

    With `require_secrets=False` a required secret (a Slack token) may be absent: the
    settings hold a stand-in that must never be sent (for `linkwatch check`).
    """
    raw = read_settings_file(path)
    if not require_secrets:
        raw = _secret_placeholders(raw)
    settings, problems = validate_file(Settings, raw, path, _resolve_paths, format_validation_error)
    for name, source in settings.sources.items() if settings is not None else ():
        # Checked again once relative to the settings folder (a path may grow too long).
        try:
            build_source(name, source)
        except ValueError as exc:
            problems.append(f"{path}: sources.{name}.path: {exc}")
    for name, notifier in settings.notifiers.items() if settings is not None else ():
        ca_file = getattr(notifier, "ca_file", None)
        problem = unusable_path(ca_file) if ca_file is not None else None
        if problem is not None:
            problems.append(f"{path}: notifiers.{name}.ca_file: {problem}")
    if problems or settings is None:
        raise ConfigError("\n".join(problems))
    return settings


def _resolve_paths(settings: Settings, path: Path) -> Settings:
    core = resolve_core_paths(settings, path)
    rel = relative_to(path)
    # A source path is a `{domain}` template: braces in the settings' own folder name are
    # text, so they are doubled before the folder goes in front of it.
    escaped = Path(str(path.resolve().parent).replace("{", "{{").replace("}", "}}"))
    sources = {
        name: src.model_copy(
            update={"path": src.path if Path(src.path).is_absolute() else str(escaped / src.path)}
        )
        if isinstance(src, CsvDirSettings)
        else src
        for name, src in settings.sources.items()
    }
    notifiers = {}
    for name, n in settings.notifiers.items():
        ca_file = getattr(n, "ca_file", None)
        notifiers[name] = n.model_copy(update={"ca_file": rel(ca_file)}) if ca_file else n
    return settings.model_copy(
        update={
            "storage": core.storage,
            "daemon": core.daemon,
            "sources": sources,
            "notifiers": notifiers,
            "config_path": path,
        }
    )


__all__ = [
    "DEFAULT_CONFIG",
    "ENV_CONFIG",
    "ENV_PREFIX",
    "ETC_CONFIG",
    "SECRET_STAND_IN",
    "ConfigError",
    "DaemonSettings",
    "Settings",
    "SiteSettings",
    "StorageSettings",
    "config_path",
    "format_validation_error",
    "hostname_problem",
    "load_settings",
    "name_key",
]
