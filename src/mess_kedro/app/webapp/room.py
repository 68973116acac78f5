"""The listening room's state: one served run, loaded once, and every question the page asks of it.

:class:`ListeningRoom` holds the similarity search (:mod:`mess_kedro.search.engine`)
over one backbone's serving indices, the collection's metadata, each track's
prepared audio (the file the backbone heard, streamed, never decoded here),
the annotation log, and the served run's probing results and evaluation
report. Everything a client names is a track id, an aspect or an index key,
looked up in what was loaded: no client string ever becomes a path.

:func:`mess_kedro.app.project.load_listening_room` builds it from the project's catalog;
:mod:`mess_kedro.app.webapp.api` puts it behind HTTP.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mess_kedro.analysis.maps import project_2d
from mess_kedro.search.collection import result_notes
from mess_kedro.search.engine import SimilaritySearch

from .annotations import AnnotationLog, Judgement, validate, validate_annotator
from .proposals import propose_triplet
from .uploads import UploadLimits

SHOWN = ["track_id", "title", "composer", "performer", "piece", "split", "duration_s"]
SORTABLE = ("title", "composer", "performer", "piece", "split", "duration_s", "track_id")
MEDIA_TYPES = {".flac": "audio/flac", ".wav": "audio/wav", ".ogg": "audio/ogg", ".mp3": "audio/mpeg"}


@dataclass(frozen=True)
class SearchRequest:
    """What a search asks for: one of an aspect, weighted aspects (``"dynamics:0.7,tempo:0.3"``) or a
    fused embedding (none: the default fused one); the aspect method; how many results."""

    aspect: str | None = None
    weights: str | None = None
    fused: str | None = None
    method: str = "selective"
    n: int | None = None


class NotAvailable(LookupError):
    """A part of the run that was not produced (no alignment, no evaluation report yet)."""


class UnknownTrack(KeyError):
    """A track id that is not in the served collection."""


@dataclass(frozen=True)
class RoomSettings:
    """``webapp`` parameters (conf/base/parameters_webapp.yml)."""

    results: int = 10
    max_results: int = 100
    map_methods: tuple[str, ...] = ("pca", "umap")
    seed: int = 0
    proposal_anchors: int = 8
    proposal_pool: int = 30
    decode_slots: int = 2  # uploads decoded and embedded at once (memory: each holds its decoded audio)

    def __post_init__(self) -> None:
        from mess_kedro.analysis.maps import METHODS

        counts = ("results", "max_results", "proposal_anchors", "proposal_pool", "decode_slots")
        bad = [
            name for name in counts if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1)
        ]
        if bad:
            raise ValueError(f"webapp: {', '.join(bad)} must be positive integers")
        if self.results > self.max_results:
            raise ValueError(f"webapp: results ({self.results}) is over max_results ({self.max_results})")
        unknown = [m for m in self.map_methods if m not in METHODS]
        if unknown or not self.map_methods:
            raise ValueError(f"webapp: map_methods {list(self.map_methods)}; each one of {list(METHODS)}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> RoomSettings:
        return cls(
            results=int(params["results"]),
            max_results=int(params["max_results"]),
            map_methods=tuple(params["map_methods"]),
            seed=int(params["seed"]),
            proposal_anchors=int(params["proposal_anchors"]),
            proposal_pool=int(params["proposal_pool"]),
            decode_slots=int(params.get("decode_slots", 2)),
        )


def collection_table(metadata: pd.DataFrame, manifest: pd.DataFrame | None) -> pd.DataFrame:
    """The served tracks in index order, with piece, split and duration from the track manifest."""
    table = metadata.reset_index(drop=True).copy()
    if manifest is not None and len(manifest):
        extra = manifest.drop_duplicates("track_id").set_index("track_id")
        for column in ("title", "composer", "performer", "split", "duration_s", "work", "group"):
            if column in extra and column not in table:
                table[column] = table["track_id"].map(extra[column])
    if "work" in table:
        table["piece"] = table["work"]
    elif "group" in table:
        table["piece"] = table["group"]
    for column in SHOWN:
        if column not in table:
            table[column] = None
    return table


def parse_weights(text: str) -> dict[str, float]:
    """``"dynamics:0.7,tempo:0.3"`` (``=`` works too) as a dict; ValueError in one line."""
    weights: dict[str, float] = {}
    for item in text.split(","):
        name, sep, value = item.replace("=", ":").partition(":")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"weights: expected aspect:weight pairs, got '{item.strip()}'")
        if name in weights:
            raise ValueError(f"weights: '{name}' is given twice")
        try:
            weights[name] = float(value)
        except ValueError:
            raise ValueError(f"weights: '{value.strip()}' for {name} is not a number") from None
    return weights


def _records(table: pd.DataFrame) -> list[dict]:
    """Rows as JSON-ready dicts (NaN and missing values as null)."""
    rows = table.astype(object).where(table.notna(), None).to_dict("records")
    return [
        {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
        for r in rows
    ]


@dataclass
class ListeningRoom:
    """One served run, loaded once: searches, audio, maps, reports and annotations by track id."""

    search: SimilaritySearch
    collection: pd.DataFrame  # SHOWN columns (and more), in index order
    audio: Mapping[str, Any]  # track id -> its FileDataset (open_binary, stored_size)
    annotations: AnnotationLog
    limits: UploadLimits
    settings: RoomSettings = field(default_factory=RoomSettings)
    aspect_map: dict = field(default_factory=dict)  # aspect_layer_map.json of the served run
    probing: dict = field(default_factory=dict)  # probing_results.json of the served run
    report: Callable[[], str] | None = None
    passage_finder: Callable[[], Any] | None = None

    def __post_init__(self) -> None:
        self._rows = {t: i for i, t in enumerate(self.collection["track_id"])}
        # each track's metadata as the API shows it, made once: a search answer is then a few dict
        # merges (pandas per answer cost more than the search itself)
        self._shown = {row["track_id"]: row for row in _records(self.collection[SHOWN])}
        self.ready = False  # True once warm_up has run: searches answer at full speed
        self._query_lock = threading.Lock()  # one file embedding at a time (the backbone loads lazily)
        self._finder_lock = threading.Lock()
        self._map_lock = threading.Lock()  # a first UMAP takes seconds: it holds up only other maps
        self._maps: dict[tuple[str, str], np.ndarray] = {}
        self._finder: Any = None

    # -- the collection -------------------------------------------------------------
    def check_track(self, track_id: str) -> int:
        if track_id not in self._rows:
            raise UnknownTrack(f"unknown track id '{track_id[:80]}'")
        return self._rows[track_id]

    def info(self) -> dict:
        backbone = self.aspect_map.get("backbones", {}).get(self.search.backbone, {})
        offered = self.search.aspects()
        aspects = []
        for name in offered:
            found = backbone.get("aspects", {}).get(name, {})
            confidence = found.get("confidence")
            aspects.append(
                {
                    "name": name,
                    "confidence": confidence,
                    "low_confidence": confidence not in ("high", "medium"),
                    "r2": found.get("r2"),
                    "layer": found.get("layer"),
                    "baseline": f"layer-{name}" in self.search.indices,
                }
            )
        return {
            "backbone": self.search.backbone,
            "label": self.search.label,
            "random_init": self.search.random_init,
            "tracks": len(self.collection),
            "aspects": aspects,
            # Why the others are not offered: one line each (serving_index's aspect_gate_report).
            "not_served": [
                {"name": name, "reason": decision["reason"]}
                for name, decision in self.search.aspect_decisions.items()
                if not decision.get("served")
            ],
            "fused": self.search.fused(),
            "default_fused": self.search.default_fused(),
            "default_fused_note": self.search.default_fused_note(),
            "indices": sorted(self.search.indices),
            "map_methods": list(self.settings.map_methods),
            "passages": self.passage_finder is not None,
            "ready": self.ready,
            "results": self.settings.results,
            "max_results": self.settings.max_results,
            "max_upload_bytes": self.limits.max_bytes,
            "max_upload_s": self.limits.max_seconds,
        }

    def tracks(
        self,
        text: str | None = None,
        *,
        split: str | None = None,
        sort: str = "title",
        descending: bool = False,
        offset: int = 0,
        limit: int = 100,
    ) -> dict:
        """A page of the collection: filtered by ``text`` (in title, composer, performer or piece)
        and ``split``, sorted by ``sort``."""
        if sort not in SORTABLE:
            raise ValueError(f"cannot sort by '{sort}'; sortable: {list(SORTABLE)}")
        table = self.collection
        if text:
            needle = text.casefold()
            haystack = table[["title", "composer", "performer", "piece"]].astype(str).agg(" ".join, axis=1)
            table = table[haystack.str.casefold().str.contains(needle, regex=False)]
        if split:
            table = table[table["split"].astype(str) == split]
        table = table.sort_values(
            [sort, "track_id"], ascending=not descending, kind="stable", na_position="last"
        )
        return {
            "total": len(table),
            "offset": offset,
            "tracks": _records(table[SHOWN].iloc[offset : offset + limit]),
        }

    def track(self, track_id: str) -> dict:
        self.check_track(track_id)
        return dict(self._shown[track_id])

    def audio_file(self, track_id: str) -> tuple[Any, int, str]:
        """The track's stored audio: (dataset, size in bytes, media type)."""
        self.check_track(track_id)
        dataset = self.audio.get(track_id)
        if dataset is None:
            raise NotAvailable(f"no prepared audio for {track_id}: re-run `kedro run --pipelines=ingest`")
        return dataset, dataset.stored_size(), MEDIA_TYPES.get(dataset.suffix, "application/octet-stream")

    # -- search ---------------------------------------------------------------------
    def _query_options(self, request: SearchRequest) -> dict:
        n = self.settings.results if request.n is None else request.n
        if not 1 <= n <= self.settings.max_results:
            raise ValueError(f"n must be between 1 and {self.settings.max_results}, got {n}")
        return {
            "aspect": request.aspect or None,
            "weights": parse_weights(request.weights) if request.weights else None,
            "fused": request.fused or None,
            "method": request.method,
            "n": n,
        }

    def similar(self, track_id: str, request: SearchRequest, exclude_same_piece: bool = False) -> dict:
        """Recordings like the collection's ``track_id`` (a track id only: never a path)."""
        self.check_track(track_id)
        options = self._query_options(request)
        table = self.search.similar(track_id, exclude_same_piece=exclude_same_piece, **options)
        return self._answer(table, options)

    def similar_to_file(self, path: Path, request: SearchRequest) -> dict:
        """Recordings like an uploaded file (already received and checked: :mod:`.uploads`)."""
        options = self._query_options(request)
        with self._query_lock:
            table = self.search.similar(str(path), **options)
        return self._answer(table, options)

    def check_request(self, request: SearchRequest) -> None:
        """Refuse a search that names no served index or a bad value, before any work on a file."""
        options = self._query_options(request)
        self.search.sources(options["aspect"], options["weights"], options["fused"], options["method"])

    def _answer(self, table: pd.DataFrame, options: dict) -> dict:
        sources = self.search.sources(
            options["aspect"], options["weights"], options["fused"], options["method"]
        )
        # An aspect search also says each hit's predicted difference in the factor's units.
        readable = [c for c in ("difference", "closer_than") if c in table]
        results = [
            self._shown[row["track_id"]]
            | {"score": float(row["score"])}
            | {c: (row[c] if c == "difference" else round(float(row[c]), 1)) for c in readable}
            for row in table.to_dict("records")
        ]
        notes = [n.removeprefix("note: ") for n in result_notes(table)]
        return {
            "searched": self.search.describe(sources),
            "label": self.search.label,
            "results": results,
            "note": "; ".join(notes) or None,
        }

    def warm_up(self, embed: bool = True) -> None:
        """Open every index now (the first query then answers as fast as the rest) and, with
        ``embed``, load the backbone by embedding ten seconds of noise (for the first upload)."""
        for key in self.search.indices:
            self.search.indices[key]
        if embed:
            from mess_kedro.audio.signal import AudioSignal

            noise = np.random.default_rng(0).standard_normal(160000).astype(np.float32) * 0.1
            with self._query_lock:
                self.search.embed_signal(AudioSignal(noise, 16000), "warm-up")
        self.ready = True

    # -- passages, map, probing, report ---------------------------------------------
    def passages(self, track_id: str, at: float, length: float) -> dict:
        """The passage ``[at, at + length]`` of ``track_id`` in the piece's other recordings."""
        self.check_track(track_id)
        if self.passage_finder is None:
            raise NotAvailable("passage search is off for this room")
        with self._finder_lock:
            if self._finder is None:
                try:
                    self._finder = self.passage_finder()
                except FileNotFoundError as exc:
                    raise NotAvailable(str(exc)) from None
        table = self._finder.same_passage(track_id, float(at), float(length))
        keep = [c for c in ("track_id", "start_s", "end_s", "route", "score") if c in table]
        return {"track_id": track_id, "at": at, "length": length, "passages": _records(table[keep])}

    def map(self, index: str, method: str = "pca") -> dict:
        """Every track of ``index`` placed in 2-D by ``method`` (computed once, then kept)."""
        if index not in self.search.indices:
            raise KeyError(f"unknown index '{index[:80]}'; indexed: {sorted(self.search.indices)}")
        if method not in self.settings.map_methods:
            raise ValueError(f"unknown map method '{method}'; offered: {list(self.settings.map_methods)}")
        key = (index, method)
        with self._map_lock:
            if key not in self._maps:
                vectors = np.asarray(self.search.indices[index].vectors, dtype=np.float64)
                self._maps[key] = project_2d(vectors, method, self.settings.seed)
            xy = self._maps[key]
        points = self.collection[["track_id", "title", "performer", "piece", "split"]].assign(
            x=xy[:, 0], y=xy[:, 1]
        )
        return {"index": index, "method": method, "points": _records(points)}

    def probing_heatmap(self) -> dict:
        """The served backbone's probing R² per layer and target (track level)."""
        backbone = self.probing.get("backbones", {}).get(self.search.backbone)
        if not backbone:
            raise NotAvailable(
                "no probing results for the served backbone: run `kedro run --pipelines=probing`"
            )
        level = backbone["levels"].get("track") or next(iter(backbone["levels"].values()))
        return {
            "label": backbone.get("label", self.search.backbone),
            "layers": backbone["layers"],
            "targets": self.probing["targets"][: len(level["r2_mean"][0])],
            "r2": [
                [v if v is not None and math.isfinite(v) else None for v in row] for row in level["r2_mean"]
            ],
        }

    def evaluation_report(self) -> str:
        if self.report is None:
            raise NotAvailable("no evaluation report: run `kedro run --pipelines=evaluation`")
        try:
            return self.report()
        except Exception as exc:  # noqa: BLE001 - a missing or unreadable report means the same here
            raise NotAvailable(
                f"no evaluation report yet ({type(exc).__name__}): run the evaluation pipeline"
            ) from None

    # -- annotation -----------------------------------------------------------------
    def propose(self, aspect: str, annotator: str) -> dict:
        """A triplet worth asking ``annotator`` about in ``aspect`` (:mod:`.proposals`)."""
        validate_annotator(annotator)
        proposal = propose_triplet(
            self.search,
            self.collection,
            self.annotations.judged_by(annotator),
            aspect,
            annotator,
            seed=self.settings.seed,
            anchors=self.settings.proposal_anchors,
            pool_size=self.settings.proposal_pool,
        )
        if proposal is None:
            raise NotAvailable(f"no triplet left to ask {annotator} in {aspect}")
        anchor, a, b, disagree, reason = proposal
        return {
            "aspect": aspect,
            "anchor": self.track(anchor),
            "a": self.track(a),
            "b": self.track(b),
            "disagree": disagree,
            "reason": reason,
        }

    def annotate(self, anchor: str, a: str, b: str, *, closer: str, aspect: str, annotator: str) -> dict:
        """Store "``closer`` (``a`` or ``b``) is closer to ``anchor`` in ``aspect``"."""
        if closer not in ("a", "b"):
            raise ValueError(f"closer must be 'a' or 'b', got '{closer[:20]}'")
        positive, negative = (a, b) if closer == "a" else (b, a)
        judgement = Judgement(anchor, positive, negative, annotator, aspect)
        validate(judgement, self._rows, self.search.aspects())
        return self.annotations.append(judgement)
