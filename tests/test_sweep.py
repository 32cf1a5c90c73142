"""``asqgen sweep``: the sweep file, the estimate of every point as a job, the table and the
Pareto plot, a second run that starts nothing, and a worker killed in the middle."""

import json
import os
import signal
import threading
import time

import pytest

from core.bundle import load
from core.errors import UsageError
from core.sizing import config_for_bundle
from export.jobs import START_TOPIC, Store
from export.sweep import default_bundle, load_spec, pareto, run_sweep
from gen.cycles import network_cycles

from .cli import asqgen

SMALL = {"bundles": ["default"], "arrays": ["4x4", "8x8"], "rescale_lanes": [1, "cols"],
         "batches": [1, 16], "boards": ["ulx3s-25f"], "clock_mhz": 50, "images": 16}


def _file(tmp_path, spec, name="sweep.json"):
    path = tmp_path / name
    path.write_text(json.dumps(spec))
    return path


def test_sweep_writes_the_table_and_plot_and_a_second_run_starts_nothing(tmp_path):
    path, out = _file(tmp_path, SMALL), tmp_path / "out"
    done = asqgen("sweep", str(path), "--workers", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "8 jobs: 8 run, 0 reused" in done.stdout
    result = json.loads((out / "sweep.json").read_text())
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "sweep.md").read_text()
    bundle = load(default_bundle())
    assert len(result["rows"]) == 8
    for row in result["rows"]:
        cfg = config_for_bundle(bundle, rows=row["rows"], cols=row["cols"]).replace(
            rescale_lanes=row["rescale_lanes"], max_batch=row["batch"])
        model = network_cycles(bundle, cfg, 16)
        cycles = sum(c.clocks for c in model.values()) / 16
        assert row["estimate"]["cycles_per_image"] == round(cycles, 1)
        assert row["estimate"]["images_per_s"] == round(50e6 / cycles, 1)
        assert row["estimate"]["layer_batches"] == {
            la.name: min(row["batch"], cfg.max_m // la.positions) for la in bundle.layers}
        assert row["rescale_lanes"] in (1, row["cols"])
        assert row["accuracy"] == pytest.approx(100 * bundle.meta["test_accuracy"], abs=0.005)
        assert f"| default | {row['array']} | {row['rescale_lanes']} | {row['batch']} |" in table
    assert any(r["pareto"] for r in result["rows"])
    # Again, told to use a cluster that is not there: everything comes from the store.
    again = asqgen("sweep", str(path), "--cluster", "tcp://127.0.0.1:9", "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert "8 jobs: 0 run, 8 reused" in again.stdout
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    assert rows == result["rows"]


def test_a_worker_killed_in_the_middle_of_a_sweep(tmp_path):
    # 4x4 arrays over 4096 images: about two seconds a point, long enough to kill one.
    spec = load_spec(_file(tmp_path, {**SMALL, "arrays": ["4x4"], "images": 4096}))
    store = Store(tmp_path / "store")
    killed, threads = [], []

    def kill_a_busy_worker(client):
        pids = client.run(os.getpid)

        def watch():
            for _ in range(600):
                events = client.get_events(START_TOPIC)
                if events:
                    _, (_, key, address) = events[0]
                    time.sleep(0.3)                         # into the job
                    os.kill(pids[address], signal.SIGKILL)
                    killed.append(key)
                    return
                time.sleep(0.05)

        threads.append(threading.Thread(target=watch, daemon=True))
        threads[0].start()

    try:
        result = run_sweep(spec, store, workers=2, on_start=kill_a_busy_worker)
    finally:
        for t in threads:
            t.join(timeout=30)
    assert len(killed) == 1
    counts = result["job_counts"]
    assert counts == {"jobs": 4, "run": 4, "reused": 0, "retried": 1, "failed": 0}
    assert all(r["estimate"] is not None for r in result["rows"])
    stored = sorted(p.name for p in (tmp_path / "store").iterdir())
    assert len(stored) == 4 and all(name.endswith(".json") for name in stored)
    assert f"{killed[0]}.json" in stored


@pytest.mark.parametrize("spec, message", [
    ({"arrays": ["8by8"]}, "'arrays' takes sizes like \"8x8\" (rows x cols), not '8by8'"),
    ({"batch": [1]}, "unknown key 'batch' (known: arrays, batches, boards, bundles, clock_mhz, "
                     "images, rescale_lanes, sim_images, synthesis)"),
    ({"rescale_lanes": [3]}, "4x4, 3 lanes, batch 16: rescale_lanes must divide cols (4), "
                             "not 3"),
    ({"batches": [1, 1]}, "'batches' lists a value twice: [1, 1]"),
    ({"batches": []}, "'batches' must be a non-empty list, not []"),
    ({"boards": ["de10"]}, "'boards' takes "),
    ({"clock_mhz": 0}, "'clock_mhz' takes a frequency above 0 and up to 1000 MHz, not 0"),
    ({"synthesis": "yes"}, "'synthesis' takes true or false, not 'yes'"),
    ({"sim_images": -1}, "'sim_images' takes integers from 0 or more, not -1"),
])
def test_a_bad_sweep_file_is_refused_before_any_job(tmp_path, spec, message):
    path = _file(tmp_path, {"arrays": ["4x4"], **spec})
    with pytest.raises(UsageError) as info:      # no cluster to reach: it fails before
        run_sweep(load_spec(path), Store(tmp_path / "store"), cluster="tcp://127.0.0.1:9")
    assert str(info.value).startswith(f"{path}: ") or str(info.value).startswith("4x4")
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "store").exists()


def test_a_bad_sweep_file_is_one_line_on_the_command_line(tmp_path):
    path = tmp_path / "sweep.json"
    path.write_text("{\"arrays\": [\"4x4\"],}")
    done = asqgen("sweep", str(path), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert done.stderr == (f"asqgen: error: {path}: not JSON (Expecting property name "
                           f"enclosed in double quotes: line 1 column 20 (char 19))\n")
    assert done.stdout == "" and not (tmp_path / "out").exists()


def test_a_bad_bundle_in_a_sweep_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    path = _file(tmp_path, {"bundles": ["empty"]})
    done = asqgen("sweep", str(path), "--out", str(tmp_path / "out"))
    assert done.returncode == 3
    assert done.stderr == f"asqgen: error: {tmp_path / 'empty'}: no such bundle folder\n" or \
        done.stderr == f"asqgen: error: {tmp_path / 'empty' / 'manifest.json'}: missing\n"
    assert not (tmp_path / "out").exists()


def test_pareto_front():
    pairs = [(10, 5), (20, 9), (20, 7), (15, 5), (30, 9), (5, 1)]
    assert pareto(pairs) == [0, 1, 5]


@pytest.mark.parametrize("address, status, line", [
    ("nonsense::", 2, "asqgen: error: --cluster nonsense::: invalid address 'nonsense::'; maybe: "
                      "ipv6 needs brackets like [::1]"),
    ("tcp://127.0.0.1:9", 5, "asqgen: error: cannot connect to tcp://127.0.0.1:9: Timed out "
                             "trying to connect to tcp://127.0.0.1:9 after 10 s"),
])
def test_a_cluster_that_cannot_be_reached_is_one_line(tmp_path, address, status, line):
    path = _file(tmp_path, {"arrays": ["4x4"]})
    done = asqgen("sweep", str(path), "--cluster", address, "--out", str(tmp_path / "out"))
    assert done.returncode == status
    assert done.stderr == line + "\n"
    assert not (tmp_path / "out").exists()


def _running_in_group(pgid):
    """The processes of the process group ``pgid`` that are not zombies (a worker that ended
    after the command did waits for init to reap it)."""
    from pathlib import Path

    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def test_ctrl_c_stops_a_sweep_in_one_line_and_a_later_run_resumes(tmp_path):
    """SIGINT to the whole process group, as a terminal's Ctrl-C sends it: the command and its
    local workers stop, one line and status 130, nothing left running; the next run reuses
    what finished."""
    import subprocess
    import sys

    path = _file(tmp_path, {**SMALL, "arrays": ["4x4"], "images": 4096})
    out = tmp_path / "out"
    command = [sys.executable, "-m", "asqgen", "sweep", str(path), "--out", str(out)]
    p = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for _ in range(1200):                          # until the first result is stored
            if list((out / "jobs").glob("*.json")) or p.poll() is not None:
                break
            time.sleep(0.1)
        os.killpg(p.pid, signal.SIGINT)
        stdout, stderr = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 130, stderr
    assert stderr == "asqgen: interrupted\n"                 # no worker's traceback
    for _ in range(100):                                    # no worker left running
        if not _running_in_group(p.pid):
            break
        time.sleep(0.1)
    assert _running_in_group(p.pid) == []
    done = len(list((out / "jobs").glob("*.json")))
    assert 1 <= done < 4 and not (out / "sweep.md").exists()
    again = asqgen("sweep", str(path), "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert f"4 jobs: {4 - done} run, {done} reused" in again.stdout
