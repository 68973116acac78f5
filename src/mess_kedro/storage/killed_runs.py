"""Outputs of a killed run never mix with a finished run's as "latest".

Every output of one ``kedro run`` is saved under the run's version (its session id) in
each versioned dataset's folder, one dataset after another. A run killed between two
saves left, say, a new ``fusion_models`` beside the previous run's
``fusion_models_repeats``: each dataset's "latest" then came from another run.

So a run leaves a marker ``data/.runs/<version>.<pid>.started`` when it starts and removes
it when it ends (finished or failed with an error: Kedro keeps a failed run's outputs, and so
does this). A marker whose process is gone is a killed run: at the next run's start every
folder of that version under ``data/`` is moved to ``data/.runs/killed/<version>/`` (kept,
not deleted, out of Kedro's sight), so each dataset's latest is again a finished run's.
"""

from __future__ import annotations

import os
from pathlib import Path

from mess_kedro.storage.atomic import process_alive

RUNS = ".runs"
STARTED = ".started"


def _marker(data: Path, version: str) -> Path:
    return data / RUNS / f"{version}.{os.getpid()}{STARTED}"


def mark_started(data: str | os.PathLike, version: str) -> Path:
    """Say that this process's run of ``version`` is under way."""
    marker = _marker(Path(data), version)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    return marker


def mark_ended(data: str | os.PathLike, version: str) -> None:
    """Say that this process's run of ``version`` ended (finished, or failed with an error)."""
    _marker(Path(data), version).unlink(missing_ok=True)


def _killed_versions(data: Path) -> list[tuple[str, Path]]:
    killed = []
    for marker in sorted((data / RUNS).glob(f"*{STARTED}")):
        version, _, pid = marker.name[: -len(STARTED)].rpartition(".")
        if pid.isdigit() and version and not process_alive(int(pid)):
            killed.append((version, marker))
    return killed


def killed_folder(data: str | os.PathLike) -> Path:
    """Where a killed run's outputs are kept."""
    return Path(data) / RUNS / "killed"


def set_aside_killed_runs(data: str | os.PathLike) -> list[Path]:
    """Move every output folder of a killed run under ``data/.runs/killed/<version>/``; return
    where they were."""
    data = Path(data)
    moved = []
    for version, marker in _killed_versions(data):
        aside = killed_folder(data) / version
        for folder in sorted(p for p in data.rglob(version) if p.is_dir() and RUNS not in p.parts):
            target = aside / folder.relative_to(data)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(folder, target)
            moved.append(folder)
        marker.unlink(missing_ok=True)
    return moved
