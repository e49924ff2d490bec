"""Log lines for a terminal, or for the systemd journal when stderr is connected to it."""

from __future__ import annotations

import logging
import os
import sys

# syslog priorities (sd-daemon(3)): the journal reads a `<N>` prefix as the level.
_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class JournalFormatter(logging.Formatter):
    """`<priority>logger: message`, without a time stamp: the journal adds its own."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITY.get(record.levelno, 6)
        text = super().format(record)
        # Every line of a multi-line message (a traceback) keeps the priority.
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines())


def configure_logging(verbose: bool) -> None:
    """Log to stderr: journal-style when $JOURNAL_STREAM says stderr is the journal."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("apscheduler", "slack_sdk", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
