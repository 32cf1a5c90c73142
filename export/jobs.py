"""Independent jobs on Dask ``distributed``, each result kept in a store under a key of its
inputs: the engine under ``asqgen methods`` and ``asqgen sweep``.

A ``Job`` is a module-level function (importable on every worker), its arguments and the key
of its inputs (``job_key``: the job's kind, its configuration, the fingerprint of the code
that computes it and the versions of the tools it runs). ``run_jobs``:

* looks every key up in the ``Store`` first; a job whose result is there does not run (a
  second run of a finished sweep starts no job and no cluster);
* submits the others to a Dask cluster: a ``LocalCluster`` of ``workers`` worker processes
  with one thread each (torch, OpenMP and BLAS pinned to one thread: Dask's nanny sets
  ``OMP_NUM_THREADS=1`` and the jobs call ``torch.set_num_threads(1)``), or the running
  scheduler at ``cluster`` (``tcp://host:8786``);
* writes each result into the store as it arrives, atomically (``core.files``), from this
  process only: the workers need no shared file system, and a job that ran twice (its worker
  died) is written once;
* leaves retrying to Dask: the scheduler reschedules the jobs of a worker that dies and gives
  up on a job after ``distributed.scheduler.allowed-failures`` deaths (3), which is then a
  failed job. Each attempt logs an event (``Worker.log_event``) with its key, so the outcome
  counts the jobs that were started more than once (``retried``);
* on Ctrl-C (``KeyboardInterrupt``) cancels what runs, closes the client and the local
  cluster, and lets the interrupt through: every finished result is already stored, so the
  next run resumes.

A job's argument may be a ``Ref`` to another job's result (Dask passes it from worker to
worker; a stored result is read from the store) or ``Shared`` data sent to the cluster once
(``Client.scatter``). A worker checks that it runs the same code as this process
(``code_fingerprint``) before it starts a job.

Results are dicts of JSON values; a dict ``"arrays"`` of numpy arrays is stored beside them
as an ``.npz`` (no pickle on disk; Dask's own wire format is its business).
"""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from core import __version__
from core.errors import OutputError, ToolError, UsageError
from core.files import read_npz, write_npz, write_text

__all__ = ["Job", "Ref", "Shared", "Store", "Outcome", "run_jobs", "job_key",
           "code_fingerprint", "check_engine", "where", "JobProgress", "INSTALL", "START_TOPIC"]

INSTALL = "./dev pip install -e '.[cluster]'"
START_TOPIC = "asqgen-job-start"
_PACKAGES = ("core", "hw", "gen", "sim", "export", "asqgen")


@functools.lru_cache(maxsize=None)
def code_fingerprint(packages=_PACKAGES, exclude=()):
    """The SHA-256 of the Python sources of ``packages`` (names of this project's top-level
    packages) but the files ``exclude`` (paths like ``"export/sweep.py"``), in a fixed order:
    a result is reused only by the code that made it."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for package in sorted(packages):
        for path in sorted((root / package).rglob("*.py")):
            name = path.relative_to(root).as_posix()
            if name not in exclude:
                h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def job_key(kind, inputs, *, packages=_PACKAGES, exclude=(), tools=None):
    """The store key of a job: the SHA-256 of its ``kind``, ``inputs`` (JSON values), the
    fingerprint of ``packages``' code (but the files ``exclude``: the commands' own
    bookkeeping, which changes no result), the versions of Python, numpy and asqgen and the
    given ``tools`` versions (``{name: version}``)."""
    import numpy

    code = code_fingerprint(tuple(packages), tuple(exclude))
    record = {"kind": kind, "inputs": inputs, "code": code,
              "versions": {"asqgen": __version__, "python": platform.python_version(),
                           "numpy": numpy.__version__, **(tools or {})}}
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:32]}"


@dataclass(frozen=True)
class Ref:
    """An argument that is the result of the job ``key``."""

    key: str


@dataclass(frozen=True)
class Shared:
    """An argument sent to the cluster once for every job that names it (``name``)."""

    name: str
    value: object = field(compare=False, repr=False)


@dataclass(frozen=True)
class Job:
    """``fn(*args)`` (``args`` may hold ``Ref`` and ``Shared``), stored under ``key``;
    ``label`` names it in the log."""

    key: str
    fn: object
    args: tuple = ()
    label: str = ""


class Store:
    """A folder of results: ``<key>.json`` (and ``<key>.npz`` for the arrays), each written
    atomically, the arrays before the JSON, so a result is complete once its JSON exists."""

    def __init__(self, folder):
        self.folder = Path(folder)

    def _paths(self, key):
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"not a store key: {key!r}")
        return self.folder / f"{key}.json", self.folder / f"{key}.npz"

    def __contains__(self, key):
        return self._paths(key)[0].is_file()

    def get(self, key):
        """The stored result, or ``None``."""
        js, npz = self._paths(key)
        try:
            value = json.loads(js.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise OutputError(f"{js}: unreadable stored result ({e}); delete it to run the "
                              f"job again") from None
        if value.pop("__arrays__", False):
            value["arrays"] = read_npz(npz, OutputError)
        return value

    def put(self, key, value):
        js, npz = self._paths(key)
        value = dict(value)
        arrays = value.pop("arrays", None)
        if arrays is not None:
            write_npz(npz, arrays)
            value["__arrays__"] = True
        write_text(js, json.dumps(value, indent=1, sort_keys=True) + "\n")


@dataclass
class Outcome:
    """What ``run_jobs`` did: ``results`` of every job that has one (``{key: value}``),
    ``ran`` (keys computed in this run), ``reused`` (keys found in the store), ``retried``
    (keys started more than once), ``failed`` (``{key: one-line error}``), ``seconds``."""

    results: dict
    ran: list
    reused: list
    retried: list
    failed: dict
    seconds: float

    def summary(self):
        parts = [f"{len(self.ran)} run", f"{len(self.reused)} reused from the store"]
        parts.append(f"{len(self.retried)} retried")
        parts.append(f"{len(self.failed)} failed")
        return ", ".join(parts)


def _attempt(fn, key, code, run, *args):
    """A job on a worker: check its code, log the start (with the run's id), run it."""
    from distributed import get_worker

    if code != code_fingerprint():
        raise ToolError("a worker runs other asqgen code than the client (install the same "
                        "asqgen on every machine of the cluster)")
    try:
        worker = get_worker()
    except ValueError:                  # not on a worker (a test calling it directly)
        worker = None
    if worker is not None:
        worker.log_event(START_TOPIC, [run, key, worker.address])
    return fn(*args)


def where(workers, cluster):
    """Where the jobs run, as the commands' first line says it."""
    if cluster:
        return f"on the Dask cluster at {cluster}"
    return f"{workers} local worker{'s' if workers > 1 else ''}"


def check_engine():
    """Raise ``ToolError`` (saying how to install it) when Dask distributed is missing: a
    command checks it before it starts any work."""
    _engine()


def _engine():
    try:
        import distributed
    except ImportError:
        raise ToolError(f"the jobs run on Dask distributed, which is not installed (the "
                        f"optional extra 'cluster'): {INSTALL}") from None
    return distributed


def _ignore_interrupt():
    """In a local worker process: ignore SIGINT. A Ctrl-C on the terminal reaches every
    process of its group; the client closes the local cluster itself, and a worker that took
    the interrupt would print a traceback of its own."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _interrupt_plugin():
    from distributed.diagnostics.plugin import WorkerPlugin

    class IgnoreInterrupt(WorkerPlugin):
        name = "asqgen-ignore-interrupt"

        def setup(self, worker):
            _ignore_interrupt()

    return IgnoreInterrupt()


class _Client:
    """A client of a new ``LocalCluster`` (``workers`` processes, one thread each) or of the
    scheduler at ``address``; closing it closes the local cluster too."""

    def __init__(self, workers, address):
        import logging

        distributed = _engine()
        self.cluster = None
        try:
            if address:
                self.client = distributed.Client(address, timeout="10s")
            else:
                self.cluster = distributed.LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True,
                    dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL)
                self.client = distributed.Client(self.cluster)
                self.client.register_plugin(_interrupt_plugin())
        except (OSError, TimeoutError) as e:
            self.close()
            where = address or "a local cluster"
            raise ToolError(f"cannot connect to {where}: {str(e).splitlines()[0]}") from None
        except ValueError as e:
            self.close()
            if not address:
                raise
            raise UsageError(f"--cluster {address}: {str(e).splitlines()[0]}") from None
        except BaseException:                    # Ctrl-C while the cluster starts
            self.close()
            raise

    def close(self):
        client, cluster = getattr(self, "client", None), self.cluster
        self.client = self.cluster = None
        try:
            if client is not None:
                client.close()
        finally:
            if cluster is not None:
                cluster.close()


def _order(jobs):
    """The jobs with every ``Ref``'s job before its users; a ``Ref`` to no job is refused."""
    by_key = {job.key: job for job in jobs}
    if len(by_key) != len(jobs):
        raise ValueError("two jobs have the same key")
    done, out = set(), []

    def visit(job, path):
        if job.key in done:
            return
        if job.key in path:
            raise ValueError(f"jobs refer to each other in a cycle through {job.key}")
        for a in job.args:
            if isinstance(a, Ref):
                if a.key not in by_key:
                    raise ValueError(f"job {job.key} refers to no job {a.key}")
                visit(by_key[a.key], path | {job.key})
        done.add(job.key)
        out.append(job)

    for job in jobs:
        visit(job, frozenset())
    return out


def _error_line(e):
    from distributed import KilledWorker

    if isinstance(e, KilledWorker):
        return (f"its worker died {_allowed_failures() + 1} times while running it (Dask's "
                f"distributed.scheduler.allowed-failures)")
    text = " ".join(str(e).split()) or type(e).__name__
    return text if isinstance(e, (ToolError, UsageError)) else f"{type(e).__name__}: {text}"


def _allowed_failures():
    import dask

    return dask.config.get("distributed.scheduler.allowed-failures")


def run_jobs(jobs, store, *, workers=1, cluster=None, log=None, progress=None, on_start=None):
    """Run ``jobs`` (a list of ``Job``) that the store does not hold; return an ``Outcome``.

    ``workers``: processes of the local cluster (when ``cluster`` is ``None``); ``cluster``:
    the address of a running scheduler. ``log(job, value, error)`` is called as each job ends
    (``value`` its result, or ``None`` and ``error`` a line); ``progress(state)`` about once
    a second with ``done``, ``running``, ``failed``, ``total``, ``seconds`` and ``left`` (an
    estimate of the seconds left, or ``None``), and ``progress(None)`` at the end;
    ``on_start(client)`` once the cluster is up (the tests use it to kill a worker).
    """
    if not isinstance(workers, int) or workers < 1:
        raise UsageError(f"workers must be a positive integer, not {workers!r}")
    start = time.monotonic()
    jobs = _order(list(jobs))
    results, reused = {}, []
    for job in jobs:
        value = store.get(job.key) if job.key in store else None
        if value is not None:
            results[job.key] = value
            reused.append(job.key)
    todo = [job for job in jobs if job.key not in results]
    outcome = Outcome(results=results, ran=[], reused=reused, retried=[], failed={},
                      seconds=0.0)
    if not todo:
        outcome.seconds = time.monotonic() - start
        return outcome
    needed = {a.key for job in todo for a in job.args if isinstance(a, Ref)}
    engine = _Client(workers, cluster)
    try:
        client = engine.client
        if on_start:
            on_start(client)
        shared, futures = {}, {}
        code, run = code_fingerprint(), uuid.uuid4().hex
        for job in todo:
            args = []
            for a in job.args:
                if isinstance(a, Ref):
                    args.append(futures.get(a.key, results.get(a.key)))
                elif isinstance(a, Shared):
                    if a.name not in shared:
                        shared[a.name] = client.scatter(a.value, broadcast=False)
                    args.append(shared[a.name])
                else:
                    args.append(a)
            futures[job.key] = client.submit(_attempt, job.fn, job.key, code, run, *args,
                                             key=f"asqgen-{job.key}", pure=False)
        _collect(client, todo, futures, store, outcome, needed, log, progress)
        events = client.get_events(START_TOPIC)
        starts = {}
        for _, (event_run, key, _) in events:
            if event_run == run:
                starts[key] = starts.get(key, 0) + 1
        outcome.retried = sorted(k for k, n in starts.items() if n > 1)
    finally:
        engine.close()
    outcome.seconds = time.monotonic() - start
    return outcome


def _collect(client, todo, futures, store, outcome, needed, log, progress):
    by_key = {job.key: job for job in todo}
    pending = dict(futures)
    began, last_report = time.monotonic(), 0.0
    try:
        while pending:
            finished = [k for k, f in pending.items() if f.done()]
            if finished and progress and log:
                progress(None)              # the log's lines, then the progress line again
                last_report = 0.0
            for key in finished:
                future = pending.pop(key)
                if future.status == "finished":
                    value = future.result()
                    store.put(key, value)
                    outcome.results[key] = value
                    outcome.ran.append(key)
                    if log:
                        log(by_key[key], value, None)
                else:
                    outcome.failed[key] = _error_line(future.exception())
                    if log:
                        log(by_key[key], None, outcome.failed[key])
                if key not in needed:
                    future.release()
            now = time.monotonic()
            if progress and now - last_report >= 1.0:
                last_report = now
                progress(_state(client, outcome, len(todo), len(pending), now - began))
            if pending and not finished:
                time.sleep(0.1)
    except BaseException:
        client.cancel(list(pending.values()))
        raise
    finally:
        if progress:
            progress(None)


def _state(client, outcome, total, pending, seconds):
    try:
        # Tasks the scheduler has sent to workers, at most one a worker thread (a worker
        # holds the next task or two in its queue).
        running = min(pending, sum(len(v) for v in client.processing().values()),
                      sum(client.nthreads().values()))
    except Exception:       # the scheduler did not answer: the count is only for display
        running = None
    done = len(outcome.ran)
    left = seconds * (total - done - len(outcome.failed)) / done if done else None
    return {"done": done, "running": running, "failed": len(outcome.failed), "total": total,
            "seconds": seconds, "left": left}


class JobProgress:
    """A progress line on a terminal (standard error): jobs done, running and failed, and
    the time left; ``for_stream`` gives ``None`` when the stream is not a terminal."""

    def __init__(self, stream):
        self._stream, self._width = stream, 0

    @classmethod
    def for_stream(cls, stream=None):
        stream = stream or sys.stderr
        isatty = getattr(stream, "isatty", None)
        return cls(stream) if isatty and isatty() else None

    def __call__(self, state):
        if state is None:
            if self._width:
                self._stream.write("\r" + " " * self._width + "\r")
                self._stream.flush()
                self._width = 0
            return
        running = "?" if state["running"] is None else state["running"]
        left = ("" if state["left"] is None else
                f", about {_duration(state['left'])} left")
        text = (f"  jobs: {state['done']}/{state['total']} done, {running} running, "
                f"{state['failed']} failed, {_duration(state['seconds'])}{left}")
        self._stream.write("\r" + text.ljust(self._width))
        self._stream.flush()
        self._width = len(text)


def _duration(seconds):
    seconds = int(round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds // 60 % 60:02d} min"
