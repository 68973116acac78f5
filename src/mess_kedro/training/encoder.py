"""Training an encoder on the collection's own audio: views, the loop's measures, and validation scores.

Conventions
-----------
- Tracks arrive decoded and resampled to the encoder's rate once (held in memory: the
  "decoded audio cache"); a training item is a random ``clip_s`` crop of a training
  track and its two augmented views (:class:`ClipViews`). Crops and views are drawn
  from a generator seeded by ``(seed, epoch, item)``, so an epoch's batches do not
  depend on the number of DataLoader workers.
- Validation items are fixed crops with fixed views (seeded by the item alone): the
  validation loss of two epochs compares the same pairs. Early stopping keeps the
  epoch with the lowest validation loss (:func:`mess_kedro.training.loop.train_module`).
- Measures per epoch: mean training loss, validation loss, the collapse score of the
  training batches' projections (:func:`mess_kedro.models.encoders.collapse_score`, averaged
  over batches, as SimSiam's paper monitors it: in eval mode, batch norm's running
  statistics of an early epoch would report a collapse that is not there), clips per
  second, and the share of a step spent waiting for data.
- After training, :func:`validation_scores` embeds each validation track (the mean
  representation of its non-overlapping clips, no augmentation) and reports
  leave-one-out kNN accuracy (cosine) and a cross-validated logistic-regression
  probe per label, beside the share of the majority label (chance).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mess_kedro.audio.augmentation import Augmenter
from mess_kedro.audio.signal import AudioSignal, resample, to_mono
from mess_kedro.models.encoders import SimSiam

logger = logging.getLogger(__name__)


def clip_samples(params: dict[str, Any]) -> int:
    """One view's length in samples: ``clip_s`` at the encoder's rate (``train_encoder`` parameters)."""
    return int(round(float(params["clip_s"]) * int(params["mel"]["sample_rate"])))


def crop(samples: np.ndarray, start: int, length: int) -> np.ndarray:
    """``length`` samples from ``start``, zero-padded past the end."""
    piece = samples[start : start + length]
    return np.pad(piece, (0, length - len(piece))) if len(piece) < length else piece


class ClipViews(Dataset):
    """Two augmented log-mel views of a crop of a track (see the module docstring)."""

    def __init__(
        self,
        tracks: list[np.ndarray],
        clip_len: int,
        sample_rate: int,
        augmenter: Augmenter,
        front,
        *,
        clips_per_track: int,
        seed: int,
        fixed: bool = False,
    ) -> None:
        self.tracks, self.clip_len, self.sample_rate = tracks, clip_len, sample_rate
        self.augmenter, self.front = augmenter, front
        self.clips_per_track, self.seed, self.fixed = clips_per_track, seed, fixed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.tracks) * self.clips_per_track

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        key = (self.seed, item) if self.fixed else (self.seed, self.epoch, item)
        rng = np.random.default_rng(key)
        samples = self.tracks[item // self.clips_per_track]
        start = int(rng.integers(0, max(len(samples) - self.clip_len, 0) + 1))
        clip = crop(samples, start, self.clip_len)
        views = []
        for _ in range(2):
            wave = self.augmenter.waveform(clip, self.sample_rate, rng)
            with torch.no_grad():
                mel = self.front(torch.as_tensor(wave)[None])[0, 0].numpy()
            views.append(torch.as_tensor(self.augmenter.spectrogram(mel, rng))[None])
        return views[0], views[1]


@dataclass
class LoopClock:
    """Seconds spent waiting for batches and in total over an epoch, and the clips seen."""

    waiting: float = 0.0
    total: float = 0.0
    clips: int = 0
    started: float = field(default_factory=time.perf_counter)

    def batches(self, loader: DataLoader) -> Iterator:
        """``loader``'s batches, timing the wait for each."""
        self.waiting, self.clips, self.started = 0.0, 0, time.perf_counter()
        iterator = iter(loader)
        while True:
            asked = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                break
            self.waiting += time.perf_counter() - asked
            self.clips += len(batch[0])
            yield batch
        self.total = time.perf_counter() - self.started

    def measures(self) -> dict[str, float]:
        return {
            "clips_per_s": self.clips / self.total if self.total else float("nan"),
            "data_wait_share": self.waiting / self.total if self.total else float("nan"),
        }


def validation_loss(model: SimSiam, loader: DataLoader, device: torch.device) -> float:
    """Mean SimSiam loss over the fixed validation views (batch norm in eval mode)."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for views in loader:
            view_a, view_b = (v.to(device) for v in views)
            total += float(model(view_a, view_b)[0]) * len(view_a)
            count += len(view_a)
    model.train()
    return total / max(count, 1)


def track_representations(
    model: SimSiam, tracks: list[np.ndarray], clip_len: int, device: torch.device
) -> np.ndarray:
    """Per track: the mean encoder representation (stage 4, pooled) of its non-overlapping clips."""
    model.eval()
    rows = []
    with torch.no_grad():
        for samples in tracks:
            starts = range(0, max(len(samples) - clip_len, 0) + 1, clip_len)
            clips = torch.as_tensor(np.stack([crop(samples, s, clip_len) for s in starts]), device=device)
            rows.append(model.encoder(model.front(clips)).float().mean(0).cpu().numpy())
    return np.array(rows)


def validation_scores(
    vectors: np.ndarray, labels: dict[str, np.ndarray], k: int, seed: int
) -> dict[str, dict]:
    """Per label: leave-one-out kNN accuracy (cosine, majority of ``k``), a logistic-regression probe's
    cross-validated accuracy, and chance (the majority label's share)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.preprocessing import StandardScaler

    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    neighbours = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    scores = {}
    for name, given in labels.items():
        values = np.asarray(given).astype(str)
        _, counts = np.unique(values, return_counts=True)
        votes = [_majority(values[row]) for row in neighbours]
        entry = {
            "knn_accuracy": float(np.mean(np.array(votes) == values)),
            "chance": float(counts.max() / counts.sum()),
            "tracks": len(values),
        }
        folds = int(min(5, counts.min()))
        if folds >= 2 and len(counts) > 1:
            probe = cross_val_score(
                LogisticRegression(max_iter=2000),
                StandardScaler().fit_transform(vectors),
                values,
                cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
            )
            entry["probe_accuracy"] = float(probe.mean())
        scores[name] = entry
    return scores


def _majority(values: np.ndarray) -> str:
    """The most common value; ties go to the nearest neighbour's (the first listed)."""
    found, counts = np.unique(values, return_counts=True)
    best = found[counts == counts.max()]
    return next(v for v in values if v in set(best))


def decoded_tracks(prepared_audio: Mapping[str, Callable[[], AudioSignal]], track_ids: list[str], rate: int):
    """Mono float32 at ``rate`` for each track that has prepared audio (decoded once, kept in memory)."""
    found, tracks = [], []
    for track_id in track_ids:
        if track_id not in prepared_audio:
            logger.warning("train_encoder: no prepared audio for %s; left out", track_id)
            continue
        signal = prepared_audio[track_id]()
        tracks.append(resample(to_mono(signal.samples), signal.sample_rate, rate).astype(np.float32))
        found.append(track_id)
    return found, tracks


def fit_simsiam(train: list[np.ndarray], val: list[np.ndarray], augmenter, params: dict[str, Any]):
    """The model trained with :func:`mess_kedro.training.loop.train_module` (seeded), its record and device."""
    from mess_kedro.models.encoders import build_encoder, collapse_score
    from mess_kedro.models.runtime import autocast_context, select_device, torch_threads
    from mess_kedro.training.loop import TrainingConfig, train_module

    options, loader = params["training"], params["loader"]
    config = TrainingConfig(
        epochs=int(options["epochs"]),
        patience=int(options["patience"]),
        lr=float(options["lr"]),
        weight_decay=float(options["weight_decay"]),
        seed=int(options["seed"]),
    )
    device = select_device(str(loader["device"]))
    rate, clip_len = int(params["mel"]["sample_rate"]), clip_samples(params)
    with torch_threads(loader["num_threads"]), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = build_encoder(str(params["encoder_type"]), params["mel"], params["model"])
        front = model.front  # views are made on the CPU, in the loader's workers
        common = {"clips_per_track": int(params["clips_per_track"]), "seed": config.seed}
        # Workers are started afresh each epoch (not persistent), so they see the epoch set below.
        train_views = ClipViews(train, clip_len, rate, augmenter, front, **common)
        val_views = ClipViews(val, clip_len, rate, augmenter, front, fixed=True, **common)
        workers = int(loader["num_workers"])
        batch = int(options["batch_size"])
        shuffled = torch.Generator().manual_seed(config.seed)
        train_loader = DataLoader(
            train_views,
            batch,
            shuffle=True,
            drop_last=len(train_views) > batch,
            generator=shuffled,
            num_workers=workers,
            pin_memory=device.type == "cuda",
        )
        val_loader = DataLoader(val_views, batch, num_workers=workers)
        model = model.to(device)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        clock, losses, collapse = LoopClock(), [], []

        def batches(epoch: int):
            train_views.epoch = epoch
            losses.clear()
            collapse.clear()
            return clock.batches(train_loader)

        def batch_loss(views):
            view_a, view_b = (v.to(device, non_blocking=True) for v in views)
            # bf16 autocast on CUDA (AMP without a gradient scaler); full precision elsewhere.
            with autocast_context("bf16" if device.type == "cuda" else "fp32", device):
                loss, z = model(view_a, view_b)
            losses.append(float(loss.detach()) * len(view_a))
            collapse.append(collapse_score(z.float()))
            return loss

        def evaluate(_last: float) -> tuple[float, dict]:
            val_loss = validation_loss(model, val_loader, device)
            measures = {
                "train_loss": sum(losses) / max(clock.clips, 1),
                "val_loss": val_loss,
                "collapse": float(np.mean(collapse)),
                **clock.measures(),
            }
            logger.info("train_encoder: epoch %s", {k: round(v, 4) for k, v in measures.items()})
            return -val_loss, measures

        record = train_module(model, config, batches, batch_loss, evaluate)
    return model, record, device
