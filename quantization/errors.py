"""The quantiser's errors: one base, so its front ends catch a failed conversion once.

::

    QuantizationError           the run cannot become a bundle (RuntimeError): names the check
    └── ConversionError         onnx2tf produced no int8 model (the end of its log attached)

Bundle and feature-spec problems are ``edge_runtime.contracts.errors.ContractError``s.
"""

from __future__ import annotations


class QuantizationError(RuntimeError):
    """The run cannot become a bundle; the message says which check failed and by how much."""


class ConversionError(QuantizationError):
    """onnx2tf could not produce the int8 model; the message carries the end of its log."""
