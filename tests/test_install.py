"""A user's install: the project built and installed non-editably (``pip install --no-deps
--target``) beside the environment's other packages runs the main job from another folder,
with the default model found as package data."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP = shutil.ignore_patterns(".git", ".venv", "out", "build", "*.egg-info", "__pycache__",
                              ".pytest_cache", ".hypothesis")


def test_installed_copy_runs_the_main_job(tmp_path, build_root):
    source, target, elsewhere = tmp_path / "source", tmp_path / "site", tmp_path / "elsewhere"
    shutil.copytree(ROOT, source, ignore=SKIP)          # pip builds in place: not in the clone
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(source)],
                   check=True, capture_output=True, text=True)
    assert (target / "export" / "default_model" / "bundle" / "manifest.json").is_file()
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=str(target))
    where = subprocess.run([sys.executable, "-c", "import asqgen, core, hw, gen, sim, export; "
                            "print(sim.__file__, export.__file__)"], cwd=elsewhere, env=env,
                           capture_output=True, text=True, check=True)
    assert all(p.startswith(str(target)) for p in where.stdout.split()), where.stdout
    # The suite's build folder: the installed sources are the clone's, byte for byte, so the
    # harness's build key is the same and a build of another test is reused.
    result = subprocess.run([sys.executable, "-m", "asqgen", "sim", "--images", "2", "--quiet",
                             "--out", str(build_root)], cwd=elsewhere, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (f"asqgen sim: {target}/export/default_model/bundle, 2 reference inputs "
                        f"on Verilator")
    assert lines[-1] == "PASS: every layer of the RTL equals the golden model"
    assert not any(elsewhere.iterdir())
