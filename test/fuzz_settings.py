"""Hypothesis settings of the fuzz tests (``test_fuzz_*.py``).

``make test`` runs the ``ci`` profile: a fixed number of examples drawn from a fixed seed
(``derandomize``), so CI is repeatable and quick. ``make fuzz`` sets ``DDR_FUZZ=long``: many
more examples, freshly random each run, and the ``slow`` node-process variant. Nothing is
written to a ``.hypothesis`` example database.
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

LONG = os.environ.get("DDR_FUZZ") == "long"

settings.register_profile("ci", max_examples=150, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("long", max_examples=5000, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile("long" if LONG else "ci")
