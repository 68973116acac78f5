"""The catalog's conventions, checked on the project's own configuration."""

from __future__ import annotations

import importlib

from mess_kedro.app.project import _config_loader
from tests.conftest import PROJECT_ROOT

PIPELINES = ("ingest", "embed", "proxy_targets", "probing", "fusion", "evaluation", "serving_index")


def test_every_file_a_pipeline_writes_is_versioned():
    """Only inputs a person supplies (annotations) are unversioned files; caches are partitioned folders."""
    catalog = dict(_config_loader(PROJECT_ROOT, None)["catalog"])
    written = set()
    for name in PIPELINES:
        pipeline = importlib.import_module(f"mess_kedro.pipelines.{name}.pipeline").create_pipeline()
        written |= set(pipeline.all_outputs())
    unversioned = sorted(
        name
        for name in written
        if isinstance(catalog.get(name), dict)
        and "filepath" in catalog[name]
        and not catalog[name].get("versioned")
    )
    assert unversioned == []
    assert not catalog["annotation_triplets"].get("versioned")  # read only: a person's file


def test_the_code_map_names_every_module():
    """docs/architecture.md's code map has a line for every module (datasets/ and pipelines/ as folders)."""
    code_map = (PROJECT_ROOT / "docs" / "architecture.md").read_text().split("## Code map", 1)[1]
    package = PROJECT_ROOT / "src" / "mess_kedro"
    modules = {
        path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        if path.name not in ("__init__.py", "__main__.py")
        and not path.relative_to(package).as_posix().startswith(("datasets/", "pipelines/"))
    }
    missing = sorted(m for m in modules if m not in code_map and m.split("/")[-1] not in code_map)
    assert missing == []
    assert "datasets/" in code_map and "pipelines/<name>/nodes.py" in code_map
