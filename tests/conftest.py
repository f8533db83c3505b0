"""What every test shares: a fresh Keras state, and the two markers that decide where and when a
test runs (registered in setup.cfg; the rule is on the development page of the docs):

- `backend_independent`: the test touches no Keras backend (argument parsing, report writers on
  made-up records, the docs, numpy-only analysis), so its outcome cannot depend on
  KERAS_BACKEND. It runs in the TensorFlow pass and is deselected in the others.
- `slow`: the test takes over about 10 s. Slow tests are started first, and under xdist each
  worker is handed one test at a time, so that the two workers of `pytest -n 2` end together
  instead of one waiting on a long test that started late.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Two xdist workers share the cores. PyTorch's OpenMP threads spin while they wait for work, so
# beside another busy process (the other worker, tf.data's threads) a torch CIFAR run's first
# epoch took 6.6x as long as alone; waiting passively it took 1.8x (docs/backends.md, "PyTorch
# beside tf.data"). Set before torch loads its OpenMP runtime, and inherited by the processes
# tests start.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import keras
import pytest

BACKEND = keras.backend.backend()
# The backend-independent tests run in this backend's pass: CI runs it first, and it is the
# default.
ONCE_ON = "tensorflow"
SLOW_SECONDS = 10  # what `slow` means; the summary lists unmarked tests above 1.5 times it
LIMIT_SECONDS = 60  # no test above it but the few the development page names, with the reason


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    # free_memory=False: no gc.collect() per test. With TensorFlow, JAX and torch loaded it
    # takes 0.3-1 s each time, about a third of a whole pass; Python's own collector still runs.
    keras.backend.clear_session(free_memory=False)
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")


def pytest_configure(config):
    # xdist's load scheduler hands out consecutive chunks of a quarter of a worker's share at
    # the start: with the slow tests first, one worker would get all of them. One at a time
    # (with one queued) is a greedy longest-first schedule. An explicit --maxschedchunk wins.
    if getattr(config.option, "maxschedchunk", "absent") is None:
        config.option.maxschedchunk = 1


def pytest_collection_modifyitems(config, items):
    if BACKEND != ONCE_ON:
        once = [item for item in items if item.get_closest_marker("backend_independent")]
        if once:
            config.hook.pytest_deselected(items=once)
            items[:] = [item for item in items if not item.get_closest_marker(
                "backend_independent")]
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: slow first


def pytest_report_header(config):
    lines = [f"keras {keras.__version__} on {BACKEND}"]  # .ci/run checks the version it installed
    if BACKEND != ONCE_ON:
        lines.append(f"the backend_independent tests are deselected (they run with "
                     f"KERAS_BACKEND={ONCE_ON})")
    return lines


def pytest_terminal_summary(terminalreporter):
    """Where the time goes, so that growth shows in every run: tests over the limit, and tests
    that take long without the `slow` marker (they would start late and end the pass late)."""
    seconds, slow = {}, set()
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) in ("setup", "call", "teardown"):
                seconds[report.nodeid] = seconds.get(report.nodeid, 0.0) + report.duration
                if "slow" in getattr(report, "keywords", {}):
                    slow.add(report.nodeid)
    over = sorted((s, n) for n, s in seconds.items() if s > LIMIT_SECONDS)
    unmarked = sorted((s, n) for n, s in seconds.items()
                      if s > 1.5 * SLOW_SECONDS and n not in slow)
    for title, rows in ((f"over {LIMIT_SECONDS} s (allowed only where the development page "
                         "says why)", over),
                        (f"over {1.5 * SLOW_SECONDS:g} s without the slow marker (mark them: "
                         "slow tests start first)", unmarked)):
        if rows:
            terminalreporter.write_sep("-", f"{len(rows)} test(s) {title}")
            for s, n in reversed(rows):
                terminalreporter.write_line(f"{s:7.1f}s {n}")
