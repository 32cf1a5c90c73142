"""``asqgen sweep``: a design-space sweep from a JSON file, every stage of every point a job
on Dask; a results table (Markdown, JSON) and a Pareto plot (PNG)."""

import sys
from pathlib import Path

from core.errors import ToolError
from export.jobs import JobProgress, Store, check_engine, where
from export.sweep import load_spec, markdown, plot, run_sweep, write


def run(args):
    spec = load_spec(args.file)
    if not args.no_plot:
        try:
            import matplotlib  # noqa: F401  (checked before the jobs)
        except ImportError:
            raise ToolError("the plot needs matplotlib: ./dev pip install -e '.[plot]' (or "
                            "give --no-plot)") from None
    check_engine()
    stages = ["estimate"] + (["synthesis"] if spec["synthesis"] else []) + (
        [f"sim on {spec['sim_images']} images"] if spec["sim_images"] else [])
    print(f"asqgen sweep: {args.file}: {len(spec['bundles'])} bundle(s) x "
          f"{len(spec['arrays'])} arrays x {len(spec['rescale_lanes'])} rescale lanes x "
          f"{len(spec['batches'])} batches x {len(spec['boards'])} board(s); "
          f"{', '.join(stages)}; {where(args.workers, args.cluster)}", flush=True)
    store = Store(args.store or Path(args.out) / "jobs")

    def done(job, value, error):
        print(f"  {job.label}: " + (f"failed: {error}" if error else "done"), flush=True)

    result = run_sweep(spec, store, workers=args.workers, cluster=args.cluster, log=done,
                       progress=None if args.quiet else JobProgress.for_stream(sys.stderr))
    md, js = write(result, args.out)
    png = None if args.no_plot else plot(result, Path(args.out) / "sweep.png")
    print()
    print(markdown(result))
    c = result["job_counts"]
    print(f"asqgen sweep: {c['jobs']} jobs: {c['run']} run, {c['reused']} reused from "
          f"{store.folder}, {c['retried']} retried, {c['failed']} failed; "
          f"{result['seconds']:.0f} s")
    print(f"  wrote {md}, {js}" + (f" and {png}" if png else ""))
    if result["failed"]:
        raise ToolError(f"{len(result['failed'])} job(s) failed (the finished ones are "
                        f"stored; run again to retry them); {result['failed'][0]}")
    return 0
