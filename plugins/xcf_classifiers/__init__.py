"""Built-in classifiers (``small-cnn``, ``densenet121``) and :func:`wrap_classifier` for your own."""

from __future__ import annotations

from xcf import hookimpl

from .densenet import DenseNet121
from .mobilenet import MobileNetV3Small
from .small_cnn import CHEXPERT5, SmallCNN
from .wrap import WrappedClassifier, imagenet_rgb, wrap_classifier, xrv_range

__all__ = ["SmallCNN", "DenseNet121", "MobileNetV3Small", "CHEXPERT5", "WrappedClassifier", "wrap_classifier",
           "imagenet_rgb", "xrv_range"]


@hookimpl
def xcf_register_classifiers(register) -> None:
    register("small-cnn", SmallCNN,
             description="fast CPU classifier: 5 conv-BN-ReLU blocks (16-32-64-96-128), global average pool, 0.47 M params")
    register("mobilenet-v3-small", MobileNetV3Small,
             description="MobileNetV3-Small (Howard et al. 2019), 1-channel stem, ~1.5 M params, untrained; "
                         "a second architecture for oracle classifiers")
    register("densenet121", DenseNet121,
             description="DenseNet-121 (Huang et al. 2017), torchvision layout, 224 px, grey->ImageNet RGB inside "
                         "(in_channels='grey' for 1 channel), CAM layer features.norm5; 7.0 M params, untrained")
