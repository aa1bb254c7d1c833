"""Training: a manifest of labelled images in, a model bundle out, on any ``tf.distribute`` strategy, no Ray inside.

The loop (:mod:`.loop`) reads top to bottom as the run happens: :mod:`.setup` (devices, split, shards, state),
:mod:`.trainer` (the model and its custom step), :mod:`.distributed` (replicas in lock-step), :mod:`.checkpoints`
(exact resumption), :mod:`.publish` (calibration and the bundle).  :mod:`.config` is what a run is asked to do,
:mod:`.data` turns a labelled manifest into the input pipeline, :mod:`.curves` draws the training curves, and
:mod:`.faults` is the test hook that kills a worker mid-epoch; :mod:`.noisy` trains on header-derived labels
(out-of-fold predictions, confident learning, a final model: ``--noisy-labels``).  Ray Train (``cluster/train.py``)
only supplies the strategy, the worker rank and a ``report`` callback.

May import: :mod:`core.errors`, :mod:`core.progress`, :mod:`core.io`, :mod:`core.readers`, :mod:`core.model`,
:mod:`core.trust`.  Never Ray.
"""

from core.training.checkpoints import keep_checkpoints, latest_checkpoint, load_checkpoint_weights
from core.training.config import TrainConfig, from_scratch_recipe
from core.training.loop import run_training

__all__ = [
    "TrainConfig",
    "from_scratch_recipe",
    "keep_checkpoints",
    "latest_checkpoint",
    "load_checkpoint_weights",
    "run_training",
]
