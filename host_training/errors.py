"""Errors raised by ``host_training``.

    HostTrainingError
     ├── AnatomyTableError (ValueError)      a packaged table has a bad value
     ├── PopulationFileError (ValueError)    missing, corrupt, or of another schema
     ├── UnknownSubjectError (KeyError)      a subject id the population does not hold
     ├── UnknownMotionSetError (ValueError)  a motion set name that does not exist
     ├── DatasetError (ValueError)           an unusable dataset directory or run setting
     ├── TrainingError (ValueError)          a training run cannot start, finish or be loaded
     ├── MarkerError                         a marker session (TRC) that cannot be used
     │                                       (model.markers)
     ├── NetworkError (ValueError)           a weights file that cannot be used (learning.network)
     └── HubViewError (ValueError)           invalid hub input-view settings (learning.hub_view)

Invalid anthropometrics raise ``edge_runtime.contracts.errors.InvalidAnthropometricsError``: the
record is a device contract and validates itself.
"""

from __future__ import annotations

from pathlib import Path


class HostTrainingError(Exception):
    """Base of every error this package raises on purpose."""


class AnatomyTableError(HostTrainingError, ValueError):
    def __init__(self, table: str, column: str, value: object, reason: str) -> None:
        super().__init__(f"anatomy table {table}: column {column!r} = {value!r}: {reason}")
        self.table, self.column, self.value, self.reason = table, column, value, reason


class PopulationFileError(HostTrainingError, ValueError):
    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"population file {path}: {reason}")
        self.path, self.reason = path, reason


class UnknownSubjectError(HostTrainingError, KeyError):
    def __init__(self, path: Path, subject_id: int, n_subjects: int) -> None:
        super().__init__(
            f"population file {path}: no subject_id {subject_id} (it holds ids 0..{n_subjects - 1})"
        )
        self.path, self.subject_id, self.n_subjects = path, subject_id, n_subjects

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class UnknownMotionSetError(HostTrainingError, ValueError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"motion set {name!r} does not exist; known: {known}")
        self.name = name


class DatasetError(HostTrainingError, ValueError):
    """A dataset directory or run configuration is unusable; the message names what and why."""


class TrainingError(HostTrainingError, ValueError):
    """A training run cannot start or finish; the message names what and why."""
