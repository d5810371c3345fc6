"""benchmarks/gpu_check.sh, the GPU proof script, runs end to end on a CPU with --dry-run:
every stage starts, writes under one output folder, and summary.md reports each stage's exit.
(The real run needs a GPU; see docs/training/mixed-precision.md.)"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                    reason="needs bash and coreutils timeout")
def test_gpu_check_dry_run_writes_every_stage(tmp_path):
    out = tmp_path / "check"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    env.pop("GPU_CHECK_WHEELS", None)
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", str(out)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = (out / "summary.md").read_text()
    rows = dict(re.findall(r"^\| ([\w-]+) \| (\S+)", summary, flags=re.M))
    for stage in ("gpu-tests", "bench", "pretrain"):
        assert rows.get(stage) == "0", (stage, summary, (out / f"{stage}.log").read_text()[-3000:])
    assert "MISSING:" in (out / "deps.txt").read_text()
    bench = json.loads((out / "bench" / "results.json").read_text())
    assert {row["impl"] for row in bench["rows"]} >= {"minialbert"}
    assert all("error" not in row for row in bench["rows"]), bench["rows"]
    recs = [json.loads(line) for line in (out / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    assert recs and all("loss_scale" in rec and "skipped_steps" in rec for rec in recs)
