import json
import os
import signal
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from tests.ablation.tiny import build_tiny
from tests.ablation.tiny import make_data

import noisylayers
from noisylayers.ablation import configurations
from noisylayers.ablation import merge
from noisylayers.ablation import training_ablation
from noisylayers.ablation.plan import parse_shard
from noisylayers.ablation.training import plan_runs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class CountingBuild:
    """`build_tiny` that counts its calls."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return build_tiny(**self.kwargs)


def run_ids(directory):
    return sorted(f[:-5] for f in os.listdir(os.path.join(directory, "runs")))


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """One unsharded ablation of a 2-layer model, 2 seeds, with models."""
    out = str(tmp_path_factory.mktemp("full"))
    build = CountingBuild()
    result = training_ablation(
        build,
        make_data(),
        epochs=1,
        seeds=[0, 1],
        batch_size=16,
        out_dir=out,
        save_models=True,
        progress=False,
    )
    return out, result, build


def test_configurations():
    names = [c["name"] for c in configurations(["a", "b", "c"])]
    assert names == [
        "baseline", "all", "only:a", "only:b", "only:c",
        "without:a", "without:b", "without:c",
    ]
    by_name = {c["name"]: c["enabled"] for c in configurations(["a", "b", "c"])}
    assert by_name["baseline"] == []
    assert by_name["all"] == ["a", "b", "c"]
    assert by_name["only:b"] == ["b"]
    assert by_name["without:b"] == ["a", "c"]
    # With one noisy layer, 'only' is 'all' and 'without' is 'baseline'.
    assert [c["name"] for c in configurations(["a"])] == ["baseline", "all"]


def test_every_configuration_with_correct_bookkeeping(full):
    out, result, build = full
    # 6 configurations, but only:a == without:b and only:b == without:a:
    # 4 distinct runs per seed, plus the build that finds the noisy layers.
    assert build.calls == 1 + 4 * 2
    assert result.complete and result.missing == []
    assert len(result.records) == 8
    assert run_ids(out) == sorted(r["id"] for r in result.records)
    rows = {row["configuration"]: row for row in result.rows}
    assert list(rows) == [
        "baseline", "all", "only:a", "only:b", "without:a", "without:b",
    ]
    for row in rows.values():
        assert row["seeds"] == 2
    assert rows["without:a"]["enabled"] == ["b"]
    assert rows["without:b"]["accuracy_mean"] == rows["only:a"]["accuracy_mean"]

    def records(enabled):
        return [r for r in result.records if sorted(r["enabled"]) == enabled]

    for enabled in ([], ["a"], ["b"], ["a", "b"]):
        assert sorted(r["seed"] for r in records(enabled)) == [0, 1]
    base = np.mean([r["metrics"]["loss"] for r in records([])])
    noisy = [r["metrics"]["loss"] for r in records(["a", "b"])]
    assert rows["baseline"]["loss_mean"] == pytest.approx(base)
    assert rows["baseline"]["loss_delta"] == 0.0
    assert rows["all"]["loss_mean"] == pytest.approx(np.mean(noisy))
    assert rows["all"]["loss_std"] == pytest.approx(np.std(noisy, ddof=1))
    assert rows["all"]["loss_delta"] == pytest.approx(np.mean(noisy) - base)
    for r in result.records:
        assert set(r["metrics"]) == {"loss", "accuracy"}
        assert len(r["history"]["loss"]) == 1


def test_runs_train_with_their_configuration(full):
    out, result, _ = full
    for record in result.records:
        model = keras.models.load_model(os.path.join(out, record["model"]))
        enabled = {l.name: l.enabled for l in noisylayers.noise_layers(model)}
        assert enabled == {n: n in record["enabled"] for n in ("a", "b")}


def test_scale_sweep(tmp_path, data):
    result = training_ablation(
        lambda: build_tiny(names=("a",)), data, epochs=1, seeds=[0],
        scales=[0.5, 2.0], batch_size=16, out_dir=str(tmp_path),
        save_models=True, progress=False,
    )
    # With one noisy layer: the baseline once, 'all' at each scale.
    rows = [(row["configuration"], row["scale"]) for row in result.rows]
    assert rows == [("baseline", None), ("all", 0.5), ("all", 2.0)]
    assert [r["id"] for r in result.records] == [
        "baseline__seed0", "all__scale0.5__seed0", "all__scale2__seed0",
    ]
    for record in result.records:
        model = keras.models.load_model(os.path.join(tmp_path, record["model"]))
        (layer,) = noisylayers.noise_layers(model)
        assert layer.enabled == (record["scale"] is not None)
        if record["scale"] is not None:
            assert layer.scale == record["scale"]


def test_interrupted_in_process_resumes_without_redoing_runs(tmp_path, data):
    class Interrupting(CountingBuild):
        def __call__(self):
            if self.calls == 3:  # the discovery build and two runs are done
                raise KeyboardInterrupt
            return super().__call__()

    kwargs = dict(epochs=1, seeds=[0], batch_size=16, out_dir=str(tmp_path),
                  progress=False)
    with pytest.raises(KeyboardInterrupt):
        training_ablation(Interrupting(), data, **kwargs)
    done = run_ids(tmp_path)
    assert len(done) == 2
    before = {i: (tmp_path / "runs" / f"{i}.json").read_text() for i in done}
    build = CountingBuild()
    result = training_ablation(build, data, **kwargs)
    assert build.calls == 4 - 2
    assert result.complete and len(run_ids(tmp_path)) == 4
    for run_id, text in before.items():
        assert (tmp_path / "runs" / f"{run_id}.json").read_text() == text
    # Everything done: a third call trains nothing.
    build = CountingBuild()
    again = training_ablation(build, data, **kwargs)
    assert build.calls == 0
    assert again.records == result.records


def test_killed_process_resumes_without_redoing_runs(tmp_path, data):
    """A SIGKILL after two runs: nothing half-written, the rest resumes."""
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {ROOT!r})
        from tests.ablation.tiny import build_tiny, make_data
        from noisylayers.ablation import training_ablation

        calls = 0
        def build():
            global calls
            calls += 1
            if calls == 4:  # the discovery build and two runs are done
                os.kill(os.getpid(), signal.SIGKILL)
            return build_tiny()

        training_ablation(build, make_data(), epochs=1, seeds=[0],
                          batch_size=16, out_dir={str(tmp_path)!r},
                          save_models=True, progress=False)
        """
    )
    env = dict(os.environ)
    if keras.backend.backend() == "jax":  # share the tests' compilation cache
        import jax

        env["JAX_COMPILATION_CACHE_DIR"] = jax.config.jax_compilation_cache_dir
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    child = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, env=env
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    assert len(run_ids(tmp_path)) == 2
    build = CountingBuild()
    result = training_ablation(
        build, data, epochs=1, seeds=[0], batch_size=16,
        out_dir=str(tmp_path), save_models=True, progress=False,
    )
    assert build.calls == 4 - 2
    assert result.complete
    assert not [f for f in os.listdir(tmp_path / "models") if "partial" in f]


def test_shards_merge_to_the_same_results_as_one_run(tmp_path, full):
    full_dir, full_result, _ = full
    dirs = [str(tmp_path / "shard0"), str(tmp_path / "shard1")]
    # Shards 1 and 3 share a directory, shard 2 has its own.
    for i, directory in enumerate([dirs[0], dirs[1], dirs[0]], start=1):
        result = training_ablation(
            build_tiny, make_data(), epochs=1, seeds=[0, 1], batch_size=16,
            out_dir=directory, shard=f"{i}/3", save_models=True, progress=False,
        )
    assert len(run_ids(dirs[1])) == 3  # runs 2, 5 and 8 of 8
    assert result.complete is False and len(result.records) == 3 + 2
    assert set(run_ids(dirs[0])) | set(run_ids(dirs[1])) == set(run_ids(full_dir))
    assert not set(run_ids(dirs[0])) & set(run_ids(dirs[1]))
    merged_dir = str(tmp_path / "merged")
    merged = merge(*dirs, out_dir=merged_dir)
    assert merged.complete
    assert run_ids(merged_dir) == run_ids(full_dir)
    assert merged.spec == full_result.spec
    assert len(os.listdir(os.path.join(merged_dir, "models"))) == 8
    assert [r["id"] for r in merged.records] == [r["id"] for r in full_result.records]
    for ours, theirs in zip(merged.records, full_result.records):
        for name, value in ours["metrics"].items():
            assert value == pytest.approx(theirs["metrics"][name], rel=1e-4)
    # Reading a single directory back gives the same result.
    assert merge(merged_dir).records == merged.records
    # Merging into one of the shard directories completes it.
    assert merge(dirs, out_dir=dirs[1]).complete  # a list works too
    assert run_ids(dirs[1]) == run_ids(full_dir)


def test_merge_refuses_other_settings(tmp_path, full):
    other = str(tmp_path / "other")
    training_ablation(
        build_tiny, make_data(), epochs=2, seeds=[0, 1], batch_size=16,
        out_dir=other, shard="1/8", progress=False,
    )
    with pytest.raises(ValueError, match="epochs: saved 2, requested 1"):
        merge(full[0], other)
    with pytest.raises(ValueError, match="holds no training ablation"):
        merge(str(tmp_path))


def test_resume_refuses_other_settings(full, data):
    with pytest.raises(ValueError, match="other settings.*seeds"):
        training_ablation(
            build_tiny, data, epochs=1, seeds=[0, 1, 2], batch_size=16,
            out_dir=full[0], progress=False,
        )


def test_resume_refuses_a_different_model(tmp_path, data):
    training_ablation(
        build_tiny, data, epochs=1, seeds=[0], batch_size=16,
        out_dir=str(tmp_path), shard="1/4", progress=False,
    )
    with pytest.raises(ValueError, match=r"noisy layers \['x', 'y'\]"):
        training_ablation(
            lambda: build_tiny(names=("x", "y")), data, epochs=1, seeds=[0],
            batch_size=16, out_dir=str(tmp_path), progress=False,
        )


def test_resume_false_trains_again(tmp_path, data):
    kwargs = dict(epochs=1, seeds=[0], batch_size=16, out_dir=str(tmp_path),
                  progress=False, shard="1/4")
    training_ablation(build_tiny, data, **kwargs)
    build = CountingBuild()
    training_ablation(build, data, resume=False, **kwargs)
    assert build.calls == 1


def test_without_out_dir(data):
    result = training_ablation(
        build_tiny, data, epochs=1, seeds=[3], batch_size=16, shard="2/4",
        progress=False,
    )
    assert [r["id"] for r in result.records] == ["all__seed3"]
    assert len(result.missing) == 3


def test_plan_orders_runs_seed_by_seed():
    spec = {
        "layers": ["a", "b"],
        "configurations": configurations(["a", "b"]),
        "seeds": [0, 1],
        "scales": None,
    }
    ids = [run.id for run in plan_runs(spec)]
    assert ids == [
        "baseline__seed0", "all__seed0", "only-a__seed0", "only-b__seed0",
        "baseline__seed1", "all__seed1", "only-a__seed1", "only-b__seed1",
    ]


def test_parse_shard():
    assert parse_shard(None) is None
    assert parse_shard("2/2") == (2, 2)
    assert parse_shard((1, 1)) == (1, 1)
    for bad in ("0/2", "3/2", "-1/2", "a/b", "1", (1,), "0/0"):
        with pytest.raises(ValueError, match="Received: shard="):
            parse_shard(bad)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"epochs": 0}, ValueError, "Received: epochs=0"),
        ({"seeds": []}, ValueError, "Received: seeds=\\[\\]"),
        ({"seeds": [0, 0]}, ValueError, "distinct"),
        ({"seeds": [-1]}, ValueError, "Received: seed=-1"),
        ({"scales": [-1]}, ValueError, "Received: scales=-1"),
        ({"batch_size": 1.5}, TypeError, "Received: batch_size=1.5"),
        ({"shard": "5/4"}, ValueError, "Received: shard='5/4'"),
        ({"data": (1, 2, 3)}, ValueError, "x_train, y_train"),
        ({"build_model": "model"}, TypeError, "build_model"),
    ],
)
def test_invalid_arguments(kwargs, error, match, data):
    kwargs = {"build_model": build_tiny, "data": data, **kwargs}
    with pytest.raises(error, match=match):
        training_ablation(progress=False, **kwargs)


def test_build_model_must_give_a_compiled_model_with_noisy_layers(data):
    def uncompiled():
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])

    def plain():
        model = uncompiled()
        model.compile("adam", "mse")
        return model

    def duplicate_names():
        def block(units):
            return keras.Sequential(
                [
                    keras.Input((4,)),
                    noisylayers.WeightNoise(keras.layers.Dense(units), name="a"),
                ]
            )

        model = keras.Sequential([keras.Input((4,)), block(4), block(3)])
        model.compile("adam", "mse")
        return model

    with pytest.raises(ValueError, match="compiled"):
        training_ablation(uncompiled, data, progress=False)
    with pytest.raises(ValueError, match="no noisy layers"):
        training_ablation(plain, data, progress=False)
    with pytest.raises(ValueError, match="distinct names"):
        training_ablation(duplicate_names, data, progress=False)
