"""Open this Kedro project from Python: every function that reads its configuration or catalog.

The library takes data; this module is where the query APIs, the CLI and the listening room
turn a project folder into that data (catalog datasets opened from the configuration alone,
without a Kedro session, so a query starts in well under a second).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mess_kedro.app.webapp.room import ListeningRoom
    from mess_kedro.search.engine import SimilaritySearch
    from mess_kedro.search.passage_vectors import AspectSpace
    from mess_kedro.search.passages import PassageFinder


@contextlib.contextmanager
def project_context(project_path: str | Path = ".", env: str | None = None) -> Iterator:
    """The ``KedroContext`` (catalog, params) of the project at ``project_path``, in an open session."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    path = Path(project_path).resolve()
    bootstrap_project(path)
    with KedroSession.create(project_path=path, env=env) as session:
        yield session.load_context()


def _config_loader(project_path: str | Path, env: str | None):
    """The project's configuration, read as ``kedro run`` reads it (settings.py's loader arguments)."""
    from kedro.config import OmegaConfigLoader

    from mess_kedro.settings import CONFIG_LOADER_ARGS

    return OmegaConfigLoader(
        conf_source=str(Path(project_path).resolve() / "conf"), env=env, **CONFIG_LOADER_ARGS
    )


def project_parameters(project_path: str | Path = ".", env: str | None = None) -> dict:
    """The project's parameters (no session, no hooks)."""
    return dict(_config_loader(project_path, env)["parameters"])


def _absolute(config: dict, root: Path) -> dict:
    """Relative local ``filepath``/``path`` entries made absolute under ``root``, as Kedro's context does."""
    config = dict(config)
    for key in ("filepath", "path"):
        value = config.get(key)
        if isinstance(value, str) and "://" not in value and not Path(value).is_absolute():
            config[key] = (root / value).as_posix()
    return config


def project_datasets(project_path: str | Path, names: list[str], env: str | None = None) -> dict:
    """The named catalog datasets of the project, built from its catalog configuration alone.

    For the query APIs: a whole Kedro session loads every hook and plugin
    (MLflow among them), seconds before the first answer.
    """
    from kedro.io import AbstractDataset

    root = Path(project_path).resolve()
    catalog = _config_loader(root, env)["catalog"]
    missing = [name for name in names if name not in catalog]
    if missing:
        raise KeyError(f"the catalog of {root} has no {missing}")
    return {name: AbstractDataset.from_config(name, _absolute(catalog[name], root)) for name in names}


def load_search(
    project_path: str | Path = ".", backbone: str | None = None, env: str | None = None
) -> SimilaritySearch:
    """A :class:`SimilaritySearch` over the latest serving indices of the project at ``project_path``.

    Reads the project's configuration and opens only the catalog datasets a query
    needs (``serving_indices``, ``query_embeddings``, and ``trained_encoders``, whose
    files are read only when a trained backbone embeds a file), not a whole Kedro
    session with its hooks and plugins: opening takes well under a second.
    """
    from mess_kedro.search.engine import SimilaritySearch
    from mess_kedro.search.query_files import QueryCache

    params = project_parameters(project_path, env)
    datasets = project_datasets(
        project_path, ["serving_indices", "query_embeddings", "trained_encoders", "aspect_gate_report"], env
    )
    serving = params["serving_index"]
    if not datasets["serving_indices"].exists():
        raise FileNotFoundError(
            "no serving indices yet: run `kedro run` (or `kedro run --pipelines=serving_index`)"
        )
    return SimilaritySearch(
        datasets["serving_indices"].load(),
        params["embed"],
        backbone,
        serving["candidates"],
        query_cache=QueryCache(datasets["query_embeddings"]),
        max_query_s=serving["max_query_s"],
        max_query_decoded_mb=serving.get("max_query_decoded_mb"),
        trained_encoders=datasets["trained_encoders"].load(),
        aspect_gate=datasets["aspect_gate_report"].load()
        if datasets["aspect_gate_report"].exists()
        else None,
    )


def prepared_audio_loader(project_path: str | Path, track_id: str, env: str | None = None):
    """The loader of one track's prepared audio in the project's catalog."""
    audio = project_datasets(project_path, ["prepared_audio"], env)["prepared_audio"].load()
    if track_id not in audio:
        raise FileNotFoundError(f"no prepared audio for {track_id}: re-run `kedro run --pipelines=ingest`")
    return audio[track_id]


def load_passage_finder(
    project_path: str | Path = ".", env: str | None = None, backbone: str | None = None
) -> PassageFinder:
    """A :class:`PassageFinder` over the latest alignment of the project at ``project_path``, falling
    back on its ``alignment.fallback_index`` segment index (``backbone``'s, else a pretrained one's)."""
    from mess_kedro.search.passages import PassageFinder

    names = ["alignment_pairs", "alignment_paths", "track_manifest", "segment_indices"]
    datasets = project_datasets(project_path, names, env)
    try:
        pairs = datasets["alignment_pairs"].load()
    except Exception as exc:  # noqa: BLE001 - any load failure means the same thing here
        raise FileNotFoundError("no alignment yet: run `kedro run --pipelines=alignment` first") from exc
    wanted = project_parameters(project_path, env)["alignment"]["fallback_index"]
    return PassageFinder(
        pairs,
        datasets["alignment_paths"].load(),
        datasets["track_manifest"].load(),
        _segment_index_opener(datasets["segment_indices"], wanted, backbone),
    )


def _segment_index_opener(dataset, key: str, backbone: str | None) -> Callable[[], Any]:
    """Opens ``<backbone>/<key>`` of the segment indices when first needed (a pretrained backbone's
    when none is named)."""

    def open_index():
        from mess_kedro.search.indexing import peek_manifest

        try:
            indices = dataset.load()
        except Exception as exc:  # noqa: BLE001 - any load failure means the same thing here
            raise FileNotFoundError("no segment indices: run `kedro run --pipelines=alignment`") from exc
        names = [n for n in indices if n.endswith(f"/{key}") and backbone in (None, n.split("/")[0])]
        if not names:
            raise KeyError(f"no segment index '{key}'{f' for {backbone}' if backbone else ''}")
        return indices[min(names, key=lambda n: (bool(peek_manifest(indices, n).get("random_init")), n))]

    return open_index


def aspect_space(
    project_path: str | Path, aspect: str, backbone: str | None = None, env: str | None = None
) -> AspectSpace:
    """``aspect``'s selective subspace over ``backbone``'s segments (a pretrained backbone's when none is named)."""
    from mess_kedro.fusion.methods import restore
    from mess_kedro.search.passage_vectors import AspectSpace, segment_coordinates

    datasets = project_datasets(project_path, ["layer_embeddings", "aspect_subspaces"], env)
    embeddings, subspaces = datasets["layer_embeddings"].load(), datasets["aspect_subspaces"].load()
    names = [backbone] if backbone else _pretrained_first(embeddings)
    for name in names:
        state: Any = subspaces.get(name, {}).get(aspect)
        if state is not None and name in embeddings.backbones:
            chosen, transform = embeddings.backbones[name], restore(state)
            segments, coordinates = segment_coordinates(
                embeddings.segment_index, name, chosen.segments, transform
            )
            return AspectSpace(name, chosen.label, segments, coordinates, transform)
    served = sorted({a for b in names for a in subspaces.get(b, {})})
    raise KeyError(f"unknown or not decodable aspect '{aspect}'; available: {served}")


def _pretrained_first(embeddings) -> list[str]:
    return sorted(
        embeddings.backbones, key=lambda n: (bool(embeddings.backbones[n].info.get("random_init")), n)
    )


def load_listening_room(
    project_path: str | Path = ".", backbone: str | None = None, env: str | None = None
) -> ListeningRoom:
    """The listening room over the latest run of the project at ``project_path``."""
    from mess_kedro.app.webapp.annotations import AnnotationLog
    from mess_kedro.app.webapp.room import ListeningRoom, RoomSettings, collection_table
    from mess_kedro.app.webapp.uploads import UploadLimits

    search = load_search(project_path, backbone, env)
    params = project_parameters(project_path, env)["webapp"]
    names = [
        "track_manifest",
        "prepared_audio",
        "annotation_triplets",
        "aspect_layer_map",
        "probing_results",
        "evaluation_report",
    ]
    datasets = project_datasets(project_path, names, env)

    def optional(name: str, default):
        try:
            return datasets[name].load()
        except Exception:  # noqa: BLE001 - a part not produced yet: the room goes without it
            return default

    limits = UploadLimits(
        int(params["max_upload_mb"] * 1024 * 1024),
        float(params["max_upload_s"]),
        params.get("max_upload_decoded_mb"),
    )
    return ListeningRoom(
        search=search,
        collection=collection_table(search.metadata, optional("track_manifest", None)),
        audio=datasets["prepared_audio"].partitions(),
        annotations=AnnotationLog(datasets["annotation_triplets"]),
        limits=limits,
        settings=RoomSettings.from_params(params),
        aspect_map=optional("aspect_layer_map", {}),
        probing=optional("probing_results", {}),
        report=datasets["evaluation_report"].load,
        passage_finder=lambda: load_passage_finder(project_path, env, backbone=search.backbone),
    )
