"""``cervical bench model``: population, personalisation and model-building costs, side by side.

Every figure is measured in the same run, interleaved, so the ratios hold on a noisy machine:
building a personalised model from the tables is compared with OpenSim's own ways of getting a
model (loading an .osim file; copy-constructing a loaded model).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _one_subject(person: Any, out: Path, ref_file: Path, loaded: Any) -> dict[str, float]:
    from host_training.model_builder import build_model, write_model
    from host_training.opensim_env import opensim
    from host_training.personalise import personalise

    osim = opensim()
    t0 = time.perf_counter()
    anatomy = personalise(person)
    t1 = time.perf_counter()
    model = build_model(anatomy)
    t2 = time.perf_counter()
    model.initSystem()
    t3 = time.perf_counter()

    def build_write() -> None:
        m = build_model(personalise(person))
        m.initSystem()
        write_model(m, out)

    return {
        "personalise_ms": (t1 - t0) * 1e3,
        "build_ms": (t2 - t1) * 1e3,
        "init_system_ms": (t3 - t2) * 1e3,
        "build_write_ms": _median_ms(build_write, 1),
        "opensim_load_file_ms": _median_ms(lambda: osim.Model(str(ref_file)).initSystem(), 1),
        "opensim_copy_model_ms": _median_ms(lambda: osim.Model(loaded).initSystem(), 1),
    }


def measure(subjects: int, population_rows: int) -> dict[str, float]:
    """The figures of ``cervical bench model`` (ms per subject unless the key says otherwise)."""
    from host_training.model_builder import build_model, write_model
    from host_training.opensim_env import opensim
    from host_training.personalise import personalise
    from host_training.population import subject_anthropometrics, write_population

    osim = opensim()
    with tempfile.TemporaryDirectory() as tmp:
        pop = Path(tmp) / "population.parquet"
        t0 = time.perf_counter()
        write_population(pop, population_rows, seed=7)
        population_s = time.perf_counter() - t0
        people = [subject_anthropometrics(pop, i) for i in range(subjects)]
        ref_file = write_model(build_model(), Path(tmp) / "reference.osim")
        loaded = osim.Model(str(ref_file))
        loaded.initSystem()
        build_model(personalise(people[0])).initSystem()  # warm caches before timing

        figures: dict[str, list[float]] = {k: [] for k in (
            "personalise_ms", "build_ms", "init_system_ms", "build_write_ms",
            "opensim_load_file_ms", "opensim_copy_model_ms")}  # fmt: skip
        for i, person in enumerate(people):  # interleaved: drift hits every figure alike
            out = Path(tmp) / f"s{i}.osim"
            for key, value in _one_subject(person, out, ref_file, loaded).items():
                figures[key].append(value)
    result = {k: statistics.median(v) for k, v in figures.items()}
    result["population_rows_per_s"] = population_rows / population_s
    result["personalise_build_ms"] = result["personalise_ms"] + result["build_ms"]
    result["ratio_build_write_vs_load_file"] = (
        result["build_write_ms"] / result["opensim_load_file_ms"]
    )
    result["subjects"] = subjects
    result["population_rows"] = population_rows
    return result


def bench_model(
    subjects: Annotated[int, typer.Option(help="Subjects to personalise and build.", min=1)] = 30,
    population_rows: Annotated[
        int, typer.Option(help="Rows for the population-sampling figure.", min=1)
    ] = 1_000_000,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Population rows/s; personalise, build, initSystem and build+write ms per subject; and
    OpenSim's load-from-file and copy-a-model costs, measured side by side."""
    r = measure(subjects, population_rows)
    if as_json:
        print(json.dumps(r, sort_keys=True))
        return
    table = Table(title=f"cervical bench model ({subjects} subjects, median per subject)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("population sampling + write", f"{r['population_rows_per_s']:,.0f} rows/s"),
        ("personalise (tables, numpy)", f"{r['personalise_ms']:.2f} ms"),
        ("build OpenSim model in memory", f"{r['build_ms']:.2f} ms"),
        ("personalise + build (target <= 20 ms)", f"{r['personalise_build_ms']:.2f} ms"),
        ("initSystem", f"{r['init_system_ms']:.2f} ms"),
        ("personalise + build + initSystem + write .osim", f"{r['build_write_ms']:.2f} ms"),
        ("OpenSim: load reference .osim + initSystem", f"{r['opensim_load_file_ms']:.2f} ms"),
        ("OpenSim: copy a loaded model + initSystem", f"{r['opensim_copy_model_ms']:.2f} ms"),
        ("ratio build+write / load file", f"{r['ratio_build_write_vs_load_file']:.2f}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)
