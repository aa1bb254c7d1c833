"""`python -m jobs.bench decode`: what one decode core delivers per format and transfer syntax, full vs reduced.

For each case (PNG 8/16-bit at 1024² and 2048², JPEG files, a JPEG 2000 file, and CR-sized 12-bit DICOM in
every transfer syntax of :mod:`core.synthetic.syntaxes`) the decode stage of the labeling job - read bytes in
memory, :func:`core.model.preprocess.decode`, :func:`core.model.preprocess.compact_pixels` - is timed on one
thread, once with the full path (``decode="full"``, what bundles saved before the option get) and once with the
reduced path (docs/decoding.md).  Rates are images per second of *process CPU time* (the machine is shared; CPU
time is what a dedicated core would deliver) with the wall rate beside them.  The PSNR column compares the
reduced path's model input with the full path's (8-bit levels, so 48 dB is under one level of RMS error).

The planning figure: decode cores one GPU needs = GPU images/s (``--gpu-rate``, BENCHMARKS.md's EfficientNet-B0
@ 224 on one H200) / images per second per core.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass, replace

import cv2
import numpy as np

from core.model.preprocess import PreprocessConfig, compact_pixels, decode
from core.synthetic.phantoms import CLASSES, render_phantom
from core.synthetic.syntaxes import SYNTAXES, bits_for, encode_dicom

GPU_RATE = 9000.0  # EfficientNet-B0 @ 224 on one H200, images/s (BENCHMARKS.md)


@dataclass
class Case:
    name: str
    files: list[bytes]


@dataclass
class Row:
    case: str
    mb: float
    full_cpu: float  # CPU seconds per image
    reduced_cpu: float
    full_wall: float
    reduced_wall: float
    reduction: int
    psnr: float

    @property
    def speedup(self) -> float:
        return self.full_cpu / max(self.reduced_cpu, 1e-9)


def _images(n: int, h: int, w: int, seed: int) -> list[np.ndarray]:
    """n phantoms at h x w: drawn at a quarter size and upscaled with detector noise (the throughput archives'
    way: compression stays realistic, rendering stays cheap)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        small = render_phantom(CLASSES[i % len(CLASSES)], rng, max(16, h // 4), max(16, w // 4))
        big = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        out.append(np.clip(big + rng.normal(0, 0.004, big.shape).astype(np.float32), 0, 1))
    return out


def make_cases(n: int, rows: int, syntaxes: list[str]) -> list[Case]:
    cases = []
    for side in (1024, 2048):
        imgs = _images(n, side, side, side)
        for bits in (8, 16):
            dtype, top = (np.uint8, 255) if bits == 8 else (np.uint16, 65535)
            files = [cv2.imencode(".png", np.rint(im * top).astype(dtype))[1].tobytes() for im in imgs]
            cases.append(Case(f"PNG {bits}-bit {side}²", files))
        files = [cv2.imencode(".jpg", np.rint(im * 255).astype(np.uint8))[1].tobytes() for im in imgs]
        cases.append(Case(f"JPEG file {side}²", files))
    cr = _images(n, rows, int(rows * 0.82), 7)  # a 35 x 43 cm cassette's aspect
    import imagecodecs

    files = [
        bytes(
            imagecodecs.jpeg2k_encode(
                np.rint(im * 4095).astype(np.uint16), codecformat="JP2", reversible=True, bitspersample=12
            )
        )
        for im in cr
    ]
    cases.append(Case(f"JPEG 2000 file (.jp2) CR {rows} rows", files))
    for syntax in syntaxes:
        files = [encode_dicom(im, syntax, instance=f"{syntax}{i}") for i, im in enumerate(cr)]
        cases.append(Case(f"DICOM {syntax} ({SYNTAXES[syntax].name}), {bits_for(syntax)}-bit", files))
    return cases


def _time(files: list[bytes], cfg: PreprocessConfig, repeats: int) -> tuple[float, float, list[np.ndarray], int]:
    """(CPU s, wall s) per image of the decode stage, the compact inputs, the reduction factor seen."""
    outs, reduction = [], 1
    for data in files[:1]:  # warm the codecs' first-call costs
        compact_pixels(decode(data, "bench", cfg), cfg)
    c, t = time.process_time(), time.perf_counter()
    for _ in range(repeats):
        outs = []
        for data in files:
            d = decode(data, "bench", cfg)
            outs.append(compact_pixels(d, cfg))
            reduction = max(reduction, int(d.meta.get("decode_reduction", 1)))
    n = repeats * len(files)
    return (time.process_time() - c) / n, (time.perf_counter() - t) / n, outs, reduction


def _psnr(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    mse = float(np.mean([np.mean((x.astype(np.float64) - y) ** 2) for x, y in zip(a, b, strict=True)]))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def measure(case: Case, image_size: int, repeats: int) -> Row:
    reduced = PreprocessConfig(image_size=image_size)
    full = replace(reduced, decode="full")
    fc, fw, fx, _ = _time(case.files, full, repeats)
    rc, rw, rx, reduction = _time(case.files, reduced, repeats)
    mb = sum(len(f) for f in case.files) / len(case.files) / 1e6
    return Row(case.name, mb, fc, rc, fw, rw, reduction, _psnr(fx, rx))


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (1 min) / {five:.2f} (5 min) on {os.cpu_count()} cores"


def table(rows: list[Row], gpu_rate: float) -> str:
    lines = [
        "| format / syntax | MB | full img/s/core | reduced img/s/core | speed-up | reduction | PSNR vs full (dB) "
        "| cores per GPU full → reduced |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r.case} | {r.mb:.2f} | {1 / r.full_cpu:.1f} | {1 / r.reduced_cpu:.1f} | {r.speedup:.1f}× "
            f"| 1/{r.reduction} | {r.psnr:.1f} | {gpu_rate * r.full_cpu:,.0f} → {gpu_rate * r.reduced_cpu:,.0f} |"
        )
    return "\n".join(lines)


def run_decode(args: argparse.Namespace) -> int:
    cv2.setNumThreads(1)  # one decode core, as the job's decode tasks run
    syntaxes = args.syntax or sorted(SYNTAXES)
    print(f"machine: load {_load()} before (shared machine: ratios within this run are what count)", flush=True)
    cases = [c for c in make_cases(args.images, args.rows, syntaxes) if not args.only or args.only in c.name]
    rows = []
    for case in cases:
        rows.append(measure(case, args.image_size, args.repeats))
        r = rows[-1]
        print(
            f"{r.case}: full {1 / r.full_cpu:.1f} img/s/core ({r.full_wall * 1000:.0f} ms wall), reduced "
            f"{1 / r.reduced_cpu:.1f} ({r.reduced_wall * 1000:.0f} ms wall), {r.speedup:.1f}×, {r.psnr:.1f} dB",
            flush=True,
        )
    text = table(rows, args.gpu_rate)
    print(text)
    print(
        f"machine: load {_load()} after; {args.images} images per case x {args.repeats}, model input "
        f"{args.image_size} px, GPU rate {args.gpu_rate:,.0f} img/s"
    )
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "decode.md"), "w") as f:
            f.write(text + "\n")
    return 0


def register(sub) -> None:
    """The ``register`` of ``python -m jobs.bench``: this benchmark's sub-command and flags."""
    p = sub.add_parser("decode", help="decode-stage images/s per core per format and syntax, full vs reduced")
    p.add_argument("--images", type=int, default=4, help="distinct images per case")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--rows", type=int, default=2500, help="rows of the CR-sized images (columns: 0.82 x rows)")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--syntax", action="append", choices=sorted(SYNTAXES), help="DICOM syntaxes (default: all)")
    p.add_argument("--gpu-rate", type=float, default=GPU_RATE, help="model images/s of one GPU, for cores per GPU")
    p.add_argument("--only", default="", help="measure only the cases whose name contains this (e.g. PNG)")
    p.add_argument("--out", default="bench_out/decode")
    p.set_defaults(bench_run=run_decode)
