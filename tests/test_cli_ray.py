"""`noisylayers ablate --ray`: the runs as Ray tasks, on a local Ray instance.

One local Ray instance with 2 CPUs serves the whole module (Ray takes
seconds to start, and its workers to import the backend): the command
uses a running instance. The model and data are the user's own, as files
(`tests/own_models.py`).
"""

import glob
import json
import os

import keras
import pytest

from noisylayers_cli import main
from tests.own_models import write_data
from tests.own_models import write_models

ray = pytest.importorskip("ray")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--epochs", "1", "--batch-size", "16", "--draws", "1",
        "--sensitivity-scales", "1", "--no-progress"]


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance with 2 CPUs whose workers import this checkout."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([ROOT, *([saved] if saved else [])])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    yield
    ray.shutdown()
    if saved is None:
        del os.environ["PYTHONPATH"]
    else:
        os.environ["PYTHONPATH"] = saved


def run_metrics(out):
    """`{run id: validation metrics}` of the runs saved in `out`."""
    metrics = {}
    for path in glob.glob(os.path.join(out, "runs", "*.json")):
        with open(path) as f:
            record = json.load(f)
        metrics[record["id"]] = record["metrics"]
    return metrics


def assert_no_ray_lines(text):
    for ray_line in ("(raylet)", "A worker died", "retries remaining", "Traceback"):
        assert ray_line not in text


def test_own_model_on_ray_equals_serial_and_survives_a_dead_worker(
    local_ray, tmp_path, capsys
):
    marker, report = str(tmp_path / "died"), str(tmp_path / "workers.txt")
    models = write_models(str(tmp_path), die_once=marker, report=report)
    split, _ = write_data(str(tmp_path))
    argv = ["ablate", "--model", f"{models}:build", "--data", split,
            "--seeds", "1", *TINY]
    serial, on_ray = str(tmp_path / "serial"), str(tmp_path / "ray")
    assert main([*argv, "--out", serial]) == 0
    capsys.readouterr()
    assert main([*argv, "--out", on_ray, "--ray"]) == 0
    out, err = capsys.readouterr()
    # The first build in a worker killed its process; Ray ran the run again.
    assert os.path.exists(marker)
    assert_no_ray_lines(out + err)
    assert "Sensitivity ablation" in out
    # 2 noisy layers: baseline, all, only:hidden, only:out.
    expected, got = run_metrics(serial), run_metrics(on_ray)
    assert sorted(got) == sorted(expected) and len(got) == 4
    for run_id, metrics in expected.items():
        for name, value in metrics.items():
            assert got[run_id][name] == pytest.approx(value, abs=1e-3), run_id
    assert len(os.listdir(os.path.join(on_ray, "models"))) == 4
    with open(os.path.join(on_ray, "sensitivity.json")) as f:
        assert len(json.load(f)["records"]) == 2  # 2 layers, 1 scale, 1 draw
    # Every worker ran the driver's backend, TensorFlow with 1 intra-op thread.
    with open(report) as f:
        lines = set(f.read().splitlines())
    backend = keras.backend.backend()
    threads = "1" if backend == "tensorflow" else "--xla_cpu_multi_thread_eigen=false"
    assert lines == {f"{backend} {threads}"}


def test_a_failing_run_is_reported_and_resume_finishes_it(local_ray, tmp_path, capsys):
    models = write_models(str(tmp_path), fail_seed=1)
    split, _ = write_data(str(tmp_path))
    out = str(tmp_path / "out")
    argv = ["ablate", "--model", f"{models}:one", "--data", split, "--seeds", "2",
            "--out", out, "--ray", *TINY]
    assert main(argv) == 1
    stdout, err = capsys.readouterr()
    assert_no_ray_lines(stdout + err)
    # The runs of seed 1 raise (2 configurations); those of seed 0 are saved.
    for run_id in ("baseline__seed1", "all__seed1"):
        assert (f"noisylayers ablate: run {run_id} failed: ValueError: Argument "
                f"`model`: {models}:one() raised RuntimeError: injected failure") in err
    assert "2 run(s) of the ablation are missing (2 failed)" in err
    assert f"noisylayers ablate --resume {out}" in err
    assert sorted(run_metrics(out)) == ["all__seed0", "baseline__seed0"]
    assert not os.path.exists(os.path.join(out, "sensitivity.json"))

    write_models(str(tmp_path), fail_seed=None)  # the cause is fixed
    assert main(["ablate", "--resume", out, "--ray", *TINY[4:]]) == 0
    assert len(run_metrics(out)) == 4
    assert os.path.isfile(os.path.join(out, "sensitivity.json"))


def test_training_ablation_on_ray_in_python(local_ray, tmp_path):
    from noisylayers.ablation import training_ablation
    from tests.ablation.tiny import build_tiny
    from tests.ablation.tiny import make_data

    data = make_data()
    for kwargs, error, match in [
        ({"ray": 5}, TypeError, "Received: ray=5"),
        ({"ray": "local", "cpus_per_run": 0}, ValueError, "Received: cpus_per_run=0"),
        ({"ray": "local", "gpus_per_run": -1}, ValueError, "Received: gpus_per_run=-1"),
    ]:
        with pytest.raises(error, match=match):
            training_ablation(build_tiny, data, **kwargs)
    out = str(tmp_path / "out")
    result = training_ablation(
        build_tiny, data, epochs=1, seeds=[0], batch_size=16, out_dir=out,
        save_models=True, progress=False, ray="local",
    )
    assert result.complete and result.failed == {}
    assert len(result.records) == 4  # baseline, all, only:a, only:b
    assert sorted(os.listdir(os.path.join(out, "models"))) == sorted(
        f"{r['id']}.keras" for r in result.records
    )
    assert all(r["model"] == f"models/{r['id']}.keras" for r in result.records)
