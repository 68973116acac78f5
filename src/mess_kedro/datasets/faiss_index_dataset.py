"""``FaissIndexSetDataset``: named FAISS index bundles, versioned together as one folder.

On disk (one version)::

    serving_indices/<version>/serving_indices/<name>/
        index.faiss  metadata.parquet  vectors.npy  transform.pkl  manifest.json

Loading validates every bundle (counts, dimension, checksum) and refuses a
mismatch with a clear error.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from mess_kedro.indexing import IndexBundle

from ._local_file import LocalFileDataset


class FaissIndexSetDataset(LocalFileDataset):
    """``{name: IndexBundle}``; names may contain ``/`` (e.g. ``musicnn-mtt/aspect-dynamics``)."""

    def load(self) -> dict[str, IndexBundle]:
        import faiss

        root = self.load_path
        bundles = {}
        for manifest_path in sorted(root.rglob("manifest.json")):
            folder = manifest_path.parent
            with open(folder / "transform.pkl", "rb") as f:
                transform = pickle.load(f)
            bundle = IndexBundle(
                index=faiss.read_index(str(folder / "index.faiss")),
                metadata=pd.read_parquet(folder / "metadata.parquet"),
                vectors=np.load(folder / "vectors.npy"),
                transform=transform,
                manifest=json.loads(manifest_path.read_text()),
            )
            bundle.validate()
            bundles[folder.relative_to(root).as_posix()] = bundle
        return bundles

    def save(self, data: dict[str, IndexBundle]) -> None:
        import faiss

        target = self.save_path
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
        try:
            for name, bundle in data.items():
                folder = tmp / name
                folder.mkdir(parents=True)
                faiss.write_index(bundle.index, str(folder / "index.faiss"))
                bundle.metadata.to_parquet(folder / "metadata.parquet", index=False)
                np.save(folder / "vectors.npy", np.ascontiguousarray(bundle.vectors, dtype=np.float32))
                with open(folder / "transform.pkl", "wb") as f:
                    pickle.dump(bundle.transform, f)
                (folder / "manifest.json").write_text(json.dumps(bundle.manifest, indent=2, default=str))
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
