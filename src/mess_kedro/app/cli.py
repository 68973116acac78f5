"""``mess-kedro``: the project's command line.

(In ``app/``, not at the package's top: Kedro reserves ``mess_kedro.cli`` for overriding its own commands.)

    mess-kedro run [kedro run options]          # the pipelines (same as `kedro run`)
    mess-kedro similar QUERY [--aspect A | --weights a=0.7,b=0.3 | --fused lfn] [--method selective|layer] [-n 10]
                       [--exclude-same-piece] [--include-self] [--where composer=X ...] [--backbone B]
    mess-kedro blend A B [--mix 0.5] [--aspect A]   # style interpolation; A, B: track ids or audio files
    mess-kedro clusters [-k 5] [--aspect A]         # clusters: members and dominant metadata
    mess-kedro serve [--host 127.0.0.1] [--port 8000]  # the listening room: web page + API

QUERY is a track id of the collection or a path to an audio file. Errors
(unknown track or aspect, unreadable audio, a stale index) print one line and
exit with status 1.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import click


def _pair(item: str, cast=str) -> tuple[str, object]:
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise click.BadParameter(f"expected key=value, got '{item}'")
    try:
        return key, cast(value.strip())
    except ValueError:
        raise click.BadParameter(f"'{value.strip()}' in '{item}' is not a number") from None


def _pairs(items, cast=str) -> dict:
    """``key=value`` items (a comma-separated string, or a list of items) as a dict; a key given twice is an error."""
    if not items:
        return {}
    pairs: dict = {}
    for item in items.split(",") if isinstance(items, str) else items:
        key, value = _pair(item, cast)
        if key in pairs:
            raise click.BadParameter(f"'{key}' is given twice")
        pairs[key] = value
    return pairs


def _check_project(project: str) -> None:
    path = Path(project)
    if not path.is_dir():
        raise click.BadParameter(f"--project {project}: no such folder")
    if not (path / "pyproject.toml").is_file() or "[tool.kedro]" not in (path / "pyproject.toml").read_text():
        raise click.BadParameter(
            f"--project {project}: not a Kedro project (no [tool.kedro] in pyproject.toml)"
        )


@click.group()
def main() -> None:
    """mess-kedro: expressive music similarity."""


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run the pipelines (options as for `kedro run`)."""
    from mess_kedro.__main__ import main as kedro_main

    kedro_main(args=ctx.args)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The answer is the table: library warnings, log lines below errors and anything printed on
    import (pyfluidsynth prints when CI is set) stay out of it; all three are restored after."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def _answer(project: str, backbone: str | None, ask) -> None:
    """Load the search, run ``ask(search) -> (title, table)``, print it; errors: one line, exit 1."""

    def run():
        from mess_kedro.app.project import load_search

        search = load_search(project, backbone)
        return (search.label, *ask(search))

    _respond(project, run)


def _respond(project: str, run) -> None:
    """``run() -> (label, title, table)`` quietly, then print it; known errors: one line on stderr, exit 1."""
    from kedro.io.core import DatasetError

    from mess_kedro.audio.signal import AudioReadError
    from mess_kedro.search.indexing import IndexMismatchError

    try:
        _check_project(project)
        with _quiet():
            label, title, table = run()
    except (
        KeyError,
        ValueError,
        IndexMismatchError,
        AudioReadError,
        DatasetError,
        FileNotFoundError,
        click.BadParameter,
    ) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        click.echo(f"error: {message}", err=True)
        sys.exit(1)
    from mess_kedro.search.collection import printable, result_notes

    click.echo(f"{label}: {title}")
    for note in result_notes(table):
        click.echo(note)
    click.echo(
        printable(table).to_string(index=False, float_format=lambda x: f"{x:.4f}")
        if len(table)
        else "(no results)"
    )


_backbone = click.option("--backbone", default=None, help="Indexed backbone (default: a pretrained one).")
_method = click.option(
    "--method",
    type=click.Choice(["selective", "layer"]),
    default="selective",
    show_default=True,
    help="For aspects: the selective subspace, or the whole layer it reads (the baseline).",
)
_project = click.option("--project", default=".", show_default=True, help="Kedro project folder.")


@main.command()
@click.argument("query")
@click.option("--aspect", default=None, help="One aspect, e.g. dynamics.")
@click.option("--weights", default=None, help="Weighted aspects, e.g. dynamics=0.7,tempo=0.3.")
@click.option("--fused", default=None, help="A fused embedding, e.g. lfn (the default).")
@_method
@click.option(
    "-n", "--top", default=10, show_default=True, type=click.IntRange(min=1), help="Number of results."
)
@click.option("--exclude-same-piece", is_flag=True, help="Only other works (find other pieces played alike).")
@click.option("--include-self", is_flag=True, help="Keep the query recording in the results.")
@click.option(
    "--where",
    multiple=True,
    help="Metadata filter column=value (repeat for several; the value may hold commas), e.g. composer=J. S. Bach.",
)
@_backbone
@_project
def similar(
    query, aspect, weights, fused, method, top, exclude_same_piece, include_self, where, backbone, project
) -> None:
    """Recordings similar to QUERY (a track id or an audio file), in one respect."""

    def ask(search):
        table = search.similar(
            query,
            aspect=aspect,
            weights=_pairs(weights, float) or None,
            fused=fused,
            method=method,
            n=top,
            exclude_same_recording=not include_self,
            exclude_same_piece=exclude_same_piece,
            where=_pairs(where),
        )
        respect = search.describe(search.sources(aspect, _pairs(weights, float) or None, fused, method))
        return f"recordings like {query} in {respect}", table

    _answer(project, backbone, ask)


@main.command()
@click.argument("first")
@click.argument("second")
@click.option(
    "--mix", default=0.5, show_default=True, type=click.FloatRange(0, 1), help="0 = FIRST, 1 = SECOND."
)
@click.option("--aspect", default=None)
@click.option("--fused", default=None)
@_method
@click.option("-n", "--top", default=10, show_default=True, type=click.IntRange(min=1))
@_backbone
@_project
def blend(first, second, mix, aspect, fused, method, top, backbone, project) -> None:
    """Style interpolation: recordings near the blend of FIRST and SECOND (track ids or audio files)."""
    from mess_kedro.search.collection import interpolate

    _answer(
        project,
        backbone,
        lambda s: (
            f"blend of {first} and {second} at {mix} in {s.describe(s.sources(aspect, None, fused, method))}",
            interpolate(s, first, second, mix=mix, aspect=aspect, fused=fused, method=method, n=top),
        ),
    )


@main.command()
@click.option("-k", "--clusters", default=5, show_default=True, type=click.IntRange(min=2))
@click.option("--aspect", default=None)
@click.option("--fused", default=None)
@_method
@_backbone
@_project
def clusters(clusters, aspect, fused, method, backbone, project) -> None:
    """Cluster the collection: each cluster's members and its dominant metadata."""
    from mess_kedro.search.collection import name_clusters

    _answer(
        project,
        backbone,
        lambda s: (
            f"{clusters} clusters in {s.describe(s.sources(aspect, None, fused, method))}",
            name_clusters(s, clusters, aspect=aspect, fused=fused, method=method),
        ),
    )


@main.command()
@click.argument("audio", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for the WAVs."
)
@click.option(
    "--set", "augmentation_set", default=None, help="An augmentation set; default: train_encoder.variant's."
)
@click.option(
    "-n", "--count", default=4, show_default=True, type=click.IntRange(1, 50), help="Views to write."
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the views.")
@_project
def augment(audio, out_dir, augmentation_set, count, seed, project) -> None:
    """Write COUNT augmented views of AUDIO's first clip (train_encoder.clip_s, at the encoder's rate)
    to --out as WAV: a listening check of the training augmentations."""

    def ask():
        import pandas as pd

        from mess_kedro.app.project import project_parameters
        from mess_kedro.audio.augmentation import build_augmenter, listening_examples
        from mess_kedro.audio.signal import AudioSignal, prepare_audio, read_mono, write_audio
        from mess_kedro.training.encoder import clip_samples, crop

        params = project_parameters(project)["train_encoder"]
        chosen = augmentation_set or params["variant"]
        if chosen not in params["augmentation_sets"]:
            raise KeyError(
                f"unknown augmentation set '{chosen}'; sets: {sorted(params['augmentation_sets'])}"
            )
        augmenter = build_augmenter(params["augmentation_sets"][chosen], params["augmentations"])
        rate = int(params["mel"]["sample_rate"])
        signal, _ = prepare_audio(read_mono(audio), rate)
        clip = crop(signal.samples, 0, clip_samples(params))
        rows = [("original.wav", "")]
        write_audio(Path(out_dir) / "original.wav", AudioSignal(clip, rate))
        for i, (view, applied) in enumerate(listening_examples(clip, rate, augmenter, count, seed)):
            name = f"view_{i:02d}.wav"
            write_audio(Path(out_dir) / name, AudioSignal(view, rate))
            rows.append((name, ", ".join(applied) or "(none drawn)"))
        table = pd.DataFrame(rows, columns=["file", "augmentations"])
        return (
            chosen,
            f"{count} views of {Path(audio).name} in {out_dir} (masks act on spectrograms: not heard)",
            table,
        )

    _respond(project, ask)


@main.command()
@click.argument("query")
@click.option(
    "--at", "at_s", required=True, type=click.FloatRange(min=0), help="Passage start in QUERY (seconds)."
)
@click.option(
    "--length",
    "length_s",
    default=4.0,
    show_default=True,
    type=click.FloatRange(min=0.5, max=60),
    help="Passage length (seconds).",
)
@click.option(
    "--piece",
    default=None,
    help="For a new audio file: a track id of a recording of the same piece (aligns the file with it).",
)
@click.option("--aspect", default=None, help="Rank the passages found by this aspect, e.g. dynamics.")
@click.option(
    "-n", "--top", default=10, show_default=True, type=click.IntRange(min=1), help="Number of results."
)
@_backbone
@_project
def passage(query, at_s, length_s, piece, aspect, top, backbone, project) -> None:
    """The same bars as QUERY (a track id or an audio file) at --at seconds in the other recordings:
    through the alignment where there is one, else the most alike segments by content (chroma);
    with --aspect, ranked by how alike they are played."""

    from mess_kedro.app.passage_query import find_passages

    _respond(
        project,
        lambda: find_passages(
            project, query, at_s, length_s, piece=piece, aspect=aspect, top=top, backbone=backbone
        ),
    )


LOOPBACK = ("127.0.0.1", "::1", "localhost")


@main.command()
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback only by default)."
)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option(
    "--root-path", default="", help="The sub-path a reverse proxy serves the room under (e.g. /listening)."
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    help="A name the room may be reached by besides loopback (a lab's proxy); repeatable. "
    "Requests naming any other Host are refused (DNS rebinding).",
)
@_backbone
@_project
def serve(
    host: str, port: int, root_path: str, allowed_hosts: tuple[str, ...], backbone: str | None, project: str
) -> None:
    """The listening room: search, listen, compare and annotate in a browser (http://HOST:PORT/),
    its API documented at /docs. No authentication: keep it on localhost or put it behind a proxy that has one."""
    import threading

    import uvicorn
    from kedro.io.core import DatasetError

    from mess_kedro.app.project import load_listening_room
    from mess_kedro.app.webapp.api import SERVER_OPTIONS, create_app
    from mess_kedro.app.webapp.uploads import remove_abandoned_uploads

    try:
        _check_project(project)
        with _quiet():
            room = load_listening_room(project, backbone)
    except (KeyError, ValueError, FileNotFoundError, DatasetError, click.BadParameter) as exc:
        click.echo(f"error: {exc.args[0] if isinstance(exc, KeyError) and exc.args else exc}", err=True)
        sys.exit(1)
    remove_abandoned_uploads()  # what a killed room left in the temporary directory
    if host not in LOOPBACK:
        click.echo(
            f"warning: binding {host}: anyone who can reach it can search and annotate (no authentication)",
            err=True,
        )

    def warm_up() -> None:
        try:
            room.warm_up()
        except Exception as exc:  # noqa: BLE001 - searches by id still work; say why uploads will not
            click.echo(f"warning: the backbone did not load ({exc}); uploads will be refused", err=True)

    # Indices open now and the backbone loads in the background: the first upload is then as fast as the rest.
    threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
    click.echo(
        f"{room.search.label}: {len(room.collection)} tracks; listening room at http://{host}:{port}/ (API: /docs)"
    )
    names = [*LOOPBACK, *allowed_hosts, *([host] if host not in ("0.0.0.0", "::") else [])]
    uvicorn.run(
        create_app(room, allowed_hosts=names),
        host=host,
        port=port,
        root_path=root_path,
        log_level="warning",
        **SERVER_OPTIONS,
    )


if __name__ == "__main__":
    main()
