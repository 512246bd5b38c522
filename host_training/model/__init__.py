"""The personalised 72-muscle head-neck model: anatomy tables, the OpenSim builder,
personalisation from anthropometrics, kinematics and marker sessions."""
