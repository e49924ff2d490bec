"""SQLite-only SQL is spelled in daemon/store/dialect.py only (issue 9, docs/scale-out.md).

Every string literal of daemon/, alerts/ and sources/ (docstrings and comments aside: they
are prose) is searched for the spellings PostgreSQL would not understand; a port then
rewrites one module, not statements scattered through the store.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("daemon", "alerts", "sources")
DIALECT = Path("daemon/store/dialect.py")

# SQLite-only spellings, as they would appear in SQL text (case does not matter to SQL).
TOKENS = {
    "PRAGMA": r"\bPRAGMA\b",
    "BEGIN IMMEDIATE": r"\bBEGIN\s+(?:IMMEDIATE|EXCLUSIVE|DEFERRED)\b",
    "INDEXED BY": r"\b(?:INDEXED\s+BY|NOT\s+INDEXED)\b",
    "strftime(": r"\bstrftime\s*\(",
    "INSERT OR": r"\b(?:INSERT|REPLACE|UPDATE)\s+OR\s+(?:IGNORE|REPLACE|ABORT|FAIL|ROLLBACK)\b",
    "VACUUM": r"\bVACUUM\b",
    "sqlite_master": r"\bsqlite_(?:master|schema|temp_master|temp_schema)\b",
    "unixepoch": r"\bunixepoch\b",
    "temp. prefix": r"\btemp\.",
    "rowid": r"\b(?:rowid|_rowid_|oid)\b",
    "json_each(": r"\bjson_(?:each|tree|group_array|group_object|array|object|extract)\s*\(",
    "REPLACE INTO": r"\bREPLACE\s+INTO\b",
    "LIMIT -1": r"\bLIMIT\s+-\s*1\b",
    # Two arguments: SQLite's scalar max/min (one is the aggregate, the same in both).
    "max(a, b)": r"\b(?:max|min)\s*\([^()]*,[^()]*\)",
    "SQLite functions": r"\b(?:julianday|datetime|ifnull|iif|group_concat|printf|instr"
    r"|total_changes|last_insert_rowid|unixepoch)\s*\(",
}
_PATTERN = re.compile("|".join(f"(?P<t{i}>{p})" for i, p in enumerate(TOKENS.values())), re.I)
_NAMES = list(TOKENS)

# (file, text on the line) -> why that line may hold a SQLite-only word. Keep it short.
EXCEPTIONS = {
    (
        "daemon/doctor.py",
        '"PRAGMA quick_check passed"',
    ): "a message to the user naming the check `linkwatch check` ran, not SQL",
}


def _prose_lines(source: str) -> set[int]:
    """The lines of string statements standing alone: docstrings, which are prose."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return lines


def _literal_text(token: str) -> str:
    """A string token's text with an f-string's replacement fields blanked (they are
    Python, such as `{ROWID}`, not SQL)."""
    prefix = token[: len(token) - len(token.lstrip("rRbBuUfF"))]
    if "f" not in prefix.lower():
        return token
    blanked = token.replace("{{", "  ").replace("}}", "  ")
    previous = None
    while previous != blanked:
        previous = blanked
        blanked = re.sub(r"\{[^{}]*\}", lambda m: " " * len(m.group()), blanked)
    return blanked


def sqlite_only(source: str) -> list[tuple[int, str, str]]:
    """(line, token name, the line's text) of each SQLite-only spelling in `source`."""
    prose = _prose_lines(source)
    lines = source.splitlines()
    found = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type != tokenize.STRING or tok.start[0] in prose:
            continue
        text = _literal_text(tok.string)
        for match in _PATTERN.finditer(text):
            line = tok.start[0] + text.count("\n", 0, match.start())
            name = _NAMES[int(str(match.lastgroup)[1:])]
            found.append((line, name, lines[line - 1]))
    return found


def _sources() -> list[Path]:
    return sorted(p for d in SCANNED for p in (ROOT / d).rglob("*.py"))


def test_sqlite_only_sql_is_spelled_in_the_dialect_module_only() -> None:
    unexpected = []
    allowed = set()
    for path in _sources():
        rel = path.relative_to(ROOT)
        if rel == DIALECT:
            continue
        for line, name, text in sqlite_only(path.read_text(encoding="utf-8")):
            key = next((k for k in EXCEPTIONS if k[0] == rel.as_posix() and k[1] in text), None)
            if key is not None:
                allowed.add(key)
                continue
            unexpected.append(f"{rel}:{line}: {name}: {text.strip()}")
    assert not unexpected, "SQLite-only SQL outside daemon/store/dialect.py:\n" + "\n".join(
        unexpected
    )
    # An exception nothing needs any more goes.
    assert allowed == set(EXCEPTIONS), f"unused: {set(EXCEPTIONS) - allowed}"


def test_the_dialect_module_holds_what_it_gathers() -> None:
    # Else the scan above would pass for want of a module, or of the words it looks for.
    source = (ROOT / DIALECT).read_text(encoding="utf-8")
    names = {name for _, name, _ in sqlite_only(source)}
    assert names >= {"PRAGMA", "BEGIN IMMEDIATE", "INDEXED BY", "strftime(", "INSERT OR"}
    assert names >= {"VACUUM", "sqlite_master", "unixepoch", "temp. prefix", "rowid"}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('x("BEGIN IMMEDIATE")\n', [(1, "BEGIN IMMEDIATE")]),
        ('x(f"DROP TABLE temp.{name}")\n', [(1, "temp. prefix")]),
        ('x(f"""SELECT 1\n FROM s INDEXED BY i\n""")\n', [(2, "INDEXED BY")]),
        ('x("SELECT s.rowid FROM s")\n', [(1, "rowid")]),
        ('x("insert or ignore INTO t VALUES (1)")\n', [(1, "INSERT OR")]),
        ("x(\"SELECT strftime('%s', t, 'unixepoch')\")\n", [(1, "strftime("), (1, "unixepoch")]),
        ('x("pragma optimize")\n', [(1, "PRAGMA")]),
        ('x("SELECT value FROM json_each(:p)")\n', [(1, "json_each(")]),
        # Python, not SQL: the sqlite3 API, a datetime method, a replacement field, prose.
        ("n = cur.lastrowid\nat.strftime('%Y')\n", []),
        ('x(f"SELECT s.{ROWID} FROM {temp(name)}")\n', []),
        ('def f() -> None:\n    """Run VACUUM; drop temp. tables."""\n', []),
        ("# PRAGMA optimize, VACUUM\n", []),
        ('log("the temporary file")\n', []),
    ],
)
def test_the_scan_sees_sql_and_not_python(source: str, expected: list[tuple[int, str]]) -> None:
    assert [(line, name) for line, name, _ in sqlite_only(source)] == expected
