from __future__ import annotations

from importlib.metadata import EntryPoint

from typer.testing import CliRunner

from edge_runtime.console import _unavailable, build_app


def test_a_group_whose_extra_is_missing_says_which_extra() -> None:
    ep = EntryPoint(
        name="train", value="host_training.no_such_module:app", group="cervical.commands"
    )
    try:
        ep.load()
    except ImportError as exc:
        app = _unavailable(ep, exc)
    result = CliRunner().invoke(app, [])
    assert result.exit_code == 2
    assert "'host' extra" in result.output


def test_installed_groups_are_plugged_in() -> None:
    result = CliRunner().invoke(build_app(), ["--help"])
    assert result.exit_code == 0
    for group in ("population", "model", "bench"):
        assert group in result.output
