"""Training of the classifiers and latent models a pack ships (``xcf train ...``).

The training loop, the data it reads and the manifest it writes are in :mod:`xcf.train.trainer`;
``python -m xcf.train ...`` is the same program as ``xcf train ...``.
"""

from __future__ import annotations

from .trainer import (
    PHANTOM_TEST_SEED,
    TrainData,
    augment,
    degradation_shift,
    edit_manifest,
    gaussian_blur,
    load_training_data,
    phantom_test_seed,
    reconstruction_metrics,
    set_default_latent,
    train_classifier,
    train_latent,
    train_val_indices,
    update_manifest,
)

__all__ = ["TrainData", "load_training_data", "train_classifier", "train_latent", "augment",
           "gaussian_blur", "degradation_shift", "update_manifest", "edit_manifest",
           "set_default_latent", "reconstruction_metrics", "train_val_indices", "PHANTOM_TEST_SEED",
           "phantom_test_seed"]
