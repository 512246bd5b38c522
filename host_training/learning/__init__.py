"""The muscle-force network and its training: streaming data, the hub's input view, the float
fit, int8-aware fine-tuning, evaluation and the run directory."""
