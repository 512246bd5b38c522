"""The ``cervical`` command: a thin root that plugs in each installed package's command groups.

Groups are entry points (``cervical.commands``; benchmarks under ``cervical.bench``), so every
package owns its commands and a hub with only the ``edge`` extra still gets a working CLI: a group
whose package's dependencies are not installed is listed with the extra that provides it.
"""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint, entry_points

import typer

log = logging.getLogger(__name__)

EXTRA_HINT = {
    "host_training": "host",
    "quantization": "quant",
    "edge_runtime": "edge",
    "ble_gateway": "gateway",
    "cervical_demo": "host,gateway,web",
}


def _unavailable(ep: EntryPoint, exc: ImportError) -> typer.Typer:
    package = ep.value.split(".", 1)[0]
    extra = EXTRA_HINT.get(package, "?")
    app = typer.Typer(help=f"[unavailable: install the '{extra}' extra] ({exc.name} missing)")

    @app.callback(invoke_without_command=True)
    def _missing() -> None:
        typer.echo(
            f"'{ep.name}' needs the '{extra}' extra: pip install 'cervical[{extra}]' "
            f"({exc.name} is not installed)",
            err=True,
        )
        raise typer.Exit(2)

    return app


def build_app() -> typer.Typer:
    app = typer.Typer(
        help="Personalised cervical biomechanics: models, datasets, networks and the hub.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
    )
    for ep in sorted(entry_points(group="cervical.commands"), key=lambda e: e.name):
        try:
            app.add_typer(ep.load(), name=ep.name)
        except ImportError as exc:
            app.add_typer(_unavailable(ep, exc), name=ep.name)
    bench = typer.Typer(
        help="Benchmarks: side-by-side ratios in one run; a table, or one JSON object (--json).",
        no_args_is_help=True,
    )
    for ep in sorted(entry_points(group="cervical.bench"), key=lambda e: e.name):
        try:
            bench.command(ep.name)(ep.load())
        except ImportError as exc:
            bench.add_typer(_unavailable(ep, exc), name=ep.name)
    app.add_typer(bench, name="bench")
    return app


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    build_app()()
