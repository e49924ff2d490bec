"""Text templates users write (`{site} lost {value}`): checked at load, rendered without eval."""

from __future__ import annotations

import re
import string
from collections.abc import Collection, Mapping
from dataclasses import dataclass

# Widths and precisions above this only pad or bloat a message: refused, so a template
# cannot make a multi-megabyte alert (`{site:>100000000}`).
MAX_WIDTH = 200
MAX_TEMPLATE_LENGTH = 1000
# [align][width][.precision], nothing else: every value is text, and a fill character,
# sign, `#`, `,` or a type letter would either fail on text or mean nothing.
_SPEC = re.compile(r"(?P<align>[<>^])?(?P<width>[1-9][0-9]*)?(?:\.(?P<precision>[0-9]+))?")


class TemplateError(ValueError):
    """A template uses something besides `{name}` and `{name:spec}` over its known names."""


@dataclass(frozen=True)
class Piece:
    """One placeholder of a checked template."""

    literal: str
    name: str | None
    spec: str


def _shown(name: str, spec: str | None, conversion: str | None) -> str:
    conv = f"!{conversion}" if conversion else ""
    return "{" + name + conv + (f":{spec}" if spec else "") + "}"


def parse_template(
    template: str,
    names: Collection[str],
    *,
    hint: str,
    specs: bool = True,
    max_length: int = MAX_TEMPLATE_LENGTH,
) -> tuple[Piece, ...]:
    """The template's pieces, or TemplateError saying what is wrong and `hint` (the rule)."""
    if len(template) > max_length:
        raise TemplateError(f"longer than {max_length} characters")
    try:
        pieces = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(
            f"unbalanced braces ({exc}); {hint}; write {{{{ or }}}} for a literal brace"
        ) from None
    fields: list[Piece] = []
    for literal, name, spec, conversion in pieces:
        if name is None:
            fields.append(Piece(literal, None, ""))
            continue  # text after the last placeholder
        shown = _shown(name, spec, conversion)
        if name not in names:
            # `format` would follow `site.__class__` / `site[0]` into object internals, and
            # `{0}` / `{}` would read positional arguments: only a bare known name is allowed.
            head = re.split(r"[.\[]", name, maxsplit=1)[0]
            if head in names:
                raise TemplateError(
                    f"placeholder {shown}: attribute and index access are not allowed; {hint}"
                )
            raise TemplateError(f"unknown placeholder {shown}; {hint}")
        if not specs and (conversion or spec):
            raise TemplateError(
                f"placeholder {shown}: conversions and format specs are not allowed; {hint}"
            )
        if conversion:
            raise TemplateError(f"placeholder {shown}: conversions (!r, !s, !a) are not allowed")
        fields.append(Piece(literal, name, _checked_spec(shown, spec or "")))
    return tuple(fields)


def _checked_spec(shown: str, spec: str) -> str:
    m = _SPEC.fullmatch(spec)
    if m is None:
        raise TemplateError(
            f"cannot be rendered: {shown}: format spec {spec!r} is not allowed (values are "
            f"text: use an alignment <, > or ^, a width and a .precision up to {MAX_WIDTH}, "
            "like {site:>30} or {site:.40})"
        )
    for part in ("width", "precision"):
        digits = m.group(part)
        # Length first: int() of thousands of digits is refused by Python itself.
        if digits is not None and (len(digits) > 3 or int(digits) > MAX_WIDTH):
            raise TemplateError(f"cannot be rendered: {shown}: {part} {digits} is over {MAX_WIDTH}")
    return spec


def render_template(fields: tuple[Piece, ...], values: Mapping[str, str]) -> str:
    """A checked template with its values: each is text, formatted by its own spec only."""
    # No str.format: nothing here can look up attributes, items or positional arguments.
    return "".join(
        f.literal + ("" if f.name is None else format(values[f.name], f.spec)) for f in fields
    )


def check_template(
    template: str,
    names: Collection[str],
    *,
    hint: str,
    specs: bool = True,
    max_length: int = MAX_TEMPLATE_LENGTH,
) -> str:
    """The template unchanged if it is safe to render over `names` (TemplateError if not)."""
    parse_template(template, names, hint=hint, specs=specs, max_length=max_length)
    return template


__all__ = [
    "MAX_WIDTH",
    "Piece",
    "TemplateError",
    "check_template",
    "parse_template",
    "render_template",
]
