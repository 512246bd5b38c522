"""Damaged host-side inputs found by fuzzing: each refused with the file named, never a
traceback and never non-finite numbers carried on into training or a report."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edge_runtime.contracts.feature_spec import DEFAULT_FEATURES
from host_training.errors import DatasetError, PopulationFileError
from host_training.learning.run import load_run
from host_training.learning.training import TrainingError
from host_training.model.markers import MarkerError, read_trc, write_trc
from host_training.population.sampling import METADATA_KEY, population_metadata, write_population
from host_training.simulation.dataset import muscle_names
from host_training.simulation.frames import load_frames


def test_population_metadata_that_is_not_json_is_refused(tmp_path: Path) -> None:
    path = write_population(tmp_path / "p.parquet", 20, seed=1)
    table = pq.read_table(path)
    meta = dict(table.schema.metadata or {}) | {METADATA_KEY: b"\x88{not json"}
    pq.write_table(table.replace_schema_metadata(meta), path)
    with pytest.raises(PopulationFileError, match="metadata is not JSON"):
        population_metadata(path)


def test_a_trc_with_a_time_that_is_not_a_number_is_refused(tmp_path: Path) -> None:
    t = np.arange(10) / 100.0
    write_trc(tmp_path / "m.trc", t, {n: np.ones((10, 3)) * k for k, n in enumerate("ABC")})
    lines = (tmp_path / "m.trc").read_text().split("\n")
    fields = lines[-2].split("\t")
    fields[1] = "nan"
    lines[-2] = "\t".join(fields)
    (tmp_path / "m.trc").write_text("\n".join(lines))
    with pytest.raises(MarkerError, match=r"m\.trc"):
        read_trc(tmp_path / "m.trc")


def test_a_shard_with_an_input_beyond_float32_is_refused(
    learning_dataset: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(learning_dataset, data)
    shard = sorted((data / "shards").glob("shard-*.parquet"))[0]
    table = pq.read_table(shard)
    column = "neck_extension_rad_s"
    values = table[column].to_numpy().copy()
    values[3] = 1e300  # finite as float64, infinite as the network's float32
    index = table.schema.get_field_index(column)
    pq.write_table(table.set_column(index, column, pa.array(values)), shard)
    with pytest.raises(DatasetError, match=rf"non-finite values \(or beyond float32\) in {column}"):
        load_frames(data, DEFAULT_FEATURES, muscle_names())


def test_weights_with_non_finite_values_are_refused(learning_run: Path, tmp_path: Path) -> None:
    import torch

    run = tmp_path / "run"
    shutil.copytree(learning_run, run)
    saved = torch.load(run / "weights.pt", weights_only=True)
    first = next(iter(saved["state_dict"]))
    saved["state_dict"][first].view(-1)[0] = float("nan")
    torch.save(saved, run / "weights.pt")
    with pytest.raises(TrainingError, match="non-finite"):
        load_run(run)
    torch.save(torch.zeros(3), run / "weights.pt")
    with pytest.raises(TrainingError, match="weights cannot be loaded"):
        load_run(run)
