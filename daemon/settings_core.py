"""The settings every command reads: storage, daemon knobs and sites, validated by pydantic.

The source and notifier blocks are only checked to be tables here: reading commands
(`status`, `metrics`, `links`) never build a plugin, so they never load the plugins'
modules either (issue 9). `daemon.settings.Settings` validates those blocks too.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from datetime import time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from daemon.types import Duration, KeepDuration, PositiveDuration
from sources.urls import idna_host

DEFAULT_CONFIG = Path("settings.toml")
# Where a packaged install keeps its settings; a module constant so tests can move it.
ETC_CONFIG = Path("/etc/linkwatch/settings.toml")
ENV_CONFIG = "LINKWATCH_CONFIG"
ENV_PREFIX = "LINKWATCH_"
# Blocks whose keys are names chosen in the file, which env and credentials must address.
NAMED_BLOCKS = ("notifiers", "sources")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


class ConfigError(Exception):
    """A settings file is wrong; the message names the file, the key and what was expected."""


def hostname_problem(domain: str) -> str | None:
    """Why a site domain is not a hostname (letters, digits, hyphens, dots; IDNA), or None."""
    # The domain names folders (`{domain}`) and is matched against link URLs, so it must be
    # a bare host: no scheme, path, port, spaces or `..`.
    try:
        ascii_form = idna_host(domain)
    except UnicodeError:
        return "is not a hostname (an empty or over-long label, or characters IDNA refuses)"
    if len(ascii_form) > 253:
        return "is not a hostname (longer than 253 characters)"
    for label in ascii_form.split("."):
        if not _LABEL.fullmatch(label):
            return (
                f"is not a hostname (label {label!r}: use letters, digits and inner hyphens, "
                "no scheme, path or port)"
            )
    return None


class StorageSettings(BaseModel):
    """Where the SQLite database lives, and how much history it keeps (docs/storage.md)."""

    model_config = ConfigDict(extra="forbid")

    path: Path = Path("linkwatch.db")
    # How long a command or the daemon waits for another process's write transaction.
    busy_timeout: PositiveDuration = timedelta(seconds=30)
    # History older than this is pruned by the daily maintenance; None (`all`) keeps it all.
    keep: KeepDuration = None
    # When the daily maintenance (retention, ANALYZE, VACUUM if worth it) runs, in UTC.
    maintenance_at: time = time(3, 30)

    @field_validator("maintenance_at", mode="before")
    @classmethod
    def _time_of_day(cls, v: Any) -> Any:
        # TOML has a local-time type (03:30:00); a string "03:30" is read the same way.
        if isinstance(v, time):
            if v.tzinfo is not None:
                raise ValueError("expected a time of day in UTC without an offset, like 03:30")
            return v
        if isinstance(v, str) and re.fullmatch(r"\s*([01]?\d|2[0-3]):[0-5]\d\s*", v):
            hours, minutes = v.strip().split(":")
            return time(int(hours), int(minutes))
        raise ValueError(f"expected a time of day in UTC like 03:30 (HH:MM), got {v!r}")

    @field_validator("busy_timeout")
    @classmethod
    def _at_most_an_hour(cls, v: timedelta) -> timedelta:
        if v > timedelta(hours=1):
            raise ValueError("expected a duration between 1s and 1h")
        return v


class DaemonSettings(BaseModel):
    """The service's own knobs."""

    model_config = ConfigDict(extra="forbid")

    rules_dir: Path = Path("rules.d")
    evaluate_every: PositiveDuration = timedelta(minutes=5)
    deliver_every: PositiveDuration = timedelta(seconds=10)
    delivery_ttl: PositiveDuration = timedelta(hours=24)
    # Transitions of one site within this long go to each notifier as one message.
    group_wait: Duration = timedelta(seconds=30)

    @field_validator("group_wait")
    @classmethod
    def _group_wait_bounded(cls, v: timedelta) -> timedelta:
        if v > timedelta(hours=1):
            raise ValueError("expected a duration between 0s and 1h")
        return v


class SiteSettings(BaseModel):
    """A watched site and the sources that poll it."""

    model_config = ConfigDict(extra="forbid")

    domain: str = Field(min_length=3)
    role: Literal["own", "competitor"] = "own"
    sources: list[str] = Field(min_length=1)
    # Sites whose pace competitor_pace rules compare with this one's: configured sites.
    competitors: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        default=[], max_length=50
    )


def name_key(name: str) -> str:
    """A notifier or source name as an environment variable can spell it: case and `-`/`_`
    do not count (`SEO_SLACK` is `seo-slack`)."""
    return name.lower().replace("-", "_")


def variable_for(block: str, name: str, key: str) -> str:
    """The environment variable every message names for a key of a notifier or source:
    the name as the file spells it, `-` as `_` so that a shell can export it."""
    # Any spelling name_key matches works; one in every message, README's.
    return f"{ENV_PREFIX}{block.upper()}__{name.replace('-', '_')}__{key.upper()}"


def _onto_file_names(
    found: dict[str, Any], file: dict[str, Any], origin: Callable[[str, str], str]
) -> dict[str, Any]:
    """`found` (environment or credentials) with each notifier and source name replaced by
    the file's name it spells; `origin(block, name)` says where a name came from."""
    # A shell cannot export `-` in a variable name, and pydantic-settings lowercases what it
    # reads, so the names must be matched to the file's or they would start new blocks.
    mapped = dict(found)
    for block in NAMED_BLOCKS:
        given = found.get(block)
        if not isinstance(given, dict):
            continue
        defined = file.get(block)
        names = [str(n) for n in defined] if isinstance(defined, dict) else []
        spelled: dict[str, list[str]] = {}
        for name in names:
            spelled.setdefault(name_key(name), []).append(name)
        out: dict[str, Any] = {}
        for key, value in given.items():
            matches = spelled.get(name_key(key), [])
            if not matches:
                raise ConfigError(
                    f"{origin(block, key)}: no {block[:-1]} {key!r} in the settings file "
                    f"(its {block}: {', '.join(names) or 'none'})"
                )
            if len(matches) > 1:
                raise ConfigError(
                    f"{origin(block, key)}: could be {block} "
                    f"{' or '.join(map(repr, matches))} of the settings file; rename one"
                )
            target = matches[0]
            before = out.get(target)
            if isinstance(before, dict) and isinstance(value, dict) and not before.keys() & value:
                value = {**before, **value}
            elif before is not None:
                raise ConfigError(f"{origin(block, key)}: sets {block}.{target} twice")
            out[target] = value
        mapped[block] = out
    return mapped


class _NamedAsInFile(PydanticBaseSettingsSource):
    """Another source's values, notifier and source names matched to the file's."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        inner: PydanticBaseSettingsSource,
        file: PydanticBaseSettingsSource,
        origin: Callable[[str, str], str],
    ) -> None:
        super().__init__(settings_cls)
        self._inner, self._file, self._origin = inner, file, origin

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return _onto_file_names(self._inner(), self._file(), self._origin)


def _env_origin(block: str, name: str) -> str:
    return f"environment variable {ENV_PREFIX}{block.upper()}__{name.upper()}__…"


def _credential_origin(block: str, name: str) -> str:
    folder = os.environ.get("CREDENTIALS_DIRECTORY")
    return f"credential file {folder}/{block}__{name}__…"


class _CredentialsSource(PydanticBaseSettingsSource):
    """systemd credentials: a file `notifiers__NAME__FIELD` in $CREDENTIALS_DIRECTORY."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        folder = os.environ.get("CREDENTIALS_DIRECTORY")
        if not folder or not Path(folder).is_dir():
            return {}
        found: dict[str, Any] = {}
        for path in sorted(Path(folder).iterdir()):
            parts = path.name.split("__")
            if len(parts) < 2 or not path.is_file():
                continue
            if parts[0].lower() not in self.settings_cls.model_fields:
                # The unit may load credentials meant for others (a TLS key, say): only
                # names that start with a settings section are linkwatch's.
                continue
            node = found
            for part in parts[:-1]:
                node = node.setdefault(part.lower(), {})
                if not isinstance(node, dict):
                    raise ConfigError(
                        f"{path}: credential file: {part!r} is both a value and a group "
                        "(another credential file names it alone)"
                    )
            if isinstance(node.get(parts[-1].lower()), dict):
                raise ConfigError(f"{path}: credential file: names a group, not a value")
            try:
                node[parts[-1].lower()] = path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{path}: credential file cannot be read: {exc}") from exc
        return found


class CoreSettings(BaseSettings):
    """The settings file as reading commands need it: source and notifier blocks unread."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid"
    )

    # Plain defaults, which pydantic copies for each instance: a factory such as `list`
    # costs a reading command milliseconds (pydantic inspects its signature by parsing).
    storage: StorageSettings = StorageSettings()
    daemon: DaemonSettings = DaemonSettings()
    sites: list[SiteSettings] = []
    # Each block a table; what is in it is the plugin's to validate (daemon.settings). A
    # table type also makes pydantic-settings decode a block given whole as JSON by an
    # environment variable, as it does for Settings.
    sources: dict[str, dict[str, Any]] = {}
    notifiers: dict[str, dict[str, Any]] = {}
    # Where the file was read from; relative paths in it resolve against its folder.
    config_path: Path | None = Field(default=None, exclude=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first, then systemd credentials, then the file's own values; the
        # first two name notifiers and sources as the file does (see name_key).
        return (
            _NamedAsInFile(settings_cls, env_settings, init_settings, _env_origin),
            _NamedAsInFile(
                settings_cls, _CredentialsSource(settings_cls), init_settings, _credential_origin
            ),
            init_settings,
        )

    @model_validator(mode="after")
    def _check_references(self) -> CoreSettings:
        # Every problem at once, one per line: fixing a file one error per start is slow.
        problems: list[str] = []
        seen: set[str] = set()
        known = ", ".join(sorted(self.sources)) or "none defined"
        for i, site in enumerate(self.sites):
            problem = hostname_problem(site.domain)
            if problem is not None:
                problems.append(f"sites[{i}].domain: {site.domain!r} {problem}")
            if site.domain in seen:
                problems.append(f"sites[{i}].domain: {site.domain!r} is listed twice")
            seen.add(site.domain)
            problems.extend(
                f"sites[{i}].sources: unknown source {name!r} (known: {known})"
                for name in site.sources
                if name not in self.sources
            )
            domains = [s.domain for s in self.sites]
            for j, rival in enumerate(site.competitors):
                where = f"sites[{i}].competitors[{j}]"
                if rival == site.domain:
                    problems.append(f"{where}: {rival!r} is the site itself")
                elif rival not in domains:
                    problems.append(
                        f"{where}: unknown site {rival!r} (each competitor must be a"
                        f" [[sites]] domain: {', '.join(domains)})"
                    )
                elif rival in site.competitors[:j]:
                    problems.append(f"{where}: {rival!r} is listed twice")
        for block in NAMED_BLOCKS:
            spelled: dict[str, list[str]] = {}
            for name in getattr(self, block):
                spelled.setdefault(name_key(name), []).append(name)
            problems.extend(
                f"{block}: {' and '.join(map(repr, alike))} are one name to environment "
                f"variables and credentials ({ENV_PREFIX}{block.upper()}__"
                f"{key.upper()}__…); rename one"
                for key, alike in spelled.items()
                if len(alike) > 1
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def own_sites(self) -> list[str]:
        """Domains of the sites with role `own`."""
        return [s.domain for s in self.sites if s.role == "own"]

    def competitors(self) -> dict[str, tuple[str, ...]]:
        """Each site that names competitors -> those competitors (competitor_pace rules)."""
        return {s.domain: tuple(s.competitors) for s in self.sites if s.competitors}

    def site(self, domain: str) -> SiteSettings:
        """The settings of one site."""
        for s in self.sites:
            if s.domain == domain:
                return s
        raise KeyError(domain)


_S = TypeVar("_S", bound=CoreSettings)


def config_path(explicit: str | Path | None) -> Path:
    """-c/--config, else $LINKWATCH_CONFIG, else ./settings.toml or /etc/linkwatch/settings.toml."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env)
    # Read at call time (not bound as a default) so tests can point ETC_CONFIG elsewhere.
    for candidate in (DEFAULT_CONFIG, ETC_CONFIG):
        if candidate.exists():
            return candidate
    raise ConfigError(
        f"no settings file: -c/--config not given, ${ENV_CONFIG} not set, and neither "
        f"./{DEFAULT_CONFIG} nor {ETC_CONFIG} exists; start from the example with "
        f"`cp settings.example.toml {DEFAULT_CONFIG}` (or pass -c FILE)"
    )


def format_validation_error(
    path: Path,
    exc: ValidationError,
    *,
    kinds: frozenset[str] = frozenset(),
    is_secret: Callable[[tuple[int | str, ...]], bool] = lambda loc: False,
    raw: dict[str, Any] | None = None,
) -> str:
    """One `file: key: message` line per error; `kinds` are the plugin kinds whose tag
    pydantic puts in a location, `is_secret` tells a plugin's secret by its location.
    Given the settings file's table `raw`, a value an environment variable or credential
    gave is named as theirs (see `given_outside`)."""
    lines: list[str] = []
    for err in exc.errors():
        where = list(err["loc"])
        # Drop the discriminator tag pydantic puts in the path (notifiers.NAME.slack.port).
        if len(where) >= 3 and where[0] in NAMED_BLOCKS and where[2] in kinds:
            del where[2]
        # List items (int positions) as the cross-checks name them, sites[0]; keys as a.b.
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in where)
        loc = loc.removeprefix(".")
        msg = err["msg"].removeprefix("Value error, ")
        if not loc:
            # A whole-file check reports each problem on its own line, each with the file.
            lines.extend(f"{path}: {line}" for line in msg.splitlines())
            continue
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing" and is_secret(err["loc"]):
            # A missing secret: say how to give it without writing it into the file.
            block, name, key = str(err["loc"][0]), str(err["loc"][1]), str(err["loc"][-1])
            msg += (
                f" (or set {variable_for(block, name, key)} or the systemd credential"
                f" {block}__{name}__{key})"
            )
        # A value the environment or a credential gave is theirs to fix, not the file's.
        origin = given_outside(where, raw) if raw is not None else None
        lines.append(f"{origin or path}: {loc}: {msg}")
    return "\n".join(lines)


def given_outside(where: list[int | str], raw: dict[str, Any]) -> str | None:
    """The environment variable or systemd credential that set the value at `where` (or a
    table holding it, when the file `raw` does not set that value), if one did: the file
    is then not where to look."""
    keys = [name_key(str(p)) for p in where]
    variables = {
        tuple(name_key(k) for k in var[len(ENV_PREFIX) :].split("__")): var
        for var in os.environ
        if var.upper().startswith(ENV_PREFIX)
    }
    folder = os.environ.get("CREDENTIALS_DIRECTORY")
    try:
        names = [p.name for p in Path(folder).iterdir()] if folder else []
    except OSError:
        names = []
    credentials = {tuple(name_key(k) for k in name.split("__")): name for name in names}
    # A variable for the key itself, then, deepest first, one for each table holding it,
    # which gave the value only if the file leaves it out.
    tables = range(0) if _file_sets(raw, where) else range(len(keys) - 1, 0, -1)
    for n in (len(keys), *tables):
        if tuple(keys[:n]) in variables:
            return f"environment variable {variables[tuple(keys[:n])]}"
        if tuple(keys[:n]) in credentials:
            return f"credential file {folder}/{credentials[tuple(keys[:n])]}"
    return None


def _file_sets(raw: dict[str, Any], where: list[int | str]) -> bool:
    """Whether the file's table sets the value at `where`."""
    node: Any = raw
    for key in where:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def storage_path_problem(db: Path) -> str | None:
    """Why a (resolved) database path cannot hold the database, or None."""
    # Checked at load so every command says so plainly, instead of SQLite's
    # "unable to open database file" (or a traceback from mkdir) later.
    if "\0" in str(db):
        return "contains a NUL character"
    try:
        if db.is_dir():
            return f"{db} is a folder; name the database file inside it, e.g. {db / 'linkwatch.db'}"
        if db.exists() and not db.is_file():
            return f"{db} is not a regular file"
        for parent in db.parents:
            if parent.exists():
                if not parent.is_dir():
                    return f"{db} lies under {parent}, which is a file, not a folder"
                break
    except OSError as exc:
        return _cannot_check(db, exc)
    return None


def read_settings_file(path: Path) -> dict[str, Any]:
    """The TOML table of a settings file; ConfigError naming the file when it cannot be."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: settings file not found") from exc
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc


def unusable_path(p: Path) -> str | None:
    """Why the system cannot even look at path `p` (a name too long, a loop of links…),
    or None: a missing path is fine here, what is at it is checked where it is used."""
    try:
        p.exists()  # False, not an error, for a name the OS cannot hold (a NUL)
    except OSError as exc:
        return _cannot_check(p, exc)
    return None


def _cannot_check(p: Path, exc: OSError) -> str:
    return f"{p} cannot be checked: {exc.strerror or exc}"


def storage_problems(settings: CoreSettings | None, raw: dict[str, Any], path: Path) -> list[str]:
    """Why the database path the file names (validated or as written) cannot hold it."""
    db = _storage_path(settings, raw, path)
    problem = storage_path_problem(db) if db is not None else None
    return [f"{path}: storage.path: {problem}"] if problem is not None else []


def build(model: type[_S], raw: dict[str, Any]) -> _S:
    """`model` validated from the file's table `raw`, the environment and credentials; a
    value the environment gives that is not JSON where a table is expected is a
    ConfigError naming the variables to look at, not a traceback."""
    try:
        return model(**raw)
    except SettingsError as exc:
        found = re.search(r'field "(\w+)"', str(exc))
        var = f"{ENV_PREFIX}{found.group(1).upper()}" if found else f"{ENV_PREFIX}…"
        raise ConfigError(
            f"environment: {var} or a {var}__… variable holds a value that is not valid JSON"
            ' where a table or list is expected (write a list as JSON, like ["a", "b"], or'
            " set a table's keys one per variable)"
        ) from exc
    except RecursionError as exc:
        # pydantic-settings decodes JSON it wraps only ValueErrors of.
        raise ConfigError(
            f"environment: a {ENV_PREFIX}… variable holds JSON nested too deeply"
        ) from exc


def validate_file(
    model: type[_S],
    raw: dict[str, Any],
    path: Path,
    resolve: Callable[[_S, Path], _S],
    format_error: Callable[..., str],
) -> tuple[_S | None, list[str]]:
    """The settings file `path` (its table `raw`) validated as `model`, its paths resolved
    by `resolve` (None when it is not valid), and every problem found, each formatted by
    `format_error(path, exc, raw=raw)`; the database path is checked either way."""
    problems: list[str] = []
    try:
        settings: _S | None = resolve(build(model, raw), path)
    except ValidationError as exc:
        settings = None
        problems.append(format_error(path, exc, raw=raw))
    problems.extend(storage_problems(settings, raw, path))
    if settings is not None:
        problem = unusable_path(settings.daemon.rules_dir)
        if problem is not None:
            problems.append(f"{path}: daemon.rules_dir: {problem}")
    return settings, problems


def load_core_settings(path: Path) -> CoreSettings:
    """Read and validate a settings file but for its source and notifier blocks (reading
    commands); raise ConfigError naming file, key and problem."""
    raw = read_settings_file(path)
    settings, problems = validate_file(
        CoreSettings, raw, path, resolve_core_paths, format_validation_error
    )
    if problems or settings is None:
        raise ConfigError("\n".join(problems))
    return settings


def _storage_path(settings: CoreSettings | None, raw: dict[str, Any], path: Path) -> Path | None:
    """The resolved database path: validated if the file is, else as written (if a string)."""
    if settings is not None:
        return settings.storage.path
    storage = raw.get("storage")
    written = storage.get("path") if isinstance(storage, dict) else None
    if not isinstance(written, str):
        return None
    return relative_to(path)(Path(written))


def relative_to(path: Path) -> Callable[[Path], Path]:
    """Resolves a path written in the settings file `path` against that file's folder."""
    base = path.resolve().parent

    def rel(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    return rel


def resolve_core_paths(settings: CoreSettings, path: Path) -> CoreSettings:
    """`settings` with the database and rules folder resolved against the file's folder."""
    rel = relative_to(path)
    return settings.model_copy(
        update={
            "storage": settings.storage.model_copy(update={"path": rel(settings.storage.path)}),
            "daemon": settings.daemon.model_copy(
                update={"rules_dir": rel(settings.daemon.rules_dir)}
            ),
            "config_path": path,
        }
    )
