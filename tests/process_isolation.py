"""Runs the suite's test modules in worker processes that are replaced as they grow.

TensorFlow keeps native memory from every model a test compiles and trains
(tens to hundreds of MiB each, not returned by `gc` or
`keras.backend.clear_session`), so one process running the whole suite grew
past 14 GB. Here the pytest process reports as usual, while the tests run in
child pytest processes, a few at a time; each child asks for one test module
at a time and exits once it has grown past a memory limit, and a fresh child
takes the next module. The parent itself imports no test module (a child
collects for it), so it holds no TensorFlow; each worker collects only the
modules still queued when it starts. A module runs whole in one child unless
memory splits it (below), so module-scoped fixtures are shared as they are
in-process; a module marked
`pytest.mark.spread_across_workers` (tests that share nothing, such as the
tutorials, each a minute in a fresh process) gives each test to whichever
worker is free.

Options (also read from the environment, so the README's plain
`python -m pytest` gets them):

- `--isolation {auto,off}` (`KERAS_ATTN_TEST_ISOLATION`): `auto` isolates a
  run that spans more than one module; `off` runs in this process.
- `--isolation-workers N` (`KERAS_ATTN_TEST_WORKERS`, default 2): children
  running at once.
- `--isolation-memory-mb MB` (`KERAS_ATTN_TEST_WORKER_MEMORY_MB`, default 1536):
  a child exits after a module that left it above this resident size.
- `--isolation-split-memory-mb MB` (`KERAS_ATTN_TEST_WORKER_SPLIT_MEMORY_MB`,
  default 2560): a child hands the rest of its module back once a test leaves
  it above this size (its module fixtures are then set up again in a fresh
  child), so one module that builds many models cannot grow one process
  without bound.
- `--isolation-tree-memory-mb MB` (`KERAS_ATTN_TEST_TREE_MEMORY_MB`, default
  3584): while the whole process tree uses more, a worker that asks for the
  next module waits until the tree shrinks or the other workers are done, and
  a worker above `--isolation-memory-mb` hands the rest of its module on.
- `--isolation-report PATH`: one JSON line per unit (a module, or a spread
  test) with its wall seconds, the worker's resident MiB before and after and
  its peak, the peak PSS of the worker with the processes it started and how
  far that rose during the unit (`growth_mb`); then one line per test with its
  seconds (setup, call and teardown), slowest first.
- `--isolation-profile PATH` (`KERAS_ATTN_TEST_PROFILE`, default
  `tests/isolation_profile.json` where it exists): each unit's seconds and
  memory growth from an earlier run, written by
  `--isolation-save-profile PATH`. A fresh clone (CI) has no pytest cache;
  the committed profile gives it the same plan.

Units start longest first, by the seconds the last run recorded in pytest's
cache, else the profile's (without either, the spread tests first), so that
no long unit is left running alone at the end. A unit starts beside running
ones only if the profile's growth for it, added to the tree's present size
and the growth still expected of the running units, stays within
`--isolation-tree-memory-mb`; otherwise the worker takes the longest queued
unit that fits and ends before the running ones are expected to, else the
longest that fits, and waits only when none fits.
A unit the profile does not know is expected to grow by 1 GiB. A worker that
has run units already and would pass `--isolation-split-memory-mb` with the
next one's expected growth exits first, so that a fresh worker runs that
module whole rather than splitting it (and setting its fixtures up twice).

The terminal summary names the slowest and the largest units and the peak
memory of the whole process tree (this process, the workers and everything
they start), sampled every second as proportional set size, so shared
libraries count once.

A child that dies inside a test (a crash, the kernel's OOM killer) fails that
test with the child's exit status and the end of its output; the rest of its
module goes to the next child.
"""

import collections
import json
import os
import selectors
import subprocess
import sys
import time
import warnings

import pytest

_CHILD_OPTION = "--isolation-child"
_CACHE_KEY = "keras_attn/isolation_unit_seconds"
_DEFAULT_PROFILE = os.path.join("tests", "isolation_profile.json")
_UNKNOWN_GROWTH_MB = 1024.0  # a unit the profile has not seen


def _environment_int(name, default):
    value = os.environ.get(name)
    return int(value) if value else default


def _resident_mb():
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def _status_kb(pid, field):
    """A field of /proc/PID/status in KiB (VmHWM, VmRSS), or 0 where unreadable."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _reset_peak_resident():
    """Restarts this process's VmHWM from its current size (Linux 4.0+)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        pass


def _process_parents():
    """`{pid: parent pid}` of every process /proc lists."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                parents[int(entry)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
    return parents


def _descendants(root, parents):
    """`root` and every process below it."""
    children = collections.defaultdict(list)
    for pid, parent in parents.items():
        children[parent].append(pid)
    tree, frontier = [root], [root]
    while frontier:
        for child in children[frontier.pop()]:
            tree.append(child)
            frontier.append(child)
    return tree


def _pss_mb(pid):
    """Proportional set size of one process in MiB (0 where unreadable)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def pytest_addoption(parser):
    group = parser.getgroup("keras-attn", "keras-attn process isolation")
    group.addoption(
        "--isolation",
        choices=("auto", "off"),
        default=os.environ.get("KERAS_ATTN_TEST_ISOLATION", "auto"),
        help="auto: run the tests of a multi-module run in worker processes; off: in this one",
    )
    group.addoption(
        "--isolation-workers",
        type=int,
        default=_environment_int("KERAS_ATTN_TEST_WORKERS", 2),
        help="worker processes running at once (default 2)",
    )
    group.addoption(
        "--isolation-memory-mb",
        type=int,
        default=_environment_int("KERAS_ATTN_TEST_WORKER_MEMORY_MB", 1536),
        help="a worker is replaced after a module leaves it above this many MiB (default 1536)",
    )
    group.addoption(
        "--isolation-split-memory-mb",
        type=int,
        default=_environment_int("KERAS_ATTN_TEST_WORKER_SPLIT_MEMORY_MB", 2560),
        help="a worker hands the rest of its module to a fresh one once a test leaves it "
             "above this many MiB (default 2560)",
    )
    group.addoption(
        "--isolation-tree-memory-mb",
        type=int,
        default=_environment_int("KERAS_ATTN_TEST_TREE_MEMORY_MB", 3584),
        help="no new unit starts beside a running one while this process, the workers and "
             "their subprocesses together use more than this many MiB (default 3584)",
    )
    group.addoption(
        "--isolation-report",
        default=None,
        help="write one JSON line per module: seconds, worker and subprocess memory",
    )
    group.addoption(
        "--isolation-profile",
        default=os.environ.get("KERAS_ATTN_TEST_PROFILE"),
        help="each unit's seconds and memory growth from an earlier run (JSON written by "
             f"--isolation-save-profile; default {_DEFAULT_PROFILE} where it exists)",
    )
    group.addoption(
        "--isolation-save-profile",
        default=None,
        help="write each unit's seconds and memory growth in this run as a JSON profile",
    )
    group.addoption(_CHILD_OPTION, default=None, help="internal: file descriptors to the parent")
    group.addoption("--isolation-items", default=None, help="internal: node ids to collect")
    group.addoption("--isolation-collect-to", default=None,
                    help="internal: write the collected tests to this JSON file")


def _is_child(config):
    return config.getoption(_CHILD_OPTION) is not None


def _may_isolate(config):
    """Whether this process may hand its tests to workers (before collection)."""
    if config.getoption("isolation") == "off" or _is_child(config):
        return False
    if config.getoption("isolation_collect_to") is not None:
        return False
    if config.option.collectonly or config.getoption("usepdb", False):
        return False
    if hasattr(config, "workerinput"):  # a pytest-xdist worker already is a process of its own
        return False
    return config.getoption("isolation_workers") > 0


def _isolating(session):
    if not _may_isolate(session.config):
        return False
    modules = {item.nodeid.split("::")[0] for item in session.items}
    return len(modules) > 1


# ------------------------------------------------------------ the collector

# The parent collects in a child process, so that it never imports the test
# modules, and TensorFlow with them (about 300 MiB of its own memory, held for
# the whole run, beside the workers that do import it).


class _CollectedInChild(pytest.Item):
    """A test the collecting child found: its node id, location and whether
    it is spread across workers; the parent hands it out and reports on it,
    a worker runs it."""

    def runtest(self):
        raise RuntimeError("collected in a child process: runs in a worker")

    def reportinfo(self):
        return self.path, self._line, self._domain

    @classmethod
    def from_record(cls, session, record):
        item = cls.from_parent(
            session, name=record["nodeid"].split("::")[-1], nodeid=record["nodeid"],
            path=session.config.rootpath / record["path"],
        )
        item.location = tuple(record["location"])
        item._line, item._domain = item.location[1], item.location[2]
        if record["spread"]:
            item.add_marker("spread_across_workers")
        return item


def _names_one_module(config):
    """Whether the command line names tests of one module only (then collecting
    in this process costs less than starting a collector)."""
    paths = set()
    for arg in config.args:
        path = arg.split("::")[0]
        if not path.endswith(".py"):
            return False
        paths.add(os.path.abspath(os.path.join(config.invocation_params.dir, path)))
    return len(paths) == 1


def _collect_in_child(config):
    """The records of the tests a child collects with this command line, or
    None where it failed or found at most one module (then this process
    collects, and reports any collection error itself)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="keras_attn_collect_") as directory:
        records_path = os.path.join(directory, "items.json")
        command = [
            sys.executable, "-m", "pytest",
            *(str(arg) for arg in config.invocation_params.args),
            "--collect-only", "-q", "--isolation=off", "--isolation-collect-to", records_path,
        ]
        with open(os.path.join(directory, "collect.log"), "wb") as log:
            status = subprocess.run(
                command, cwd=config.invocation_params.dir, stdout=log, stderr=subprocess.STDOUT,
                env=dict(os.environ, KERAS_ATTN_TEST_ISOLATION="off"),
            ).returncode
        if status != 0 or not os.path.exists(records_path):
            return None
        with open(records_path, encoding="utf-8") as handle:
            collected = json.load(handle)
    modules = {record["path"] for record in collected["items"]}
    return collected if len(modules) > 1 else None


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session):
    config = session.config
    if not _may_isolate(config) or _names_one_module(config):
        return None
    collected = _collect_in_child(config)
    if collected is None:
        return None
    hook = config.hook
    items = [_CollectedInChild.from_record(session, r) for r in collected["items"]]
    deselected = [_CollectedInChild.from_record(session, r) for r in collected["deselected"]]
    report = pytest.CollectReport(session.nodeid, "passed", None, items + deselected)
    hook.pytest_collectreport(report=report)
    if deselected:
        hook.pytest_deselected(items=deselected)
    session.items = items
    session.testscollected = len(items)
    hook.pytest_collection_finish(session=session)
    return True


_collector = {"deselected": []}  # in a collecting child


def _record(item):
    return {
        "nodeid": item.nodeid,
        "path": os.path.relpath(item.path, item.config.rootpath),
        "location": list(item.location),
        "spread": item.get_closest_marker("spread_across_workers") is not None,
    }


def pytest_deselected(items):
    _collector["deselected"].extend(items)


def pytest_collection_finish(session):
    path = session.config.getoption("isolation_collect_to")
    if path is None or session.testsfailed:
        return
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"items": [_record(item) for item in session.items],
                   "deselected": [_record(item) for item in _collector["deselected"]]}, handle)


# ------------------------------------------------------------------ the child


class _Channel:
    """Line-delimited JSON over the two pipes a child shares with its parent."""

    def __init__(self, descriptors):
        read_fd, write_fd = (int(fd) for fd in descriptors.split(","))
        self._commands = os.fdopen(read_fd, "r", encoding="utf-8")
        self._messages = os.fdopen(write_fd, "w", encoding="utf-8")

    def send(self, kind, **fields):
        self._messages.write(json.dumps({"kind": kind, **fields}) + "\n")
        self._messages.flush()

    def receive(self):
        line = self._commands.readline()
        return json.loads(line) if line else []


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    path = config.getoption("isolation_items")
    if not _is_child(config) or path is None:
        return
    with open(path, encoding="utf-8") as handle:
        wanted = set(json.load(handle))
    kept = [item for item in items if item.nodeid in wanted]
    dropped = [item for item in items if item.nodeid not in wanted]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = kept


_child = {}  # "config" and "channel" in a child process


_profile_file = {}  # config -> the profile file's units, read once at configure time


def _read_profile(config):
    """`{unit: {"seconds", "growth_mb"}}` from `--isolation-profile` (or the
    default file where it exists), else {}; a file that is not a profile is a
    usage error naming it."""
    path = config.getoption("isolation_profile")
    if path is None:
        default = config.rootpath / _DEFAULT_PROFILE
        if not default.exists():
            return {}
        path = str(default)
    try:
        with open(path, encoding="utf-8") as handle:
            units = json.load(handle)["units"]
        for unit, record in units.items():
            if not all(isinstance(record.get(key), (int, float))
                       for key in ("seconds", "growth_mb")):
                raise ValueError(f"unit {unit!r} lacks numeric seconds and growth_mb")
        return units
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise pytest.UsageError(
            f"--isolation-profile: cannot read a profile from {path!r} (expected the JSON "
            f"that --isolation-save-profile writes: {{\"units\": {{unit: {{\"seconds\", "
            f"\"growth_mb\"}}}}}}): {error}") from None


def pytest_configure(config):
    if not _is_child(config) and _may_isolate(config):
        _profile_file[config] = _read_profile(config)  # a bad file fails before any test runs
    if _is_child(config):
        _child["config"] = config
        _child["channel"] = _Channel(config.getoption(_CHILD_OPTION))


def _child_loop(session):
    config = session.config
    channel = _child["channel"]
    items = {item.nodeid: item for item in session.items}
    limit = config.getoption("isolation_memory_mb")
    split_limit = config.getoption("isolation_split_memory_mb")
    tree_limit = config.getoption("isolation_tree_memory_mb")
    while True:
        channel.send("next")
        unit = [items[nodeid] for nodeid in channel.receive()]
        if not unit:
            return True
        before = _resident_mb()
        _reset_peak_resident()
        started = time.perf_counter()
        done = 0
        for index, item in enumerate(unit):
            nextitem = unit[index + 1] if index + 1 < len(unit) else None
            item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
            done += 1
            if nextitem is not None and _should_hand_back(limit, split_limit, tree_limit):
                break  # the rest of the unit goes to a fresh worker
        resident = _resident_mb()
        channel.send(
            "measured",
            tests=done,
            seconds=round(time.perf_counter() - started, 2),
            resident_before_mb=round(before),
            resident_after_mb=round(resident),
            resident_peak_mb=round(_status_kb("self", "VmHWM") / 1024),
        )
        if resident > limit:
            channel.send("recycle", resident_mb=round(resident))
            return True


def _should_hand_back(limit, split_limit, tree_limit):
    """Whether a worker hands the rest of its module on after a test: past
    `split_limit` itself, or past `limit` while the whole process tree (the
    parent's, read from /proc) is over `tree_limit`."""
    resident = _resident_mb()
    if resident > split_limit:
        return True
    if resident <= limit:
        return False
    parents = _process_parents()
    return sum(_pss_mb(pid) for pid in _descendants(os.getppid(), parents)) > tree_limit


def pytest_runtest_logstart(nodeid, location):
    channel = _current_channel()
    if channel is not None:
        channel.send("start", nodeid=nodeid, location=list(location))


def pytest_runtest_logfinish(nodeid, location):
    channel = _current_channel()
    if channel is not None:
        channel.send("finish", nodeid=nodeid, location=list(location))


def pytest_runtest_logreport(report):
    channel = _current_channel()
    if channel is not None:
        config = _child["config"]
        data = config.hook.pytest_report_to_serializable(config=config, report=report)
        channel.send("report", report=data)


def pytest_warning_recorded(warning_message, when, nodeid, location):
    channel = _current_channel()
    if channel is not None and when == "runtest":
        channel.send(
            "warning",
            category=warning_message.category.__name__,
            message=str(warning_message.message),
            filename=str(warning_message.filename),
            lineno=warning_message.lineno,
            nodeid=nodeid,
        )


def _current_channel():
    return _child.get("channel")


# ----------------------------------------------------------------- the parent


class _Worker:
    def __init__(self, number, command, cwd, log_path, environment):
        command_read, self._command_write = os.pipe()
        self.messages_fd, message_write = os.pipe()
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                command + [_CHILD_OPTION, f"{command_read},{message_write}"],
                cwd=cwd,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(command_read, message_write),
            )
        os.close(command_read)
        os.close(message_write)
        self.number = number
        self.spawned_at = time.monotonic()
        self.ready_after = None  # seconds from its start to asking for a unit
        self.waiting_since = 0.0
        self.resident_mb = None  # after its last unit (None: it has run none)
        self.buffer = b""
        self.unit = []  # node ids handed over and not finished
        self.running = None  # (node id, location) of the test in progress
        self.progressed = False
        self.waiting = False  # asked for a unit, none handed out yet
        self.handed = []  # node ids of the unit handed out last
        self.tree_peak_mb = 0.0  # of this worker and its subprocesses, this unit
        self.current_mb = 0.0  # of this worker and its subprocesses, last sample
        self.start_mb = 0.0  # current_mb when its unit was handed out
        self.started_at = 0.0
        self.expected_seconds = 0.0  # the profile's, for its unit (None: unknown)
        self.expected_growth_mb = 0.0
        self.modules = set()  # the test modules it collected

    def send(self, nodeids):
        try:
            os.write(self._command_write, (json.dumps(nodeids) + "\n").encode())
        except BrokenPipeError:
            pass

    def close(self):
        for fd in (self._command_write, self.messages_fd):
            try:
                os.close(fd)
            except OSError:
                pass

    def output_tail(self, lines=40):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as log:
                return "".join(log.readlines()[-lines:])
        except OSError:
            return ""


class _IsolatedRun:
    def __init__(self, session):
        self.session = session
        self.config = session.config
        self.items = {item.nodeid: item for item in session.items}
        units = collections.OrderedDict()
        for item in session.items:
            spread = item.get_closest_marker("spread_across_workers") is not None
            key = item.nodeid if spread else item.nodeid.split("::")[0]
            units.setdefault(key, []).append(item.nodeid)
        self.profile = self.read_profile()
        self.units = collections.deque(self.longest_first(units))
        self.selector = selectors.DefaultSelector()
        self.workers = []
        self.started = 0
        self.failed_starts = 0
        basetemp = self.config._tmp_path_factory.getbasetemp()
        self.directory = basetemp / "isolation"
        self.directory.mkdir(exist_ok=True)
        self.items_path = self.directory / "items.json"
        self.items_path.write_text(json.dumps(list(self.items)), encoding="utf-8")
        self.command = [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "-o", "addopts=", "--isolation=off",
            "--rootdir", str(self.config.rootpath),
            "--tb", self.config.option.tbstyle,
            "--isolation-items", str(self.items_path),
            "--isolation-memory-mb", str(self.config.getoption("isolation_memory_mb")),
            "--isolation-split-memory-mb",
            str(self.config.getoption("isolation_split_memory_mb")),
            "--isolation-tree-memory-mb",
            str(self.config.getoption("isolation_tree_memory_mb")),
        ]
        if self.config.inipath is not None:
            self.command += ["-c", str(self.config.inipath)]
        args = [str(arg) for arg in self.config.invocation_params.args]
        for index, arg in enumerate(args):  # plugins named with -p travel along
            if arg == "-p" and index + 1 < len(args):
                self.command += ["-p", args[index + 1]]
            elif arg.startswith("-p") and len(arg) > 2:
                self.command.append(arg)
        self.measurements = []
        self.start_up_seconds = []  # of each worker, until it asked for a unit
        self.waited_seconds = 0.0  # workers' time between asking and getting a unit
        self.test_seconds = collections.Counter()  # setup + call + teardown of each test
        self.tree_peak_mb = 0.0
        self.tree_peak_units = []  # the units running when the tree peaked
        self.tree_mb = 0.0
        self.tree_budget_mb = self.config.getoption("isolation_tree_memory_mb")
        self.split_limit_mb = self.config.getoption("isolation_split_memory_mb")
        self.next_sample = 0.0
        self.environment = dict(os.environ, KERAS_ATTN_TEST_ISOLATION="off")

    def stopping(self):
        return bool(self.session.shouldfail or self.session.shouldstop)

    def module_of(self, unit):
        return str(self.items[unit[0]].path)

    def start_worker(self):
        # A worker collects (imports) only the modules still queued: one
        # started late imports fewer of them, and takes less memory and time.
        modules = sorted({self.module_of(unit) for unit in self.units})
        self.started += 1
        worker = _Worker(
            self.started,
            self.command + ["--basetemp", str(self.directory / f"worker{self.started}")]
            + modules,
            self.config.invocation_params.dir,
            self.directory / f"worker{self.started}.log",
            self.environment,
        )
        worker.modules = set(modules)
        self.workers.append(worker)
        self.selector.register(worker.messages_fd, selectors.EVENT_READ, worker)

    def run(self):
        limit = self.config.getoption("isolation_workers")
        try:
            while True:
                while not self.stopping() and len(self.workers) < limit and self._worker_needed():
                    self.start_worker()
                if not self.workers:
                    break
                for key, _ in self.selector.select(timeout=1.0):
                    self.read(key.data)
                self.sample_memory()
        finally:
            for worker in self.workers:
                worker.process.kill()
                worker.process.wait()
                worker.close()
        self.write_report()
        if self.session.shouldfail:
            raise self.session.Failed(self.session.shouldfail)
        if self.session.shouldstop:
            raise self.session.Interrupted(self.session.shouldstop)
        return True

    def read_profile(self):
        """The profile file's `{unit: {"seconds", "growth_mb"}}`, with the
        seconds of the last run in pytest's cache where it has them."""
        recorded = _profile_file.get(self.config, {})
        profile = {unit: dict(record) for unit, record in recorded.items()}
        cache = getattr(self.config, "cache", None)
        for unit, seconds in (cache.get(_CACHE_KEY, {}) if cache is not None else {}).items():
            profile.setdefault(unit, {})["seconds"] = seconds
        return profile

    def expected(self, unit, key):
        """The profile's `seconds` or `growth_mb` for a unit (its node ids), or
        None where it has no record."""
        return self.profile.get(self.unit_name(unit), {}).get(key)

    def expected_growth_mb(self, unit):
        """The profile's memory growth for a unit, 1 GiB where it has none."""
        growth = self.expected(unit, "growth_mb")
        return _UNKNOWN_GROWTH_MB if growth is None else growth

    def longest_first(self, units):
        """The units, those that took longest in the last run (or the profile)
        first, so no long one is left running alone at the end; without a
        record, the spread tests (each a fresh process: tutorials, examples)
        first."""
        def cost(key):
            if not self.profile:  # no record: the spread tests first
                return 1.0 if "::" in key else 0.0
            seconds = self.expected(units[key], "seconds")
            return float("inf") if seconds is None else seconds  # an unseen unit may be long

        order = sorted(units, key=lambda key: -cost(key))  # stable: collection order on ties
        return [units[key] for key in order]

    def unit_name(self, nodeids):
        """A module's path, or a spread test's node id."""
        first = self.items[nodeids[0]]
        if first.get_closest_marker("spread_across_workers") is not None:
            return first.nodeid
        return first.nodeid.split("::")[0]

    def hand_out(self):
        """The next unit to each worker that asked, unless the process tree is
        over its memory budget while another worker is still busy."""
        busy = any(w.unit for w in self.workers)
        if busy and self.tree_mb > self.tree_budget_mb and self.units and not self.stopping():
            return  # asked again after the next sample
        for worker in self.workers:
            if not worker.waiting:
                continue
            # The queued units this worker collected; none (a module handed
            # back after it started): it exits, a fresh one follows.
            runnable = [unit for unit in self.units if self.module_of(unit) in worker.modules]
            if runnable and not self.stopping():
                chosen = self.choose(worker, runnable)
                if chosen is None:
                    continue  # asked again after the next sample or finish
                if self.splits_in(worker, chosen):
                    worker.unit = []  # it exits; a fresh worker takes the unit whole
                else:
                    worker.unit = list(chosen)
                    self.units.remove(chosen)
            else:
                worker.unit = []
            worker.handed = list(worker.unit)
            worker.waiting = False
            if worker.unit:
                self.waited_seconds += time.monotonic() - worker.waiting_since
            worker.start_mb = worker.current_mb
            worker.started_at = time.monotonic()
            worker.expected_seconds = self.expected(worker.unit, "seconds") if worker.unit else 0
            worker.expected_growth_mb = self.expected_growth_mb(worker.unit) if worker.unit else 0
            worker.send(worker.unit)

    def splits_in(self, worker, unit):
        """Whether `worker`, having run units already, would grow past the
        split limit with `unit`'s expected growth (a fresh worker would set up
        the unit's module fixtures once, not twice)."""
        return (worker.resident_mb is not None
                and worker.resident_mb + self.expected_growth_mb(unit) > self.split_limit_mb)

    def choose(self, worker, runnable):
        """The unit `worker` runs next: the first (longest) if its expected
        growth fits the tree's budget beside the running units; else the first
        that fits and is expected to end before they do (it delays the first
        by nothing); else the first that fits (the first waits for memory, the
        CPU does not); with nothing else running, the first regardless; else
        None (the worker waits)."""
        others = [other for other in self.workers if other is not worker and other.unit]
        if not others:
            return runnable[0]
        now = time.monotonic()
        # What the running units may still add: their expected growth, less
        # what they have grown already.
        pending = sum(max(0.0, other.start_mb + other.expected_growth_mb - other.current_mb)
                      for other in others)

        def fits(unit):
            return self.tree_mb + pending + self.expected_growth_mb(unit) <= self.tree_budget_mb

        if fits(runnable[0]):
            return runnable[0]
        ends = [other.started_at + other.expected_seconds - now
                for other in others if other.expected_seconds is not None]
        window = max(ends) if ends else 0.0
        fitting = [unit for unit in runnable[1:] if fits(unit)]
        for unit in fitting:
            seconds = self.expected(unit, "seconds")
            if seconds is not None and seconds <= window:
                return unit
        return fitting[0] if fitting else None

    def sample_memory(self):
        now = time.monotonic()
        if now < self.next_sample:
            return
        self.next_sample = now + 1.0
        parents = _process_parents()
        sizes = {pid: _pss_mb(pid) for pid in _descendants(os.getpid(), parents)}
        self.tree_mb = sum(sizes.values())
        if self.tree_mb > self.tree_peak_mb:
            self.tree_peak_mb = self.tree_mb
            self.tree_peak_units = [self.unit_name(w.handed) for w in self.workers if w.unit]
        for worker in self.workers:
            worker.current_mb = sum(sizes.get(pid, 0.0)
                                    for pid in _descendants(worker.process.pid, parents))
            worker.tree_peak_mb = max(worker.tree_peak_mb, worker.current_mb)
        if any(worker.waiting for worker in self.workers):
            self.hand_out()

    def write_report(self):
        cache = getattr(self.config, "cache", None)
        if cache is not None and self.measurements:
            seconds = dict(cache.get(_CACHE_KEY, {}))
            for measurement in self.measurements:
                seconds[measurement["unit"]] = measurement["seconds"]
            cache.set(_CACHE_KEY, seconds)
        _summary["measurements"] = self.measurements
        _summary["tree_peak_mb"] = self.tree_peak_mb
        _summary["tree_peak_units"] = self.tree_peak_units
        _summary["start_up_seconds"] = self.start_up_seconds
        _summary["waited_seconds"] = self.waited_seconds
        path = self.config.getoption("isolation_save_profile")
        if path and self.measurements:
            units = collections.defaultdict(lambda: {"seconds": 0.0, "growth_mb": 0})
            for measurement in self.measurements:  # a split module: seconds add up
                unit = units[measurement["unit"]]
                unit["seconds"] = round(unit["seconds"] + measurement["seconds"], 1)
                unit["growth_mb"] = max(unit["growth_mb"], measurement["growth_mb"])
            lines = [f"  {json.dumps(unit)}: {json.dumps(record)}"
                     for unit, record in sorted(units.items())]
            with open(path, "w", encoding="utf-8") as handle:  # one line per unit: short diffs
                handle.write('{"units": {\n' + ",\n".join(lines) + "\n}}\n")
        path = self.config.getoption("isolation_report")
        if path:
            with open(path, "w", encoding="utf-8") as report:
                for measurement in self.measurements:
                    report.write(json.dumps(measurement) + "\n")
                for nodeid, seconds in self.test_seconds.most_common():
                    report.write(json.dumps({"test": nodeid, "seconds": round(seconds, 2)}) + "\n")

    def _worker_needed(self):
        # A new worker only when the queued modules outnumber the workers that
        # are about to ask for one.
        waiting = sum(1 for worker in self.workers if not worker.unit)
        return len(self.units) > waiting

    def read(self, worker):
        try:
            chunk = os.read(worker.messages_fd, 1 << 16)
        except OSError:
            chunk = b""
        if not chunk:
            self.finish(worker)
            return
        worker.buffer += chunk
        *lines, worker.buffer = worker.buffer.split(b"\n")
        for line in lines:
            if line:
                self.handle(worker, json.loads(line))

    def handle(self, worker, message):
        hook = self.config.hook
        kind = message["kind"]
        if kind == "next":
            if worker.ready_after is None:  # collected: its start-up is over
                worker.ready_after = time.monotonic() - worker.spawned_at
                self.start_up_seconds.append(worker.ready_after)
            worker.waiting = True
            worker.waiting_since = time.monotonic()
            self.hand_out()
        elif kind == "start":
            worker.running = (message["nodeid"], tuple(message["location"]))
            worker.progressed = True
            hook.pytest_runtest_logstart(nodeid=message["nodeid"], location=worker.running[1])
        elif kind == "report":
            data = message["report"]
            report = hook.pytest_report_from_serializable(config=self.config, data=data)
            self.test_seconds[report.nodeid] += report.duration
            hook.pytest_runtest_logreport(report=report)
        elif kind == "finish":
            nodeid = message["nodeid"]
            hook.pytest_runtest_logfinish(nodeid=nodeid, location=tuple(message["location"]))
            if nodeid in worker.unit:
                worker.unit.remove(nodeid)
            worker.running = None
        elif kind == "warning":
            self.warn(message)
        elif kind == "recycle":
            if worker.unit:  # left above the limit mid-module: the rest to a fresh worker
                self.units.appendleft(list(worker.unit))
            worker.unit = []
        elif kind == "measured":
            worker.resident_mb = message["resident_after_mb"]
            measurement = {key: value for key, value in message.items() if key != "kind"}
            measurement["unit"] = self.unit_name(worker.handed)
            measurement["worker"] = worker.number
            measurement["with_subprocesses_peak_mb"] = round(worker.tree_peak_mb)
            measurement["growth_mb"] = round(max(0.0, worker.tree_peak_mb - worker.start_mb))
            worker.tree_peak_mb = 0.0
            self.measurements.append(measurement)

    def warn(self, message):
        import builtins

        text = message["message"]
        category = getattr(builtins, message["category"], None)
        if not (isinstance(category, type) and issubclass(category, Warning)):
            category, text = UserWarning, f"{message['category']}: {text}"
        record = warnings.WarningMessage(
            category(text),
            category,
            message["filename"],
            message["lineno"],
        )
        self.config.hook.pytest_warning_recorded.call_historic(
            kwargs=dict(warning_message=record, when="runtest", nodeid=message["nodeid"],
                        location=None)
        )

    def finish(self, worker):
        self.selector.unregister(worker.messages_fd)
        worker.process.wait()
        worker.close()
        self.workers.remove(worker)
        if not worker.unit:
            self.failed_starts = 0
            return
        # The worker died with work in hand.
        status = worker.process.returncode
        unfinished = list(worker.unit)
        if worker.running is not None:
            nodeid, location = worker.running
            if nodeid in unfinished:
                unfinished.remove(nodeid)
            self.fail(nodeid, location, worker, status)
        elif not worker.progressed:
            self.failed_starts += 1
            if self.failed_starts >= 2:
                # Twice no progress at all: report the module instead of looping.
                for nodeid in unfinished:
                    self.fail(nodeid, self.items[nodeid].location, worker, status)
                return
        if unfinished:
            self.units.appendleft(unfinished)

    def fail(self, nodeid, location, worker, status):
        from _pytest.reports import TestReport

        hook = self.config.hook
        item = self.items[nodeid]
        text = (
            f"The worker process running this test exited with status {status} "
            f"(a crash, or killed for memory). The end of its output "
            f"({worker.log_path}):\n{worker.output_tail()}"
        )
        hook.pytest_runtest_logstart(nodeid=nodeid, location=location)
        report = TestReport(
            nodeid, location, {name: 1 for name in item.keywords}, "failed", text, "call"
        )
        hook.pytest_runtest_logreport(report=report)
        hook.pytest_runtest_logfinish(nodeid=nodeid, location=location)


_summary = {}  # the parent's measurements, for the terminal summary


def pytest_terminal_summary(terminalreporter):
    measurements = _summary.get("measurements")
    if not measurements:
        return
    write = terminalreporter.write_line
    terminalreporter.section("process isolation")
    write(
        f"{len(measurements)} units; peak memory of the whole process tree "
        f"{_summary['tree_peak_mb']:.0f} MiB (proportional set size, sampled every second), "
        f"while running: {', '.join(_summary['tree_peak_units']) or 'nothing'}"
    )
    start_ups = _summary["start_up_seconds"]
    write(f"{len(start_ups)} workers started, {sum(start_ups):.0f} s in all until each "
          f"had collected its tests (longest {max(start_ups, default=0):.1f} s); "
          f"{_summary['waited_seconds']:.0f} s waiting for memory to free")
    for title, key in (("slowest", "seconds"), ("largest", "with_subprocesses_peak_mb")):
        write(f"{title} units: seconds, worker's peak resident MiB, "
              f"worker + subprocesses peak PSS MiB")
        for measurement in sorted(measurements, key=lambda m: -m[key])[:8]:
            write(
                f"  {measurement['seconds']:7.1f} s {measurement['resident_peak_mb']:6d} MiB "
                f"{measurement['with_subprocesses_peak_mb']:6d} MiB  {measurement['unit']}"
            )


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session):
    if _is_child(session.config):
        return _child_loop(session)
    if not _isolating(session):
        return None
    if session.testsfailed and not session.config.option.continue_on_collection_errors:
        return None  # the default loop reports the collection errors
    return _IsolatedRun(session).run()
