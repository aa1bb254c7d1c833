"""Inference engines for the labeling job's model call: Keras/TensorFlow and LiteRT (TFLite with XNNPACK).

Both run one graph, :func:`forward_graph`: compact uint8 pixels in (what crosses Ray's object store), widened to
the model input with :func:`core.model.preprocess.expand`'s numbers, then the model; out come the softmax and the
penultimate features that trust scoring reads.  The bundle carries that graph converted to LiteRT
(``model.tflite``, written by :func:`export_litert` when the bundle is saved, hashed like every other part), so
a CPU model actor needs neither TensorFlow nor the Keras model: it starts in a fraction of the time and, with
XNNPACK's kernels, classifies faster than TensorFlow on the same cores (BENCHMARKS.md, "Labeling throughput: PNG"), with
float32 arithmetic throughout, so the labels do not change (tests/test_inference_equivalence.py holds both
engines to the Keras model: same top-1, probabilities within 1e-3).

A model actor that holds a GPU runs the Keras engine: LiteRT's Python interpreter runs on the CPU only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from core.model.preprocess import LEVELS, PreprocessConfig, expand
from core.trust.confidence import FEATURE_LAYER

ENGINES = ("auto", "keras", "litert")
PROBABILITIES, FEATURES = "probabilities", "features"

Forward = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]


def litert_available() -> bool:
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_engine(requested: str, has_litert_file: bool, gpu: bool) -> str:
    """The engine to run: ``auto`` means LiteRT on a CPU actor whose bundle carries ``model.tflite``, else Keras.

    An explicit ``litert`` that cannot run is an error, not a silent fallback: the operator asked for it."""
    if requested not in ENGINES:
        raise ValueError(f"unknown inference engine {requested!r}; choose one of {', '.join(ENGINES)}")
    if requested == "keras":
        return "keras"
    usable = has_litert_file and litert_available()
    if requested == "litert":
        if gpu:
            raise ValueError("--engine litert runs on the CPU only; a model actor holding a GPU runs --engine keras")
        if not usable:
            raise ValueError(
                "--engine litert needs a bundle with model.tflite and the ai-edge-litert "
                "package; re-save the bundle or use --engine keras"
            )
        return "litert"
    return "litert" if usable and not gpu else "keras"


def forward_graph(model, cfg: PreprocessConfig, features: bool):
    """The one model call of labeling, as a TF function of compact pixels: the Keras engine traces it and
    :func:`export_litert` converts it, so both engines compute the same graph.

    The widening is :func:`core.model.preprocess.expand` in graph form (each uint8 level's float looked up, then the
    channel copies), bit-identical to it, so the model sees what training fed it.  Returns
    ``(probabilities,)`` or ``(probabilities, features)``."""
    import keras
    import tensorflow as tf

    if features:
        model = keras.Model(model.inputs, [model.outputs[0], model.get_layer(FEATURE_LAYER).output])
    quantized = cfg.compact_dtype == np.uint8
    # Each level's float comes from expand itself, looked up: TF's division by a constant may be rewritten as a
    # multiplication by its reciprocal, one ulp away from numpy's for some levels.
    levels = np.arange(LEVELS + 1, dtype=np.uint8)[:, None]
    table = tf.constant(expand(levels, replace(cfg, channels=1))[:, 0])

    def run(x):
        x = tf.gather(table, tf.cast(x, tf.int32)) if quantized else x
        if cfg.channels != 1:
            x = tf.repeat(x, cfg.channels, axis=-1)
        out = model(x, training=False)
        return tuple(out) if isinstance(out, (list, tuple)) else (out,)

    return run, tf.uint8 if quantized else tf.float32


def has_feature_layer(model) -> bool:
    try:
        model.get_layer(FEATURE_LAYER)
    except ValueError:
        return False
    return True


def keras_forward(model, cfg: PreprocessConfig, batch_size: int, features: bool) -> Forward:
    """The graph traced once for fixed-shape batches of ``batch_size`` (the caller pads the last one)."""
    import tensorflow as tf

    run, dtype = forward_graph(model, cfg, features)
    fn = tf.function(run, input_signature=[tf.TensorSpec((batch_size, *cfg.compact_shape), dtype)])
    fn(tf.zeros((batch_size, *cfg.compact_shape), dtype))  # trace now: start-up CPU counts in a short run

    def call(x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        out = fn(x)
        return out[0].numpy(), (out[1].numpy() if features else None)

    return call


def export_litert(model, cfg: PreprocessConfig, path: str, check_batch: int = 4) -> None:
    """Convert :func:`forward_graph` (with features when the model has the feature layer) to a LiteRT file,
    then run the file once against the Keras engine and refuse it unless both agree.

    Float32 weights and arithmetic (no quantisation, no float16): the engine must reproduce the Keras model's
    probabilities, not approximate them.  The batch dimension stays dynamic; the interpreter fixes it once.
    The converted graph has no signature (a concrete function's outputs become ``Identity``, ``Identity_1``,
    in the function's order), so the check is also what proves the outputs are read in the right order."""
    import tensorflow as tf

    features = has_feature_layer(model)
    run, dtype = forward_graph(model, cfg, features)
    fn = tf.function(run, input_signature=[tf.TensorSpec((None, *cfg.compact_shape), dtype, name="pixels")])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # builtins only: XNNPACK runs them
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(converter.convert())
    x = np.random.default_rng(0).integers(0, LEVELS + 1, (check_batch, *cfg.compact_shape)).astype(dtype.as_numpy_dtype)
    want = [np.asarray(o) for o in fn(x)]
    got = litert_forward(tmp, cfg, check_batch, 1, features)(x)
    for name, a, b in zip((PROBABILITIES, FEATURES), want, got, strict=False):
        if b is None or a.shape != b.shape or not np.allclose(a, b, rtol=1e-4, atol=1e-4):
            os.unlink(tmp)
            raise RuntimeError(f"LiteRT export of the model disagrees with Keras on {name}; not written")
    os.replace(tmp, path)


def _output_order(details: list[dict]) -> list[int]:
    """Tensor indices of the converted function's outputs in its order: ``Identity``, ``Identity_1``, ..."""

    def position(d: dict) -> int:
        name = d["name"].rsplit("/", 1)[-1]
        return 0 if name == "Identity" else int(name.rsplit("_", 1)[-1]) if name.startswith("Identity_") else -1

    ranked = sorted(details, key=position)
    if any(position(d) < 0 for d in ranked):
        raise ValueError(f"not a scanlabel LiteRT export (outputs {[d['name'] for d in details]})")
    return [d["index"] for d in ranked]


def litert_forward(path: str, cfg: PreprocessConfig, batch_size: int, threads: int, features: bool) -> Forward:
    """A LiteRT interpreter over an :func:`export_litert` file, batch fixed to ``batch_size``, with ``threads``
    XNNPACK threads (the CPUs Ray granted the actor: more would oversubscribe the decode tasks' cores)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=path, num_threads=max(1, int(threads)))
    (inp,) = interp.get_input_details()
    outputs = _output_order(interp.get_output_details())
    if features and len(outputs) < 2:
        raise ValueError(f"{path}: the bundle's trust scoring needs features, which this export lacks")
    interp.resize_tensor_input(inp["index"], [batch_size, *cfg.compact_shape], strict=True)
    interp.allocate_tensors()
    dtype = inp["dtype"]

    def call(x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        interp.set_tensor(inp["index"], np.ascontiguousarray(x, dtype=dtype))
        interp.invoke()
        probs = interp.get_tensor(outputs[0])  # get_tensor copies: the next invoke cannot overwrite it
        return probs, (interp.get_tensor(outputs[1]) if features else None)

    return call
