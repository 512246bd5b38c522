"""A seeded population of adult anthropometrics, fitted to ANSUR II, written as Parquet.

Sampling: per sex, a Gaussian copula over committed ANSUR II statistics
(``ansur2_statistics.json``, made by ``scripts/derive_population_statistics.py``):
normal scores with the survey's correlation, mapped through each variable's quantiles. Rows whose
score leaves the 0.1th..99.9th percentile in any variable are redrawn, which bounds every value to
the survey's observed range. Head mass follows de Leva's (1996) head+neck segment fraction at the
sex's mean body mass, with the head's share of that segment set so that the ANSUR mean man carries
the reference model's skull (4.30 kg), scaled per subject by a head-volume index (head length x
breadth x tragion-to-top), so that heads vary with head size rather than with body mass.

Rows are generated in fixed blocks, each seeded by (seed, block index): the same seed gives
byte-identical files, and a smaller population is a prefix of a larger one (subject 123 is the
same person whatever ``n``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.common.atomic import atomic_path
from edge_runtime.contracts.anthropometrics import NUMERIC_FIELDS, SEXES, Anthropometrics
from host_training.errors import PopulationFileError, UnknownSubjectError

FloatArray = npt.NDArray[np.float64]

STATISTICS_PATH = Path(__file__).resolve().parent / "ansur2_statistics.json"
QUANTILE_PROBABILITIES: tuple[float, ...] = (
    0.001,
    *(round(0.005 * k, 3) for k in range(1, 200)),
    0.999,
)
# Variables fitted to the survey, and the ANSUR II columns (mm, weight in kg x 10) each comes from.
SURVEY_VARIABLES: dict[str, tuple[str, ...]] = {
    "stature_m": ("stature",),
    "body_mass_kg": ("weightkg",),
    "neck_length_m": ("stature", "cervicaleheight", "tragiontopofhead"),
    "shoulder_width_m": ("biacromialbreadth",),
    "head_volume_index_m3": ("headlength", "headbreadth", "tragiontopofhead"),
}
# de Leva 1996, head+neck segment mass fraction of body mass.
HEAD_NECK_MASS_FRACTION = {"female": 0.0668, "male": 0.0694}
REFERENCE_HEAD_MASS_KG = 4.30  # HYOID 1.2 skull (Vasavada 1998, 50th-percentile man)
BLOCK_ROWS = 65_536
POPULATION_COLUMNS = ("subject_id", "sex", *NUMERIC_FIELDS)
METADATA_KEY = b"cervical.population"
GENERATOR_VERSION = 1


def survey_columns_to_si(columns: dict[str, FloatArray]) -> dict[str, FloatArray]:
    """ANSUR II columns (mm; weightkg in kg x 10) -> the fitted variables in SI units."""
    mm = 1e-3
    return {
        "stature_m": columns["stature"] * mm,
        "body_mass_kg": columns["weightkg"] / 10.0,
        "neck_length_m": (
            columns["stature"] - columns["cervicaleheight"] - columns["tragiontopofhead"]
        )
        * mm,
        "shoulder_width_m": columns["biacromialbreadth"] * mm,
        "head_volume_index_m3": columns["headlength"]
        * columns["headbreadth"]
        * columns["tragiontopofhead"]
        * mm**3,
    }


@dataclass(frozen=True)
class SexStatistics:
    variables: tuple[str, ...]
    mean: FloatArray
    sd: FloatArray
    normal_score_cholesky: FloatArray
    quantiles: FloatArray  # (n_variables, n_probabilities)

    def index(self, variable: str) -> int:
        return self.variables.index(variable)


@dataclass(frozen=True)
class PopulationStatistics:
    probabilities: FloatArray
    by_sex: dict[str, SexStatistics]
    sha256: str

    def mean(self, sex: str, variable: str) -> float:
        s = self.by_sex[sex]
        return float(s.mean[s.index(variable)])

    def head_mass_kg(self, sex: str, head_volume_index_m3: FloatArray) -> FloatArray:
        """Head mass: de Leva's fraction at the sex's mean body mass, scaled by head volume."""
        share = REFERENCE_HEAD_MASS_KG / (
            HEAD_NECK_MASS_FRACTION["male"] * self.mean("male", "body_mass_kg")
        )
        mean_head = HEAD_NECK_MASS_FRACTION[sex] * share * self.mean(sex, "body_mass_kg")
        return mean_head * head_volume_index_m3 / self.mean(sex, "head_volume_index_m3")


def load_statistics(path: Path = STATISTICS_PATH) -> PopulationStatistics:
    raw = path.read_bytes()
    data = json.loads(raw)
    by_sex: dict[str, SexStatistics] = {}
    for sex in SEXES:
        d = data[sex]
        by_sex[sex] = SexStatistics(
            variables=tuple(d["variables"]),
            mean=np.array(d["mean"]),
            sd=np.array(d["sd"]),
            normal_score_cholesky=np.linalg.cholesky(np.array(d["normal_score_correlation"])),
            quantiles=np.array(d["quantiles"]),
        )
    return PopulationStatistics(
        probabilities=np.array(data["quantile_probabilities"]),
        by_sex=by_sex,
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def _normal_cdf(z: FloatArray) -> FloatArray:
    from scipy.special import ndtr

    return np.asarray(ndtr(z), dtype=np.float64)


def _bounded_scores(
    rng: np.random.Generator, cholesky: FloatArray, n: int, z_max: float
) -> FloatArray:
    """``n`` correlated standard-normal score rows with every |score| <= z_max (redrawn)."""
    z = rng.standard_normal((n, cholesky.shape[0])) @ cholesky.T
    bad = np.flatnonzero(np.any(np.abs(z) > z_max, axis=1))
    while bad.size:
        z[bad] = rng.standard_normal((bad.size, cholesky.shape[0])) @ cholesky.T
        bad = bad[np.any(np.abs(z[bad]) > z_max, axis=1)]
    return z


def sample_block(
    stats: PopulationStatistics, seed: int, block: int, female_fraction: float
) -> dict[str, Any]:
    """One block of ``BLOCK_ROWS`` subjects, seeded by (seed, block)."""
    rng = np.random.default_rng([seed, block])
    female = rng.random(BLOCK_ROWS) < female_fraction
    # z_max: the normal score of the outermost stored quantile (0.1th / 99.9th percentile).
    z_max = float(-_inverse_normal_cdf(stats.probabilities[0]))
    columns: dict[str, Any] = {name: np.empty(BLOCK_ROWS) for name in NUMERIC_FIELDS}
    for sex, mask in (("female", female), ("male", ~female)):
        s = stats.by_sex[sex]
        u = _normal_cdf(_bounded_scores(rng, s.normal_score_cholesky, int(mask.sum()), z_max))
        values = {
            v: np.interp(u[:, i], stats.probabilities, s.quantiles[i])
            for i, v in enumerate(s.variables)
        }
        for name in ("stature_m", "body_mass_kg", "neck_length_m", "shoulder_width_m"):
            columns[name][mask] = values[name]
        columns["head_mass_kg"][mask] = stats.head_mass_kg(sex, values["head_volume_index_m3"])
    columns["sex"] = np.where(female, "female", "male")
    first = block * BLOCK_ROWS
    columns["subject_id"] = np.arange(first, first + BLOCK_ROWS, dtype=np.int64)
    return columns


def _inverse_normal_cdf(p: float) -> float:
    from scipy.special import ndtri

    return float(ndtri(p))


def iter_blocks(
    n: int, seed: int, female_fraction: float, stats: PopulationStatistics
) -> Iterator[dict[str, Any]]:
    """Blocks of the population in subject order; the last one is cut to ``n`` rows in total."""
    for block in range(-(-n // BLOCK_ROWS)):
        columns = sample_block(stats, seed, block, female_fraction)
        keep = min(BLOCK_ROWS, n - block * BLOCK_ROWS)
        yield {k: v[:keep] for k, v in columns.items()}


def _check_args(n: int, seed: int, female_fraction: float) -> None:
    if n < 1:
        raise ValueError(f"population size n = {n}: must be at least 1")
    if seed < 0:
        raise ValueError(f"seed = {seed}: must be a non-negative integer")
    if not 0.0 <= female_fraction <= 1.0:
        raise ValueError(f"female_fraction = {female_fraction}: must lie in [0, 1]")


def write_population(
    out: Path,
    n: int,
    seed: int,
    female_fraction: float = 0.5,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Sample ``n`` subjects and write them atomically to ``out`` (Parquet); returns ``out``.

    ``progress`` is called with the number of rows written after each block.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    _check_args(n, seed, female_fraction)
    stats = load_statistics()
    metadata = {
        "n": n,
        "seed": seed,
        "female_fraction": female_fraction,
        "block_rows": BLOCK_ROWS,
        "generator_version": GENERATOR_VERSION,
        "statistics_sha256": stats.sha256,
        "statistics_source": "ANSUR II (Gordon et al. 2014); head mass: de Leva 1996",
    }
    schema = pa.schema(
        [("subject_id", pa.int64()), ("sex", pa.string())]
        + [(name, pa.float64()) for name in NUMERIC_FIELDS],
        metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()},
    )
    with atomic_path(out) as tmp, pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for columns in iter_blocks(n, seed, female_fraction, stats):
            writer.write_table(pa.table({c: columns[c] for c in POPULATION_COLUMNS}, schema=schema))
            if progress is not None:
                progress(len(columns["subject_id"]))
    return out


def _open(path: Path, check_ids: bool = False) -> Any:
    import pyarrow.parquet as pq

    if not path.is_file():
        raise PopulationFileError(path, "no such file")
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError variants for corrupt files
        raise PopulationFileError(path, f"not a readable Parquet file ({exc})") from exc
    names = set(pf.schema_arrow.names)
    missing = [c for c in POPULATION_COLUMNS if c not in names]
    if missing:
        raise PopulationFileError(path, f"missing columns {missing}")
    if not check_ids:  # (a subject's own row is checked when it is read)
        return pf
    try:  # one row per subject, in id order: what every reader of a subject relies on
        ids = pf.read(columns=["subject_id"]).column("subject_id").to_numpy()
    except Exception as exc:
        raise PopulationFileError(path, f"subject_id unreadable ({exc})") from exc
    wrong = np.flatnonzero(ids != np.arange(len(ids)))
    if wrong.size:
        raise PopulationFileError(
            path,
            f"row {wrong[0]} has subject_id {ids[wrong[0]]}; ids must be 0, 1, 2, ... in order",
        )
    return pf


def population_size(path: Path) -> int:
    return int(_open(path, check_ids=True).metadata.num_rows)


def population_metadata(path: Path) -> dict[str, Any]:
    meta = _open(path, check_ids=True).schema_arrow.metadata or {}
    raw = meta.get(METADATA_KEY)
    if raw is None:
        return {}
    try:
        found = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise PopulationFileError(path, f"its metadata is not JSON ({exc})") from None
    if not isinstance(found, dict):
        raise PopulationFileError(path, "its metadata is not a JSON object")
    return found


def subject_anthropometrics(path: Path, subject_id: int) -> Anthropometrics:
    """The anthropometrics of one subject of a population file (validated)."""
    return subjects_anthropometrics(path, [subject_id])[subject_id]


def subjects_anthropometrics(path: Path, subject_ids: list[int]) -> dict[int, Anthropometrics]:
    """The anthropometrics of these subjects (validated), each row group read once: a shard's
    subjects at population scale cost one read, not one each."""
    pf = _open(path)
    n = int(pf.metadata.num_rows)
    for subject_id in subject_ids:
        if not 0 <= subject_id < n:
            raise UnknownSubjectError(path, subject_id, n)
    # Subjects are stored in id order, one per row: find their row groups, read just those.
    found: dict[int, Anthropometrics] = {}
    start = 0
    for g in range(pf.num_row_groups):
        rows = pf.metadata.row_group(g).num_rows
        wanted = [i for i in subject_ids if start <= i < start + rows]
        if wanted:
            try:
                table = pf.read_row_group(g, columns=list(POPULATION_COLUMNS))
            except Exception as exc:
                raise PopulationFileError(path, f"row group {g} unreadable ({exc})") from exc
            columns = {c: table.column(c) for c in POPULATION_COLUMNS}
            for subject_id in wanted:
                row = {c: columns[c][subject_id - start].as_py() for c in POPULATION_COLUMNS}
                if row.pop("subject_id") != subject_id:
                    raise PopulationFileError(path, "rows are not stored in subject_id order")
                found[subject_id] = Anthropometrics.from_dict(row)
        start += rows
    return found


def population_extremes(path: Path, fields: tuple[str, ...] | None = None) -> tuple[int, ...]:
    """The ids of the subjects with the smallest and the largest value of each field (default:
    the anthropometrics the force network takes): simulated beside a sample of the population,
    they make the training range span the whole population's."""
    from edge_runtime.contracts.feature_spec import ANTHROPOMETRIC_FEATURES

    pf = _open(path)
    names = fields or ANTHROPOMETRIC_FEATURES
    try:
        table = pf.read(columns=["subject_id", *names])
    except Exception as exc:
        raise PopulationFileError(path, f"unreadable ({exc})") from exc
    ids = table.column("subject_id").to_numpy()
    chosen: set[int] = set()
    for name in names:
        values = table.column(name).to_numpy()
        chosen.update((int(ids[np.argmin(values)]), int(ids[np.argmax(values)])))
    return tuple(sorted(chosen))
