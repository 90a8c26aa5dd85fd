"""densitykit: autoregressive density estimation with MADE, composed from named parts."""

from densitykit import heads, masks
from densitykit.errors import (
    CheckpointError,
    DataError,
    DensitykitError,
    DuplicateNameError,
    TrainingError,
    UnknownNameError,
    UnknownOptionError,
)
from densitykit.heads import Head
from densitykit.layers import MaskedLinear
from densitykit.made import MADE
from densitykit.masks import Connectivity
from densitykit.model import AutoregressiveModel, ModelConfig, build_model, create_model
from densitykit.registry import Registry

__version__ = "0.1.0"

__all__ = [
    "MADE",
    "AutoregressiveModel",
    "CheckpointError",
    "Connectivity",
    "DataError",
    "DensitykitError",
    "DuplicateNameError",
    "Head",
    "MaskedLinear",
    "ModelConfig",
    "Registry",
    "TrainingError",
    "UnknownNameError",
    "UnknownOptionError",
    "__version__",
    "build_model",
    "create_model",
    "heads",
    "masks",
]
