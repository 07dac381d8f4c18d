"""The GPU launcher, run here on the CPU with the TensorFlow backend and the bundled sample."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

from fer_keras import data

REPO = Path(__file__).resolve().parents[1]


def test_full_runs_launcher(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(data.sample_path("fer2013"), folder / "fer2013.csv.gz")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "full_runs.py"), "--data", str(folder),
                           "--out", str(out), "--steps", "01_baseline", "--epochs", "1", "--backend", "tensorflow"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((out / "results" / "01_baseline_fer2013.json").read_text())
    assert results["model"] == "baseline_cnn" and results["epochs_run"] == 1
    assert results["config"]["learning_rate"] == 1e-4 and results["stopped_by_time_limit"] is False
    assert "01_baseline: rc=0 acc=" in proc.stdout


def test_readme_results_table_is_generated_and_current():
    sys.path.insert(0, str(REPO / "scripts"))
    import results_table

    table = results_table.render()
    for path in (REPO / "results").glob("*.json"):
        r = json.loads(path.read_text())
        if "model" in r and "test" in r and "provenance" in r:
            assert f"`{path.stem}`" in table
            assert f"{100 * r['test']['accuracy']:.2f} %" in table or "test_single_crop" in r
    assert results_table.main(["--check"]) == 0, "run python scripts/results_table.py"
