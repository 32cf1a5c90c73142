"""Interrupted and concurrent runs: a killed write leaves the old file or bundle (never a part),
and two self-checks on one output folder do not mix their files."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from core import bundle as B
from core import files

from .bundles import random_bundle


def test_an_interrupted_save_keeps_the_old_bundle(tmp_path, monkeypatch):
    folder = tmp_path / "bundle"
    B.save(random_bundle(seed=1), folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def interrupted(arrays, **options):
        raise KeyboardInterrupt
    monkeypatch.setattr(B, "npz_bytes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        B.save(random_bundle(seed=2), folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]      # the temporary one is gone


def _killed_python(code, cwd, at=1):
    """Run ``code`` in a Python that kills itself (SIGKILL) at its ``at``-th ``os.replace``:
    the moment a write would become visible."""
    prelude = textwrap.dedent(f"""
        import os, signal
        calls, replace = [], os.replace
        def die(*args):
            calls.append(args)
            if len(calls) == {at}:
                os.kill(os.getpid(), signal.SIGKILL)
            replace(*args)
        os.replace = die
    """)
    proc = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=cwd,
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def test_a_killed_save_leaves_the_old_bundle_loadable(tmp_path):
    folder = tmp_path / "bundle"
    B.save(random_bundle(seed=1), folder)
    _killed_python(f"""
        from core.bundle import save
        from tests.bundles import random_bundle
        save(random_bundle(seed=2, c1=8), {str(folder)!r})
    """, cwd=tmp_path)
    old = B.load(folder)
    assert np.array_equal(old.layers[0].weight, random_bundle(seed=1).layers[0].weight)


def test_a_save_killed_between_its_renames_leaves_no_part(tmp_path):
    """Killed after the old bundle moved aside and before the new one moved in: no bundle at
    the folder (never a half-written one), the old one complete beside it."""
    folder = tmp_path / "bundle"
    B.save(random_bundle(seed=1), folder)
    _killed_python(f"""
        from core.bundle import save
        from tests.bundles import random_bundle
        save(random_bundle(seed=2, c1=8), {str(folder)!r})
    """, cwd=tmp_path, at=2)
    with pytest.raises(B.BundleError, match=r"bundle: no such bundle folder$"):
        B.load(folder)
    (old,) = tmp_path.glob(".bundle.*.old")
    assert B.load(old).layers[0].out_channels == 4


def test_a_killed_first_save_leaves_no_bundle(tmp_path):
    _killed_python(f"""
        from core.bundle import save
        from tests.bundles import random_bundle
        save(random_bundle(), {str(tmp_path / "new")!r})
    """, cwd=tmp_path)
    with pytest.raises(B.BundleError, match=r"new: no such bundle folder$"):
        B.load(tmp_path / "new")


def test_a_killed_file_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "model.json"
    path.write_text("old")
    _killed_python(f"""
        from core.files import write_text
        write_text({str(path)!r}, "new" * 1000)
    """, cwd=tmp_path)
    assert path.read_text() == "old"


def test_npz_bytes_are_reproducible_and_readable(tmp_path):
    arrays = {"a": np.arange(6).reshape(2, 3), "b": np.array([1.5, -2.0])}
    assert files.npz_bytes(arrays) == files.npz_bytes(dict(arrays))
    files.write_npz(tmp_path / "x.npz", arrays)
    got = files.read_npz(tmp_path / "x.npz", ValueError)
    with np.load(tmp_path / "x.npz", allow_pickle=False) as data:
        assert sorted(data.files) == ["a", "b"]
    assert all(np.array_equal(got[k], arrays[k]) and got[k].dtype == arrays[k].dtype
               for k in arrays)


def test_two_selfchecks_on_one_output_folder(build_root):
    """Different seeds, one ``--out``, at the same time: both pass (each run has its own job
    and result files; the Verilator build is shared under a lock)."""
    procs = [subprocess.Popen([sys.executable, "-m", "asqgen", "selfcheck", "--rows", "2",
                               "--cols", "3", "--seed", str(seed), "--out", str(build_root)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for seed in (1, 2)]
    for seed, proc in zip((1, 2), procs):
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        assert f"seed {seed}" in out
        assert out.rstrip().endswith("PASS: the RTL equals the golden model bit for bit")
