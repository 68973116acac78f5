"""Make the musicnn reference fixture: the original TensorFlow models' outputs on a few clips.

Two steps, two environments (TensorFlow is never a dependency of the project):

1. In the project's environment, write the clips (regenerable: a FluidSynth
   rendering of a Bach chorale by the demo corpus code, a harmonic tone
   sequence and band-limited noise, all 16 kHz)::

       .venv/bin/python scripts/musicnn_reference.py clips /tmp/musicnn_clips.npz

2. In a throwaway environment with the original model code::

       python3 -m venv /tmp/tfenv
       /tmp/tfenv/bin/pip install tensorflow-cpu tf-keras librosa
       /tmp/tfenv/bin/pip install --no-deps musicnn==0.1.0
       TF_USE_LEGACY_KERAS=1 /tmp/tfenv/bin/python scripts/musicnn_reference.py reference \\
           /tmp/musicnn_clips.npz tests/fixtures/musicnn_reference.npz

   This builds each wheel model's graph with the wheel's own ``models.py``,
   restores its checkpoint by path prefix (failing loudly, unlike the wheel's
   bare ``except``), computes the wheel's log-mel patches, with the compression
   in float32 (the wheel's float16 cast overflows), and stores inputs and
   outputs: tags and every layer the port exposes, pooled as the port pools them.
"""

from __future__ import annotations

import sys

import numpy as np

SR = 16000
MODELS = ("MTT_musicnn", "MSD_musicnn", "MTT_vgg", "MSD_vgg")


def make_clips(out: str) -> None:
    import librosa

    from mess_kedro.corpus.demo.performers import RenditionSettings, perform_excerpt
    from mess_kedro.corpus.demo.scores import load_excerpt
    from mess_kedro.corpus.demo.synth import render_midi

    # A plain rendition: steady tempo, one level, no noise, a grand piano.
    performer = RenditionSettings(
        performer_id="reference", tempo_factor=1.0, rubato_depth=0.0, rubato_shape="arch",
        rubato_phrase_beats=8, velocity_mean=80, dynamic_range=0, dynamic_shape="flat",
        velocity_jitter=0, articulation=0.9, onset_jitter_ms=0, program=0, brightness=0,
    )  # fmt: skip
    excerpt = load_excerpt(
        "bach/bwv66.6", composer="J. S. Bach", title="BWV 66.6", reference_qpm=80, excerpt_seconds=7
    )
    midi, _ = perform_excerpt(excerpt, performer, seed=0)
    piano = librosa.resample(render_midi(midi, 44100).samples, orig_sr=44100, target_sr=SR)[: 2 * 47616]
    t = np.arange(47616) / SR
    tones = sum(np.sin(2 * np.pi * 220 * (1 + (t > 1.5)) * k * t) / k for k in range(1, 8)) * 0.2
    rng = np.random.default_rng(0)
    noise = np.convolve(rng.standard_normal(47616), np.hanning(64), mode="same") * 0.02
    np.savez(
        out, piano=piano.astype(np.float32), tones=tones.astype(np.float32), noise=noise.astype(np.float32)
    )


def wheel_log_mel(audio: np.ndarray) -> np.ndarray:
    """The wheel's batch_data spectrogram, with the compression in float32."""
    import librosa

    mel = librosa.feature.melspectrogram(y=audio, sr=SR, hop_length=256, n_fft=512, n_mels=96).T
    return np.log10(10000 * mel.astype(np.float32) + 1)


def make_reference(clips_path: str, out: str) -> None:
    import os

    import tensorflow as tf
    from musicnn import models

    tf.compat.v1.disable_eager_execution()
    clips = dict(np.load(clips_path))
    result = {f"clip/{name}": audio for name, audio in clips.items()}
    n_frames = 187
    for name, audio in clips.items():
        mel = wheel_log_mel(audio)
        patches = np.stack([mel[i : i + n_frames] for i in range(0, mel.shape[0] - n_frames + 1, n_frames)])
        result[f"mel/{name}"] = patches.astype(np.float32)
    folder = os.path.dirname(models.__file__)
    for model in MODELS:
        tf.compat.v1.reset_default_graph()
        x = tf.compat.v1.placeholder(tf.float32, [None, n_frames, 96])
        outputs = models.define_model(x, False, model, 50)
        sess = tf.compat.v1.Session()
        tf.compat.v1.train.Saver().restore(sess, f"{folder}/{model}/")
        for name in clips:
            values = sess.run(outputs, feed_dict={x: result[f"mel/{name}"]})
            result[f"{model}/{name}/tags"] = 1 / (1 + np.exp(-values[0]))
            if "vgg" in model:
                for i, pool in enumerate(values[1:], start=1):
                    result[f"{model}/{name}/pool{i}"] = pool.mean(axis=(1, 2))
            else:
                names = (
                    "timbral",
                    "temporal",
                    "cnn1",
                    "cnn2",
                    "cnn3",
                    "mean_pool",
                    "max_pool",
                    "penultimate",
                )
                for layer, raw in zip(names, values[1:], strict=True):
                    value = np.squeeze(raw, axis=-1) if raw.ndim == 4 else raw
                    result[f"{model}/{name}/{layer}"] = value.mean(axis=1) if value.ndim == 3 else value
                    if name == "tones" and value.ndim == 3:  # one clip frame by frame, to pin the time axis
                        result[f"{model}/{name}/{layer}/frames"] = value
        sess.close()
    np.savez_compressed(out, **result)
    print(f"wrote {out}: {len(result)} arrays")


if __name__ == "__main__":
    if sys.argv[1] == "clips":
        make_clips(sys.argv[2])
    elif sys.argv[1] == "reference":
        make_reference(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(__doc__)
