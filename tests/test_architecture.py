"""The package's shape: packages by concern, imports pointing one way, no cycle, a map that is true.

The layer order is written once, in docs/architecture.md (the ``layers:`` line); these tests read
it from there. Every import counts, a function's deferred ones included: a lazy import is still a
dependency.
"""

from __future__ import annotations

import ast
import importlib
import re
import sys
import warnings
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "src" / "mess_kedro"
ARCHITECTURE = PROJECT_ROOT / "docs" / "architecture.md"
# Kedro's fixed names, which stay at the top of the package and sit on top with ``app``.
KEDRO_FIXED = {"__init__", "__main__", "settings", "hooks", "pipeline_registry"}


def layer_order() -> list[str]:
    line = re.search(r"^layers: (.+)$", ARCHITECTURE.read_text(), re.M)
    assert line, "docs/architecture.md has no 'layers:' line"
    return [name.strip() for name in line.group(1).split("<")]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """The mess_kedro modules ``path`` imports (``from x import y`` counts y when y is a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mess_kedro")}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            if target.startswith("mess_kedro"):
                found.add(target)
                found |= {f"{target}.{a.name}" for a in node.names if module_path(f"{target}.{a.name}")}
    return found - {name}


def module_path(name: str) -> Path | None:
    base = PACKAGE.parent.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def import_graph() -> dict[str, set[str]]:
    graph = {module_name(p): imported_modules(p) for p in PACKAGE.rglob("*.py")}
    return {m: {t for t in targets if t in graph} for m, targets in graph.items()}


def layer_of(module: str, order: list[str]) -> int:
    if module == "mess_kedro":
        # The package's own __init__ runs before any of its modules, whoever imports them: what a
        # module takes from it (the table of moved paths) is no dependency on a layer above.
        return -1
    top = module.split(".")[1]
    if top in KEDRO_FIXED:
        return order.index("app")
    return order.index(top)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_every_top_level_entry_is_a_layer_or_one_of_kedros_fixed_modules():
    order = layer_order()
    entries = {p.stem if p.suffix == ".py" else p.name for p in PACKAGE.iterdir() if p.name != "__pycache__"}
    assert entries - KEDRO_FIXED == set(order)
    assert len(order) <= 12


def test_no_package_imports_from_one_above_it():
    order = layer_order()
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        for target in targets
        if layer_of(target, order)
        > layer_of(module if module != "mess_kedro" else "mess_kedro.__init__", order)
    )
    assert upward == []


def test_there_is_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_the_checks_catch_what_they_are_for():
    """The cycle finder and the layer rule on graphs with a known answer."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    order = layer_order()
    assert layer_of("mess_kedro.storage.atomic", order) < layer_of("mess_kedro.search.engine", order)
    assert layer_of("mess_kedro.settings", order) == layer_of("mess_kedro.app.cli", order)


def test_pipelines_never_import_each_other():
    crossing = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        if module.startswith("mess_kedro.pipelines.")
        for target in targets
        if target.startswith("mess_kedro.pipelines.") and target.split(".")[2] != module.split(".")[2]
    )
    assert crossing == []


def test_only_the_app_layer_opens_the_project():
    opening = (
        "KedroSession",
        "bootstrap_project",
        "OmegaConfigLoader",
        "project_datasets(",
        "project_parameters(",
    )
    outside = sorted(
        module_name(p)
        for p in PACKAGE.rglob("*.py")
        if not module_name(p).startswith(("mess_kedro.app", "mess_kedro.pipelines"))
        and module_name(p).split(".")[-1] not in KEDRO_FIXED
        and any(word in p.read_text() for word in opening)
    )
    assert outside == []


@pytest.mark.parametrize(
    "package",
    sorted(
        p.parent for p in PACKAGE.rglob("__init__.py") if "pipelines" not in p.parts and p.parent != PACKAGE
    ),
    ids=lambda p: p.relative_to(PACKAGE).as_posix(),
)
def test_each_package_docstring_names_its_modules(package):
    doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
    modules = sorted(
        p.stem if p.suffix == ".py" else p.name
        for p in package.iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()
    )
    assert [m for m in modules if f".{m}`" not in doc] == []


def test_the_code_map_has_a_line_per_package():
    code_map = ARCHITECTURE.read_text().split("## Code map", 1)[1]
    assert [p for p in layer_order() if f"\n  {p}/ " not in code_map] == []


def test_no_module_or_function_is_too_long_to_read():
    """450 lines a module, 90 a function (the issue that grouped the package set these)."""
    long = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if len(text.splitlines()) > 450:
            long.append(f"{module_name(path)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if (
                isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and node.end_lineno - node.lineno >= 90
            ):
                long.append(f"{module_name(path)}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert long == []


def test_every_old_path_leads_to_modules_that_exist():
    import mess_kedro

    targets = {new for news in mess_kedro.MOVED.values() for new in news}
    assert [t for t in sorted(targets) if module_path(f"mess_kedro.{t}") is None] == []


@pytest.mark.parametrize(
    ("old", "name", "new"),
    [
        ("mess_kedro.serving", "SimilaritySearch", "mess_kedro.search.engine"),
        ("mess_kedro.serving", "load_search", "mess_kedro.app.project"),
        ("mess_kedro.atomic", "atomic_file", "mess_kedro.storage.atomic"),
        ("mess_kedro.backbones.mert", "load_mert", "mess_kedro.models.backbones.mert"),
        ("mess_kedro.aspect_search", "AspectSubspace", "mess_kedro.fusion.aspect_subspace"),
        ("mess_kedro.passages", "segment_chroma", "mess_kedro.audio.span_features"),
        ("mess_kedro.webapp.room", "load_listening_room", "mess_kedro.app.project"),
    ],
)
def test_old_import_paths_work_for_one_release_and_say_where_things_went(old, name, new):
    for module in [m for m in sys.modules if m == old or m.startswith(f"{old}.")]:
        del sys.modules[module]  # a test before may have imported it: the warning comes on import
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        moved = importlib.import_module(old)
        value = getattr(moved, name)
    assert value is getattr(importlib.import_module(new), name)
    messages = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert any(old in m and "moved to" in m for m in messages), messages


@pytest.mark.parametrize(
    ("package", "name", "new"),
    [
        ("mess_kedro.audio", "AudioSignal", "mess_kedro.audio.signal"),
        ("mess_kedro.embedding", "select_device", "mess_kedro.models.runtime"),
        ("mess_kedro.fusion", "LayerFusionNetwork", "mess_kedro.fusion.learned"),
        ("mess_kedro.training", "TrainingConfig", "mess_kedro.training.loop"),
    ],
)
def test_a_package_with_an_old_modules_name_still_gives_its_names_with_a_warning(package, name, new):
    with pytest.warns(FutureWarning, match=f"{package}.{name} moved to {new}"):
        value = getattr(importlib.import_module(package), name)
    assert value is getattr(importlib.import_module(new), name)
    with pytest.raises(AttributeError):
        importlib.import_module(package).no_such_name  # noqa: B018 - the lookup is what is tested


def test_the_tests_mirror_the_packages_and_every_pipeline_has_its_folder():
    tests = PROJECT_ROOT / "tests"
    pipelines = sorted(p.name for p in (PACKAGE / "pipelines").iterdir() if (p / "pipeline.py").is_file())
    assert [p for p in pipelines if not list((tests / "pipelines" / p).glob("test_*.py"))] == []
    packages = [p for p in layer_order() if p != "pipelines"]
    assert [p for p in packages if not list((tests / p).glob("test_*.py"))] == []
