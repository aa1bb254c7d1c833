"""The model: backbones, the one preprocessing function, the bundle on disk, and the engines that run it.

:mod:`.backbones` is the registry of classifiers a name can build (:mod:`.compact_resnet` is the one for training
from scratch); :mod:`.preprocess` is the single path from decoded pixels to model input that training and
inference share; :mod:`.augment` is training-time augmentation on that input; :mod:`.bundle` saves and loads the
bundle directory (model, preprocessing config, trust data) by its path alone; :mod:`.engines` runs a bundle's
model call with Keras or LiteRT.

May import: :mod:`core.errors`, :mod:`core.io`, :mod:`core.readers`, and :mod:`core.trust.confidence` (the
engines score trust in the same forward pass).  Never Ray.
"""
