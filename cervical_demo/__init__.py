"""``cervical demo``: the whole product end to end on one machine, on embedded defaults.

Population -> simulated dataset (local Dask) -> trained network -> signed int8 bundle -> a
virtual hub (its own process, on the virtual radio) measuring a simulated patient -> the gateway
pairing, pushing the model, setting the profile and syncing -> the clinician web view and its
exports. The orchestrator is the one package that composes all the others; none imports it.
"""
