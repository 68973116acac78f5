"""Embedding on a Dask cluster: one task per track, each worker loading each backbone once.

Conventions
-----------
- ``embed.cluster`` (:func:`parse_cluster`): ``null`` embeds in the Kedro process, as
  always; ``"local:<n>"`` starts a ``distributed.LocalCluster`` of ``n`` single-threaded
  worker processes on this machine; ``"tcp://host:8786"`` (or ``tls://``) connects to a
  scheduler whose workers run elsewhere (``dask scheduler`` / ``dask worker <address>``).
- The device and CPU thread count are the **workers'** (:func:`worker_runtime`, asked of
  one worker): they are part of the cache key, so it names how the numbers were computed.
  Use workers of one kind per run (all GPU or all CPU).
- A task (:class:`EmbedTask`) carries a track's audio loader and its cache partition's own
  dataset (``store``: an ``NpzDataset`` on a path or fsspec URL every worker can reach).
  The worker embeds the track, saves it with ``store`` (atomic: temporary file, then
  rename) and returns only its duration: the driver never receives arrays.
- Backbones are loaded once per worker process (:func:`_worker_backbone`, a per-process
  cache keyed by name and options).
- A failing task is retried (``retries``); a worker that dies mid-track loses only its
  in-flight tracks, which the scheduler runs again elsewhere. A track that still fails is
  returned as a reject, and the run goes on. Tracks already saved stay in the cache: a
  rerun computes only what is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

LOCAL = re.compile(r"local:(\d+)")
ADDRESS = re.compile(r"(tcp|tls|inproc)://[\w.\-\[\]:]+")
_BACKBONES: dict[str, Any] = {}  # per worker process: (name, options) -> loaded backbone


@dataclass(frozen=True)
class ClusterSpec:
    """Where to run: ``workers`` local processes, or the scheduler at ``address``."""

    workers: int | None = None
    address: str | None = None


def parse_cluster(spec: str | None) -> ClusterSpec | None:
    """``embed.cluster`` as a :class:`ClusterSpec` (``None``: no cluster); ValueError in one line."""
    if spec is None or spec == "":
        return None
    text = str(spec).strip()
    local = LOCAL.fullmatch(text)
    if local:
        workers = int(local.group(1))
        if not 1 <= workers <= 256:
            raise ValueError(f"embed.cluster {text!r}: between 1 and 256 local workers")
        return ClusterSpec(workers=workers)
    if ADDRESS.fullmatch(text):
        return ClusterSpec(address=text)
    raise ValueError(
        f"embed.cluster {text!r}: expected null, 'local:<workers>' or a scheduler address like 'tcp://host:8786'"
    )


@contextlib.contextmanager
def cluster_client(spec: ClusterSpec | None) -> Iterator[Any]:
    """A ``distributed.Client`` for ``spec`` (``None`` yields ``None``), closed on exit; a local
    cluster is shut down with it."""
    if spec is None:
        yield None
        return
    from distributed import Client, LocalCluster

    if spec.address:
        with Client(spec.address) as client:
            yield client
        return
    # Starting local workers sets OMP_NUM_THREADS=1 (and its kin) in this process's environment
    # and leaves it there: every later subprocess would then run torch on one thread. Restore it.
    environment = dict(os.environ)
    try:
        with (
            LocalCluster(
                n_workers=spec.workers, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
    finally:
        os.environ.clear()
        os.environ.update(environment)


def worker_runtime(device_preference: str, num_threads: int | None) -> tuple[str, int | None]:
    """On a worker: the device ``embed.device`` resolves to there, and its CPU thread count."""
    from mess_kedro.models.runtime import cpu_threads, select_device

    device = select_device(device_preference)
    return str(device), cpu_threads(device, num_threads)


@dataclass(frozen=True)
class EmbedTask:
    """One track to embed on a worker and save to the shared cache."""

    key: str  # the cache partition's key
    name: str  # the backbone's run name
    options: dict  # its options (embed.backbones[name])
    state: Callable[[], Any] | None  # a trained encoder's checkpoint loader, or None
    load_audio: Callable[[], Any]  # the prepared audio's loader
    config: Any  # EmbeddingConfig
    device: str
    threads: int | None
    store: Any  # the partition's dataset: save(arrays) writes it atomically
    minimum_s: float  # the shortest track the backbone takes (one segment)
    silence_dbfs: float  # quieter is silent: not embedded


def _worker_backbone(task: EmbedTask):
    """The task's backbone, loaded once per worker process."""
    from mess_kedro.models.backbones import load_backbone
    from mess_kedro.models.runtime import select_device

    key = f"{task.name}|{json.dumps(task.options, sort_keys=True, default=str)}|{task.device}"
    if key not in _BACKBONES:
        state = task.state() if task.state is not None else None
        _BACKBONES[key] = load_backbone(task.name, task.options, state).to(select_device(task.device))
    return _BACKBONES[key]


def embed_and_store(task: EmbedTask) -> tuple[float, str | None]:
    """On a worker: embed the task's track and save it to the cache; its duration in seconds, or
    why it cannot be embedded (checked here, as it is loaded: the driver decodes nothing).
    A load that fails raises, so the task is retried: shared storage fails in passing too."""
    from mess_kedro.audio.signal import prepare_audio
    from mess_kedro.embedding.tracks import embed_track, embeddable_problem
    from mess_kedro.models.runtime import select_device, torch_threads

    raw = task.load_audio()
    problem = embeddable_problem(raw, task.minimum_s, task.silence_dbfs)
    if problem:
        return 0.0, problem
    backbone = _worker_backbone(task)
    signal = prepare_audio(raw, backbone.spec.sample_rate)[0]
    with torch_threads(task.threads):
        result = embed_track(backbone, signal.samples, task.config, select_device(task.device))
    task.store.save(result.to_arrays())
    return signal.duration_s, None


def embed_on_cluster(
    client, tasks: list[EmbedTask], *, retries: int = 2, on_done: Callable[[str, float], None] | None = None
) -> dict[str, str]:
    """Run ``tasks`` on ``client``'s workers; the keys not embedded (the track's problem, or the
    task's failure after ``retries``), with why. ``on_done(key, seconds)`` after each task."""
    from distributed import as_completed

    futures = client.map(
        embed_and_store, tasks, retries=retries, pure=False, key=[f"embed-{t.key}" for t in tasks]
    )
    keys = {future.key: task.key for future, task in zip(futures, tasks, strict=True)}
    failed: dict[str, str] = {}
    for future in as_completed(futures):
        key = keys[future.key]
        try:
            seconds, problem = future.result()
        except Exception as exc:  # noqa: BLE001 - one track's failure is a reject, the run goes on
            reason = str(exc).splitlines()[0][:300] if str(exc) else ""
            seconds, problem = 0.0, f"failed on the cluster: {type(exc).__name__}: {reason}"
        if problem:
            failed[key] = problem
        if on_done is not None:
            on_done(key, seconds)
    return failed
