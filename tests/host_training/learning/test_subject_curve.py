"""``cervical bench learning-curve``: one run per number of training subjects, the same frames
for each, the same held-out subjects; finished points are read back, not trained again."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edge_runtime.contracts.training_run import RunLayout, RunManifest

CERVICAL = str(Path(sys.executable).with_name("cervical"))


def curve(data: Path, runs: Path, subjects: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CERVICAL, "bench", "learning-curve", "--data", str(data), "--runs-dir", str(runs),
         "--subjects", subjects, "--frame-budget", "20000", "--hidden", "32,32", *extra],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip


def test_points_share_frames_and_test_subjects_and_are_reused(
    learning_dataset: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "curve"
    done = curve(learning_dataset, runs, "8,all", "--plot", str(tmp_path / "c.png"), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    few, more = result["points"]
    assert few["train_subjects"] == 8
    assert few["epochs"] > more["epochs"]  # the same frame budget spread over fewer bodies
    for point in (few, more):
        assert -1 < point["heldout_subjects_r2_min"] <= point["heldout_subjects_r2_median"] <= 1
        assert point["heldout_family"] == "circumduction"
    manifests = [RunManifest.read(RunLayout(Path(p["run"]))) for p in (few, more)]
    (f_train, f_val, f_test), (m_train, m_val, m_test) = (
        (m.split_subjects("train"), m.split_subjects("val"), m.split_subjects("test"))
        for m in manifests
    )
    assert (f_val, f_test) == (m_val, m_test) and set(f_train) < set(m_train)
    assert more["train_subjects"] == len(m_train)  # `all`: the whole training split
    assert all(m.train_config["qat_epochs"] == 0 for m in manifests)  # exactly the frame budget
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    # again: read back, nothing trained (the runs are untouched)
    stamps = [RunLayout(Path(p["run"])).metrics.stat().st_mtime_ns for p in (few, more)]
    again = curve(learning_dataset, runs, f"{len(m_train)},8", "--json")
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout.strip().splitlines()[-1])["points"] == result["points"]
    assert stamps == [RunLayout(Path(p["run"])).metrics.stat().st_mtime_ns for p in (few, more)]
    # more subjects than the split trains on, or another curve's runs: refused, exit 2
    too_many = curve(learning_dataset, runs, "500")
    assert too_many.returncode == 2 and "training subjects" in too_many.stderr
    other = curve(learning_dataset, runs, "8", "--frame-stride", "2")
    assert other.returncode == 2 and "a run made with" in other.stderr
