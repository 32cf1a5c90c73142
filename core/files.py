"""Files written atomically, and ``.npz`` archives read safely.

Writing: ``write_bytes``/``write_text`` write a temporary file beside the target, flush it to
disk and rename it over the target, so a reader (or a run killed half-way) sees the old file or
the new one, never a part. ``replace_folder`` does the same for a folder of files: the new
folder is written beside the old one, which is kept until the new one is complete.

Reading: ``read_npz`` reads an ``.npz`` with no pickle and no allocation before the sizes are
checked: every zip member must be a ``.npy`` file, stored or deflated, whose header (shape,
dtype) agrees with its size and stays under ``MAX_ARRAY_BYTES``; anything else raises the given
error class with one line.
"""

import io
import os
import shutil
import tempfile
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import OutputError

__all__ = ["write_bytes", "write_text", "replace_folder", "write_npz", "read_npz",
           "MAX_ARRAY_BYTES", "MAX_MEMBERS"]

MAX_ARRAY_BYTES = 1 << 30        # 1 GiB: no array of this project comes near
MAX_MEMBERS = 10_000
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)   # fixed, so the same arrays give the same bytes


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes(path, data):
    """Write ``data`` to ``path`` through a temporary file and a rename; return ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({e.strerror or e})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise OutputError(f"{path}: cannot write ({e.strerror or e})") from None
        raise
    _fsync_dir(path.parent)
    return path


def write_text(path, text):
    return write_bytes(path, text.encode())


def write_figure(path, fig):
    """A matplotlib figure as a PNG at ``path``, written atomically; the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return write_bytes(Path(path), buffer.getvalue())


def write_report(folder, stem, markdown, result):
    """``STEM.md`` (the table) and ``STEM.json`` (``result``) in ``folder``, each written
    atomically; returns their paths."""
    import json

    folder = Path(folder)
    md, js = folder / f"{stem}.md", folder / f"{stem}.json"
    write_text(md, markdown)
    write_text(js, json.dumps(result, indent=1) + "\n")
    return md, js


@contextmanager
def replace_folder(folder, *, allowed=None):
    """Yield a temporary folder to fill; on success it replaces ``folder``.

    ``allowed``: the file names that ``folder`` may hold if it exists; an existing folder with
    anything else in it is not replaced (``OutputError``), so that a user's other files are
    never deleted. If the block raises (or the process dies), ``folder`` is left as it was.
    """
    folder = Path(folder)
    if folder.exists():
        if not folder.is_dir():
            raise OutputError(f"{folder}: exists and is not a folder")
        if allowed is not None:
            other = sorted(p.name for p in folder.iterdir() if p.name not in allowed)
            if other:
                raise OutputError(f"{folder}: exists and holds {other[0]!r}, which is not part "
                                  f"of a bundle; refusing to replace it")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".new"))
    except OSError as e:
        raise OutputError(f"{folder}: cannot write ({e.strerror or e})") from None
    try:
        yield tmp
        for p in tmp.iterdir():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        old = None
        if folder.exists():
            old = folder.parent / f".{folder.name}.{os.getpid()}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
        os.replace(tmp, folder)
        _fsync_dir(folder.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and not isinstance(e, OutputError):
            raise OutputError(f"{folder}: cannot write ({e.strerror or e})") from None
        raise


def npz_bytes(arrays, *, compress=False):
    """The bytes of an ``.npz`` of ``arrays`` (a dict), members in the dict's order, stored
    (or deflated, with ``compress``), with a fixed date: the same arrays always give the same
    bytes."""
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w") as z:
        for name, value in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.compress_type = method         # a ZipInfo's own method, not the archive's
            z.writestr(info, member.getvalue(), compresslevel=9 if compress else None)
    return buf.getvalue()


def write_npz(path, arrays):
    """Write ``arrays`` as an ``.npz`` atomically (see ``npz_bytes``)."""
    return write_bytes(path, npz_bytes(arrays))


def read_npz(path, error):
    """The arrays of the ``.npz`` at ``path`` as a dict (member order); every problem raises
    ``error`` (an exception class) with one line naming ``path``."""
    path = Path(path)
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise error(f"{path}: unreadable or truncated ({e})") from None
    arrays = {}
    with z:
        infos = z.infolist()
        if len(infos) > MAX_MEMBERS:
            raise error(f"{path}: {len(infos)} members, more than {MAX_MEMBERS}")
        for info in infos:
            name = info.filename
            where = f"{path}: member {name!r}"
            if info.is_dir() or not name.endswith(".npy"):
                raise error(f"{where} is not a .npy array")
            key = name[:-4]
            if key in arrays:
                raise error(f"{where} appears twice")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise error(f"{where} uses an unsupported compression "
                            f"(method {info.compress_type})")
            if info.file_size > MAX_ARRAY_BYTES + 4096:
                raise error(f"{where} is {info.file_size} bytes, more than allowed")
            try:
                with z.open(info) as f:
                    arrays[key] = _read_npy(f, info.file_size, where, error)
            except error:
                raise
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, zipfile.LargeZipFile,
                    NotImplementedError, zlib.error) as e:     # zlib: a corrupt deflated member
                raise error(f"{where}: unreadable or truncated ({e})") from None
    return arrays


def _read_npy(f, size, where, error):
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:
            raise ValueError(f"version {version}")
    except (ValueError, SyntaxError, TypeError, OverflowError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise error(f"{where} has no valid .npy header ({first})") from None
    if dtype.hasobject:
        raise error(f"{where} holds Python objects (it would need pickle)")
    if any(not isinstance(n, int) or n < 0 for n in shape):
        raise error(f"{where} declares the shape {shape}")
    count = 1
    for n in shape:
        count *= n
    nbytes = count * dtype.itemsize
    if nbytes > MAX_ARRAY_BYTES:
        raise error(f"{where} declares {nbytes} bytes (shape {shape}), more than "
                    f"{MAX_ARRAY_BYTES}")
    header = f.tell()
    if header + nbytes != size:
        raise error(f"{where} holds {size - header} data bytes, but its header declares "
                    f"{nbytes} (shape {shape}, {dtype})")
    data = f.read(nbytes)
    if len(data) != nbytes:
        raise error(f"{where} is truncated")
    a = np.frombuffer(data, dtype=dtype, count=count)
    return a.reshape(shape, order="F" if fortran else "C").copy()
