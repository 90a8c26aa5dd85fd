"""densitykit: autoregressive density estimation with MADE, composed from named parts.

``import densitykit as dk`` reaches the whole workflow: data sets
(``dk.load_dataset``, ``dk.data``), models (``dk.create_model``, ``dk.heads``,
``dk.masks``), training (``dk.fit``, ``dk.evaluate``, ``dk.TrainConfig``), run folders
(``dk.fit_run``, ``dk.load_run``, ``dk.RunConfig``), checkpoints
(``dk.save_checkpoint``, ``dk.load_checkpoint``), sampling (``model.sample``,
``dk.sampling``) and queries with some variables observed (``model.complete``,
``model.conditional_log_prob``, ``dk.queries``, ``dk.inpainting``; ``dk.orderless``, one
network for every conditional; ``dk.histogram``, the independent baseline; ``dk.maf``,
a flow of MADEs over real values).

Example:
    >>> import torch, densitykit as dk
    >>> data = dk.load_dataset("1d-gaussian", val_fraction=0.25)
    >>> model = dk.create_model("categorical", data.dim, data.num_values, hidden_sizes=())
    >>> result = dk.fit(model, data.train, data.val, dk.TrainConfig(epochs=1, device="cpu"))
    >>> model.sample((2, 3)).shape
    torch.Size([2, 3, 1])
"""

from densitykit import (
    checkpoint,
    data,
    distributed,
    family,
    heads,
    histogram,
    inpainting,
    maf,
    masks,
    orderless,
    plots,
    queries,
    runs,
    sampling,
    train,
)
from densitykit.checkpoint import load_checkpoint, save_checkpoint
from densitykit.data import Dataset, load_dataset
from densitykit.errors import (
    CheckpointError,
    DataError,
    DensitykitError,
    DuplicateNameError,
    TrainingError,
    UnknownNameError,
    UnknownOptionError,
)
from densitykit.family import DensityModel
from densitykit.heads import Head
from densitykit.histogram import HistogramConfig, HistogramModel
from densitykit.layers import MaskedLinear, PackedLinear
from densitykit.made import MADE
from densitykit.maf import MAFConfig, MAFModel
from densitykit.masks import Connectivity
from densitykit.model import AutoregressiveModel, ModelConfig, build_model, create_model
from densitykit.registry import Registry
from densitykit.runs import DataConfig, Run, RunConfig, fit_run, load_run, resume_run, sample_run
from densitykit.train import TrainConfig, evaluate, fit
from densitykit.version import __version__

__all__ = [
    "MADE",
    "AutoregressiveModel",
    "CheckpointError",
    "Connectivity",
    "DataConfig",
    "DataError",
    "Dataset",
    "DensityModel",
    "DensitykitError",
    "DuplicateNameError",
    "Head",
    "HistogramConfig",
    "HistogramModel",
    "MAFConfig",
    "MAFModel",
    "MaskedLinear",
    "ModelConfig",
    "PackedLinear",
    "Registry",
    "Run",
    "RunConfig",
    "TrainConfig",
    "TrainingError",
    "UnknownNameError",
    "UnknownOptionError",
    "__version__",
    "build_model",
    "checkpoint",
    "create_model",
    "data",
    "distributed",
    "evaluate",
    "family",
    "fit",
    "fit_run",
    "heads",
    "histogram",
    "inpainting",
    "load_checkpoint",
    "load_dataset",
    "load_run",
    "maf",
    "masks",
    "orderless",
    "plots",
    "queries",
    "resume_run",
    "runs",
    "sample_run",
    "sampling",
    "save_checkpoint",
    "train",
]
