"""``mess-kedro``: the project's command line.

(Not named ``cli.py``: Kedro reserves ``<package>.cli`` for overriding its own commands.)

    mess-kedro run [kedro run options]          # the pipelines (same as `kedro run`)
    mess-kedro similar QUERY [--aspect A | --weights a=0.7,b=0.3 | --fused lfn] [--method selective|layer] [-n 10]
                       [--exclude-same-piece] [--include-self] [--where composer=X] [--backbone B]
    mess-kedro blend TRACK_A TRACK_B [--mix 0.5] [--aspect A]   # style interpolation
    mess-kedro clusters [-k 5] [--aspect A]                     # clusters named by metadata

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

import click


def _pairs(text: str | None, cast=str) -> dict:
    if not text:
        return {}
    pairs = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"expected key=value, got '{item}'")
        pairs[key.strip()] = cast(value.strip())
    return pairs


@click.group()
def main() -> None:
    """mess-kedro: expressive music similarity."""


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run the pipelines (options as for `kedro run`)."""
    from mess_kedro.__main__ import main as kedro_main

    kedro_main(args=ctx.args)


def _answer(project: str, backbone: str | None, ask) -> None:
    """Load the search, run ``ask(search) -> (title, table)``, print it; errors: one line, exit 1."""
    from kedro.io.core import DatasetError

    from mess_kedro.audio import AudioReadError
    from mess_kedro.indexing import IndexMismatchError
    from mess_kedro.serving import load_search

    # The answer is the table: keep library warnings and the catalog's log lines out of it.
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    try:
        # Some libraries print on import (pyfluidsynth does when CI is set): keep stdout the answer.
        with contextlib.redirect_stdout(io.StringIO()):
            search = load_search(project, backbone)
            title, table = ask(search)
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
    click.echo(f"{search.label}: {title}")
    click.echo(
        table.to_string(index=False, float_format=lambda x: f"{x:.4f}") if len(table) else "(no results)"
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
@click.option("-n", "--top", default=10, show_default=True, help="Number of results.")
@click.option("--exclude-same-piece", is_flag=True, help="Only other works (find other pieces played alike).")
@click.option("--include-self", is_flag=True, help="Keep the query recording in the results.")
@click.option("--where", default=None, help="Metadata filter, e.g. composer=J. S. Bach.")
@_backbone
@_project
def similar(  # noqa: PLR0917 - click passes every option positionally
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
        respect = f"{aspect or weights} ({method})" if (aspect or weights) else f"fused {fused or 'default'}"
        return f"recordings like {query} in {respect}", table

    _answer(project, backbone, ask)


@main.command()
@click.argument("first")
@click.argument("second")
@click.option("--mix", default=0.5, show_default=True, help="0 = FIRST, 1 = SECOND.")
@click.option("--aspect", default=None)
@click.option("--fused", default=None)
@_method
@click.option("-n", "--top", default=10, show_default=True)
@_backbone
@_project
def blend(first, second, mix, aspect, fused, method, top, backbone, project) -> None:  # noqa: PLR0917
    """Style interpolation: recordings near the blend of FIRST and SECOND."""
    from mess_kedro.serving import interpolate

    _answer(
        project,
        backbone,
        lambda s: (
            f"blend of {first} and {second} at {mix}",
            interpolate(s, first, second, mix=mix, aspect=aspect, fused=fused, method=method, n=top),
        ),
    )


@main.command()
@click.option("-k", "--clusters", default=5, show_default=True)
@click.option("--aspect", default=None)
@click.option("--fused", default=None)
@_method
@_backbone
@_project
def clusters(clusters, aspect, fused, method, backbone, project) -> None:  # noqa: PLR0917
    """Cluster the collection and name each cluster by its dominant metadata."""
    from mess_kedro.serving import name_clusters

    _answer(
        project,
        backbone,
        lambda s: (
            f"{clusters} clusters",
            name_clusters(s, clusters, aspect=aspect, fused=fused, method=method),
        ),
    )


if __name__ == "__main__":
    main()
