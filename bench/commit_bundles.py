"""Copy trained bundles into ``export/models/<name>/`` with their first 16 reference test
images, so that ``asqgen sim --bundle export/models/<name>`` and ``asqgen compare`` run on a
fresh clone without the data set (the bundle's arrays are deflated).

    ./dev python bench/commit_bundles.py out/resnet8/bundle out/resnet20/bundle ...

Each source is a bundle that ``asqgen train --data fashion-mnist --model NAME --out out/NAME``
wrote; the name is its ``meta.model``. Prints each copy's size.
"""

import argparse
import sys
from pathlib import Path

from core.bundle import load, save

ROOT = Path(__file__).resolve().parents[1]
IMAGES = 16


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundles", nargs="+", help="bundle folders to copy")
    p.add_argument("--images", type=int, default=IMAGES, help="reference images kept (16)")
    args = p.parse_args(argv)
    for folder in args.bundles:
        bundle = load(folder)
        name = bundle.meta.get("model")
        if not name:
            sys.exit(f"{folder}: its meta names no model")
        out = save(bundle.trimmed(args.images), ROOT / "export" / "models" / name)
        size = sum(f.stat().st_size for f in out.iterdir())
        print(f"{folder} -> {out.relative_to(ROOT)}: {args.images} reference images, "
              f"{size / 1e6:.2f} MB, test accuracy {bundle.meta.get('test_accuracy')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
