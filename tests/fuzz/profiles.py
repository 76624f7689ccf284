"""Hypothesis settings for the fuzz tests, chosen by `DISPATCHER_FUZZ_PROFILE`.

`quick` (the default) keeps `make test` fast with a bounded number of examples per target;
`long` is what `make fuzz` runs. The profile is applied per test (`@FUZZ`), never loaded
globally, so the other property tests keep their own settings.
"""

from __future__ import annotations

import datetime
import os

from hypothesis import HealthCheck, settings

QUICK_EXAMPLES = 300
LONG_EXAMPLES = 20_000

settings.register_profile(
    "dispatcher-fuzz-quick",
    max_examples=QUICK_EXAMPLES,
    # One input takes microseconds; a second means a hang in the making.
    deadline=datetime.timedelta(seconds=1),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dispatcher-fuzz-long",
    max_examples=LONG_EXAMPLES,
    deadline=datetime.timedelta(seconds=1),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

PROFILE = os.environ.get("DISPATCHER_FUZZ_PROFILE", "quick")
if PROFILE not in ("quick", "long"):
    raise ValueError(f"DISPATCHER_FUZZ_PROFILE must be 'quick' or 'long', got {PROFILE!r}")
FUZZ = settings.get_profile(f"dispatcher-fuzz-{PROFILE}")
