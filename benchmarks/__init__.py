"""Benchmarks: figures and ratios a reader can reproduce (BENCHMARKS.md), kept apart from the product.

Not installed with the package; run from a source checkout as ``python -m jobs.bench NAME``.  Each module in
:data:`MODULES` has ``register(sub)``, which adds its sub-commands to ``jobs.bench`` and names the function
that runs them.  ``benchmarks.gpu`` runs alone on a GPU machine (``python -m benchmarks.gpu``).
"""

MODULES = (
    "benchmarks.label",
    "benchmarks.decode",
    "benchmarks.train",
    "benchmarks.train_step",
    "benchmarks.trust",
    "benchmarks.dicomweb",
    "benchmarks.faults",
    "benchmarks.weak_labels",
    "benchmarks.demo",
)
