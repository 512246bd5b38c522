"""Shared fixtures. Third-party reference material lives in ../shared and is optional: tests that
read it skip, naming what is missing, where it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
HYOID_OSIM = SHARED / "reference" / "hyoid-1.2" / "HYOID_1.2_ScaledStrenght_UpdatedInertia.osim"
ANSUR_DIR = SHARED / "data" / "ansur2"


@pytest.fixture(scope="session")
def hyoid_osim() -> Path:
    if not HYOID_OSIM.is_file():
        pytest.skip(f"reference model absent: {HYOID_OSIM}")
    return HYOID_OSIM


@pytest.fixture(scope="session")
def ansur_dir() -> Path:
    if not (ANSUR_DIR / "ANSUR_II_MALE_Public.csv").is_file():
        pytest.skip(f"ANSUR II data absent: {ANSUR_DIR}")
    return ANSUR_DIR
