import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_input_pipeline_benchmark_runs(tmp_path):
    spec = importlib.util.spec_from_file_location("input_pipeline", REPO / "benchmarks" / "input_pipeline.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--images", "256", "--batch-size", "64", "--json", str(tmp_path / "b.json")])
    assert result["legacy_imagedatagenerator_images_per_s"] > 0
    assert result["kit_pydataset_inmodel_augmentation_images_per_s"] > 0
    assert (tmp_path / "b.json").is_file()
