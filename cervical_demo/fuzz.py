"""``cervical bench fuzz``: corrupt and hostile inputs fed to every file reader the commands use
(recordings, orientation, TRC and marker maps, profile and hub TOML, populations, datasets,
training runs, model bundles) and to the clinic's sync ingestion. Per reader: how many cases
were refused cleanly, accepted as valid, escaped as a traceback, hung, or were accepted with a
non-finite value in what a command would report.

Every case is a seeded mutation of a valid input made here (``fuzz_cases``), so a run is
reproducible from its seed; the readers run in a worker process (``fuzz_readers``) that is
killed and restarted when a case exceeds ``--case-timeout-s`` (counted as a hang).
"""

from __future__ import annotations

import json
import os
import random
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from cervical_demo.fuzz_cases import MUTATORS
from edge_runtime.common.text import printable, report_error

OUTCOMES = ("clean_refusals", "accepted_valid", "tracebacks", "hangs", "silent_nonfinite_outputs")
MAP_TOML = """[head]
markers = ["HF", "HL", "HR"]
[trunk]
markers = ["C7", "CLAV", "ACRL", "ACRR"]
[calibration]
neutral_s = [0.0, 0.5]
[gaps]
max_fill_s = 0.2
[assessment]
min_deficit_deg = 12.0
"""
HUB_TOML = """[hub]
database = "/tmp/cervical-fuzz/hub.db"
models = "/tmp/cervical-fuzz/models"
public_key = "/tmp/cervical-fuzz/signing.pub"
profile = "/tmp/cervical-fuzz/profile.toml"
retention_days = 90
[sensors]
head = "sim:seed=1"
trunk = "sim:seed=1"
rate_hz = 100.0
[pipeline]
epoch_s = 10.0
break_s = 3.0
max_session_s = 1800.0
[calibration]
nod_direction = "auto"
trunk_right_axis = [0.0, 0.0, 1.0]
[assessment]
min_deficit_deg = 12.0
"""


@dataclass
class Seed:
    """A valid input and how its cases are made: ``files`` maps a file of the input (relative;
    "" for a single-file input) to its mutator; the rest of a directory input is linked."""

    path: Path
    files: dict[str, str]
    context: dict[str, Any] = field(default_factory=dict)
    resign_key: Path | None = None  # bundles: a mutated manifest or model is signed again


def _recording(path: Path) -> None:
    from edge_runtime.contracts.recording import ImuRecording

    rng = np.random.default_rng(0)
    t = np.arange(300) / 100.0
    gyr = 0.4 * np.sin(np.outer(t, [1.0, 1.7, 0.6]))
    acc = np.tile([0.0, 0.0, 9.81], (len(t), 1)) + rng.normal(0, 0.05, (len(t), 3))
    mag = np.tile([20.0, 0.0, -40.0], (len(t), 1)) + rng.normal(0, 0.5, (len(t), 3))
    ImuRecording(t, gyr, acc, mag).write_csv(path)


def _trc(path: Path) -> None:
    from host_training.model.markers import write_trc

    t = np.arange(60) / 60.0
    local = {"HF": (0.1, 0.25, 0.0), "HL": (0.0, 0.22, -0.08), "HR": (0.0, 0.22, 0.08),
             "C7": (-0.06, 0.0, 0.0), "CLAV": (0.08, -0.05, 0.0), "ACRL": (0.0, -0.02, -0.18),
             "ACRR": (0.0, -0.02, 0.18)}  # fmt: skip
    sway = np.stack([0.01 * np.sin(t), np.zeros_like(t), np.zeros_like(t)], axis=1)
    write_trc(path, t, {n: np.array(p) + sway + [0.5, 1.4, 0.2] for n, p in local.items()})


def _session_record(path: Path) -> None:
    from datetime import UTC, datetime

    from ble_gateway.web.synthetic import session_payload

    rng = np.random.default_rng(0)
    record = session_payload(1, 10, rng, datetime(2026, 11, 24, tzinfo=UTC), "1.0.0")
    path.write_text(record.to_json())


def _dataset_and_run(root: Path, console: Console) -> tuple[Path, Path, dict[str, Any]]:
    from host_training.learning.run import load_run
    from host_training.learning.training import TrainConfig, train
    from host_training.population.sampling import write_population
    from host_training.simulation.dataset import make_config, prepare_output, simulate_shard

    console.print("fuzz: making a small dataset and run to corrupt (a minute)", markup=False)
    population = write_population(root / "population-big.parquet", 16, seed=3)
    config = make_config(population, 16, "tiny", 7, "fast", 4)
    data = root / "data"
    for shard in prepare_output(data, config):
        simulate_shard(config, shard, str(data))
    run = root / "run"
    small = TrainConfig(hidden_units=(16,), time_budget_s=3, max_epochs=2,
                        calibration_samples=5000, gate_samples=300, batch_size=256)  # fmt: skip
    train(data, run, small)
    spec = load_run(run).spec
    rows = np.zeros((4, spec.n_inputs), dtype=np.float32) + np.asarray(
        [(lo + hi) / 2 for lo, hi in spec.input_range], dtype=np.float32
    )
    context = {"features": list(spec.features), "muscles": list(spec.outputs),
               "rows": rows.tolist()}  # fmt: skip
    return data, run, context


def make_seeds(
    root: Path,
    console: Console,
    with_training: bool,
    bundle: Path | None,
    key: Path | None,
    pubkey: Path | None,
) -> dict[str, Seed]:
    from edge_runtime.contracts.anthropometrics import Anthropometrics, write_profile
    from host_training.population.sampling import write_population

    seeds: dict[str, Seed] = {}
    _recording(root / "recording.csv")
    seeds["recording_csv"] = Seed(root / "recording.csv", {"": "text"})
    seeds["orientation"] = Seed(root / "recording.csv", {"": "text"})
    _trc(root / "markers.trc")
    seeds["trc"] = Seed(root / "markers.trc", {"": "text"})
    (root / "map.toml").write_text(MAP_TOML)
    seeds["marker_map"] = Seed(root / "map.toml", {"": "text"})
    write_profile(Anthropometrics("female", 1.64, 61.0, 0.105, 0.36, 4.1), root / "profile.toml")
    seeds["profile_toml"] = Seed(root / "profile.toml", {"": "text"})
    (root / "hub.toml").write_text(HUB_TOML)
    seeds["hub_toml"] = Seed(root / "hub.toml", {"": "text"})
    write_population(root / "population.parquet", 40, seed=5)
    seeds["population"] = Seed(root / "population.parquet", {"": "binary"})
    _session_record(root / "session.json")
    seeds["sync_ingestion"] = Seed(root / "session.json", {"": "json"})
    if with_training:
        data, run, context = _dataset_and_run(root, console)
        shard = next((data / "shards").glob("shard-*.parquet")).relative_to(data)
        seeds["dataset"] = Seed(data, {"manifest.json": "json", str(shard): "binary"}, context)
        seeds["run"] = Seed(run, {"manifest.json": "json", "weights.pt": "binary"}, context)
    if bundle is not None and key is not None and pubkey is not None:
        seeds["bundle"] = Seed(
            bundle,
            {"manifest.json": "json", "model.tflite": "binary", "manifest.sig": "binary"},
            {"pubkey": str(pubkey)},
            resign_key=key,
        )
    return seeds


def make_case(seed: Seed, out: Path, rng: random.Random) -> Path:
    """One corrupted copy of ``seed`` at ``out`` (a file, or a folder of links and one file)."""
    target, how = rng.choice(sorted(seed.files.items()))
    if not target:
        out.write_bytes(MUTATORS[how](seed.path.read_bytes(), rng))
        return out
    out.mkdir()
    for item in seed.path.rglob("*"):
        rel = item.relative_to(seed.path)
        if item.is_dir():
            (out / rel).mkdir(exist_ok=True)
        elif str(rel) != target:
            (out / rel).symlink_to(item.resolve())
    data = MUTATORS[how]((seed.path / target).read_bytes(), rng)
    (out / target).write_bytes(data)
    if seed.resign_key is not None and target != "manifest.sig":
        _resign(out, target, data, seed.resign_key)
    return out


def _resign(bundle: Path, changed: str, data: bytes, key_path: Path) -> None:
    """A bundle whose manifest or model changed, signed again: what a signing-key holder's
    faulty build would ship (the checks after the signature must catch it)."""
    import hashlib

    from edge_runtime.contracts.bundle import load_private_key

    manifest_bytes = (bundle / "manifest.json").read_bytes()
    if changed != "manifest.json":
        try:
            manifest = json.loads(manifest_bytes)
            manifest["files"][changed] = {"sha256": hashlib.sha256(data).hexdigest(),
                                          "bytes": len(data)}  # fmt: skip
            manifest_bytes = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
        except (ValueError, KeyError, TypeError):
            pass
        (bundle / "manifest.json").unlink()
        (bundle / "manifest.json").write_bytes(manifest_bytes)
    (bundle / "manifest.sig").unlink()
    (bundle / "manifest.sig").write_bytes(load_private_key(key_path).sign(manifest_bytes))


class Worker:
    """The reader process; restarted after a hang."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cervical_demo.fuzz_readers"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )  # fmt: skip
        if self._line(300) is None:
            raise RuntimeError("the fuzz worker did not start")

    def _line(self, timeout_s: float) -> dict[str, Any] | None:
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        if not ready:
            return None
        line = self.proc.stdout.readline()
        return json.loads(line) if line else {"outcome": "traceback", "detail": "worker died"}

    def run(self, case: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(case) + "\n")
        self.proc.stdin.flush()
        result = self._line(timeout_s)
        if result is None:
            self.stop()
            return {"outcome": "hang", "detail": f"no answer in {timeout_s:.0f} s"}
        if result.get("detail") == "worker died":
            self.stop()
        return result

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    pipe.close()
            self.proc = None


def fuzz(
    seeds: dict[str, Seed],
    cases: int,
    seed: int,
    case_timeout_s: float,
    work: Path,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run ``cases`` corrupted inputs per reader; figures per reader and a few examples."""
    names = {"clean_refusal": "clean_refusals", "traceback": "tracebacks", "hang": "hangs",
             "accepted_valid": "accepted_valid",
             "silent_nonfinite_output": "silent_nonfinite_outputs"}  # fmt: skip
    readers: dict[str, Any] = {}
    worker = Worker()
    task = progress.add_task("fuzz", total=cases * len(seeds)) if progress else None
    try:
        for reader, s in seeds.items():
            counts = dict.fromkeys(OUTCOMES, 0) | {"cases": cases}
            examples: list[str] = []
            for i in range(cases):
                rng = random.Random(f"{seed}-{reader}-{i}")
                case_path = make_case(s, work / f"{reader}-{i}{s.path.suffix}", rng)
                result = worker.run(
                    {"reader": reader, "path": str(case_path), "seed": s.context}, case_timeout_s
                )
                counts[names[result["outcome"]]] += 1
                if (
                    result["outcome"] not in ("clean_refusal", "accepted_valid")
                    and len(examples) < 5
                ):
                    examples.append(f"case {i}: {result['outcome']}: {result['detail']}")
                shutil.rmtree(case_path) if case_path.is_dir() else case_path.unlink()
                if progress is not None and task is not None:
                    progress.update(task, advance=1, description=f"fuzz {reader}")
            readers[reader] = counts | {"examples": examples}
    finally:
        worker.stop()
    return readers


def bench_fuzz(
    cases: Annotated[int, typer.Option(help="Corrupted inputs per reader.", min=1)] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the mutations (reproducible).")] = 0,
    case_timeout_s: Annotated[
        float, typer.Option(help="A case still running after this is a hang.", min=1.0)
    ] = 30.0,
    training: Annotated[
        bool, typer.Option(help="Also fuzz datasets and training runs (makes a small one).")
    ] = True,
    bundle: Annotated[Path | None, typer.Option(help="A signed bundle to corrupt.")] = None,
    key: Annotated[Path | None, typer.Option(help="Its signing key (to sign corruptions).")] = None,
    pubkey: Annotated[Path | None, typer.Option(help="Its public key.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Corrupt and hostile inputs for every reader: clean refusals, valid acceptances,
    tracebacks, hangs and non-finite outputs reported as success, per reader."""
    console = Console(stderr=as_json)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cervical-fuzz-") as tmp:
        root = Path(tmp)
        (root / "seeds").mkdir()
        (root / "cases").mkdir()
        try:
            seeds = make_seeds(root / "seeds", console, training, bundle, key, pubkey)
        except Exception as exc:  # the seeds are made by the product itself: report, exit 2
            report_error(f"making the inputs to corrupt failed: {exc}")
            raise typer.Exit(2) from None
        with Progress(console=console, transient=True) as progress:
            readers = fuzz(seeds, cases, seed, case_timeout_s, root / "cases", progress)
    seconds = round(time.perf_counter() - started, 1)
    figures = {"cases_per_reader": cases, "seed": seed, "seconds": seconds, "readers": readers}
    failed = sum(r[k] for r in readers.values() for k in OUTCOMES[2:])
    if as_json:
        print(json.dumps(figures))
    else:
        table = Table(title=f"fuzzing: {cases} corrupted inputs per reader (seed {seed})")
        table.add_column("reader")
        for col in ("cases", "refused", "accepted", "tracebacks", "hangs", "non-finite"):
            table.add_column(col, justify="right")
        for name, r in readers.items():
            table.add_row(name, *(str(r[k]) for k in ("cases", *OUTCOMES)))
        console.print(table)
        for name, r in readers.items():
            for example in r["examples"]:
                console.print(f"{name}: {printable(example, 300)}", markup=False)
    if failed:
        raise typer.Exit(1)
