"""GPU decoding on one device with nvImageCodec: images/s for JPEG 2000, HTJ2K and JPEG frames of CR size.

Runs alone on a GPU machine (``python -m benchmarks.gpu_decode --data DIR``), which needs numpy, OpenCV, Pillow,
CuPy (device synchronisation and the on-device area reduction) and nvImageCodec with nvJPEG/nvJPEG2000,
but no pydicom, TensorFlow or Ray.  ``DIR`` holds codestreams written by :func:`write_data` on any machine (the
frames the DICOM files of :mod:`core.synthetic.syntaxes` carry).  For each syntax it reports the batched GPU
decode rate (full size, on the device), the same plus the area reduction to the reduced path's size, the
agreement with the CPU decoders, and one core's CPU rate on that machine for scale
(BENCHMARKS.md, "Decoding at the model's resolution").
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

SYNTAX_FILES = ("j2k_lossless", "j2k_lossy", "htj2k_lossless", "jpeg_baseline")


def write_data(directory: str, rows: int = 2500, copies: int = 2) -> None:
    """Codestreams of CR-sized phantoms, as the DICOM files of every syntax here carry them (run on a CPU
    machine that has the encoders)."""
    import io

    import pydicom
    from pydicom.encaps import get_frame

    from benchmarks.decode import _images
    from core.synthetic.syntaxes import bits_for, encode_dicom

    os.makedirs(directory, exist_ok=True)
    meta = {}
    for syntax in SYNTAX_FILES:
        for i, img in enumerate(_images(copies, rows, int(rows * 0.82), 11)):
            ds = pydicom.dcmread(io.BytesIO(encode_dicom(img, syntax, instance=f"gpu{syntax}{i}")))
            name = f"{syntax}_{i}.bin"
            with open(os.path.join(directory, name), "wb") as f:
                f.write(bytes(get_frame(ds.PixelData, 0, number_of_frames=1)))
            meta[name] = {"syntax": syntax, "rows": ds.Rows, "columns": ds.Columns, "bits": bits_for(syntax)}
    with open(os.path.join(directory, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)


def _gpu_rate(decoder, streams: list[bytes], batch: int, seconds: float, reduce_to: int | None) -> float:
    """Images/s of batched decodes kept on the device (CuPy views of nvImageCodec's images), optionally with the
    area reduction to >= ``reduce_to`` pixels on the longer side, synchronised before the clock is read."""
    import cupy as cp

    work = [streams[i % len(streams)] for i in range(batch)]
    done, t0 = 0, time.perf_counter()
    while True:
        images = decoder.decode_batch(work)
        arrays = [cp.asarray(im) for im in images]
        if reduce_to:
            for x in arrays:
                x = x.reshape(x.shape[0], x.shape[1]).astype(cp.float32)
                k = 2 ** max(0, int(np.log2(max(x.shape) / reduce_to)))
                h, w = (x.shape[0] // k) * k, (x.shape[1] // k) * k
                x[:h, :w].reshape(h // k, k, w // k, k).mean(axis=(1, 3))
        cp.cuda.Device().synchronize()
        done += batch
        if time.perf_counter() - t0 > seconds:
            return done / (time.perf_counter() - t0)


def _cpu_rate(fn, streams: list[bytes], seconds: float) -> float:
    fn(streams[0])
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn(streams[done % len(streams)])
        done += 1
    return done / (time.perf_counter() - t0)


def _cpu_decoders(meta: dict, min_side: int):
    import cv2

    from core.readers import jpeg, jpeg2000

    if meta["syntax"].startswith(("j2k", "htj2k")):
        full = lambda cs: jpeg2000._pillow_image(cs, 0)  # noqa: E731
        reduced = lambda cs: jpeg2000.decode_reduced(cs, min_side, meta["rows"], meta["columns"])  # noqa: E731
    else:
        full = lambda cs: cv2.imdecode(np.frombuffer(cs, np.uint8), cv2.IMREAD_UNCHANGED)  # noqa: E731
        reduced = lambda cs: jpeg.decode_scaled(cs, min_side, meta["rows"], meta["columns"])  # noqa: E731
    return full, reduced


def run(data: str, out: str, seconds: float, min_side: int) -> list[dict]:
    import cv2

    from core.readers import frames, gpu, jpeg2000

    cv2.setNumThreads(1)
    with open(os.path.join(data, "meta.json")) as f:
        meta = json.load(f)
    decoder = gpu.install()
    rows = []
    for syntax in SYNTAX_FILES:
        names = sorted(n for n, m in meta.items() if m["syntax"] == syntax)
        streams = [open(os.path.join(data, n), "rb").read() for n in names]  # noqa: SIM115
        m = meta[names[0]]
        row = {"syntax": syntax, "rows": m["rows"], "columns": m["columns"], "mb": len(streams[0]) / 1e6}
        first = np.asarray(decoder.decode_batch(streams[:1])[0].cpu()).squeeze()
        cpu_full, cpu_reduced = _cpu_decoders(m, min_side)
        ref = np.asarray(cpu_full(streams[0])).squeeze()
        if syntax.startswith(("j2k", "htj2k")) and ref.dtype == np.uint16:
            prec = jpeg2000.parse_header(streams[0]).precision
            ref = jpeg2000._unshift(ref, prec)
        row["gpu_vs_cpu_max_abs"] = float(np.abs(first.astype(np.int64) - ref.astype(np.int64)).max())
        request = frames.FrameRequest(
            frames.J2K_SYNTAXES[0]
            if syntax.startswith("j2k")
            else frames.HTJ2K_SYNTAXES[0]
            if syntax.startswith("htj2k")
            else frames.JPEG_LOSSY_SYNTAXES[0],
            m["rows"],
            m["columns"],
            8 if m["bits"] <= 8 else 16,
            m["bits"],
            min_side,
        )
        via_registry = frames.decode_frame(streams[0], request)
        row["registry_decoder"] = via_registry.decoder if via_registry else None
        cpu_small = cpu_reduced(streams[0])
        if via_registry is not None and cpu_small is not None and via_registry.pixels.shape == cpu_small[0].shape:
            top = float((1 << m["bits"]) - 1)
            err = via_registry.pixels.astype(np.float64) - cpu_small[0]
            row["registry_vs_cpu_reduced_psnr"] = float(10 * np.log10(top**2 / max(np.mean(err**2), 1e-12)))
        for batch in (1, 16, 64, 128):
            row[f"gpu_full_b{batch}"] = _gpu_rate(decoder, streams, batch, seconds, None)
        row["gpu_reduced_b64"] = _gpu_rate(decoder, streams, 64, seconds, min_side)
        row["cpu_full_1core"] = _cpu_rate(cpu_full, streams, seconds)
        row["cpu_reduced_1core"] = _cpu_rate(cpu_reduced, streams, seconds)
        rows.append(row)
        print(json.dumps(row), flush=True)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "gpu_decode.json"), "w") as f:
        json.dump(rows, f, indent=1)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="codestreams written by write_data")
    p.add_argument("--write", action="store_true", help="write the codestreams into --data and stop")
    p.add_argument("--out", default=os.environ.get("OUT", "bench_out/gpu_decode"))
    p.add_argument("--seconds", type=float, default=4.0, help="per measurement")
    p.add_argument("--min-side", type=int, default=448, help="the reduced path's longer side (2 x 224)")
    args = p.parse_args()
    if args.write:
        write_data(args.data)
        return
    run(args.data, args.out, args.seconds, args.min_side)


if __name__ == "__main__":
    main()
