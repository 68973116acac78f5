"""mess-kedro: which layers of a music model encode which expressive aspects, and search by them.

The packages, each importing only from those before it (the order is written once, in
``docs/architecture.md``, and tested): ``storage``, ``audio``, ``corpus``, ``models``,
``embedding``, ``analysis``, ``training``, ``fusion``, ``search``, ``datasets``, ``pipelines``,
``app``. Kedro's fixed modules (``settings``, ``hooks``, ``pipeline_registry``, ``__main__``)
sit on top with ``app``.

Modules that lived at the top of the package before release 0.2 still import from their old
paths for one release, with a ``FutureWarning`` that names the new one (:data:`MOVED`).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from pathlib import Path
from types import ModuleType

from mess_kedro.app.library_warnings import quiet_library_deprecations

__version__ = "0.2"

# Old path -> the modules its public names now come from (first match wins).
MOVED: dict[str, tuple[str, ...]] = {
    "atomic": ("storage.atomic",),
    "digests": ("storage.digests",),
    "checkpoints": ("storage.checkpoints",),
    "consistency": ("storage.consistency",),
    "finite": ("storage.finite",),
    "tracking": ("storage.tracking",),
    "mlflow_context": ("storage.mlflow_context",),
    "mlflow_location": ("storage.mlflow_location",),
    "killed_runs": ("storage.killed_runs",),
    "audio": ("audio.signal",),
    "features": ("audio.features",),
    "augmentation": ("audio.augmentation",),
    "transcription": ("audio.transcription",),
    "alignment": ("audio.alignment",),
    "progress": ("audio.progress",),
    "sources": ("corpus.sources",),
    "splits": ("corpus.splits",),
    "ground_truth": ("corpus.ground_truth",),
    "demo": ("corpus.demo",),
    "backbones": ("models.backbones",),
    "encoders": ("models.encoders",),
    "mel": ("models.mel",),
    "embedding": ("embedding.tracks", "models.runtime"),
    "embedding_stream": ("embedding.stream",),
    "distributed": ("embedding.cluster",),
    "embedding_set": ("embedding.sets",),
    "targets": ("analysis.targets",),
    "aspect_proxies": ("analysis.aspect_proxies",),
    "descriptors": ("analysis.descriptors",),
    "described_spans": ("analysis.described_spans",),
    "probes": ("analysis.probes",),
    "selectivity": ("analysis.selectivity",),
    "metrics": ("analysis.metrics",),
    "relations": ("analysis.relations",),
    "maps": ("analysis.maps",),
    "leaks": ("analysis.leaks",),
    "aspect_units": ("analysis.aspect_units",),
    "training": ("training.loop",),
    "encoder_training": ("training.encoder",),
    "passage_training": ("training.passages",),
    "fusion": ("fusion.methods", "fusion.learned"),
    "aspect_search": ("fusion.aspect_subspace",),
    "indexing": ("search.indexing",),
    "serving": ("search.engine", "search.query_files", "search.collection", "app.project"),
    "aspect_gate": ("search.gate",),
    "passages": ("search.passages", "search.passage_vectors", "audio.span_features", "app.project"),
    "commands": ("app.cli", "app.passage_query"),
    "project": ("app.project",),
    "recommend": ("app.recommend",),
    "webapp": ("app.webapp",),
    "webapp.room": ("app.webapp.room", "app.project"),
    "final_line": ("app.final_line",),
    "library_warnings": ("app.library_warnings",),
}

# Old packages whose submodules moved with them.
_MOVED_PACKAGES = {"demo": "corpus.demo", "backbones": "models.backbones", "webapp": "app.webapp"}


def _moved_targets(old: str) -> tuple[str, ...] | None:
    """The new modules behind an old dotted name under ``mess_kedro``, or None when it did not move."""
    if old in MOVED:
        return tuple(f"{__name__}.{new}" for new in MOVED[old])
    package, _, rest = old.partition(".")
    if rest and package in _MOVED_PACKAGES:
        return (f"{__name__}.{_MOVED_PACKAGES[package]}.{rest}",)
    return None


def _warn_moved(old: str, new: str) -> None:
    warnings.warn(
        f"mess_kedro.{old} moved to {new}; the old path stops working in the next release",
        FutureWarning,
        stacklevel=3,
    )


def _attribute_of(modules: tuple[str, ...], name: str) -> object:
    for module_name in modules:
        module = importlib.import_module(module_name)
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(name)


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old path as a stand-in whose names resolve, with a warning, in the new modules."""

    def find_spec(self, fullname, path=None, target=None):
        old = fullname.removeprefix(f"{__name__}.")
        if old == fullname or _moved_targets(old) is None:
            return None
        here = Path(__file__).parent.joinpath(*old.split("."))
        if here.is_dir() or here.with_suffix(".py").is_file():
            return None  # a package of today that has an old module's name (audio, fusion, ...)
        return importlib.util.spec_from_loader(fullname, self, is_package=old in _MOVED_PACKAGES)

    def create_module(self, spec):
        return None

    def exec_module(self, module: ModuleType) -> None:
        old = module.__name__.removeprefix(f"{__name__}.")
        targets = _moved_targets(old)
        _warn_moved(old, " and ".join(targets))
        if old in _MOVED_PACKAGES:
            module.__path__ = []

        def __getattr__(name: str) -> object:
            if name.startswith("__"):  # probes by other libraries (torch scans sys.modules): not old names
                raise AttributeError(name)
            return _attribute_of(targets, name)

        module.__getattr__ = __getattr__


def moved_attribute(package: str, name: str) -> object:
    """A name that a package's old module of the same name held, with a warning (its ``__getattr__``)."""
    old = package.removeprefix(f"{__name__}.")
    targets = _moved_targets(old)
    # Submodules and dunders are the import system's; only an old module's names are looked up.
    if name.startswith("__") or targets is None or importlib.util.find_spec(f"{package}.{name}"):
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    try:
        value = _attribute_of(targets, name)
    except AttributeError:
        raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
    _warn_moved(f"{old}.{name}", f"{getattr(value, '__module__', targets[0])}.{name}")
    return value


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    # First, so an old package's submodule is not found again under its new folder.
    sys.meta_path.insert(0, _MovedModules())

quiet_library_deprecations()
