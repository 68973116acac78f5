"""GPU embedding matches CPU embedding: skipped where no CUDA device exists (CI).

Run on a GPU box with ``pytest tests/test_gpu.py``. The CPU fp32 embedding is the
reference; CUDA fp32 must agree to float tolerance and CUDA bf16 (the ``auto``
precision there) to the same bound the CPU bf16 test uses.
"""

import numpy as np
import pandas as pd
import pytest
import torch

from mess_kedro.audio.signal import AudioSignal
from mess_kedro.embedding.tracks import EmbeddingConfig, embed_track, embed_tracks
from mess_kedro.models.backbones import load_backbone
from mess_kedro.models.runtime import resolve_precision, select_device
from mess_kedro.pipelines.embed.nodes import extract_track_embeddings
from tests.conftest import project_parameters

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _clip(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    tones = sum(np.sin(2 * np.pi * 220.0 * k * t) / k for k in range(1, 6))
    return (0.1 * tones + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def _cosines(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    return np.array([x @ y / (np.linalg.norm(x) * np.linalg.norm(y)) for x, y in zip(a, b, strict=True)])


@pytest.mark.parametrize("name", ["mert-v1-95m", "musicnn-mtt"])
def test_cuda_embeddings_match_cpu(name):
    backbone = load_backbone(name, {"seed": 3})
    sr = backbone.spec.sample_rate
    segment_s = backbone.spec.default_segment_s
    samples = _clip(3 * segment_s + 1.0, sr)
    config = EmbeddingConfig(segment_s=segment_s, min_segment_s=1.0, batch_size=2, precision="fp32")
    cpu = embed_track(backbone, samples, config, torch.device("cpu"))

    cuda = torch.device("cuda")
    backbone.to(cuda)
    gpu32 = embed_track(backbone, samples, config, cuda)
    bf16_config = EmbeddingConfig(segment_s=segment_s, min_segment_s=1.0, batch_size=2, precision="auto")
    assert resolve_precision("auto", cuda) == "bf16"
    gpu16 = embed_track(backbone, samples, bf16_config, cuda)

    for layer_cpu, layer_gpu in zip(cpu.track, gpu32.track, strict=True):
        scale = np.abs(layer_cpu).max() + 1e-12
        # TF32 may be on for CUDA matmuls: allow its ~1e-3 relative rounding.
        assert np.abs(layer_cpu - layer_gpu).max() / scale < 5e-3
    assert _cosines(cpu.track, gpu16.track).min() > 0.99
    assert np.array_equal(cpu.bounds, gpu16.bounds)


def test_embed_node_runs_on_cuda_and_records_it():
    sr = 24000
    manifest = pd.DataFrame({"track_id": ["a", "b"]})
    loaders = {
        tid: (lambda seed=i: AudioSignal(_clip(6.0, sr, seed), sr)) for i, tid in enumerate(manifest.track_id)
    }
    params = project_parameters("embed")["embed"] | {
        "backbones": {"mert-tiny": {"seed": 0}},
        "trained_backbones": {},
        "segment_s": 2.0,
        "min_segment_s": 1.0,
        "batch_size": 4,
        "precision": "auto",
        "device": "auto",
    }
    outputs, rejects, runs = extract_track_embeddings(loaders, manifest, {}, {}, params)
    assert select_device("auto").type == "cuda"
    assert runs["mert-tiny"]["device"].startswith("cuda") and runs["mert-tiny"]["precision"] == "bf16"
    assert len(outputs) == 2 and len(rejects) == 0
    arrays = next(iter(outputs.values()))()
    assert np.isfinite(arrays["track_0"]).all()


@pytest.mark.parametrize("name", ["mert-tiny", "musicnn-mtt"])
def test_pipelined_batches_across_tracks_on_cuda_match_one_track_at_a_time(name):
    """Pinned memory, asynchronous copies and one batch in flight must not mix up rows or tracks."""
    backbone = load_backbone(name, {"seed": 1}).to(torch.device("cuda"))
    sr = backbone.spec.sample_rate
    segment_s = backbone.spec.default_segment_s if name.startswith("musicnn") else 1.0
    tracks = [(f"t{i}", _clip(segment_s * (i + 1) + 0.6, sr, seed=i)) for i in range(5)]
    config = EmbeddingConfig(segment_s=segment_s, min_segment_s=0.5, batch_size=3, precision="fp32")
    together = list(embed_tracks(backbone, tracks, config, torch.device("cuda")))
    assert [key for key, _ in together] == [key for key, _ in tracks]
    for (_, samples), (key, result) in zip(tracks, together, strict=True):
        alone = embed_track(backbone, samples, config, torch.device("cuda"))
        for got, expected in zip(result.segments, alone.segments, strict=True):
            scale = np.abs(expected).max() + 1e-12
            assert np.abs(got - expected).max() / scale < 5e-3, key  # TF32 rounding at most
