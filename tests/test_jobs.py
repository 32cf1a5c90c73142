"""The job engine (``export.jobs``) on a local Dask cluster of two worker processes: every
result once, stored under its key; a worker killed mid-job retried by Dask and counted; a
second run starts nothing; an interrupted run resumes."""

import json
import os
import signal
import time

import numpy as np
import pytest

from export.jobs import Job, Ref, Shared, Store, job_key, run_jobs


# Jobs (module-level: the worker processes import them from here) ------------------------------
def square(x, pause=0.3):
    time.sleep(pause)
    return {"x": x, "square": x * x, "pid": os.getpid()}


def die_once(marker, x):
    """Kill its own worker process (as the kernel's OOM killer or a lost machine would) the
    first time it runs, half-way into its work; the retry finishes."""
    time.sleep(0.5)
    if not os.path.exists(marker):
        with open(marker, "w"):
            pass
        os.kill(os.getpid(), signal.SIGKILL)
    return {"x": x, "square": x * x, "pid": os.getpid()}


def with_arrays(n):
    return {"n": n, "arrays": {"w": np.arange(n, dtype=np.float32) / 3}}


def total(first, second, shared):
    return {"sum": float(first["arrays"]["w"].sum() + second["square"]), "shared": shared}


def fail(x):
    raise ValueError(f"bad input {x}")


def _jobs(n, fn=square, extra=()):
    return [Job(job_key("test-square", {"x": x}), fn, (x, *extra), f"square {x}")
            for x in range(n)]


def _stored(folder):
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


@pytest.fixture(scope="module")
def cluster():
    """One local cluster of two worker processes (one thread each) for the module's tests,
    which reach it by its address as ``--cluster`` does; closed even when a test fails."""
    import logging

    from distributed import LocalCluster

    local = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL)
    try:
        yield local.scheduler_address
    finally:
        local.close()


# Tests ----------------------------------------------------------------------------------------
def test_every_result_once_and_a_second_run_starts_nothing(tmp_path):
    store = Store(tmp_path / "store")
    jobs = _jobs(6)
    first = run_jobs(jobs, store, workers=2)
    assert sorted(first.ran) == sorted(j.key for j in jobs) and not first.failed
    assert first.reused == [] and first.retried == []
    for x, job in enumerate(jobs):
        assert first.results[job.key]["square"] == x * x
        assert store.get(job.key) == first.results[job.key]
    assert len({first.results[j.key]["pid"] for j in jobs}) == 2     # both workers worked
    assert _stored(tmp_path / "store") == sorted(f"{j.key}.json" for j in jobs)
    # Again: everything from the store, and no cluster (the address cannot be reached).
    again = run_jobs(jobs, store, cluster="tcp://127.0.0.1:9")
    assert again.ran == [] and sorted(again.reused) == sorted(j.key for j in jobs)
    assert again.results == first.results


def test_a_worker_killed_mid_job_is_retried_and_counted(tmp_path, cluster):
    store = Store(tmp_path / "store")
    jobs = _jobs(5)
    victim = Job(job_key("test-die", {"x": 7}), die_once, (str(tmp_path / "died"), 7), "dies")
    outcome = run_jobs(jobs[:2] + [victim] + jobs[2:], store, cluster=cluster)
    assert (tmp_path / "died").exists()                     # the first attempt was killed
    assert not outcome.failed
    assert outcome.retried == [victim.key]
    assert len(outcome.ran) == len(set(outcome.ran)) == 6    # every job once
    assert outcome.results[victim.key]["square"] == 49
    assert _stored(tmp_path / "store") == sorted(f"{j.key}.json" for j in jobs + [victim])


def test_refs_arrays_and_shared_data(tmp_path, cluster):
    store = Store(tmp_path / "store")
    a = Job(job_key("test-arrays", {"n": 5}), with_arrays, (5,))
    b = Job(job_key("test-square", {"x": 3}), square, (3, 0.0))
    c = Job(job_key("test-total", {"of": [a.key, b.key]}), total,
            (Ref(a.key), Ref(b.key), Shared("s", [1, 2])))
    out = run_jobs([c, b, a], store, cluster=cluster)    # in any order: refs first
    assert out.results[c.key] == {"sum": pytest.approx(10 / 3 + 9), "shared": [1, 2]}
    w = store.get(a.key)["arrays"]["w"]
    assert w.dtype == np.float32 and (w == np.arange(5, dtype=np.float32) / 3).all()
    assert json.loads((tmp_path / "store" / f"{a.key}.json").read_text())["n"] == 5
    # c again with its inputs from the store (a and b are not run again).
    (tmp_path / "store" / f"{c.key}.json").unlink()
    again = run_jobs([a, b, c], store, cluster=cluster)
    assert again.ran == [c.key] and again.results[c.key] == out.results[c.key]


def test_a_failed_job_is_reported_in_one_line_and_the_others_are_kept(tmp_path, cluster):
    store = Store(tmp_path / "store")
    bad = Job(job_key("test-fail", {"x": 1}), fail, (1,), "fails")
    outcome = run_jobs(_jobs(2) + [bad], store, cluster=cluster)
    assert outcome.failed == {bad.key: "ValueError: bad input 1"}
    assert len(outcome.ran) == 2 and bad.key not in store


def test_an_interrupted_run_resumes(tmp_path, cluster):
    store = Store(tmp_path / "store")
    jobs = _jobs(6, extra=(1.0,))
    seen = []

    def stop(job, value, error):                 # Ctrl-C once the first result is in
        seen.append(job.key)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_jobs(jobs, store, cluster=cluster, log=stop)
    assert len(seen) == 1 and seen[0] in store
    done = [j.key for j in jobs if j.key in store]
    assert 1 <= len(done) < len(jobs)
    rest = run_jobs(jobs, store, cluster=cluster)
    assert sorted(rest.reused) == sorted(done)
    assert sorted(rest.ran) == sorted(j.key for j in jobs if j.key not in done)


def test_keys_follow_the_inputs_the_tools_and_the_code():
    k = job_key("kind", {"a": 1, "b": [1, 2]})
    assert k == job_key("kind", {"b": [1, 2], "a": 1})
    assert len({k, job_key("kind", {"a": 2, "b": [1, 2]}), job_key("other", {"a": 1, "b": [1, 2]}),
                job_key("kind", {"a": 1, "b": [1, 2]}, tools={"torch": "x"}),
                job_key("kind", {"a": 1, "b": [1, 2]}, packages=("core",))}) == 5


class _Tty:
    def __init__(self):
        self.text = ""

    def isatty(self):
        return True

    def write(self, s):
        self.text += s

    def flush(self):
        pass


def test_progress_on_a_terminal_only():
    from export.jobs import JobProgress

    assert JobProgress.for_stream(open(os.devnull, "w")) is None
    tty = _Tty()
    line = JobProgress.for_stream(tty)
    line({"done": 3, "running": 2, "failed": 1, "total": 10, "seconds": 30.0, "left": 70.4})
    assert tty.text == "\r  jobs: 3/10 done, 2 running, 1 failed, 30 s, about 70 s left"
    line({"done": 9, "running": 1, "failed": 0, "total": 10, "seconds": 7300, "left": None})
    first = "  jobs: 3/10 done, 2 running, 1 failed, 30 s, about 70 s left"
    second = "  jobs: 9/10 done, 1 running, 0 failed, 2 h 01 min"
    assert tty.text == f"\r{first}\r{second.ljust(len(first))}"     # the old line covered
    line(None)
    assert tty.text.endswith(f"\r{' ' * len(second)}\r")


def test_a_worker_with_other_code_refuses_the_job():
    from core.errors import ToolError
    from export.jobs import _attempt, code_fingerprint

    assert _attempt(square, "k", code_fingerprint(), "run", 4, 0.0)["square"] == 16
    with pytest.raises(ToolError, match="a worker runs other asqgen code than the client"):
        _attempt(square, "k", "0" * 64, "run", 4, 0.0)
