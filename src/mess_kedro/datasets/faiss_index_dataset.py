"""``FaissIndexSetDataset``: named FAISS index bundles, versioned together as one folder.

On disk (one version)::

    serving_indices/<version>/serving_indices/<name>/
        index.faiss  metadata.parquet  vectors.npy  transform.safetensors  manifest.json

The manifest is written last and lists a SHA-256 of every other file, so a
bundle is whole and untouched or it is refused. The transform (a fusion method's
state) is a safetensors checkpoint (:mod:`mess_kedro.storage.checkpoints`): nothing in a
bundle is unpickled, so indices copied from someone else are safe to query.

Loading is lazy: :class:`IndexSet` lists the bundles and opens one only when it
is asked for (vectors memory-mapped), checking it then. A corrupt or incomplete
bundle is refused with a one-line error naming it, and only queries that need
it fail: another backbone's indices still answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from mess_kedro.search.indexing import IndexBundle, IndexMismatchError
from mess_kedro.storage.atomic import atomic_folder
from mess_kedro.storage.checkpoints import CheckpointError, load_state, save_state
from mess_kedro.storage.digests import file_digest

from ._file_dataset import FileDataset

FILES = ("index.faiss", "metadata.parquet", "vectors.npy", "transform.safetensors")
LEGACY = ("transform.pkl",)  # older bundles: refused, never unpickled
NPY_HEADER_ROOM = 64 * 1024  # a .npy header is 128 bytes here; numpy allows up to 4 GB, none of ours


def _is_bundle(folder: Path) -> bool:
    return any((folder / name).exists() for name in ("manifest.json", *FILES, *LEGACY))


def read_manifest(folder: Path) -> dict:
    """A bundle's manifest, or :class:`IndexMismatchError` saying why it cannot be trusted."""
    path = folder / "manifest.json"
    if not path.is_file():
        if (folder / LEGACY[0]).exists():
            raise IndexMismatchError(
                f"index {folder.name}: an old bundle with a pickled transform; it is never loaded "
                "(pickle can run code): re-run `kedro run --pipelines=serving_index`"
            )
        raise IndexMismatchError(f"index {folder}: manifest.json is missing; re-run serving_index")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise IndexMismatchError(f"index {folder}: unreadable manifest.json ({exc})") from exc


def _expected_size(manifest: Mapping, file: str) -> int | None:
    """The most bytes ``file`` may hold: its recorded size, else (older bundles) the vectors' shape
    plus room for the ``.npy`` header; ``None`` where nothing says."""
    recorded = (manifest.get("sizes") or {}).get(file)
    if recorded is not None:
        return int(recorded)
    if file == "vectors.npy" and "count" in manifest and "dim" in manifest:
        return int(manifest["count"]) * int(manifest["dim"]) * 4 + NPY_HEADER_ROOM
    return None


def read_bundle(folder: Path, name: str) -> IndexBundle:
    """Open one bundle: every file checked against the manifest's digests, then the bundle validated."""
    import faiss

    manifest = read_manifest(folder)
    expected = manifest.get("files") or {}
    for file in FILES:
        path = folder / file
        if not path.is_file():
            raise IndexMismatchError(f"index {name}: {file} is missing; re-run serving_index")
        size, allowed = path.stat().st_size, _expected_size(manifest, file)
        if allowed is not None and size > allowed:  # before hashing: a sparse 8 GB file took 45 s to refuse
            raise IndexMismatchError(
                f"index {name}: {file} does not match its manifest ({size} bytes where it allows {allowed}; "
                "changed or damaged)"
            )
        if expected.get(file) != file_digest(path):
            raise IndexMismatchError(f"index {name}: {file} does not match its manifest (changed or damaged)")
    try:
        bundle = IndexBundle(
            index=faiss.read_index(str(folder / "index.faiss")),
            metadata=pd.read_parquet(folder / "metadata.parquet"),
            vectors=np.load(folder / "vectors.npy", mmap_mode="r", allow_pickle=False),
            transform=load_state(folder / "transform.safetensors"),
            manifest=manifest,
        )
    except (CheckpointError, RuntimeError, OSError, ValueError) as exc:
        raise IndexMismatchError(f"index {name}: unreadable ({exc})") from exc
    bundle.validate()
    return bundle


class IndexSet(Mapping):
    """``{name: IndexBundle}`` over a folder of bundles, each opened (and checked) on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        names = [
            p.relative_to(root).as_posix() for p in sorted(root.rglob("*")) if p.is_dir() and _is_bundle(p)
        ]
        self._names = [n for n in names if not any(n.startswith(f"{other}/") for other in names)]
        self._open: dict[str, IndexBundle] = {}

    def __getitem__(self, name: str) -> IndexBundle:
        if name not in self._open:
            if name not in self._names:
                raise KeyError(name)
            self._open[name] = read_bundle(self.root / name, name)
        return self._open[name]

    def __contains__(self, name: object) -> bool:  # a name, without opening the bundle
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def manifest(self, name: str) -> dict:
        """A bundle's manifest without opening the bundle (for choosing a backbone)."""
        return self._open[name].manifest if name in self._open else read_manifest(self.root / name)


class FaissIndexSetDataset(FileDataset):
    """``{name: IndexBundle}``; names may contain ``/`` (e.g. ``musicnn-mtt/aspect-dynamics``).

    Bundles are opened lazily: a remote set is read from a local mirror. Each
    bundle's manifest (written last) lists its files' digests, so a partial
    upload is refused, not served.
    """

    mirror_remote = True
    last_file = "manifest.json"  # per bundle, uploaded after its other files

    def load(self) -> IndexSet:
        with self._readable() as folder:
            return IndexSet(folder)

    def save(self, data: Mapping[str, IndexBundle]) -> None:
        import faiss

        with self._writable() as path, atomic_folder(path) as tmp:
            for name, bundle in data.items():
                folder = tmp / name
                folder.mkdir(parents=True)
                faiss.write_index(bundle.index, str(folder / "index.faiss"))
                bundle.metadata.to_parquet(folder / "metadata.parquet", index=False)
                np.save(folder / "vectors.npy", np.ascontiguousarray(bundle.vectors, dtype=np.float32))
                save_state(folder / "transform.safetensors", bundle.transform)
                manifest = dict(bundle.manifest) | {
                    "files": {f: file_digest(folder / f) for f in FILES},
                    "sizes": {f: (folder / f).stat().st_size for f in FILES},
                }
                (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
