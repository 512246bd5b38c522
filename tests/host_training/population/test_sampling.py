from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edge_runtime.contracts.anthropometrics import PLAUSIBLE_RANGES
from edge_runtime.contracts.errors import InvalidAnthropometricsError
from host_training.errors import PopulationFileError, UnknownSubjectError
from host_training.population.sampling import (
    BLOCK_ROWS,
    population_metadata,
    population_size,
    subject_anthropometrics,
    survey_columns_to_si,
    write_population,
)

COMPARED = ("stature_m", "body_mass_kg", "neck_length_m", "shoulder_width_m")


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_population(tmp_path_factory.mktemp("pop") / "p.parquet", 200_000, seed=7)


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    a = write_population(tmp_path / "a.parquet", 70_000, seed=11)
    b = write_population(tmp_path / "b.parquet", 70_000, seed=11)
    c = write_population(tmp_path / "c.parquet", 70_000, seed=12)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    assert population_metadata(a)["seed"] == 11


def test_a_smaller_population_is_a_prefix_of_a_larger_one(tmp_path: Path) -> None:
    small = pq.read_table(write_population(tmp_path / "s.parquet", 1_000, seed=5))
    large = pq.read_table(write_population(tmp_path / "l.parquet", BLOCK_ROWS + 10, seed=5))
    assert large.slice(0, 1_000).equals(small)
    ids = large.column("subject_id").to_numpy()
    np.testing.assert_array_equal(ids, np.arange(BLOCK_ROWS + 10))


def test_values_are_bounded_and_valid(population: Path) -> None:
    t = pq.read_table(population)
    for name, (lo, hi) in PLAUSIBLE_RANGES.items():
        v = t.column(name).to_numpy()
        assert np.isfinite(v).all()
        assert lo <= v.min() and v.max() <= hi, name
    sex = np.array(t.column("sex").to_pylist())
    assert 0.49 < (sex == "female").mean() < 0.51
    head = t.column("head_mass_kg").to_numpy()
    assert 4.1 < head[sex == "male"].mean() < 4.5  # reference skull 4.30 kg at the mean man
    assert head[sex == "female"].mean() < head[sex == "male"].mean()


def _ansur(path: Path) -> dict[str, np.ndarray]:
    with path.open(newline="", encoding="latin-1") as f:
        rows = list(csv.DictReader(f))
    cols = ("stature", "weightkg", "cervicaleheight", "tragiontopofhead", "biacromialbreadth",
            "headlength", "headbreadth")  # fmt: skip
    return survey_columns_to_si({c: np.array([float(r[c]) for r in rows]) for c in cols})


@pytest.mark.parametrize(("sex", "filename"), [("female", "ANSUR_II_FEMALE_Public.csv"),
                                               ("male", "ANSUR_II_MALE_Public.csv")])  # fmt: skip
def test_marginals_and_correlation_match_ansur(
    population: Path, ansur_dir: Path, sex: str, filename: str
) -> None:
    survey = _ansur(ansur_dir / filename)
    t = pq.read_table(population)
    mask = np.array(t.column("sex").to_pylist()) == sex
    ours = {c: t.column(c).to_numpy()[mask] for c in COMPARED}
    for c in COMPARED:
        assert ours[c].mean() == pytest.approx(survey[c].mean(), rel=0.05), c
        assert ours[c].std() == pytest.approx(survey[c].std(), rel=0.05), c
    r_ours = np.corrcoef(ours["shoulder_width_m"], ours["stature_m"])[0, 1]
    r_survey = np.corrcoef(survey["shoulder_width_m"], survey["stature_m"])[0, 1]
    assert r_ours == pytest.approx(r_survey, rel=0.05)


def test_subject_lookup(population: Path) -> None:
    t = pq.read_table(population)
    a = subject_anthropometrics(population, 123_456)
    assert a.neck_length_m == t.column("neck_length_m")[123_456].as_py()
    assert population_size(population) == 200_000
    with pytest.raises(UnknownSubjectError, match="no subject_id 200000"):
        subject_anthropometrics(population, 200_000)
    with pytest.raises(UnknownSubjectError):
        subject_anthropometrics(population, -1)


def test_corrupt_and_foreign_files_are_named(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 not really")
    with pytest.raises(PopulationFileError, match=r"corrupt\.parquet.*not a readable Parquet"):
        subject_anthropometrics(corrupt, 0)
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"subject_id": [0], "x": [1.0]}), foreign)
    with pytest.raises(PopulationFileError, match="missing columns"):
        subject_anthropometrics(foreign, 0)
    with pytest.raises(PopulationFileError, match="no such file"):
        subject_anthropometrics(tmp_path / "absent.parquet", 0)


def test_bad_values_in_a_file_name_the_field(tmp_path: Path, population: Path) -> None:
    t = pq.read_table(population).slice(0, 10)
    neck = t.column("neck_length_m").to_numpy().copy()
    neck[3] = np.nan
    bad = t.set_column(t.schema.get_field_index("neck_length_m"), "neck_length_m", pa.array(neck))
    pq.write_table(bad, tmp_path / "nan.parquet")
    with pytest.raises(InvalidAnthropometricsError, match="neck_length_m = nan"):
        subject_anthropometrics(tmp_path / "nan.parquet", 3)


def test_bad_arguments_write_nothing(tmp_path: Path) -> None:
    target = tmp_path / "p.parquet"
    for kwargs in ({"n": 0, "seed": 1}, {"n": 10, "seed": -1},
                   {"n": 10, "seed": 1, "female_fraction": 1.5}):  # fmt: skip
        with pytest.raises(ValueError, match="must"):
            write_population(target, **kwargs)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_existing_file(tmp_path: Path) -> None:
    target = write_population(tmp_path / "p.parquet", 100, seed=1)
    before = target.read_bytes()

    def boom(_: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_population(target, 100, seed=2, progress=boom)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["p.parquet"]
