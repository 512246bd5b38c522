"""Simulated muscle-force datasets: motion sets, inverse dynamics and static optimisation,
Parquet shards written by a Dask cluster, and the readers training and evaluation share."""
