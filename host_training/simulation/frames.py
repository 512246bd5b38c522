"""Loading a dataset's frames for learning: model inputs, force targets, subject and motion keys.

Only the columns the network needs are read, into float32 arrays: one shard at a time
(``iter_frames``, what training and evaluation use: memory for one shard whatever the dataset's
size) or every shard together (``load_frames``, for tests and small tools: a 1,000-subject default
dataset is ~9.3 M frames, ~3.2 GB). The held-out motion family and the families are masks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.common.files import read_text
from edge_runtime.contracts.feature_spec import FeatureSpecError, columns_matrix
from host_training.errors import DatasetError
from host_training.simulation.dataset import (
    MANIFEST,
    METADATA_KEY,
    SHARD_DIR,
    file_sha256,
    force_column,
)
from host_training.simulation.motions import motion_family, motion_set

FLOAT32_MAX = float(np.finfo(np.float32).max)

Float32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass
class Frames:
    """Frames of a dataset, row-aligned: inputs ``x`` (N, F), targets ``y`` (N, M) in N."""

    x: Float32Array
    y: Float32Array
    subject_id: IntArray
    motion_code: npt.NDArray[np.int32]  # index into motion_ids
    frame: npt.NDArray[np.int32]
    motion_ids: list[str]
    features: tuple[str, ...]
    muscles: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.x)

    def family_mask(self, family: str) -> npt.NDArray[np.bool_]:
        codes = [i for i, m in enumerate(self.motion_ids) if motion_family(m) == family]
        return np.isin(self.motion_code, codes)

    def families(self) -> list[str]:
        return sorted({motion_family(self.motion_ids[c]) for c in np.unique(self.motion_code)})

    def subset(self, rows: npt.NDArray[Any]) -> Frames:
        """The given rows (indices or a mask), with the same motion id list."""
        return Frames(self.x[rows], self.y[rows], self.subject_id[rows], self.motion_code[rows],
                      self.frame[rows], self.motion_ids, self.features, self.muscles)  # fmt: skip


def _shards(data_dir: Path) -> list[Path]:
    if not (data_dir / MANIFEST).is_file():
        raise DatasetError(
            f"{data_dir} is not a dataset: no {MANIFEST} (make one with `cervical simulate`)"
        )
    paths = sorted((data_dir / SHARD_DIR).glob("shard-*.parquet"))
    if not paths:
        raise DatasetError(f"{data_dir}: no finished shards in {SHARD_DIR}/")
    _check_shards_match(data_dir, paths)
    return paths


def _check_shards_match(data_dir: Path, paths: list[Path]) -> None:
    """Every shard was made with the manifest's settings (motion set and its digest, seed,
    solver, population, ...): a shard copied in from another dataset would mix motion-set
    versions or bodies silently."""
    import pyarrow.parquet as pq

    wanted = manifest_config(data_dir)
    for path in paths:
        metadata = _shard(pq.read_schema, path).metadata or {}
        try:
            config = json.loads(metadata[METADATA_KEY])["config"]
            if not isinstance(config, dict):
                raise TypeError("config is not an object")
        except (KeyError, ValueError, TypeError) as exc:
            raise DatasetError(f"{path}: not a shard of `cervical simulate` (no metadata)") from exc
        different = {k: (config.get(k), v) for k, v in wanted.items() if config.get(k) != v}
        if different:
            raise DatasetError(
                f"{path} was made with other settings than {data_dir / MANIFEST}: "
                f"{different} (shard, manifest); a dataset must not mix them"
            )


def read_manifest(data_dir: Path) -> dict[str, Any]:
    """The dataset's manifest (``dataset.MANIFEST``; DatasetError naming it otherwise)."""
    path = data_dir / MANIFEST
    try:
        document = json.loads(read_text(path, DatasetError, max_bytes=64 * 1024**2))
    except (ValueError, RecursionError) as exc:
        raise DatasetError(f"{path} is not a dataset manifest ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("config"), dict):
        raise DatasetError(f"{path} is not a dataset manifest (no config object)")
    return document


def manifest_config(data_dir: Path) -> dict[str, Any]:
    """The ``config`` object of the dataset's manifest: what was simulated and how."""
    config: dict[str, Any] = read_manifest(data_dir)["config"]
    return config


def population_path(data_dir: Path) -> Path:
    """The population file the dataset's subjects were drawn from."""
    document = read_manifest(data_dir)
    if not isinstance(document.get("population_path"), str):
        raise DatasetError(f"{data_dir / MANIFEST}: no population_path")
    return Path(document["population_path"])


def _shard(read: Callable[..., Any], path: Path, **kwargs: Any) -> Any:
    """A shard read by pyarrow; a damaged file is a DatasetError naming it."""
    try:
        return read(path, **kwargs)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise DatasetError(f"{path}: not a readable shard ({str(exc).splitlines()[0]})") from None


def dataset_fingerprint(data_dir: Path) -> dict[str, Any]:
    """SHA-256 over the manifest and every shard (name and content hash), plus the dataset's
    configuration: what a run's manifest records so a model can be traced to its data."""
    h = hashlib.sha256()
    manifest = data_dir / MANIFEST
    config = manifest_config(data_dir)
    h.update(manifest.read_bytes())
    shards = _shards(data_dir)
    for p in shards:
        h.update(p.name.encode())
        h.update(file_sha256(p).encode())
    return {"path": str(data_dir.resolve()), "sha256": h.hexdigest(), "config": config,
            "n_shards": len(shards)}  # fmt: skip


def dataset_families(data_dir: Path) -> list[str]:
    """The motion families of a dataset, from its manifest's motion set (no shard is read)."""
    _shards(data_dir)  # a clear error for a folder that is no dataset
    config = manifest_config(data_dir)
    try:
        return sorted({s.family for s in motion_set(config["motion_set"], config["seed"], 0)})
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(
            f"{data_dir / MANIFEST}: no usable motion_set and seed ({exc})"
        ) from None


def dataset_subject_ids(data_dir: Path) -> npt.NDArray[np.int64]:
    """Every subject id of a dataset (only that column of each shard is read)."""
    import pyarrow.parquet as pq

    ids = [
        np.unique(_shard(pq.read_table, p, columns=["subject_id"])["subject_id"].to_numpy())
        for p in _shards(data_dir)
    ]
    return np.unique(np.concatenate(ids)).astype(np.int64) if ids else np.empty(0, np.int64)


def iter_frames(
    data_dir: Path,
    features: Sequence[str],
    muscles: Sequence[str],
    subjects: Sequence[int] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[Frames]:
    """The frames of ``data_dir`` one shard at a time (only the given subjects when
    ``subjects`` is set; shards without any are skipped): memory for one shard, whatever the
    dataset's size."""
    paths = _shards(data_dir)
    for i, path in enumerate(paths):
        part = _read_shard(path, features, muscles, subjects)
        if part is not None:
            yield part
        if progress is not None:
            progress(i + 1, len(paths))


def load_frames(
    data_dir: Path,
    features: Sequence[str],
    muscles: Sequence[str],
    subjects: Sequence[int] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Frames:
    """Read every shard of ``data_dir`` (only the given subjects when ``subjects`` is set)."""
    parts = list(iter_frames(data_dir, features, muscles, subjects, progress))
    if not parts:
        raise DatasetError(f"{data_dir}: no frames for the requested subjects")
    return concat_frames(parts)


def concat_frames(parts: Sequence[Frames]) -> Frames:
    """One ``Frames`` of several (motion codes mapped onto one list of motion ids)."""
    motion_index: dict[str, int] = {}
    codes = []
    for part in parts:
        remap = np.array(
            [motion_index.setdefault(m, len(motion_index)) for m in part.motion_ids] or [0],
            dtype=np.int32,
        )
        codes.append(remap[part.motion_code])
    return Frames(
        x=np.concatenate([p.x for p in parts]),
        y=np.concatenate([p.y for p in parts]),
        subject_id=np.concatenate([p.subject_id for p in parts]),
        motion_code=np.concatenate(codes),
        frame=np.concatenate([p.frame for p in parts]),
        motion_ids=list(motion_index),
        features=parts[0].features,
        muscles=parts[0].muscles,
    )


def _read_shard(
    path: Path, features: Sequence[str], muscles: Sequence[str], subjects: Sequence[int] | None
) -> Frames | None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    force_cols = [force_column(m) for m in muscles]
    wanted = ["subject_id", "motion_id", "frame", *features, *force_cols]
    schema_names = set(_shard(pq.read_schema, path).names)
    missing = [c for c in wanted if c not in schema_names]
    if missing:
        raise DatasetError(
            f"{path}: missing columns {missing[:5]}{'...' if len(missing) > 5 else ''}"
        )
    table = _shard(pq.read_table, path, columns=wanted)
    if subjects is not None:
        table = table.filter(pc.is_in(table["subject_id"], value_set=_int_array(subjects)))
    if not table.num_rows:
        return None
    try:
        cols = {name: table[name].to_numpy() for name in (*features, *force_cols)}
    except (ValueError, TypeError) as exc:  # a column of another type
        raise DatasetError(f"{path}: unreadable columns ({exc})") from None
    try:
        x = columns_matrix(cols, features)
    except FeatureSpecError as exc:
        raise DatasetError(f"{path}: {exc}") from exc
    y = np.stack([cols[c] for c in force_cols], axis=1).astype(np.float64)
    for values, names in ((x, features), (y, force_cols)):  # the network works in float32
        bad = ~(np.abs(values) <= FLOAT32_MAX).all(axis=0)  # NaN fails too
        if bad.any():
            name = names[int(np.argmax(bad))]
            raise DatasetError(f"{path}: non-finite values (or beyond float32) in {name}")
    motion_index: dict[str, int] = {}
    ids = table["motion_id"].to_pylist()
    codes = np.fromiter(
        (motion_index.setdefault(m, len(motion_index)) for m in ids), dtype=np.int32, count=len(ids)
    )
    return Frames(
        x=x.astype(np.float32),
        y=y.astype(np.float32),
        subject_id=table["subject_id"].to_numpy().astype(np.int64),
        motion_code=codes,
        frame=table["frame"].to_numpy().astype(np.int32),
        motion_ids=list(motion_index),
        features=tuple(features),
        muscles=tuple(muscles),
    )


def _int_array(values: Sequence[int]) -> Any:
    import pyarrow as pa

    return pa.array(list(values), type=pa.int64())
