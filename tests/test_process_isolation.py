"""The suite's process isolation (tests/process_isolation.py) on a throw-away suite."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]

MODULES = {
    "test_first.py": """
        import os

        def test_reports_its_process(tmp_path):
            (tmp_path.parent.parent / f"pid_first_{os.getpid()}").write_text("")

        def test_fails():
            assert 1 == 2, "deliberate"
    """,
    "test_second.py": """
        import os
        import signal

        def test_before_the_crash():
            pass

        def test_crashes():
            os.kill(os.getpid(), signal.SIGKILL)

        def test_after_the_crash(tmp_path):
            (tmp_path.parent.parent / f"pid_after_{os.getpid()}").write_text("")
    """,
    "test_third.py": """
        import warnings

        def test_warns():
            warnings.warn("from a worker", UserWarning)
    """,
    "test_fourth.py": """
        import os

        import pytest

        pytestmark = pytest.mark.spread_across_workers

        @pytest.mark.parametrize("name", ["one", "two"])
        def test_spread(name, tmp_path):
            (tmp_path.parent.parent / f"pid_spread_{name}_{os.getpid()}").write_text("")
    """,
}


def _run_suite(tmp_path, *options, modules=MODULES, cache=False):
    suite = tmp_path / "suite"
    suite.mkdir(parents=True)
    for name, source in modules.items():
        (suite / name).write_text(textwrap.dedent(source))
    (suite / "pytest.ini").write_text(
        "[pytest]\nmarkers =\n    spread_across_workers: shares nothing\n"
    )
    basetemp = tmp_path / "basetemp"
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY))
    environment.pop("KERAS_ATTN_TEST_ISOLATION", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.process_isolation", "-q",
         "--basetemp", str(basetemp), *([] if cache else ["-p", "no:cacheprovider"]),
         *options, str(suite)],
        cwd=suite, env=environment, capture_output=True, text=True, timeout=300,
    )
    return result, basetemp


def test_workers_run_every_module_and_report_failures_and_crashes(tmp_path):
    result, basetemp = _run_suite(tmp_path, "--isolation-workers", "2")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "2 failed, 6 passed" in output, output
    assert "deliberate" in output
    assert "exited with status -9" in output  # the crash, named on its own test
    assert "test_second.py::test_crashes" in output
    assert "from a worker" in output  # warnings travel to the parent's summary
    pid_files = list((basetemp / "isolation").glob("pid_*"))
    first = [p for p in pid_files if p.name.startswith("pid_first_")]
    after = [p for p in pid_files if p.name.startswith("pid_after_")]
    assert len(first) == 1 and len(after) == 1
    assert int(first[0].name.split("_")[-1]) != os.getpid()  # not this process


def test_workers_are_replaced_past_the_memory_limit(tmp_path):
    result, basetemp = _run_suite(
        tmp_path, "--isolation-workers", "1", "--isolation-memory-mb", "1",
        "--isolation-split-memory-mb", "1",
    )
    output = result.stdout + result.stderr
    assert "2 failed, 6 passed" in output, output
    # Every test leaves its worker above 1 MiB, so each of the eight runs in a
    # worker of its own, even inside a module: the rest of a module is handed
    # back after each test.
    logs = sorted((basetemp / "isolation").glob("worker*.log"))
    assert len(logs) == 8, [log.name for log in logs]
    first = sorted((basetemp / "isolation").glob("pid_first_*"))
    after = sorted((basetemp / "isolation").glob("pid_after_*"))
    assert first[0].name.split("_")[-1] != after[0].name.split("_")[-1]
    spread = sorted((basetemp / "isolation").glob("pid_spread_*"))
    assert len(spread) == 2
    assert len({path.name.split("_")[-1] for path in spread}) == 2  # two processes


TIMED_MODULES = {
    f"test_timed_{index}.py": f"""
        import time

        def test_sleeps(tmp_path):
            started = time.time()
            time.sleep({1.0 + 0.5 * index})
            (tmp_path.parent.parent / "span_{index}").write_text(f"{{started}} {{time.time()}}")
    """
    for index in range(3)
}


def _spans(basetemp):
    spans = [tuple(map(float, path.read_text().split()))
             for path in (basetemp / "isolation").glob("span_*")]
    return sorted(spans)


def test_over_the_tree_budget_a_worker_waits_for_the_other(tmp_path):
    (tmp_path / "free").mkdir()
    result, basetemp = _run_suite(tmp_path / "free", "--isolation-workers", "2",
                                  modules=TIMED_MODULES)
    assert "3 passed" in result.stdout, result.stdout + result.stderr
    spans = _spans(basetemp)
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))  # overlap

    (tmp_path / "budget").mkdir()
    result, basetemp = _run_suite(
        tmp_path / "budget", "--isolation-workers", "2", "--isolation-tree-memory-mb", "1",
        "--isolation-report", str(tmp_path / "report.jsonl"), modules=TIMED_MODULES,
    )
    output = result.stdout + result.stderr
    assert "3 passed" in output, output
    spans = _spans(basetemp)
    assert len(spans) == 3
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:]))  # one at a time
    assert "peak memory of the whole process tree" in output
    assert re.search(r"\n2 workers started, \d+ s in all until each had collected", output)
    rows = [json.loads(line) for line in (tmp_path / "report.jsonl").read_text().splitlines()]
    units = [row for row in rows if "unit" in row]
    assert sorted(row["unit"] for row in units) == sorted(TIMED_MODULES)
    assert all(row["seconds"] >= 1.0 and row["with_subprocesses_peak_mb"] > 0
               and row["growth_mb"] >= 0 for row in units)
    tests = [row for row in rows if "test" in row]
    assert sorted(row["test"] for row in tests) == sorted(f"{name}::test_sleeps"
                                                          for name in TIMED_MODULES)
    assert all(row["seconds"] >= 1.0 for row in tests)


def test_off_runs_in_this_process(tmp_path):
    result, basetemp = _run_suite(tmp_path, "--isolation", "off", "-k", "not crashes")
    output = result.stdout + result.stderr
    assert "1 failed, 6 passed, 1 deselected" in output, output
    assert not (basetemp / "isolation").exists()


def _start_order(basetemp):
    return [path.name for path in sorted(basetemp.glob("isolation/span_*"),
                                         key=lambda path: path.read_text())]


def _profile(tmp_path, units):
    path = tmp_path / "profile.json"
    path.write_text(json.dumps({"units": units}))
    return str(path)


def test_units_start_longest_first_after_a_recorded_run_or_from_a_profile(tmp_path):
    # Run 1 records each module's seconds in pytest's cache (in the suite's
    # folder) and saves a profile; run 2, on one worker, starts with the
    # longest; so does a run without the cache (a fresh clone) given the profile.
    saved = tmp_path / "saved.json"
    result, basetemp = _run_suite(tmp_path, "--isolation-workers", "1",
                                  "--isolation-save-profile", str(saved),
                                  modules=TIMED_MODULES, cache=True)
    assert "3 passed" in result.stdout, result.stdout + result.stderr
    assert _start_order(basetemp) == ["span_0", "span_1", "span_2"]  # collection order
    units = json.loads(saved.read_text())["units"]
    assert sorted(units) == sorted(TIMED_MODULES)
    assert [units[f"test_timed_{index}.py"]["seconds"] >= 1.0 + 0.5 * index
            for index in range(3)] == [True] * 3
    assert all(unit["growth_mb"] >= 0 for unit in units.values())

    for path in basetemp.glob("isolation/span_*"):
        path.unlink()
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY))
    environment.pop("KERAS_ATTN_TEST_ISOLATION", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.process_isolation", "-q",
         "--basetemp", str(basetemp), "--isolation-workers", "1", str(tmp_path / "suite")],
        cwd=tmp_path / "suite", env=environment, capture_output=True, text=True, timeout=300,
    )
    assert "3 passed" in result.stdout, result.stdout + result.stderr
    assert _start_order(basetemp) == ["span_2", "span_1", "span_0"]  # longest (2 s sleep) first

    result, basetemp = _run_suite(tmp_path / "replay", "--isolation-workers", "1",
                                  "--isolation-profile", str(saved), modules=TIMED_MODULES)
    assert "3 passed" in result.stdout, result.stdout + result.stderr
    assert _start_order(basetemp) == ["span_2", "span_1", "span_0"]


def test_units_expected_to_overflow_the_tree_budget_do_not_run_side_by_side(tmp_path):
    # Expected to grow by 3 GiB each, two units never run side by side under
    # the default 3.5 GiB tree budget; growing by 1 MiB, they do.
    for growth, together in [(3072, False), (1, True)]:
        profile = _profile(tmp_path, {name: {"seconds": 1.0 + 0.5 * index, "growth_mb": growth}
                                      for index, name in enumerate(TIMED_MODULES)})
        result, basetemp = _run_suite(tmp_path / f"growth_{growth}", "--isolation-workers", "2",
                                      "--isolation-profile", profile, modules=TIMED_MODULES)
        assert "3 passed" in result.stdout, result.stdout + result.stderr
        spans = _spans(basetemp)
        overlap = any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))
        assert overlap is together, spans


def test_a_short_unit_fills_the_wait_beside_a_long_one(tmp_path):
    # The longest queued unit does not fit beside the running one, but a
    # short one that fits and ends before it does runs meanwhile.
    modules = dict(TIMED_MODULES)
    profile = _profile(tmp_path, {
        "test_timed_2.py": {"seconds": 2.0, "growth_mb": 2048},
        "test_timed_1.py": {"seconds": 1.5, "growth_mb": 2048},
        "test_timed_0.py": {"seconds": 1.0, "growth_mb": 1},
    })
    result, basetemp = _run_suite(tmp_path / "suite_run", "--isolation-workers", "2",
                                  "--isolation-profile", profile, modules=modules)
    assert "3 passed" in result.stdout, result.stdout + result.stderr
    spans = {path.name: tuple(map(float, path.read_text().split()))
             for path in (basetemp / "isolation").glob("span_*")}
    longest, middle, short = spans["span_2"], spans["span_1"], spans["span_0"]
    assert short[0] < longest[1] and short[1] <= longest[1] + 0.5  # beside the longest
    assert middle[0] >= longest[1]  # the large one waited


def test_a_file_that_is_not_a_profile_is_a_usage_error(tmp_path):
    profile = _profile(tmp_path, {"test_first.py": {"seconds": 1.0}})
    result, _ = _run_suite(tmp_path / "run", "--isolation-profile", profile)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "--isolation-profile" in result.stderr and "growth_mb" in result.stderr
    assert profile in result.stderr


def test_without_a_record_the_spread_tests_start_first(tmp_path):
    report = tmp_path / "report.jsonl"
    result, _ = _run_suite(tmp_path, "--isolation-workers", "1", "--isolation-report",
                           str(report))
    assert "2 failed, 6 passed" in result.stdout + result.stderr
    units = [json.loads(line)["unit"] for line in report.read_text().splitlines()
             if '"unit"' in line]
    # One worker: units finish in the order they started.
    assert [unit.split("::")[0] for unit in units[:2]] == ["test_fourth.py"] * 2, units


RECORDING_MODULES = {
    f"test_recorded_{name}.py": f"""
        import os
        import pathlib

        pathlib.Path(os.environ["IMPORTS_DIR"], f"{name}_{{os.getpid()}}_{{os.getppid()}}").touch()

        def test_one():
            pass

        def test_two():
            pass
    """
    for name in ("a", "b")
}


def test_the_parent_never_imports_the_test_modules(tmp_path, monkeypatch):
    imports = tmp_path / "imports"
    imports.mkdir()
    monkeypatch.setenv("IMPORTS_DIR", str(imports))
    result, _ = _run_suite(tmp_path, "--isolation-workers", "2", "-k", "not b or one",
                           "-v", modules=RECORDING_MODULES)  # -v after -q: the collected line
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "3 passed, 1 deselected" in output, output
    assert "collected 4 items / 1 deselected / 3 selected" in output, output
    # Imported by the collecting child and by the workers, all children of
    # the run's process; never by that process, a child of this one.
    recorded = [path.name.split("_") for path in imports.iterdir()]
    assert {name for name, _, _ in recorded} == {"a", "b"}
    assert len(recorded) >= 4  # the collector's two imports and at least one worker's
    assert all(int(parent) != os.getpid() for _, _, parent in recorded), recorded


def test_a_collection_error_is_reported_by_the_parent(tmp_path):
    modules = dict(MODULES, **{"test_broken.py": "def test_broken(:\n    pass\n"})
    result, _ = _run_suite(tmp_path, "--isolation-workers", "2", modules=modules)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "ERROR collecting test_broken.py" in output and "SyntaxError" in output, output
    assert "1 error" in output, output


def _imports(imports, name):
    return sum(1 for path in imports.iterdir() if path.name.startswith(f"{name}_"))


def test_late_workers_import_only_queued_modules_and_a_full_tree_splits_modules(
    tmp_path, monkeypatch
):
    # One worker, replaced after every module (1 MiB limit); under a 1 MiB
    # tree budget the worker also hands its module on after every test.
    for budget, per_test in (("100000", False), ("1", True)):
        imports = tmp_path / f"imports_{budget}"
        imports.mkdir()
        monkeypatch.setenv("IMPORTS_DIR", str(imports))
        result, basetemp = _run_suite(
            tmp_path / budget, "--isolation-workers", "1", "--isolation-memory-mb", "1",
            "--isolation-split-memory-mb", "100000", "--isolation-tree-memory-mb", budget,
            modules=RECORDING_MODULES,
        )
        assert "4 passed" in result.stdout, result.stdout + result.stderr
        logs = list((basetemp / "isolation").glob("worker*.log"))
        if per_test:
            # a::one, a::two (each worker imports a and b), b::one, b::two
            # (a is done: those two import b only); plus the collector's.
            assert len(logs) == 4
            assert (_imports(imports, "a"), _imports(imports, "b")) == (3, 5)
        else:
            # Worker 1 runs a (imports a, b); worker 2 runs b (imports b only).
            assert len(logs) == 2
            assert (_imports(imports, "a"), _imports(imports, "b")) == (2, 3)


class _Item:
    def __init__(self, nodeid):
        self.nodeid = nodeid

    def get_closest_marker(self, name):
        return None


def _planner(profile, running, tree_mb, budget_mb=3584):
    """An isolated run's hand-out state without processes: `profile` maps a
    module to (seconds, growth MiB); `running` is the other worker's module,
    seconds since it started and MiB grown so far."""
    import time
    from types import SimpleNamespace

    from tests import process_isolation

    run = object.__new__(process_isolation._IsolatedRun)
    run.items = {f"{name}::test": _Item(f"{name}::test") for name in profile}
    run.profile = {name: {"seconds": seconds, "growth_mb": growth}
                   for name, (seconds, growth) in profile.items()}
    run.tree_mb, run.tree_budget_mb = tree_mb, budget_mb
    name, elapsed, grown = running
    seconds, growth = profile[name]
    other = SimpleNamespace(unit=[f"{name}::test"], start_mb=700.0, current_mb=700.0 + grown,
                            expected_growth_mb=growth, expected_seconds=seconds,
                            started_at=time.monotonic() - elapsed)
    waiting = SimpleNamespace(unit=[])
    run.workers = [other, waiting]
    return run, waiting


def _choice(run, worker, names):
    chosen = run.choose(worker, [[f"{name}::test"] for name in names])
    return None if chosen is None else chosen[0].split("::")[0]


def test_the_planner_keeps_large_units_apart_and_the_cpu_busy():
    profile = {"big.py": (100.0, 2000), "large.py": (90.0, 1800), "long.py": (80.0, 300),
               "short.py": (20.0, 300), "huge_short.py": (10.0, 3000), "running.py": (60.0, 1500)}
    queue = ["large.py", "long.py", "short.py", "huge_short.py"]
    # The tree at 1.5 GiB, the running unit still to grow by 1.5 GiB: the large
    # unit would overflow 3.5 GiB; the short one fits and ends first.
    run, waiting = _planner(profile, ("running.py", 10.0, 0), tree_mb=1500)
    assert _choice(run, waiting, queue) == "short.py"
    # Once the running unit is past its expected end, the longest that fits.
    run, waiting = _planner(profile, ("running.py", 70.0, 0), tree_mb=1500)
    assert _choice(run, waiting, queue) == "long.py"
    # Grown as expected already: the large one fits now.
    run, waiting = _planner(profile, ("running.py", 10.0, 1500), tree_mb=1500)
    assert _choice(run, waiting, queue) == "large.py"
    # Nothing fits beside it: the worker waits.
    run, waiting = _planner(profile, ("running.py", 10.0, 0), tree_mb=3400)
    assert _choice(run, waiting, queue) is None
    # Nothing else running: the first unit, whatever its size.
    run, waiting = _planner(profile, ("running.py", 10.0, 0), tree_mb=3400)
    run.workers = [waiting]
    assert _choice(run, waiting, ["huge_short.py", "short.py"]) == "huge_short.py"
    # A unit the profile has not seen is expected to grow by 1 GiB.
    run, waiting = _planner(profile, ("running.py", 10.0, 1500), tree_mb=2600)
    run.items["new.py::test"] = _Item("new.py::test")
    assert _choice(run, waiting, ["new.py", "short.py"]) == "short.py"
    run.tree_mb = 2500
    assert _choice(run, waiting, ["new.py", "short.py"]) == "new.py"

    # A worker that has run units and would pass the split limit with the
    # large one's growth makes way for a fresh worker; one that has run none
    # takes it.
    run.split_limit_mb = 2560
    waiting.resident_mb = 700
    assert not run.splits_in(waiting, ["large.py::test"])
    waiting.resident_mb = 1400
    assert run.splits_in(waiting, ["large.py::test"])
    assert not run.splits_in(waiting, ["short.py::test"])
    waiting.resident_mb = None
    assert not run.splits_in(waiting, ["large.py::test"])
