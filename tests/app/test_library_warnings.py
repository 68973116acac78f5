"""Only the named library deprecations are silenced; every other warning still shows."""

import logging
import warnings

from mess_kedro.app.library_warnings import quiet_library_deprecations


def test_named_library_deprecations_are_silenced_and_others_are_not():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        quiet_library_deprecations()
        warnings.warn("register_new_resolver() is deprecated and will be removed", UserWarning, stacklevel=1)
        warnings.warn("\x1b[33mAdd type hints to the `predict` method to enable", UserWarning, stacklevel=1)
        warnings.warn("a warning of our own", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["a warning of our own"]


def test_captured_warning_records_are_filtered_by_message():
    quiet_library_deprecations()
    quiet_library_deprecations()  # a second call adds no second filter
    captured = logging.getLogger("py.warnings")
    assert len(captured.filters) == 1
    dropped = logging.LogRecord(
        "py.warnings",
        logging.WARNING,
        "x",
        1,
        "x.py:1: UserWarning: \x1b[33mAdd type hints to the `predict` method",
        None,
        None,
    )
    kept = logging.LogRecord(
        "py.warnings", logging.WARNING, "x", 1, "x.py:1: UserWarning: something else", None, None
    )
    assert not captured.filters[0].filter(dropped)
    assert captured.filters[0].filter(kept)
