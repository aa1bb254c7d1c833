"""Three nights over a growing manifest on a real local Ray with a really trained bundle: the run history, the
drift flag on the third night only (shifted body-part mix, broken files), --fail-on-drift exit 4 after the labels
are committed, --summary-json, and runs.html rendered by a real headless browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from jobs.cli import main


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _write_manifest(path, rows) -> str:
    pq.write_table(pa.table({"uri": [r[0] for r in rows], "image_id": [r[1] for r in rows]}), path)
    return str(path)


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    """Manifests of three nights: 70 mixed rows, +56 mixed rows, then +hand/leg only rows and 6 broken files."""
    from core.synthetic.sample_archive import write_sample_archive

    root = tmp_path_factory.mktemp("nights")
    base = pq.read_table(write_sample_archive(root / "base", 126, seed=21, other_count=0)).to_pylist()
    limbs = pq.read_table(
        write_sample_archive(root / "limbs", 48, seed=22, classes=("hand", "leg"), other_count=0)
    ).to_pylist()
    broken = root / "broken"
    broken.mkdir()
    png = open(next(r["uri"] for r in base if r["uri"].endswith(".png")), "rb").read()
    bad = []
    for i in range(3):
        (broken / f"truncated_{i}.png").write_bytes(png[: len(png) // 3])
        bad.append((str(broken / f"truncated_{i}.png"), f"broken-trunc-{i}"))
        (broken / f"empty_{i}.png").write_bytes(b"")
        bad.append((str(broken / f"empty_{i}.png"), f"broken-empty-{i}"))
    rows1 = [(r["uri"], r["image_id"]) for r in base[:70]]
    rows2 = rows1 + [(r["uri"], r["image_id"]) for r in base[70:]]
    rows3 = rows2 + [(r["uri"], "limb-" + r["image_id"]) for r in limbs] + bad
    return [_write_manifest(root / f"night{i + 1}.parquet", rows) for i, rows in enumerate((rows1, rows2, rows3))]


def test_three_nights_history_drift_and_report(ray_session, trained_bundle, nights, tmp_path, capsys):
    bundle, _ = trained_bundle
    labels, summary_json = tmp_path / "labels", tmp_path / "scheduler" / "last.json"

    def night(manifest: str) -> int:
        return main(
            [
                "label",
                "--manifest",
                manifest,
                "--model",
                bundle,
                "--out",
                str(labels),
                "--batch-size",
                "16",
                "--fail-on-drift",
                "--summary-json",
                str(summary_json),
            ]
        )

    assert night(nights[0]) == 0
    assert night(nights[1]) == 0
    assert json.loads(summary_json.read_text())["outcome"] == "ok"
    capsys.readouterr()
    assert night(nights[2]) == 4  # drift: exits 4 ...
    err = capsys.readouterr().err
    assert "drifted from its reference" in err and "mix" in err
    # ... after everything was committed: every manifest row of the third night has its one labels row
    table = pads.dataset(str(labels)).to_table()
    assert table.num_rows == pq.read_metadata(nights[2]).num_rows == 70 + 56 + 48 + 6
    errors = {r["image_id"]: r["error"] for r in table.to_pylist() if r["image_id"].startswith("broken-")}
    assert len(errors) == 6 and all(errors.values())
    result = json.loads(summary_json.read_text())
    assert result["exit_code"] == 4 and result["outcome"] == "drift"
    assert result["summary"]["drift"]["flagged"] and "mix" in result["summary"]["drift"]["reasons"]
    assert result["summary"]["todo"] == 54 and result["summary"]["failed"] == 6

    # A scheduler's retry finds nothing to do: it must still report the drift, not succeed.
    assert night(nights[2]) == 4
    assert "last run" in capsys.readouterr().err

    report = tmp_path / "report"
    assert main(["runs", "--labels", str(labels), "--out", str(report)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("when (UTC)"))
    rows = lines[header + 1 : header + 4]
    assert len(rows) == 3 and not lines[header + 4].startswith("20"), out  # three runs, the retry did no work
    cols = [r.split() for r in rows]
    # when(2 tokens) run_id model_id manifest to_do done ok abstained errors... drift
    assert [c[4:7] for c in cols] == [["70", "70", "70"], ["126", "56", "56"], ["180", "54", "54"]]
    runs = sorted(
        (json.loads(p.read_text()) for p in (labels / "_runs").glob("*.json")), key=lambda r: r["finished_at"]
    )
    assert [r["ok"] + r["failed"] + r["skipped"] for r in runs] == [70, 56, 54]
    assert [r["failed"] for r in runs] == [0, 0, 6]
    for c, r in zip(cols, runs, strict=True):
        assert c[7] == str(r["ok"]) and c[8] == str(r["abstained"])
    assert [bool(r["drift"] and r["drift"]["flagged"]) for r in runs] == [False, False, True]
    assert "DRIFT: mix" in rows[2] and "DRIFT" not in rows[0] + rows[1]
    assert "empty_file=3" in rows[2] and "decode_error=3" in rows[2]
    assert "[runs] 3 run(s), 1 flagged for drift" in out

    html = (report / "runs.html").read_text()
    for png in ("rows_throughput.png", "rates.png", "body_part_mix.png"):
        assert f'src="{png}"' in html and (report / png).stat().st_size > 5000

    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium/google-chrome on PATH: runs.html not rendered (apt-get install -y chromium)")
    shot = tmp_path / "runs.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'chrome-profile'}",
            "--window-size=1400,2200",
            f"--screenshot={shot}",
            (report / "runs.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    import cv2

    img = cv2.imread(str(shot))
    assert img is not None, "chromium wrote no screenshot"
    # The page is rendered with its plots: well beyond a blank page, and with the plots' colours in it
    # (the mix bars and the throughput bars are saturated colours; text and table borders are grey).
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    colourful = float(np.mean((hsv[..., 1] > 80) & (hsv[..., 2] > 60)))
    assert float(img.std()) > 20 and colourful > 0.02, (float(img.std()), colourful)


def test_runs_reads_summaries_from_s3(s3_server, tmp_path, capsys):
    import boto3

    from core.io import storage
    from core.labeling.run_history import load_runs

    boto3.client("s3").create_bucket(Bucket="history")
    base = "s3://history/labels"
    for i, (done, failed) in enumerate(((40, 0), (30, 2))):
        summary = {"run_id": f"run{i}", "finished_at": 1_795_000_000 + i * 86400, "model_id": "m", "done": done}
        summary.update(ok=done - failed, failed=failed, todo=done, manifest_rows=40 + 30 * i, errors={})
        storage.write_bytes_atomic(f"{base}/_runs/run{i}.json", json.dumps(summary).encode())
    storage.write_bytes_atomic(f"{base}/_runs/broken.json", b"{not json")
    assert [r["run_id"] for r in load_runs(base)] == ["run0", "run1"]
    assert main(["runs", "--labels", base, "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "[runs] 2 run(s), 0 flagged for drift" in out and (tmp_path / "r" / "runs.html").exists()
    assert main(["runs", "--labels", "s3://history/nothing-here"]) == 2
