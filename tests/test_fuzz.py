"""Fuzzing every file reader the commands use, and the sync ingestion, at a size CI affords
(``cervical bench fuzz --cases 2000`` is the full run): no corrupted input escapes as a
traceback, hangs, or is accepted with a non-finite value in what a command reports."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

from cervical_demo.fuzz_cases import mutate_binary, mutate_json, mutate_text

CERVICAL = str(Path(sys.executable).with_name("cervical"))
READERS = ("recording_csv", "orientation", "trc", "marker_map", "profile_toml", "hub_toml",
           "population", "sync_ingestion", "dataset", "run", "bundle")  # fmt: skip


def test_mutations_are_seeded_and_change_the_input() -> None:
    text = b"t_s,gyr_x\n0,1\n0.01,2\n"
    for mutate in (mutate_text, mutate_json, mutate_binary):
        a = [mutate(text, random.Random(f"s-{i}")) for i in range(30)]
        b = [mutate(text, random.Random(f"s-{i}")) for i in range(30)]
        assert a == b and sum(x != text for x in a) >= 25


def test_no_corrupted_input_escapes_any_reader(
    quantized_bundle: Path, signing_keys: tuple[Path, Path]
) -> None:
    key, pub = signing_keys
    r = subprocess.run(
        [CERVICAL, "bench", "fuzz", "--cases", "25", "--seed", "3", "--json",
         "--bundle", str(quantized_bundle), "--key", str(key), "--pubkey", str(pub)],
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    figures = json.loads(r.stdout.strip().splitlines()[-1])
    readers = figures["readers"]
    assert sorted(readers) == sorted(READERS)
    for name, f in readers.items():
        assert f["cases"] == 25
        assert (
            f["clean_refusals"]
            + f["accepted_valid"]
            + f["tracebacks"]
            + f["hangs"]
            + f["silent_nonfinite_outputs"]
            == 25
        )
        assert (f["tracebacks"], f["hangs"], f["silent_nonfinite_outputs"]) == (0, 0, 0), (
            name,
            f["examples"],
        )
        assert f["clean_refusals"] > 0, name  # the corruptions are real ones
    assert r.returncode == 0, r.stderr[-2000:]


def test_the_bench_counts_a_defect_it_is_shown(tmp_path: Path) -> None:
    """The classification itself: a reader that raises something else is a traceback."""
    from cervical_demo.fuzz_readers import classify

    def broken(path: Path, seed: dict[str, object]) -> bool:
        raise KeyError("oops")

    def nan_output(path: Path, seed: dict[str, object]) -> bool:
        return True

    assert classify(broken, tmp_path, {})["outcome"] == "traceback"
    assert classify(nan_output, tmp_path, {})["outcome"] == "silent_nonfinite_output"
