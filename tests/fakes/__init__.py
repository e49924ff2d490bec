"""Local stand-ins for the backlink APIs, one module per kind, found by name."""

from __future__ import annotations

import importlib
import pkgutil

from tests.fakes.base import FakeApi, FakeLink


def fake_kinds() -> dict[str, type[FakeApi]]:
    """Every stand-in in this package, by the source kind it serves."""
    found: dict[str, type[FakeApi]] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        fake = getattr(module, "FAKE", None)
        if fake is not None:
            found[fake.kind] = fake
    return dict(sorted(found.items()))


__all__ = ["FakeApi", "FakeLink", "fake_kinds"]
