"""Which aspect searches are served: only those measured to rank by their aspect.

A subspace whose supervision is decodable (cross-validated R² above a
threshold) can still rank by something else: on the demo, "dynamics" fitted
to level descriptors ranked by room. So the decision reads what evaluation
measured on held-out demo queries for the *route that is served*.

Routes, and the measurement that judges each (``MEASURED_BY``):

- ``truth``: the demo's factors supervised the map and the index holds the demo
  itself (the optimistic case); judged by evaluation's ``truth`` rows.
- ``calibrated``: the same map, fitted on the demo's renditions (the calibration
  set), serving a collection *without* ground truth. What it is worth on
  recordings it never heard is what the ``transfer`` route measured: a map fitted
  on one SoundFont's renditions, scored on other pieces rendered with another.
- ``proxies``: a map fitted to the aspect's audio proxy targets, which any
  collection has; judged by the ``proxies`` rows.

For a collection without ground truth every candidate route of an aspect is
judged and the best one that passes is served (``calibrated`` or ``proxies``).

Conventions
-----------
- ``measured``: evaluation's route summary, one row per split seed x source x
  method (route) x aspect with ``selectivity`` (mean per-query Spearman with
  the aspect's own factor), ``selectivity_ci_low``, ``leakage``,
  ``leakage_factor`` and ``factor``; rows with ``split_seed == "all"`` are
  ignored (the rule is per seed).
- A route passes when it was measured on every split seed (decodable on each),
  its mean selectivity over seeds is at least ``min_selectivity`` *and* its CI
  lies above 0 on every seed.
- An aspect the demo cannot measure (no factor drives it) is served only when
  ``unmeasured == "serve"``, and then marked unverified.
- Every decision carries one line saying why, for the CLI, the room and the summary.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from mess_kedro.corpus.ground_truth import PREFIX

CALIBRATED = "calibrated"
# The evaluation route whose measurements judge each served route (module docstring).
MEASURED_BY = {"truth": "truth", CALIBRATED: "transfer", "proxies": "proxies"}
_HOW = {
    "truth": "truth route",
    CALIBRATED: "calibrated on the demo; measured as its transfer route, on pieces and a SoundFont the map never heard",
    "proxies": "proxies route",
}


def served_route(state: Mapping[str, Any], calibrated: bool = False) -> str:
    """The route a fitted subspace takes: ``truth`` (the demo's factors supervised it; ``calibrated``
    when it serves a collection without them) or ``proxies``."""
    supervision = state.get("params", {}).get("supervision") or []
    if supervision and all(str(c).startswith(PREFIX) for c in supervision):
        return CALIBRATED if calibrated else "truth"
    return "proxies"


def validate(measured: pd.DataFrame, min_selectivity: float, unmeasured: str) -> pd.DataFrame:
    """The per-seed rows of ``measured``; raises on a missing column or an unknown policy."""
    if unmeasured not in ("serve", "refuse"):
        raise ValueError(f"unmeasured must be 'serve' or 'refuse', got '{unmeasured}'")
    if not -1.0 <= float(min_selectivity) <= 1.0:
        raise ValueError(f"min_selectivity is a Spearman rho in [-1, 1], got {min_selectivity}")
    if measured.empty:
        return measured
    needed = {"split_seed", "source", "method", "aspect", "selectivity", "selectivity_ci_low"}
    missing = sorted(needed - set(measured.columns))
    if missing:
        raise ValueError(f"the measured selectivity table lacks columns {missing}")
    return measured[measured["split_seed"].astype(str) != "all"]


def gate_decision(
    rows: pd.DataFrame, aspect: str, route: str, min_selectivity: float, seeds_run: int | None = None
) -> dict[str, Any]:
    """Serve or not, from one aspect's per-seed measurements of its served route (``rows`` not empty).

    ``seeds_run``: how many split seeds were evaluated; an aspect measured on fewer (not
    decodable on the others) is not served: only what survives every split is.
    """
    mean = float(rows["selectivity"].mean())
    worst_low = float(rows["selectivity_ci_low"].min())
    seeds = len(rows)
    factor = rows["factor"].iloc[0] if "factor" in rows else aspect
    leak = ""
    if "leakage" in rows and rows["leakage"].notna().any():
        leak = f", leakage {rows['leakage'].mean():.2f}"
        if "leakage_factor" in rows and rows["leakage_factor"].notna().any():
            leak += f" (into {rows['leakage_factor'].mode().iloc[0]})"
    every_seed = seeds_run is None or seeds >= seeds_run
    served = mean >= min_selectivity and worst_low > 0 and every_seed
    measured = f"ranks by {factor} at rho {mean:.2f} on held-out demo queries ({_HOW.get(route, route)}, {seeds} seeds{leak})"
    if served:
        reason = f"served: {measured}"
    elif not every_seed:
        reason = f"not served: {measured}; not decodable on {seeds_run - seeds} of {seeds_run} split seeds"
    elif mean < min_selectivity:
        reason = f"not served: {measured}; at least {min_selectivity:g} is needed"
    else:
        reason = f"not served: {measured}; its CI reaches 0 on a split seed (lowest bound {worst_low:.2f})"
    return {
        "served": served,
        "verified": True,
        "route": route,
        "selectivity": round(mean, 4),
        "selectivity_min_ci_low": round(worst_low, 4),
        "seeds": seeds,
        "reason": reason,
    }


def _unmeasured(route: str, unmeasured: str, any_rows: bool) -> dict[str, Any]:
    keep = unmeasured == "serve"
    why = (
        "no demo factor drives it"
        if any_rows
        # no rows at all: the demo was off, or too small to hold renditions out to measure on
        else "the demo measured no route in this run: keep demo_corpus.enabled, with enough renditions "
        "to hold some out (its default size does)"
    )
    return {
        "served": keep,
        "verified": False,
        "route": route,
        "reason": f"served unverified ({why})"
        if keep
        else f"not served: its ranking could not be measured ({why})",
    }


def _best(decisions: list[dict[str, Any]]) -> dict[str, Any]:
    """The served candidate with the highest selectivity, else the best measured one, else the first."""
    measured = [d for d in decisions if "selectivity" in d]
    served = [d for d in measured if d["served"]]
    pool = served or measured
    if not pool:
        return decisions[0]
    best = max(pool, key=lambda d: d["selectivity"])
    others = [f"{d['route']} {d['selectivity']:.2f}" for d in measured if d is not best]
    if others:  # the line says what the other routes measured
        best = best | {"reason": f"{best['reason']}; other routes: {', '.join(others)}"}
    return best


def gate_aspects(
    subspaces: Mapping[str, Mapping[str, Any]],
    measured: pd.DataFrame,
    *,
    min_selectivity: float,
    unmeasured: str = "refuse",
    calibrated: bool = False,
    alternatives: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, dict[str, Any]]]]:
    """The subspaces to serve, and a decision with its reason per source x aspect.

    Parameters
    ----------
    subspaces : mapping
        ``{source: {aspect: state}}``: what fusion fitted (decodable on the training split).
    measured : DataFrame
        Evaluation's route summary (see the module conventions).
    calibrated : bool
        The index holds recordings without ground truth: a truth-supervised map is
        served as ``calibrated`` and judged by the ``transfer`` measurements.
    alternatives : mapping, optional
        ``{route: {source: {aspect: state}}}``: other candidates (the ``proxies``
        route's maps); the best candidate that passes is served.

    Returns
    -------
    served : dict
        ``{source: {aspect: state}}`` of the chosen routes, without the aspects refused.
    decisions : dict
        ``{source: {aspect: {served, verified, route, selectivity, ..., reason}}}``.
    """
    rows = validate(measured, min_selectivity, unmeasured)
    seeds_run = rows["split_seed"].nunique() if len(rows) else 0
    served: dict[str, dict[str, Any]] = {}
    decisions: dict[str, dict[str, dict[str, Any]]] = {}
    for source, states in subspaces.items():
        served[source], decisions[source] = {}, {}
        for aspect, state in states.items():
            candidates = [(served_route(state, calibrated), state)]
            for route, by_source in (alternatives or {}).items():
                other = by_source.get(source, {}).get(aspect)
                if other is not None and route != candidates[0][0]:
                    candidates.append((route, other))
            judged = []
            for route, candidate in candidates:
                mine = (
                    rows[
                        (rows["source"] == source)
                        & (rows["method"] == MEASURED_BY.get(route, route))
                        & (rows["aspect"] == aspect)
                    ]
                    if len(rows)
                    else rows
                )
                decision = (
                    gate_decision(mine, aspect, route, min_selectivity, seeds_run)
                    if len(mine)
                    else _unmeasured(route, unmeasured, bool(len(rows)))
                )
                judged.append((decision, candidate))
            decision = _best([d for d, _ in judged])
            decisions[source][aspect] = decision
            if decision["served"]:
                served[source][aspect] = next(c for d, c in judged if d["route"] == decision["route"])
    return served, decisions
