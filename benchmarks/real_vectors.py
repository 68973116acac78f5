"""A large set of real vectors for the index benchmarks: frame-level embeddings of the project's audio.

    .venv/bin/python benchmarks/real_vectors.py [--backbone mert-v1-95m] [--layer h4 | timbral | temporal]
        [--variants original,augmented] [--max-tracks 0] [--dedup 0.995] [--out data/09_benchmarks/...]

Needs the project's prepared audio (the demo's renditions after `kedro run --pipelines=ingest`;
any collection works). For each track, and for each variant of its audio, the backbone's frames
of one layer (``keep_frames``: every full segment's ``[T, D]``, 75 frames per second for MERT;
for musicnn, whose layers differ in width, :func:`layer_frames` runs the segments itself and only
its frame-level layers serve: ``timbral`` 408-d, ``temporal`` 153-d, ``cnn1``-``cnn3`` 64-d, at
62.5 frames per second) are kept:

- ``original``: the prepared audio as it is;
- ``augmented``: the same audio through the training augmentations that change the sound but not
  its identity (pitch shift, time stretch, gain, reverb, noise: ``train_encoder``'s settings),
  seeded per track.

**Deduplication**: within a track, a frame whose cosine with the last kept frame is at least
``--dedup`` is dropped (consecutive frames of a held note are near-copies, which would make
search look easier than it is); then exact duplicates are dropped across the set. Nothing here
is generated from a low-dimensional model, unlike ``index_realistic.py``'s expansion, so the PCA
spectrum printed at the end (the components that keep 80 / 90 / 95 / 99 % of the variance, and
the participation ratio) is the set's own.

Writes one ``.npz`` (``vectors`` float32 ``[N, D]``, ``track`` int32 (the track's index in
``tracks``), ``variant`` int8, ``tracks``, ``variants``), read back with ``allow_pickle=False``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
AUGMENTED = ("pitch_shift", "time_stretch", "gain", "reverb", "gaussian_noise")


def deduplicated(frames: np.ndarray, threshold: float) -> np.ndarray:
    """The frames ``[T, D]`` kept when each must differ (cosine < ``threshold``) from the last kept."""
    unit = frames / np.maximum(np.linalg.norm(frames, axis=1, keepdims=True), 1e-12)
    kept = [0]
    for i in range(1, len(frames)):
        if float(unit[i] @ unit[kept[-1]]) < threshold:
            kept.append(i)
    return frames[kept]


def pca_spectrum(vectors: np.ndarray, sample: int = 50_000, seed: int = 0) -> dict:
    """Components for 80/90/95/99 % of the variance and the participation ratio, on a sample."""
    rng = np.random.default_rng(seed)
    rows = vectors[rng.choice(len(vectors), min(sample, len(vectors)), replace=False)].astype(np.float64)
    rows -= rows.mean(axis=0)
    variances = np.linalg.svd(rows, compute_uv=False) ** 2
    share = np.cumsum(variances) / variances.sum()
    found = {f"components_{int(q * 100)}": int(np.searchsorted(share, q) + 1) for q in (0.8, 0.9, 0.95, 0.99)}
    found["participation_ratio"] = float(variances.sum() ** 2 / (variances**2).sum())
    return found


def without_copies(vectors: list, tracks: list, kinds: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The per-track arrays joined, each exact duplicate vector kept once (its first occurrence)."""
    data = np.concatenate(vectors)
    _, first = np.unique(data, axis=0, return_index=True)
    first = np.sort(first)
    return data[first], np.concatenate(tracks)[first], np.concatenate(kinds)[first]


def variant_audio(samples: np.ndarray, rate: int, variant: str, augmenter, seed: int) -> np.ndarray:
    """One variant of a track's audio (``original`` as it is)."""
    if variant == "original":
        return samples
    return augmenter.waveform(samples, rate, np.random.default_rng(seed))


def layer_frames(backbone, clips, layer: int, config, device):
    """``(t, [frames [T, D] of each full segment])`` per clip, for one layer.

    A backbone whose layers share one shape (MERT) goes through the embedding code with
    ``keep_frames``; one whose layers differ (musicnn: frame-level front end and mid-end, pooled
    layers above) runs its full segments directly, one clip a batch, keeping only ``layer``,
    which must then be frame-level."""
    import torch

    from mess_kedro.embedding.tracks import embed_tracks

    if backbone.spec.uniform_width is not None:
        for t, result in embed_tracks(backbone, clips, config, device):
            if result.frames is not None and len(result.frames):
                yield t, list(result.frames[:, layer].astype(np.float32))  # [S, L, T, D]: one layer cast
        return
    length = int(round(config.segment_s * backbone.spec.sample_rate))
    for t, samples in clips:
        segments = samples[: len(samples) // length * length].reshape(-1, length)
        with torch.inference_mode():
            out = backbone.forward_layers(backbone.prepare(segments).to(device))[layer].float().cpu().numpy()
        if out.ndim != 3:
            raise ValueError(f"layer {backbone.spec.layer_names[layer]} is pooled, not frame-level")
        yield t, list(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="mert-v1-95m")
    parser.add_argument("--layer", default="h4")
    parser.add_argument("--variants", default="original,augmented")
    parser.add_argument("--max-tracks", type=int, default=0, help="0: every track with prepared audio")
    parser.add_argument("--dedup", type=float, default=0.995)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import torch
    from tqdm.auto import tqdm

    from mess_kedro.app.project import project_datasets, project_parameters
    from mess_kedro.audio.augmentation import build_augmenter
    from mess_kedro.audio.signal import resample, to_mono
    from mess_kedro.embedding.tracks import EmbeddingConfig
    from mess_kedro.models.backbones import load_backbone
    from mess_kedro.models.runtime import select_device
    from mess_kedro.storage.atomic import atomic_file

    device = select_device("auto")
    backbone = load_backbone(args.backbone, {"seed": 0}).to(device)
    layer = list(backbone.spec.layer_names).index(args.layer)
    rate = backbone.spec.sample_rate
    # precision auto: bf16 on a CPU, as the main job embeds; frames come back as float32.
    config = EmbeddingConfig(segment_s=backbone.spec.default_segment_s, keep_frames=True, batch_size=8)
    encoder = project_parameters(PROJECT)["train_encoder"]
    augmenter = build_augmenter(list(AUGMENTED), encoder["augmentations"])
    audio = project_datasets(PROJECT, ["prepared_audio"])["prepared_audio"].load()
    keys = sorted(audio)[: args.max_tracks or None]
    variants = args.variants.split(",")
    vectors, tracks, kinds = [], [], []
    started = time.perf_counter()
    for v, variant in enumerate(variants):

        def clips(variant=variant):
            for t, key in enumerate(keys):
                signal = audio[key]()
                samples = resample(to_mono(signal.samples), signal.sample_rate, rate).astype(np.float32)
                if len(samples) >= config.segment_s * rate:  # frames come from full segments only
                    yield t, variant_audio(samples, rate, variant, augmenter, seed=t)

        for t, segments in tqdm(
            layer_frames(backbone, clips(), layer, config, device), total=len(keys), desc=f"frames, {variant}"
        ):
            frames = np.concatenate([deduplicated(f, args.dedup) for f in segments])
            vectors.append(frames)
            tracks.append(np.full(len(frames), t, dtype=np.int32))
            kinds.append(np.full(len(frames), v, dtype=np.int8))
    data, track, variant = without_copies(vectors, tracks, kinds)
    out = Path(
        args.out or PROJECT / "data" / "09_benchmarks" / f"real_vectors_{args.backbone}_{args.layer}.npz"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out) as tmp, open(tmp, "wb") as handle:  # a file object: savez adds no suffix
        np.savez(
            handle,
            vectors=data,
            track=track,
            variant=variant,
            tracks=np.array(keys),
            variants=np.array(variants),
        )
    spectrum = pca_spectrum(data)
    seconds = time.perf_counter() - started
    print(
        f"{len(data)} vectors of {data.shape[1]} dims ({args.backbone} {args.layer}, {len(keys)} tracks x "
        f"{variants}, dedup {args.dedup}) in {seconds:.0f} s on {device} ({torch.get_num_threads()} threads) -> {out}"
    )
    print(f"PCA spectrum: {spectrum}")


if __name__ == "__main__":
    main()
