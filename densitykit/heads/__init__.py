"""Output distributions ("heads"), each registered by name.

Example:
    >>> import densitykit as dk
    >>> dk.heads.names()
    ['bernoulli', 'categorical', 'gaussian', 'gaussian-mixture', 'histogram', 'logistic-mixture',
     'mixed', 'spike']
"""

from densitykit.heads.base import Head
from densitykit.heads.bernoulli import BernoulliHead
from densitykit.heads.categorical import CategoricalHead
from densitykit.heads.gaussian import GaussianHead, GaussianMixtureHead
from densitykit.heads.histogram import HistogramHead
from densitykit.heads.logistic_mixture import (
    DiscretizedLogisticMixture,
    LogisticMixtureHead,
    discretized_logistic_log_prob,
)
from densitykit.heads.mixed import MixedHead
from densitykit.heads.registry import HEADS, create, default_num_values, get, names, register
from densitykit.heads.spike import SpikeAndSlab, SpikeHead

__all__ = [
    "HEADS",
    "BernoulliHead",
    "CategoricalHead",
    "DiscretizedLogisticMixture",
    "GaussianHead",
    "GaussianMixtureHead",
    "Head",
    "HistogramHead",
    "LogisticMixtureHead",
    "MixedHead",
    "SpikeAndSlab",
    "SpikeHead",
    "create",
    "default_num_values",
    "discretized_logistic_log_prob",
    "get",
    "names",
    "register",
]
