"""The simplified-marker path: optical motion capture (TRC) -> head-on-trunk neck angles.

A TRC file (OpenSim's marker format, read with OpenSim's own ``TRCFileAdapter``) with at least
three head and three upper-trunk markers. A TOML map names them and the neutral window::

    [head]
    markers = ["HEAD_FL", "HEAD_FR", "HEAD_B"]
    [trunk]
    markers = ["C7", "CLAV", "ACR_L", "ACR_R"]
    [calibration]
    neutral_s = [0.0, 1.0]      # the subject sits in neutral, facing the lab's +X, Y up
    [gaps]
    max_fill_s = 0.2            # marker gaps up to this are filled (cubic), longer ones are not
    [assessment]                # optional: AssessmentConfig overrides
    min_deficit_deg = 12.0

Each segment's orientation is the least-squares rigid fit (Kabsch) of its markers to their mean
neutral positions, using every marker visible in that frame (three at least). The lab frame
convention is OpenSim's (X anterior, Y up, Z right) and equals the segment axes at neutral, so
R_neck = R_trunk^T R_head is directly the contract's head-in-trunk rotation.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_runtime.common.files import read_text
from edge_runtime.common.numbers import is_finite_number
from edge_runtime.contracts.rom_assessment import AssessmentConfig, AssessmentError
from host_training.errors import HostTrainingError
from host_training.model.opensim_env import opensim

FloatArray = npt.NDArray[np.float64]
MIN_MARKERS_PER_SEGMENT = 3
UNIT_SCALE_TO_M = {"mm": 1e-3, "cm": 1e-2, "m": 1.0}
MAX_COORDINATE_M = 100.0  # farther from the lab's origin than any capture volume


class MarkerError(HostTrainingError):
    """A marker file or map that cannot be used (names the file and what is wrong)."""


@dataclass(frozen=True)
class MarkerMap:
    head: tuple[str, ...]
    trunk: tuple[str, ...]
    neutral_s: tuple[float, float]
    max_fill_s: float = 0.2
    assessment: AssessmentConfig = field(default_factory=AssessmentConfig)

    @classmethod
    def read(cls, path: Path) -> MarkerMap:
        """The map; refused (MarkerError naming the file and the key): not UTF-8 TOML, an
        unknown table or key, fewer than three markers a segment, a marker on both segments,
        a neutral window that is not [start, end] seconds, a non-finite gap length."""
        try:
            data = tomllib.loads(read_text(path, MarkerError, max_bytes=1024**2))
        except tomllib.TOMLDecodeError as e:
            raise MarkerError(f"{path}: not valid TOML: {e}") from e
        allowed = {"head": {"markers"}, "trunk": {"markers"}, "calibration": {"neutral_s"},
                   "gaps": {"max_fill_s"}, "assessment": None}  # fmt: skip
        for table, value in data.items():
            if table not in allowed or not isinstance(value, dict):
                raise MarkerError(f"{path}: [{table}] is not a table of a marker map")
            unknown = sorted(set(value) - (allowed[table] or set(value)))
            if unknown:
                raise MarkerError(f"{path}: [{table}] has an unknown key {unknown[0]!r}")

        def markers(segment: str) -> tuple[str, ...]:
            names = data.get(segment, {}).get("markers")
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise MarkerError(f"{path}: [{segment}] markers must be a list of marker names")
            if len(set(names)) < MIN_MARKERS_PER_SEGMENT:
                raise MarkerError(
                    f"{path}: [{segment}] needs at least {MIN_MARKERS_PER_SEGMENT} distinct "
                    f"markers, has {len(set(names))}"
                )
            return tuple(names)

        head, trunk = markers("head"), markers("trunk")
        shared = sorted(set(head) & set(trunk))
        if shared:  # the same marker on both segments makes their relative motion meaningless
            raise MarkerError(f"{path}: markers {shared} are on both [head] and [trunk]")
        neutral = data.get("calibration", {}).get("neutral_s")
        numbers = isinstance(neutral, list) and all(is_finite_number(v) for v in neutral)
        if not numbers or len(neutral) != 2 or neutral[1] <= neutral[0]:
            raise MarkerError(f"{path}: [calibration] neutral_s must be [start, end] seconds")
        max_fill = data.get("gaps", {}).get("max_fill_s", 0.2)
        if not is_finite_number(max_fill) or max_fill < 0:
            raise MarkerError(f"{path}: [gaps] max_fill_s = {max_fill!r}: must be a number >= 0")
        try:
            assessment = AssessmentConfig.from_dict(data.get("assessment", {}))
        except (AssessmentError, TypeError) as e:
            raise MarkerError(f"{path}: [assessment]: {e}") from e
        return cls(head, trunk, (float(neutral[0]), float(neutral[1])), float(max_fill),
                   assessment)  # fmt: skip


@dataclass(frozen=True, eq=False)
class MarkerData:
    t_s: FloatArray  # (N,)
    positions_m: dict[str, FloatArray]  # marker -> (N, 3), NaN where missing


def read_trc(path: Path) -> MarkerData:
    """All markers of a TRC file, in metres (OpenSim's reader; units from the header)."""
    osim = opensim()
    _check_trc_layout(path, read_text(path, MarkerError))  # OpenSim's reader hangs on some
    try:
        table = osim.TimeSeriesTableVec3(str(path))  # OpenSim's TRCFileAdapter
    except RuntimeError as e:
        raise MarkerError(f"{path}: not a readable TRC file: {str(e).splitlines()[0]}") from e
    keys = set(table.getTableMetaDataKeys())
    units = table.getTableMetaDataString("Units") if "Units" in keys else "m"
    if units not in UNIT_SCALE_TO_M:
        raise MarkerError(
            f"{path}: unknown units {units!r} (expected one of {list(UNIT_SCALE_TO_M)})"
        )
    scale = UNIT_SCALE_TO_M[units]
    t = np.array(table.getIndependentColumn(), dtype=np.float64)
    labels = list(table.getColumnLabels())
    positions = {}
    for j, name in enumerate(labels):
        col = table.getDependentColumnAtIndex(j)
        positions[name] = (
            np.array([[col[i][k] for k in range(3)] for i in range(col.size())]) * scale
        )
    if not np.isfinite(t).all():
        raise MarkerError(f"{path}: a frame's time is not a finite number")
    for name, p in positions.items():
        beyond = np.flatnonzero(np.abs(np.nan_to_num(p)).max(axis=1) > MAX_COORDINATE_M)
        if beyond.size:
            raise MarkerError(
                f"{path}: marker {name} at t = {t[beyond[0]]:g} s is {np.abs(p[beyond[0]]).max():g}"
                f" m from the origin (beyond {MAX_COORDINATE_M:g} m: a corrupted file?)"
            )
    return MarkerData(t, positions)


def _check_trc_layout(path: Path, text: str) -> None:
    """The TRC header and frame rows are consistent (what OpenSim's adapter assumes: a file
    whose header promises frames it does not have makes it loop for ever)."""
    lines = text.split("\n")
    if len(lines) < 5 or not lines[0].startswith("PathFileType"):
        raise MarkerError(f"{path}: not a TRC file (no PathFileType header line)")
    meta = dict(zip(lines[1].split("\t"), lines[2].split("\t"), strict=False))
    try:
        frames, markers = int(meta["NumFrames"]), int(meta["NumMarkers"])
    except (KeyError, ValueError):
        raise MarkerError(f"{path}: the header has no whole NumFrames and NumMarkers") from None
    rows = [line for line in lines[5:] if line.strip()]
    if frames < 1 or len(rows) != frames:
        raise MarkerError(f"{path}: the header says {frames} frames; the file has {len(rows)}")
    for i, row in enumerate(rows):
        fields = row.rstrip("\t\r").split("\t")
        if len(fields) > 2 + 3 * markers or len(fields) < 2:
            raise MarkerError(f"{path}: frame row {i + 1} has {len(fields)} fields")
        try:
            float(fields[1])
        except ValueError:
            raise MarkerError(f"{path}: frame row {i + 1}: time {fields[1][:20]!r}") from None


@dataclass(frozen=True)
class GapReport:
    marker: str
    filled: int  # gaps filled
    filled_s: float
    unfilled: int
    longest_unfilled_s: float


def fill_gaps(
    values: FloatArray, t: FloatArray, max_fill_s: float
) -> tuple[FloatArray, int, float, int, float]:
    """Cubic interpolation over NaN runs no longer than ``max_fill_s`` with valid samples on both
    sides; longer runs (and runs at the ends) stay NaN. Returns (filled values, n filled,
    filled seconds, n unfilled, longest unfilled seconds)."""
    from scipy.interpolate import CubicSpline

    out = values.copy()
    missing = ~np.all(np.isfinite(values), axis=1)
    if not missing.any():
        return out, 0, 0.0, 0, 0.0
    good = np.flatnonzero(~missing)
    if good.size < 4:
        return out, 0, 0.0, 1, float(t[-1] - t[0])
    spline = CubicSpline(t[good], values[good], axis=0)
    dt = float(np.median(np.diff(t)))
    n_filled = n_unfilled = 0
    filled_s = longest = 0.0
    edges = np.diff(np.concatenate([[0], missing.astype(np.int8), [0]]))
    for start, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
        length = (stop - start) * dt
        inside = start > 0 and stop < len(t)
        if inside and length <= max_fill_s + 1e-9:
            out[start:stop] = spline(t[start:stop])
            n_filled += 1
            filled_s += length
        else:
            n_unfilled += 1
            longest = max(longest, length)
    return out, n_filled, filled_s, n_unfilled, longest


def cluster_rotations(positions: FloatArray, reference: FloatArray) -> FloatArray:
    """Kabsch: per frame, the rotation taking the reference cluster (M, 3) to the frame's markers
    (N, M, 3), over the markers visible in that frame; NaN where fewer than three are."""
    n = positions.shape[0]
    out = np.full((n, 3, 3), np.nan)
    visible = np.all(np.isfinite(positions), axis=2)  # (N, M)
    for mask in {tuple(row) for row in visible}:
        m = np.array(mask)
        if m.sum() < MIN_MARKERS_PER_SEGMENT:
            continue
        frames = np.flatnonzero(np.all(visible == m, axis=1))
        ref = reference[m] - reference[m].mean(axis=0)
        cur = positions[frames][:, m]
        cur = cur - cur.mean(axis=1, keepdims=True)
        h = np.einsum("mi,nmj->nij", ref, cur)  # (N, 3, 3) cross-covariance
        u, _, vt = np.linalg.svd(h)
        d = np.sign(np.linalg.det(np.swapaxes(vt, 1, 2) @ np.swapaxes(u, 1, 2)))
        fix = np.ones((len(frames), 3))
        fix[:, 2] = d
        out[frames] = np.swapaxes(vt, 1, 2) @ (fix[:, :, None] * np.swapaxes(u, 1, 2))
    return out


@dataclass(frozen=True, eq=False)
class MarkerKinematics:
    t_s: FloatArray
    neck_rotation: FloatArray  # (N, 3, 3), NaN where a segment could not be fitted
    valid: npt.NDArray[np.bool_]
    gaps: tuple[GapReport, ...]


def neck_rotation_from_markers(
    data: MarkerData, mapping: MarkerMap, source: Path
) -> MarkerKinematics:
    missing = [m for m in mapping.head + mapping.trunk if m not in data.positions_m]
    if missing:
        raise MarkerError(
            f"{source}: markers {missing} named in the map are not in the file "
            f"(it has {sorted(data.positions_m)})"
        )
    t = data.t_s
    neutral = (t >= t[0] + mapping.neutral_s[0]) & (t <= t[0] + mapping.neutral_s[1])
    if neutral.sum() < 2:
        raise MarkerError(f"{source}: the neutral window {mapping.neutral_s} s holds no frames")
    reports = []
    rotations = {}
    for segment, names in (("head", mapping.head), ("trunk", mapping.trunk)):
        cluster = []
        for name in names:
            filled, n_f, s_f, n_u, longest = fill_gaps(
                data.positions_m[name], t, mapping.max_fill_s
            )
            reports.append(GapReport(name, n_f, s_f, n_u, longest))
            cluster.append(filled)
        positions = np.stack(cluster, axis=1)  # (N, M, 3)
        reference = np.nanmean(positions[neutral], axis=0)
        if np.sum(np.all(np.isfinite(reference), axis=1)) < MIN_MARKERS_PER_SEGMENT:
            raise MarkerError(
                f"{source}: fewer than {MIN_MARKERS_PER_SEGMENT} {segment} markers are visible "
                f"during the neutral window {mapping.neutral_s} s"
            )
        rotations[segment] = cluster_rotations(positions, reference)
    rel = np.swapaxes(rotations["trunk"], 1, 2) @ rotations["head"]
    valid = np.all(np.isfinite(rel), axis=(1, 2))
    return MarkerKinematics(t, rel, valid, tuple(reports))


def write_trc(
    path: Path, t_s: FloatArray, positions_m: dict[str, FloatArray], units: str = "mm"
) -> None:
    """Write markers as a TRC file with OpenSim's adapter (NaN -> empty fields)."""
    osim = opensim()
    scale = 1.0 / UNIT_SCALE_TO_M[units]
    names = list(positions_m)
    table = osim.TimeSeriesTableVec3()
    labels = osim.StdVectorString()
    for n in names:
        labels.append(n)
    table.setColumnLabels(labels)
    for i, t in enumerate(t_s):
        row = osim.RowVectorVec3(len(names))
        for j, n in enumerate(names):
            p = positions_m[n][i] * scale
            row[j] = osim.Vec3(*(float(v) if math.isfinite(v) else math.nan for v in p))
        table.appendRow(float(t), row)
    rate = 1.0 / float(np.median(np.diff(t_s)))
    table.addTableMetaDataString("DataRate", f"{rate:g}")
    table.addTableMetaDataString("Units", units)
    osim.TRCFileAdapter().write(table, str(path))
