"""benchmarks/gpu_check.py where there is no GPU (as here and in CI): one line, exit 0, nothing written."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: run the check itself")


def test_without_a_gpu_the_check_says_so_in_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "gpu_check.json"
    done = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "benchmarks" / "gpu_check.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: skipped, no CUDA GPU here (torch ")
    assert not out.exists()


def test_faiss_without_gpu_support_is_reported_not_measured(monkeypatch):
    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "benchmarks"))
    import gpu_check

    found = gpu_check.faiss_on_gpu(n=10, dim=4, queries=2)
    assert found == {"measured": False, "why": "the installed faiss has no GPU support (faiss-cpu)"}
    assert gpu_check.missing_gpu().startswith("no CUDA GPU here")


def test_the_report_states_the_goal_per_backbone_from_every_ratio(monkeypatch):
    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "benchmarks"))
    import gpu_check

    embed = [
        {"backbone": "musicnn-mtt", "precision": "fp32", "batch": 16, "pipeline / raw": 0.95},
        {"backbone": "musicnn-mtt", "precision": "bf16", "batch": 64, "pipeline / raw": 0.85},
        {"backbone": "mert-v1-95m", "precision": "bf16", "batch": 64, "pipeline / raw": 0.97},
    ]
    found = {"embed": embed, "simsiam_epoch": {}, "faiss_gpu": {"measured": False}}
    report = gpu_check.build_report("GPU", {"torch": "x"}, found, [10.0, 30.0], 12.0)
    assert report["goal_met"] == {"musicnn-mtt": False, "mert-v1-95m": True}
    assert report["pipeline_over_raw"]["musicnn-mtt bf16 batch 64"] == 0.85
    assert report["gpu_utilisation"] == {"mean": 20.0, "max": 30.0} and report["embed"] is embed
    assert gpu_check.build_report("GPU", {}, found, [], 1.0)["gpu_utilisation"] is None
