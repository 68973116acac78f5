"""Which aspect searches are served: only those measured to rank by their aspect.

A subspace whose supervision is decodable (cross-validated R² above a
threshold) can still rank by something else: on the demo, "dynamics" fitted
to level descriptors ranked by room. So the decision reads what evaluation
measured on held-out demo queries for the *route that is served* (``truth``
where the demo's factors supervise it, ``proxies`` where proxy targets do).

Conventions
-----------
- ``measured``: evaluation's route summary, one row per split seed x source x
  method (route) x aspect with ``selectivity`` (mean per-query Spearman with
  the aspect's own factor), ``selectivity_ci_low``, ``leakage``,
  ``leakage_factor`` and ``factor``; rows with ``split_seed == "all"`` are
  ignored (the rule is per seed).
- An aspect is served when its route was measured on every split seed (decodable
  on each), its mean selectivity over seeds is at least ``min_selectivity`` *and*
  its CI lies above 0 on every seed.
- An aspect the demo cannot measure (no factor drives it) is served only when
  ``unmeasured == "serve"``, and then marked unverified.
- Every decision carries one line saying why, for the CLI, the room and the summary.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from mess_kedro.ground_truth import PREFIX


def served_route(state: Mapping[str, Any]) -> str:
    """The route a fitted subspace took: ``truth`` (the demo's factors supervised it) or ``proxies``."""
    supervision = state.get("params", {}).get("supervision") or []
    return "truth" if supervision and all(str(c).startswith(PREFIX) for c in supervision) else "proxies"


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
    measured = (
        f"ranks by {factor} at rho {mean:.2f} on held-out demo queries ({route} route, {seeds} seeds{leak})"
    )
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


def gate_aspects(
    subspaces: Mapping[str, Mapping[str, Any]],
    measured: pd.DataFrame,
    *,
    min_selectivity: float,
    unmeasured: str = "refuse",
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, dict[str, Any]]]]:
    """The subspaces to serve, and a decision with its reason per source x aspect.

    Parameters
    ----------
    subspaces : mapping
        ``{source: {aspect: state}}``: what fusion fitted (decodable on the training split).
    measured : DataFrame
        Evaluation's route summary (see the module conventions).

    Returns
    -------
    served : dict
        ``subspaces`` without the aspects refused.
    decisions : dict
        ``{source: {aspect: {served, verified, route, selectivity, ..., reason}}}``.
    """
    rows = validate(measured, min_selectivity, unmeasured)
    served: dict[str, dict[str, Any]] = {}
    decisions: dict[str, dict[str, dict[str, Any]]] = {}
    for source, states in subspaces.items():
        served[source], decisions[source] = {}, {}
        for aspect, state in states.items():
            route = served_route(state)
            mine = (
                rows[(rows["source"] == source) & (rows["method"] == route) & (rows["aspect"] == aspect)]
                if len(rows)
                else rows
            )
            if len(mine):
                decision = gate_decision(mine, aspect, route, min_selectivity, rows["split_seed"].nunique())
            else:
                keep = unmeasured == "serve"
                why = (
                    "no demo factor drives it"
                    if len(rows)
                    else "this run has no demo corpus to measure on: keep demo_corpus.enabled"
                )
                decision = {
                    "served": keep,
                    "verified": False,
                    "route": route,
                    "reason": f"served unverified ({why})"
                    if keep
                    else f"not served: its ranking could not be measured ({why})",
                }
            decisions[source][aspect] = decision
            if decision["served"]:
                served[source][aspect] = state
    return served, decisions
