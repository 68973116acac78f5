"""Warnings that libraries raise about their own code, silenced by message.

Kedro and kedro-mlflow still call ``OmegaConf.register_new_resolver``; kedro-mlflow's pipeline
model has an untyped ``predict``, which MLflow flags when it is imported. None of them is this
project's code or a user's to fix, and together they opened every run with six warnings. Only
these messages are silenced; every other warning still shows.
"""

from __future__ import annotations

import logging
import re
import warnings

LIBRARY_DEPRECATIONS = (
    r"register_new_resolver\(\) is deprecated",
    r".*Add type hints to the `predict` method",  # MLflow colours it: an escape code comes first
)


class _LibraryDeprecationFilter(logging.Filter):
    """Drops a captured warning record whose text is one of :data:`LIBRARY_DEPRECATIONS`.

    Needed beside the warning filters: MLflow warns from inside ``catch_warnings`` with its own
    ``simplefilter("once")`` in front, and Kedro logs warnings through ``py.warnings``.
    """

    patterns = [re.compile(p, re.IGNORECASE) for p in LIBRARY_DEPRECATIONS]

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not any(p.search(text) for p in self.patterns)


def quiet_library_deprecations() -> None:
    """Ignore :data:`LIBRARY_DEPRECATIONS` (a Kedro ``kedro.init`` hook: runs before plugins load)."""
    for message in LIBRARY_DEPRECATIONS:
        warnings.filterwarnings("ignore", message=message, category=UserWarning)
    captured = logging.getLogger("py.warnings")
    if not any(isinstance(f, _LibraryDeprecationFilter) for f in captured.filters):
        captured.addFilter(_LibraryDeprecationFilter())
