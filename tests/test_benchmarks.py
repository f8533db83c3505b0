"""The performance suite (benchmarks/performance.py) and the JAX sync-form comparison run end to
end and write every part of their reports, at their tiniest profile. Timings are not asserted
(this is not a performance test); the memory accounting is, against the paper's count: one copy
of the parameters for the slow weights, one more for the cached momentum with "interpolate".

Each backend's own measurements run in-process in that backend's pass; the suite's
orchestration (a process per part and per memory probe, merged into one report) runs once."""

import importlib.util
import json
import math

import pytest

from benchmarks import performance
from tests.execution_modes import BACKEND


def _tiny(tmp_path, *extra):
    return performance.parse_args(["--tiny", "--out", str(tmp_path), *extra])


def _check_optimizer_rows(rows, paths):
    ours = [r for r in rows if r["implementation"] == "keras_lookahead"]
    assert {(r["backend"], r["mode"]) for r in ours} == paths
    assert {r["k"] for r in ours} == {1, 5}
    for r in ours:
        assert math.isfinite(r["ratio"]) and r["ratio"] > 0 and r["limit"] > 1, r
        # the per-step part (a sync that never comes) is measured, once per size, where the
        # target is judged: Adam on the compiled paths
        headline = r["inner"] == "Adam" and r["mode"] != "eager"
        assert (r["never_sync"] is not None) == headline, r
    # with outer momentum: Adam at k=5, once per path, beside Lookahead's row
    outer = [r for r in rows if r["implementation"] == performance.SNOO]
    assert {(r["backend"], r["mode"]) for r in outer} == paths
    assert all(r["k"] == 5 and r["inner"] == "Adam" and r["limit"] > 1 for r in outer)


@pytest.mark.slow
def test_this_backends_measurements_and_the_report_they_make(tmp_path):
    args = _tiny(tmp_path)
    payload = {"command": "test", "devices": ["cpu"], "optimizer": [], "fit": [],
               "peak_memory": [], "machines": [{"cpu": "test", "cores": 2}],
               "args": {k: getattr(args, k) for k in ("sizes", "ks", "inners", "rounds",
                                                      "headline_rounds", "calls", "fit_steps",
                                                      "fit_rounds", "memory_params",
                                                      "fit_batch")}}
    for mode in performance.MODES[BACKEND]:
        args.worker_size, args.worker_mode, args.worker_inner = (
            performance.TINY_PARAMS, mode, "Adam")
        payload["optimizer"] += performance.scaling_rows(BACKEND, args)
    _check_optimizer_rows(payload["optimizer"],
                          {(BACKEND, mode) for mode in performance.MODES[BACKEND]})
    payload["fit"] = performance.fit_rows(BACKEND, args)
    assert {f["model"] for f in payload["fit"]} == {"ResNet-style CNN", "Transformer encoder"}
    assert all(math.isfinite(f["ratio"]) and f["ratio"] > 0 for f in payload["fit"])
    # the memory probe's measurement, here in-process (its processes are tested once, below)
    peak = performance.peak_memory_worker(BACKEND, "interpolate", performance.TINY_PARAMS)
    assert peak > 0
    payload["peak_memory"] = [{"backend": BACKEND, "config": c, "params": args.memory_params,
                               "peak_bytes": peak, "extra_in_params": 0.0}
                              for c in ("inner alone",) + performance.INNER_STATES]
    if BACKEND == "tensorflow":
        payload["state"] = performance.state_rows()
        for m in payload["state"]:
            copies = 2 if m["inner_state"] == "interpolate" else 1
            extra_scalars = m["extra_bytes"] - copies * 4 * m["params"]
            assert 0 <= extra_scalars <= 16, m  # whole copies, plus the int32 sync flag
    for part in ("optimizer", "fit", "peak_memory"):
        for r in payload[part]:
            r["device"] = "cpu"

    performance.report(payload, str(tmp_path))
    for name in ("performance.md", "performance.json", "performance_scaling.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    # the report can be rewritten from the raw numbers alone
    (tmp_path / "performance.md").unlink()
    performance.main(["--from-json", "--out", str(tmp_path)])
    text = (tmp_path / "performance.md").read_text()
    assert "## Headline" in text and "## Whole training step" in text
    assert "| cpu | " + BACKEND + " |" in text
    section = text.split("## Outer momentum (SNOO) beside Lookahead")[1].split("##")[0]
    assert section.count(f"| cpu | {BACKEND} |") == len(performance.MODES[BACKEND])
    assert "not measured" not in section and "1 + 6/(7k) = 1.171" in section


@pytest.mark.backend_independent  # its processes take the backend they are given
@pytest.mark.slow
def test_the_suite_runs_each_part_in_a_process_and_merges_them(tmp_path):
    # The cheapest backend to start measures; the orchestration is the same for every one.
    backend = "jax" if importlib.util.find_spec("jax") else "tensorflow"
    performance.main(["--tiny", "--optimizer-only", "--backends", backend,
                      "--out", str(tmp_path)])
    payload = json.loads((tmp_path / "performance.json").read_text())
    # --tiny means the smallest counts, whatever the defaults
    assert {k: payload["args"][k] for k in ("sizes", "rounds", "headline_rounds", "calls",
                                             "fit_steps", "fit_rounds", "memory_params",
                                             "tiny")} == {
        "sizes": [performance.TINY_PARAMS], "rounds": 1, "headline_rounds": 1, "calls": 2,
        "fit_steps": 1, "fit_rounds": 1, "memory_params": performance.TINY_PARAMS, "tiny": True}
    _check_optimizer_rows(payload["optimizer"],
                          {(backend, mode) for mode in performance.MODES[backend]})
    assert payload["machines"] and payload["devices"][0] == "cpu"
    assert "## Headline" in (tmp_path / "performance.md").read_text()
    # the memory probes: one fresh process per configuration, each its own peak (two of the
    # four configurations: the baseline and one read against it)
    rows = performance.peak_memory_rows(backend, _tiny(tmp_path),
                                        configs=("inner alone", "interpolate"))
    assert [r["config"] for r in rows] == ["inner alone", "interpolate"]
    assert all(r["peak_bytes"] > 0 and r["backend"] == backend for r in rows)
    assert rows[0]["extra_in_params"] == 0.0


@pytest.mark.backend_independent  # plain JAX, outside Keras
def test_jax_sync_forms_quick_run_writes_both_forms_and_the_limit(tmp_path):
    pytest.importorskip("jax")
    from benchmarks import jax_sync_forms

    jax_sync_forms.main(["--quick", "--out", str(tmp_path)])
    results = json.loads((tmp_path / "jax_sync_forms.json").read_text())["results"]
    assert set(results) == {"1000000"}
    assert set(results["1000000"]) == {"select", "cond", "sync alone"}
    assert "| 1M |" in (tmp_path / "jax_sync_forms.md").read_text()


@pytest.mark.backend_independent
def test_tiny_and_quick_are_refused_together(capsys):
    with pytest.raises(SystemExit):
        performance.parse_args(["--tiny", "--quick"])
    assert "--quick and --tiny: choose one" in capsys.readouterr().err


@pytest.mark.backend_independent
def test_devices_must_be_cpu_or_gpu_and_a_gpu_must_be_there(capsys):
    with pytest.raises(SystemExit):
        performance.parse_args(["--devices", "cpu,tpu"])
    assert "--devices 'cpu,tpu': must be comma-separated, of cpu and gpu" in capsys.readouterr().err
    assert performance.parse_args(["--devices", "cpu,cpu"]).devices == ["cpu"]
    if not performance.gpu_present():
        with pytest.raises(SystemExit):
            performance.parse_args(["--devices", "gpu"])
        assert "--devices gpu: nvidia-smi lists no GPU" in capsys.readouterr().err


@pytest.mark.backend_independent  # dictionaries and a sentence: the same on every backend
def test_records_keep_each_machine_a_run_ran_on_and_reports_name_them():
    import os

    from benchmarks import _harness as h

    record = {}
    h.record_machine(record)
    here = record["machines"][0]
    assert here["cores"] == os.cpu_count() and here["cpu"] and here["commit"]
    h.record_machine(record)  # resumed on the same machine: nothing added
    assert record["machines"] == [here]
    moved = {"machines": [{"cpu": "Elsewhere CPU", "cores": 64, "commit": "0abc123"}]}
    h.record_machine(moved)  # resumed here after starting elsewhere
    assert moved["machines"][1] == here and len(moved["machines"]) == 2
    other = {"machines": [{"cpu": "Elsewhere CPU", "cores": 64, "commit": "0abc123"}]}
    line = h.machines_line([other, dict(other), {}])
    assert line == ["Runs made on: Elsewhere CPU, 64 cores, commit 0abc123 (2 runs); not "
                    "recorded (made before records named their machine) (1 run).", ""]
    assert "then" in h.machines_line([moved])[0]


@pytest.mark.backend_independent  # its processes run on torch, whatever the pass's backend
@pytest.mark.slow
def test_torch_threads_tiny_run_measures_each_setting_and_rewrites_its_report(tmp_path):
    pytest.importorskip("torch")
    from benchmarks import torch_threads

    torch_threads.main(["--tiny", "--settings", "two-passive", "--out", str(tmp_path)])
    payload = json.loads((tmp_path / "torch_threads.json").read_text())
    # alone is measured though not asked for (the ratios are to it); two at once is two runs
    assert payload["args"]["settings"] == ["alone", "two-passive"]
    assert [len(payload["runs"][n]) for n in ("alone", "two-passive")] == [1, 2]
    for one in payload["runs"]["alone"] + payload["runs"]["two-passive"]:
        assert len(one["seconds"]) == 2 and all(s > 0 for s in one["seconds"]), one
    summary = payload["summary"]
    assert summary["alone"]["first_ratio"] == summary["alone"]["later_ratio"] == 1.0
    # the ratio is the setting's median over the alone median: here, of its two processes'
    later = sorted(one["seconds"][1] for one in payload["runs"]["two-passive"])
    assert summary["two-passive"]["later_ratio"] == pytest.approx(
        (later[0] + later[1]) / 2 / payload["runs"]["alone"][0]["seconds"][1])
    md = tmp_path / "torch_threads.md"
    assert "| alone | 1 | " in md.read_text()
    assert "| two at once, OMP_WAIT_POLICY=PASSIVE | 2 | " in md.read_text()
    md.unlink()
    torch_threads.main(["--from-json", "--out", str(tmp_path)])  # nothing measured
    assert "| two at once, OMP_WAIT_POLICY=PASSIVE | 2 | " in md.read_text()


@pytest.mark.backend_independent  # argument parsing
@pytest.mark.parametrize("argv, message", [
    (["--rounds", "0"], "--rounds 0: must be 1 or more"),
    (["--epochs", "1"], "--epochs 1: must be 2 or more"),  # the later epochs need one
    (["--settings", "alone,bogus"], "--settings 'alone,bogus': choose from alone, "
                                    "alone-passive, two, two-passive, two-one-thread"),
    (["--settings", ","], "--settings ',': choose from"),
])
def test_torch_threads_refuses_bad_arguments_by_name(argv, message, capsys):
    from benchmarks import torch_threads

    with pytest.raises(SystemExit):
        torch_threads.parse_args(argv)
    assert message in capsys.readouterr().err


@pytest.mark.backend_independent  # argument parsing
def test_torch_threads_settings_start_with_alone_once_and_tiny_is_smallest():
    from benchmarks import torch_threads

    args = torch_threads.parse_args(["--settings", "two,alone,two"])
    assert args.settings == ["alone", "two"]
    assert torch_threads.parse_args([]).settings == list(torch_threads.SETTINGS)
    tiny = torch_threads.parse_args(["--tiny", "--rounds", "5"])
    assert (tiny.rounds, tiny.epochs, tiny.images) == (1, 2, 80)


@pytest.mark.backend_independent
def test_a_records_arguments_are_compared_with_those_asked_for():
    from benchmarks._sweep import argument_changes

    recorded = {"lr": 0.1, "milestones": [4, 7], "data_dir": "/tmp/a1b2/cifar10", "out": "x.json",
                "verbose": 2, "k": 5}
    asked = {"lr": 0.1, "milestones": (4, 7), "data_dir": "/tmp/c3d4/cifar10", "out": "y.json",
             "verbose": 0, "k": 5}
    # JSON's lists are the tuples asked for; where a run writes, how loud it is and which copy
    # of the data folder it reads are not what it computes
    assert argument_changes(recorded, asked) == []
    assert argument_changes(recorded, {**asked, "k": 10, "data_dir": None}) == [
        "--data-dir True (asked: False)", "--k 5 (asked: 10)"]
    # an argument the record predates: the value it ran with then, where the script says it
    assert argument_changes(recorded, {**asked, "blocks": 2}, before={"blocks": 2}) == []
    assert argument_changes(recorded, {**asked, "blocks": 1}, before={"blocks": 2}) == [
        "--blocks 2 (asked: 1)"]
    assert argument_changes(recorded, {**asked, "width": 16}) == [
        "--width not recorded (asked: 16)"]


@pytest.mark.backend_independent  # its measurement runs in a process of its own, on torch
def test_torch_sync_ops_tiny_run_times_both_forms_of_both_syncs(tmp_path):
    pytest.importorskip("torch")
    from benchmarks import torch_sync_ops

    # the worker first checks that both list operations compute the same sync (it raises if
    # not, and the run fails), then times them
    torch_sync_ops.main(["--tiny", "--out", str(tmp_path)])
    results = json.loads((tmp_path / "torch_sync_ops.json").read_text())["results"]
    assert set(results) == {"20000"}
    assert set(results["20000"]) == {"lookahead", "outer momentum"}
    assert all(r["ratio"] > 0 for r in results["20000"].values())
    assert "| 0.02M |" in (tmp_path / "torch_sync_ops.md").read_text()
