"""Shared pytest setup: Hypothesis profiles and small helpers."""

from __future__ import annotations

import os

import torch
from hypothesis import HealthCheck, settings

# Derandomized with no deadline for CI (as TensorFlow Probability does); "dev" explores more.
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=30,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("dev", deadline=None, max_examples=200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

torch.set_num_threads(1)
