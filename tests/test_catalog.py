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
