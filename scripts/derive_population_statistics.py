"""Fit the population's joint statistics to ANSUR II and write them as a committed JSON file.

A developer tool, run by hand; the project never reads ANSUR II at run time. Per sex it stores,
for each variable, the mean, SD and quantiles (0.1th..99.9th percentile), and the correlation of
the normal scores (a Gaussian copula), so that sampling reproduces skewed marginals and the joint
structure without shipping a single record.

    .venv/bin/python scripts/derive_population_statistics.py ../shared/data/ansur2

Source: 2012 U.S. Army Anthropometric Survey (ANSUR II) public data, Gordon et al. 2014.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from scipy import stats

from host_training.population.sampling import (
    QUANTILE_PROBABILITIES,
    STATISTICS_PATH,
    SURVEY_VARIABLES,
    survey_columns_to_si,
)


def _read(path: Path) -> dict[str, np.ndarray]:
    with path.open(newline="", encoding="latin-1") as f:
        rows = list(csv.DictReader(f))
    needed = {c for v in SURVEY_VARIABLES.values() for c in v}
    return {c: np.array([float(r[c]) for r in rows]) for c in needed}


def fit(columns: dict[str, np.ndarray]) -> dict[str, object]:
    data = survey_columns_to_si(columns)
    names = list(SURVEY_VARIABLES)
    x = np.stack([data[n] for n in names], axis=1)
    n = x.shape[0]
    scores = stats.norm.ppf((stats.rankdata(x, axis=0) - 0.5) / n)
    return {
        "n": int(n),
        "variables": names,
        "mean": [float(v) for v in x.mean(axis=0)],
        "sd": [float(v) for v in x.std(axis=0, ddof=1)],
        "pearson_correlation": np.corrcoef(x, rowvar=False).round(6).tolist(),
        "normal_score_correlation": np.corrcoef(scores, rowvar=False).round(6).tolist(),
        "quantiles": [
            np.quantile(x[:, i], QUANTILE_PROBABILITIES).round(6).tolist()
            for i in range(len(names))
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ansur_dir", type=Path)
    args = parser.parse_args()
    out = {
        "source": "ANSUR II public data (Gordon et al. 2014), U.S. Army, 2012",
        "quantile_probabilities": list(QUANTILE_PROBABILITIES),
        "female": fit(_read(args.ansur_dir / "ANSUR_II_FEMALE_Public.csv")),
        "male": fit(_read(args.ansur_dir / "ANSUR_II_MALE_Public.csv")),
    }
    STATISTICS_PATH.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {STATISTICS_PATH}")


if __name__ == "__main__":
    main()
