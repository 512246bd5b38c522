"""Every command of the README, run as a user runs it: the installed ``cervical`` script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from host_training.model.opensim_env import opensim

CERVICAL = str(Path(sys.executable).with_name("cervical"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CERVICAL, *args], capture_output=True, text=True, timeout=600, check=False
    )


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "population.parquet"
    r = run("population", "sample", "--n", "5000", "--seed", "7", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "wrote 5,000 subjects" in r.stdout
    return out


def test_help_lists_every_group_and_units() -> None:
    r = run("--help")
    assert r.returncode == 0
    for group in ("population", "model", "bench"):
        assert group in r.stdout
    assert "head_mass_kg" in run("population", "sample", "--help").stdout
    assert "deg" in run("model", "info", "--help").stdout


def test_build_reference_and_subject_models_and_show_info(population: Path, tmp_path: Path) -> None:
    ref = tmp_path / "reference.osim"
    assert run("model", "build", "--reference", "--out", str(ref)).returncode == 0
    subject = tmp_path / "subject.osim"
    r = run("model", "build", "--population", str(population), "--subject", "123",
            "--out", str(subject))  # fmt: skip
    assert r.returncode == 0, r.stderr
    model = opensim().Model(str(subject))
    model.initSystem()
    assert model.getMuscles().getSize() == 72
    info = run("model", "info", str(subject))
    assert info.returncode == 0, info.stderr
    assert "muscles: 72" in info.stdout
    assert "pitch2" in info.stdout and "-33.0 .. 48.0" in info.stdout
    assert "Subject 123" in info.stdout
    ref_info = run("model", "info", str(ref)).stdout
    assert "total max isometric force: 6,232.9 N" in ref_info


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--subject", "5000"], "no subject_id 5000"),
        (["--subject", "-3"], "no subject_id -3"),
    ],
)
def test_bad_subject_is_named_and_nothing_written(
    population: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "x.osim"
    r = run("model", "build", "--population", str(population), *args, "--out", str(out))
    assert r.returncode == 2
    assert message in r.stderr
    assert not out.exists()


def test_corrupt_population_and_bad_model_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    out = tmp_path / "x.osim"
    r = run("model", "build", "--population", str(bad), "--subject", "1", "--out", str(out))
    assert r.returncode == 2 and "bad.parquet" in r.stderr and not out.exists()
    junk = tmp_path / "junk.osim"
    junk.write_text("<OpenSimDocument>")
    r = run("model", "info", str(junk))
    assert r.returncode == 2 and "junk.osim" in r.stderr
    r = run("model", "build", "--out", str(out))
    assert r.returncode == 2 and "--reference" in r.stderr


def test_population_sample_rejects_bad_arguments(tmp_path: Path) -> None:
    out = tmp_path / "p.parquet"
    for args in (["--n", "0"], ["--seed", "-1"], ["--female-fraction", "2"]):
        r = run("population", "sample", *args, "--out", str(out))
        assert r.returncode == 2, args
    assert not out.exists()


def test_population_show(population: Path) -> None:
    r = run("population", "show", str(population), "--subject", "42")
    assert r.returncode == 0
    assert "neck_length_m" in r.stdout


def test_bench_model_prints_a_table_and_json() -> None:
    r = run("bench", "model", "--subjects", "2", "--population-rows", "2000", "--json")
    assert r.returncode == 0, r.stderr
    figures = json.loads(r.stdout)
    for key in ("population_rows_per_s", "personalise_ms", "build_ms", "build_write_ms",
                "opensim_load_file_ms", "ratio_build_write_vs_load_file"):  # fmt: skip
        assert figures[key] > 0, key
    table = run("bench", "model", "--subjects", "1", "--population-rows", "1000")
    assert table.returncode == 0 and "personalise + build" in table.stdout


def test_errors_show_paths_and_brackets_as_written(tmp_path: Path) -> None:
    """Every command prints refusals through one path that shows data as data: a path with
    '[/x]' in it (once a crash of the error message itself) and bracketed text in a message."""
    folder = tmp_path / "[" / "x] [bold]"  # the path reads ".../[/x] [bold]/..."
    folder.mkdir(parents=True)
    bad = folder / "bad.parquet"
    bad.write_text("not parquet")
    r = run("population", "show", str(bad))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "[/x] [bold]/bad.parquet" in r.stderr.replace("\n", "")
    r = run("bundle", "verify", str(folder), "--pubkey", str(bad))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "[/x]" in r.stderr


def test_no_command_prints_an_error_with_markup() -> None:
    """Static check: error messages are printed by ``report_error`` only (no f-string with
    'error' handed to a Rich console, which would interpret brackets in the data)."""
    import ast

    from tests.conftest import REPO

    offenders = []
    packages = ("host_training", "edge_runtime", "ble_gateway", "quantization", "cervical_demo")
    for path in sorted(p for package in packages for p in (REPO / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "print"
                and node.args
                and isinstance(node.args[0], ast.JoinedStr)
                and "error" in ast.unparse(node.args[0]).lower()
            ):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == [], offenders


def test_a_population_with_wrong_subject_ids_is_refused(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from host_training.population.sampling import write_population

    good = tmp_path / "good.parquet"
    write_population(good, 50, seed=1)
    table = pq.read_table(good)
    ids = pa.array([0] * 50, type=table.schema.field("subject_id").type)
    pq.write_table(table.set_column(0, "subject_id", ids), tmp_path / "same.parquet")
    r = run("population", "show", str(tmp_path / "same.parquet"))
    assert r.returncode == 2 and "row 1 has subject_id 0" in r.stderr
