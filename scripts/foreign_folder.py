"""How the aspects served for a collection without ground truth carry to recordings the demo never had.

    .venv/bin/python scripts/foreign_folder.py render DIR [--pieces 12] [--takes 4] [--seed 7]
    kedro run --params "source.kind=folder,source.path=DIR"
    .venv/bin/python scripts/foreign_folder.py score DIR [--backbone musicnn-mtt]

``render`` writes a folder of WAV files with no metadata, as a user would bring: pieces the
demo does not play, instruments it does not use (violin, clarinet, organ, vibraphone),
FluidR3_GM, each setting drawn independently per take (a Latin hypercube per factor over the
takes). The settings go to ``DIR.truth.csv`` *beside* the folder, never read by the run.

``score`` reads the finished run through the catalog and measures, on the folder's recordings
only, how each candidate route ranks by its aspect's factor: the ``calibrated`` map (fitted on
the demo's renditions), the ``proxies`` route's map and the best audio proxy used directly
(both on the primary split), and what was actually served. Selectivity as evaluation's: per
query, Spearman between the search's similarity and closeness in the factor, over the other
recordings; the mean over queries with a bootstrap 95 % CI (2000 resamples of queries).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

FACTORS = {  # the demo's ranges (conf/base/parameters_ingest.yml); tempo on a log scale
    "tempo_factor": (0.7, 1.45, "log"),
    "rubato_depth": (0.0, 0.3, "linear"),
    "velocity_mean": (40.0, 105.0, "linear"),
    "dynamic_range": (0.0, 40.0, "linear"),
    "velocity_jitter": (1.0, 8.0, "linear"),
    "articulation": (0.35, 1.1, "linear"),
    "onset_jitter_ms": (0.0, 30.0, "linear"),
    "brightness": (-1.0, 1.0, "linear"),
    "room": (0.0, 1.0, "linear"),
}
PROGRAMS = [40, 71, 19, 11]  # violin, clarinet, church organ, vibraphone: none is in the demo
PIECES = [  # music21 corpus paths the demo does not play
    "bach/bwv10.7",
    "bach/bwv101.7",
    "bach/bwv102.7",
    "bach/bwv103.6",
    "bach/bwv104.6",
    "bach/bwv108.6",
    "bach/bwv11.6",
    "bach/bwv110.7",
    "bach/bwv111.6",
    "bach/bwv113.8",
    "bach/bwv114.7",
    "bach/bwv117.4",
    "bach/bwv119.9",
    "bach/bwv12.7",
    "bach/bwv121.6",
    "bach/bwv122.6",
]


def latin_hypercube(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """One value per take in each of ``n`` equal strata of every factor's range, shuffled per factor."""
    columns = {}
    for name, (low, high, scale) in FACTORS.items():
        unit = (rng.permutation(n) + rng.uniform(size=n)) / n
        columns[name] = (
            np.exp(np.log(low) + unit * (np.log(high) - np.log(low)))
            if scale == "log"
            else low + unit * (high - low)
        )
    return pd.DataFrame(columns)


def render(folder: Path, pieces: int, takes: int, seed: int) -> None:
    from mess_kedro.app.project import project_parameters
    from mess_kedro.audio.signal import write_audio
    from mess_kedro.corpus.demo.performers import RenditionSettings, perform_excerpt
    from mess_kedro.corpus.demo.scores import load_excerpt
    from mess_kedro.corpus.demo.synth import render_rendition

    demo = project_parameters(".")["demo_corpus"]
    window = float(demo["window_s"])
    soundfont = demo["synth"]["soundfonts"]["FluidR3_GM"]
    rng = np.random.default_rng(seed)
    excerpts = []
    for path in PIECES:
        if len(excerpts) == pieces:
            break
        try:
            excerpts.append(
                load_excerpt(
                    path,
                    composer="J. S. Bach",
                    title=path,
                    reference_qpm=80.0,
                    excerpt_seconds=float(demo["excerpt_seconds"]),
                    onset_rate=demo["onset_rate"],
                )
            )
        except Exception as exc:  # noqa: BLE001 - a corpus file that does not parse is skipped, said
            print(f"skipped {path}: {exc}")
    n = len(excerpts) * takes
    design = latin_hypercube(n, rng).assign(
        program=rng.permutation(np.resize(PROGRAMS, n)),
        rubato_shape=rng.choice(["arch", "phrase_final"], n),
        rubato_phrase_beats=rng.choice([4, 8], n),
        dynamic_shape=rng.choice(["crescendo", "diminuendo", "arch", "flat"], n),
    )
    rows = []
    folder.mkdir(parents=True, exist_ok=True)
    for i, row in design.iterrows():
        excerpt = excerpts[i % len(excerpts)]
        settings = RenditionSettings.from_row(row.to_dict() | {"performer_id": f"take{i // len(excerpts)}"})
        midi, _ = perform_excerpt(excerpt, settings, seed=seed + i, window_s=window)
        audio = render_rendition(
            midi,
            program=settings.program,
            brightness=settings.brightness,
            room=settings.room,
            sample_rate=24000,
            soundfont=soundfont,
            synth_gain=float(demo["synth"]["gain"]),
            duration_s=window,
        )
        name = f"recording_{i:03d}.wav"
        write_audio(folder / name, audio)
        rows.append({"file": name, "piece": excerpt.piece_id} | settings.as_dict())
        print(f"{i + 1}/{n} {name}", flush=True)
    pd.DataFrame(rows).to_csv(folder.with_name(folder.name + ".truth.csv"), index=False)


def _selectivity(vectors: np.ndarray, metric: str, values: np.ndarray, rng) -> tuple[float, float, float]:
    from mess_kedro.analysis.selectivity import closeness, off_diagonal, rowwise_spearman
    from mess_kedro.search.indexing import pairwise_similarity

    rho = rowwise_spearman(
        off_diagonal(pairwise_similarity(vectors, metric)), off_diagonal(closeness(values))
    )
    rho = rho[np.isfinite(rho)]
    means = rng.choice(rho, size=(2000, len(rho))).mean(axis=1)
    return float(rho.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def score(folder: Path, backbone: str) -> pd.DataFrame:
    from mess_kedro.app.project import project_datasets, project_parameters
    from mess_kedro.corpus.splits import split_seeds
    from mess_kedro.fusion.methods import restore

    truth = pd.read_csv(folder.with_name(folder.name + ".truth.csv"))
    names = ["layer_embeddings", "track_manifest", "track_splits", "track_targets", "aspect_subspaces"]
    names += ["aspect_subspace_routes", "aspect_gate_report"]
    data = {name: dataset.load() for name, dataset in project_datasets(".", names).items()}
    aspects = project_parameters(".")["fusion"]["aspect_search"]["aspects"]
    manifest = data["track_manifest"]
    mine = manifest[manifest["dataset"] == "folder"].assign(
        file=lambda t: t["source_path"].map(lambda p: Path(p).name)
    )
    mine = mine.merge(truth, on="file")
    embeddings = data["layer_embeddings"].backbones[backbone]
    rows = [embeddings.track_ids.index(t) for t in mine["track_id"]]
    layers = [np.asarray(x)[rows] for x in embeddings.tracks]
    primary = str(split_seeds(data["track_splits"])[0])
    candidates = {
        "calibrated": data["aspect_subspaces"].get(backbone, {}),
        "proxies": data["aspect_subspace_routes"].get("proxies", {}).get(primary, {}).get(backbone, {}),
    }
    targets = data["track_targets"].set_index("track_id").reindex(mine["track_id"])
    gate = data["aspect_gate_report"].get(backbone, {})
    rng = np.random.default_rng(0)
    out = []
    for aspect, spec in aspects.items():
        factor = spec.get("factor")
        if factor not in mine.columns:
            continue
        values = mine[factor].to_numpy(float)
        for route, states in candidates.items():
            if aspect in states:
                state = states[aspect]
                supervision = ",".join(state["params"]["supervision"])
                vectors = restore(state).transform(layers)
                out.append(
                    {"aspect": aspect, "route": route, "by": supervision} | _row(vectors, "l2", values, rng)
                )
        for proxy in spec.get("targets") or []:
            column = targets[proxy].to_numpy(float) if proxy in targets else np.array([np.nan])
            if np.isfinite(column).sum() >= 3:
                column = np.where(np.isfinite(column), column, np.nanmedian(column))
                out.append(
                    {"aspect": aspect, "route": "proxy-direct", "by": proxy}
                    | _row(column[:, None], "l2", values, rng)
                )
        decision = gate.get(aspect, {})
        out.append(
            {
                "aspect": aspect,
                "route": "served",
                "by": decision.get("route", "-") if decision.get("served") else "not served",
            }
        )
    table = pd.DataFrame(out)
    print(f"{len(mine)} recordings of the folder; backbone {backbone}")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    return table


def _row(vectors, metric, values, rng) -> dict:
    mean, low, high = _selectivity(vectors, metric, values, rng)
    return {"selectivity": mean, "ci_low": low, "ci_high": high}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["render", "score"])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--pieces", type=int, default=12)
    parser.add_argument("--takes", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--backbone", default="musicnn-mtt")
    args = parser.parse_args()
    if args.action == "render":
        render(args.folder, args.pieces, args.takes, args.seed)
    else:
        score(args.folder, args.backbone)


if __name__ == "__main__":
    main()
