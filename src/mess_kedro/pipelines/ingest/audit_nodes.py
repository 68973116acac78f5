"""Ingest nodes that audit a corpus before anything is trusted: no stray scalar may tell a factor.

A corpus where a track's duration, silence, level or segment count predicts a factor lets any
model look good; :func:`audit_leaks` measures each such scalar against each factor
(:mod:`mess_kedro.analysis.leaks`), and :func:`audit_demo_tracks` checks the demo's design.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd

from mess_kedro.analysis.leaks import leak_report, segment_count, validate_leaks

logger = logging.getLogger(__name__)

STRAY_SCALARS = ("duration_s", "leading_silence_s", "trailing_silence_s", "rms_dbfs", "peak")


def _segment_lengths(embed_params: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """``{backbone: (segment_s, shortest segment kept)}`` for every configured backbone."""
    from mess_kedro.models.backbones import get_spec

    lengths = {}
    for name, options in (embed_params.get("backbones") or {}).items():
        spec = get_spec((options or {}).get("backbone") or name)
        segment_s = float(
            (options or {}).get("segment_s") or embed_params.get("segment_s") or spec.default_segment_s
        )
        lengths[name] = (segment_s, segment_s if spec.fixed_length else float(embed_params["min_segment_s"]))
    return lengths


def audit_leaks(
    tracks: pd.DataFrame,
    ground_truth: pd.DataFrame,
    demo_params: Mapping[str, Any],
    audit: Mapping[str, Any] | None,
    embed_params: Mapping[str, Any],
) -> dict[str, Any]:
    """Whether a stray scalar of the demo tracks predicts a factor (see :mod:`mess_kedro.analysis.leaks`).

    ``tracks`` and ``ground_truth`` are matched by ``source_key``. Scalars:
    duration, the segment count under each configured backbone's
    segmentation, leading and trailing silence, RMS level, peak. Raises
    :class:`mess_kedro.analysis.leaks.LeakError` if one predicts a factor it does not
    carry beyond ``audit``'s thresholds (``None``: report only).
    """
    truth = ground_truth.merge(tracks[["source_key"]], on="source_key", how="inner")
    tracks = truth[["source_key"]].merge(tracks, on="source_key", how="left")
    scalars = tracks[[c for c in STRAY_SCALARS if c in tracks]].copy()
    for name, (segment_s, minimum) in _segment_lengths(embed_params).items():
        scalars[f"segments:{name}"] = [segment_count(d, segment_s, minimum) for d in tracks["duration_s"]]
    continuous = [f for f in demo_params["factors"] if f in truth]
    categorical = [c for c in demo_params["choices"] if c in truth]
    audit = dict(audit or {})
    report = leak_report(scalars, truth, continuous, categorical, carriers=audit.get("carriers"))
    report["thresholds"] = {k: audit.get(k) for k in ("max_abs_spearman", "max_eta_squared")}
    if audit:
        validate_leaks(report, audit.get("max_abs_spearman"), audit.get("max_eta_squared"), categorical)
    return report


def audit_demo_tracks(
    ingested_tracks: pd.DataFrame,
    demo_settings: pd.DataFrame,
    *,
    demo_params: dict[str, Any],
    ingest_params: dict[str, Any],
    embed_params: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Stop the run before anything is embedded if a stray scalar of the demo predicts a factor.

    Returns the tracks unchanged (splits and embedding wait for this node) and
    the audit (:func:`audit_leaks` with ``ingest_params["leak_audit"]``; empty
    without demo tracks).
    """
    if len(demo_settings) < 2 or not demo_params.get("factors") or "source_key" not in demo_settings:
        return ingested_tracks, {}
    report = audit_leaks(
        ingested_tracks, demo_settings, demo_params, ingest_params.get("leak_audit"), embed_params
    )
    worst = max(report["worst"].items(), key=lambda item: item[1]["value"])
    logger.info(
        "Demo leak audit: the stray scalar that best predicts a factor it does not carry is %s (%s, %.3f)",
        worst[0],
        worst[1]["factor"],
        worst[1]["value"],
    )
    return ingested_tracks, report
