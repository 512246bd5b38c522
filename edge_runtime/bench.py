"""``cervical bench model-runtime``: float32 vs int8 TFLite on the hub runtime, side by side.

Latency per sample of ``invoke`` (with set/get tensor) at batch 1 and batched, and of the whole
hub path (normalise, quantise, invoke, dequantise, forces in N) at batch 1, for both models,
measured interleaved in one process on one thread so the ratios hold on a noisy machine.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from edge_runtime.contracts.feature_spec import FeatureSpec
from edge_runtime.contracts.force_model import ForceModel, runtime_name

INT8_FILE = "tflite/model_int8.tflite"  # written into a run by `cervical quantize`
FLOAT_FILE = "tflite/model_float32.tflite"


def _per_sample_us(fn: Callable[[], Any], samples: int, repeats: int) -> float:
    """Median over repeats of (time of fn) / samples, in µs."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) / samples * 1e6)
    return statistics.median(times)


def measure(run: Path, batch: int, repeats: int) -> dict[str, Any]:
    manifest = json.loads((run / "manifest.json").read_text())
    spec = FeatureSpec.from_dict(manifest["feature_spec"])
    paths = {"int8": run / INT8_FILE, "float32": run / FLOAT_FILE}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{missing} missing: run `cervical quantize --run {run} ...` first")
    models = {k: ForceModel(p.read_bytes(), spec, num_threads=1) for k, p in paths.items()}
    rng = np.random.default_rng(0)
    lo = np.array([r[0] for r in spec.input_range])
    hi = np.array([r[1] for r in spec.input_range])
    x = lo + (hi - lo) * rng.random((batch, spec.n_inputs))
    inputs: dict[str, tuple[Any, Any]] = {}
    for name, m in models.items():
        normalised = spec.model_inputs(x)
        q = m.input_quantisation.quantise(normalised) if m.input_quantisation else normalised
        inputs[name] = (q[:1], q)
    figures: dict[str, Any] = {"runtime": runtime_name(), "batch": batch, "threads": 1}
    loops = 2000
    for _round in range(2):  # interleaved: float and int8 alternate within each round
        for name, m in models.items():
            one, many = inputs[name]

            def invoke_one(m: ForceModel = m, one: Any = one) -> None:
                for _ in range(loops):
                    m.invoke_standardised(one)

            def forces_one(m: ForceModel = m) -> None:
                for i in range(loops // 4):
                    m.forces(x[i % batch : i % batch + 1])

            figures[f"{name}_invoke_batch1_us"] = _per_sample_us(invoke_one, loops, repeats)
            m.invoke_standardised(many)  # resize once outside the timing

            def invoke_many(m: ForceModel = m, many: Any = many) -> None:
                m.invoke_standardised(many)

            figures[f"{name}_invoke_batched_us"] = _per_sample_us(invoke_many, batch, repeats * 5)
            figures[f"{name}_hub_path_batch1_us"] = _per_sample_us(forces_one, loops // 4, repeats)
    for name, p in paths.items():
        figures[f"{name}_bytes"] = p.stat().st_size
    figures["int8_vs_float_invoke_batch1"] = (
        figures["int8_invoke_batch1_us"] / figures["float32_invoke_batch1_us"]
    )
    figures["int8_vs_float_size"] = figures["int8_bytes"] / figures["float32_bytes"]
    return figures


def bench_model_runtime(
    run: Annotated[Path, typer.Option(help="Run directory after `cervical quantize`.")],
    batch: Annotated[int, typer.Option(help="Batch size of the batched figures.", min=2)] = 256,
    repeats: Annotated[int, typer.Option(min=1)] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Invoke latency per sample, float32 vs int8, batch 1 and batched, and model sizes."""
    try:
        f = measure(run, batch, repeats)
    except (FileNotFoundError, ValueError) as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    if as_json:
        print(json.dumps(f))
        return
    table = Table(title=f"model runtime on {f['runtime']}, 1 thread (µs per sample)")
    for col in ("model", "invoke, batch 1", f"invoke, batch {batch}", "hub path, batch 1", "size"):
        table.add_column(col, justify="right")
    for name in ("float32", "int8"):
        table.add_row(
            name,
            f"{f[f'{name}_invoke_batch1_us']:.2f}",
            f"{f[f'{name}_invoke_batched_us']:.3f}",
            f"{f[f'{name}_hub_path_batch1_us']:.2f}",
            f"{f[f'{name}_bytes'] / 1024:.0f} KiB",
        )
    Console().print(table)
    Console().print(
        f"int8 / float32: invoke at batch 1 x{f['int8_vs_float_invoke_batch1']:.2f}, "
        f"size x{f['int8_vs_float_size']:.2f}"
    )
