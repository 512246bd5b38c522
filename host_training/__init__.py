"""Host-side training: personalised OpenSim models, populations, simulated datasets, the
muscle-force network and the personal motion envelope.

Sub-packages by pipeline stage; each imports only from the stages above it::

    population/   seeded adult anthropometrics fitted to ANSUR II (sampling)
    model/        the 72-muscle head-neck model: anatomy tables, OpenSim builder, personalisation,
                  kinematics (OpenSim and the fast vectorised twin), marker sessions
    simulation/   motion sets (library and everyday families), inverse dynamics + static
                  optimisation (solvers), Parquet datasets, the Dask cluster run, frame readers
    learning/     the network, streaming training data, the hub's input view, training,
                  quantisation-aware fine-tuning, int8 calibration rows, metrics and plots
    rom/          range of motion: envelope simulation, the offline assessment, their CLI

    cli.py        ``cervical population|model|simulate|train|evaluate``
    bench.py      ``cervical bench model|simulate``
    errors.py     ``HostTrainingError``, the base of every error this package raises
"""
