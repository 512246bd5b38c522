"""The demo's patient: who wears the virtual hub and what the simulated sensors record.

A wearer with restricted mobility after a neck injury, recovering: right axial rotation and left
lateral bending reached half of the expected range four weeks ago (``FIRST_RATIO``) and reach
``TODAY_RATIO`` of it today, every other direction 95% of it. The body is the
neck model's reference adult (a 50th-percentile man), so the expected envelope the hub computes
for the profile matches the simulated motion and exactly the two restricted directions are
flagged. The hub leaves the factory with a generic profile; the clinic's gateway sets this one.
"""

from __future__ import annotations

from edge_runtime.contracts.anthropometrics import Anthropometrics

PATIENT_CODE = "DEMO-0001"  # pseudonymous, as the clinic assigns it
RESTRICTED = ("right_rotation", "left_bend")
FIRST_RATIO = 0.5  # of their range the restricted directions reached four weeks ago
TODAY_RATIO = 0.6  # ... and reach today: better, still a deficit in both (15-20 deg)
SIM_SEED = 3
# both sensors of one simulated wearer (edge_runtime.sensors.sim): warm-up, calibration (neutral
# hold, nod) and the ten-direction range-of-motion protocol twice: over a minute of usable wear,
# so the day counts as a day with data in the clinician view
SENSORS = f"sim:seed={SIM_SEED},repeats=2,restrict={'+'.join(RESTRICTED)},ratio={TODAY_RATIO}"
PATIENT_PROFILE = Anthropometrics(
    sex="male",
    stature_m=1.7562,
    body_mass_kg=85.52,
    neck_length_m=0.1078,
    shoulder_width_m=0.4157,
    head_mass_kg=4.3,
)
# what a hub holds before the clinic sets the wearer: a generic smaller adult
FACTORY_PROFILE = Anthropometrics(
    sex="female",
    stature_m=1.63,
    body_mass_kg=62.0,
    neck_length_m=0.1,
    shoulder_width_m=0.36,
    head_mass_kg=4.0,
)
CLINICIAN = "clinician"
