from __future__ import annotations

import csv

from host_training.model.anatomy import ANATOMY_DIR, INDEPENDENT_COORDINATES, load_anatomy


def test_tables_hold_the_published_model() -> None:
    a = load_anatomy()
    assert len(a.muscles) == 72
    assert sum(m.side == "left" for m in a.muscles) == 36
    assert len(a.bodies) == 15
    assert len(a.couplers) == 18
    assert len(a.bushings) == 8
    assert sum(j.kind == "custom" for j in a.joints) == 9  # thorax + 8 cervical levels
    independent = [c.name for c in a.coordinates if c.role == "independent"]
    assert sorted(independent) == sorted(INDEPENDENT_COORDINATES)
    assert 6200 < a.total_max_isometric_force_n() < 6260  # notes: sum of Fmax 6,233 N


def test_every_row_of_every_table_names_its_source() -> None:
    for path in ANATOMY_DIR.glob("*.csv"):
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        assert rows, path.name
        assert all(r["source"].startswith("HYOID 1.2") for r in rows), path.name
    assert (ANATOMY_DIR / "LICENSE-HYOID").is_file()
    assert "Mortensen" in (ANATOMY_DIR / "NOTES.md").read_text()


def test_vertebral_inertias_are_fixed_to_neck_slices() -> None:
    for b in load_anatomy().bodies:
        if b.scaling_group == "cervical":
            assert 0.4 < b.mass_kg < 0.6
            assert all(2e-4 < i < 2e-3 for i in b.inertia_moments_kg_m2), b
            # a slice is flat: the axial moment exceeds the transverse ones
            assert b.inertia_moments_kg_m2[1] > b.inertia_moments_kg_m2[0]


def test_coupling_fractions_sum_to_one_per_plane() -> None:
    a = load_anatomy()
    for independent in INDEPENDENT_COORDINATES:
        total = sum(c.ratio for c in a.couplers if c.independent_coordinate == independent)
        total += sum(x.ratio for x in a.joint_axes if x.coordinate == independent)
        assert abs(total - 1.0) < 0.005, independent
