"""Training subjects that span the population: its extreme subjects are simulated and trained on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from edge_runtime.contracts.feature_spec import ANTHROPOMETRIC_FEATURES
from host_training.learning.training import TrainConfig, split_subjects
from host_training.population.sampling import population_extremes, write_population
from host_training.simulation.dataset import make_config, prepare_output, simulate_shard


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_population(tmp_path_factory.mktemp("pop") / "p.parquet", 300, seed=5)


def test_extremes_are_the_smallest_and_largest_of_each_input(population: Path) -> None:
    table = pq.read_table(population)
    anchors = population_extremes(population)
    expected = set()
    for name in ANTHROPOMETRIC_FEATURES:
        values = table.column(name).to_numpy()
        expected |= {int(np.argmin(values)), int(np.argmax(values))}
    assert set(anchors) == expected and 2 <= len(anchors) <= 2 * len(ANTHROPOMETRIC_FEATURES)


def test_a_spanning_dataset_simulates_the_extremes_and_training_keeps_them(
    population: Path, tmp_path: Path
) -> None:
    plain = make_config(population, 4, "tiny", 7, "fast", 3)
    assert plain.subject_ids() == [0, 1, 2, 3] and "anchor_subjects" not in plain.content_key()
    config = make_config(population, 4, "tiny", 7, "fast", 3, span_population=True)
    anchors = [a for a in population_extremes(population) if a >= 4]
    assert config.subject_ids() == [0, 1, 2, 3, *anchors]
    assert config.content_key()["anchor_subjects"] == list(config.anchor_subjects)
    out = tmp_path / "data"
    for shard in prepare_output(out, config):
        simulate_shard(config, shard, str(out))
    simulated = set(pq.read_table(out / "shards", columns=["subject_id"]).column(0).to_pylist())
    assert simulated == set(config.subject_ids())
    # the extremes are always trained on; the held-out subjects are drawn from the others
    ids = np.array(sorted(simulated))
    for seed in range(5):
        splits = split_subjects(ids, TrainConfig(seed=seed), config.anchor_subjects)
        assert set(anchors) <= set(splits.train)
        assert not set(anchors) & (set(splits.val) | set(splits.test))
        assert sorted((*splits.train, *splits.val, *splits.test)) == sorted(simulated)
