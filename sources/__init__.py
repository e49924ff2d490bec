"""Backlink sources, one module per kind; `sources.registry` maps each kind to its module.

Kept empty so that importing one light part (`sources.model`, `sources.urls`) does not load
every source: reading commands start faster (issue 9).
"""
