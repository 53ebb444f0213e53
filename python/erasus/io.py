"""Crash-safe outputs: atomic file writes and run folders sealed by a manifest.

Every file erasus writes goes to a temporary file in the same directory, is flushed and ``fsync``-ed, and
is then renamed over its destination (``os.replace`` is atomic on POSIX and Windows), so a reader sees the
old file or the new one, never a truncated one. A *run folder* (``ErasusUnlearner.save``, ``erasus demo``)
holds several files that must agree; it is sealed by ``manifest.json``, written last, which lists every
file with its size and SHA-256. A save first removes the old manifest, so after a kill at any point the
folder either has a manifest matching every file or none at all, and :func:`verify_run_folder` refuses it;
a marker file (``.erasus-writing``) present for the whole write lets :func:`verify_file` refuse a single file
of such a folder too.
Temporaries left by a killed writer start with ``.`` and end in ``.tmp``; the next write into the folder
removes them. This is the pattern of ``safetensors``/``huggingface_hub`` downloads and of ``git``'s
lockfiles, with the fsync-then-rename ordering of ext4's ``auto_da_alloc`` discussion.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .errors import InvalidInputError

__all__ = ["MANIFEST", "atomic_path", "atomic_write", "check_writable", "clean_stale", "sha256_of", "verify_file",
           "verify_run_folder", "write_run_folder"]

MANIFEST = "manifest.json"
# present from the start of a run-folder write until its manifest is in place: marks the folder mid-write
WRITING = ".erasus-writing"
_TMP_SUFFIX = ".tmp"
_FORMAT = "erasus-run-folder/1"


def _fsync_dir(folder: Path) -> None:
    # the rename itself must reach the disk too; directories cannot be opened this way on Windows
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block exits normally the file is fsync-ed, given
    ``mode`` and renamed over ``path``. On an exception it is deleted and ``path`` is left as it was."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=_TMP_SUFFIX, dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        # mkstemp creates 0600 files; outputs are meant to be shared like any file the user writes
        os.chmod(tmp, mode & ~_umask())
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    return Path(path)


def sha256_of(path: str | os.PathLike[str], *, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def clean_stale(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove temporaries (``.NAME.XXXX.tmp``) a killed writer left in ``folder``; returns what was removed."""
    removed = []
    root = Path(folder)
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith(".") and p.name.endswith(_TMP_SUFFIX) and p.is_file():
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    removed.append(p)
    return removed


def check_writable(folder: str | os.PathLike[str]) -> Path:
    """Refuse an output folder that cannot be created or written, before any work is done."""
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"output {str(out)!r} exists and is not a folder")
    probe_root = out
    while not probe_root.exists():
        probe_root = probe_root.parent
    if not probe_root.is_dir() or not os.access(probe_root, os.W_OK | os.X_OK):
        raise InvalidInputError(f"cannot write the output folder {str(out)!r}: {str(probe_root)!r} is not writable")
    return out


def write_run_folder(folder: str | os.PathLike[str], writers: Mapping[str, Callable[[Path], Any]],
                     *, meta: Mapping[str, Any] | None = None) -> Path:
    """Write a run folder: ``writers[name](tmp_path)`` writes file ``name``; then the manifest seals them.

    Files not in ``writers`` are left alone (a folder may hold other things); the manifest lists only ours.
    """
    out = check_writable(folder)
    out.mkdir(parents=True, exist_ok=True)
    clean_stale(out)
    bad = [n for n in writers if n == MANIFEST or "/" in n or "\\" in n or n.startswith(".")]
    if bad:
        raise InvalidInputError(f"run-folder file names must be plain and not {MANIFEST!r}: {bad}")
    # unseal first: from here until the new manifest lands, the folder reads as incomplete
    atomic_write(out / WRITING, "")
    with contextlib.suppress(FileNotFoundError):
        (out / MANIFEST).unlink()
        _fsync_dir(out)
    entries = {}
    for name, write in writers.items():
        with atomic_path(out / name) as tmp:
            write(tmp)
            entries[name] = {"bytes": tmp.stat().st_size, "sha256": sha256_of(tmp)}
    manifest = {"format": _FORMAT, "files": entries, **dict(meta or {})}
    atomic_write(out / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
    with contextlib.suppress(FileNotFoundError):
        (out / WRITING).unlink()
        _fsync_dir(out)
    return out


def verify_file(path: str | os.PathLike[str]) -> Path:
    """Refuse one file of an erasus output folder that is mid-write or does not match its manifest.

    Files of folders erasus did not write (no manifest, no write marker) pass unchecked; a file a manifest
    lists must match its SHA-256; a folder with the write marker must verify completely (its manifest was
    written after every file, so a matching one means the marker is only a leftover of a kill at the end).
    """
    p = Path(path)
    root = p.parent
    if (root / WRITING).exists():
        try:
            verify_run_folder(root)
        except InvalidInputError as exc:
            raise InvalidInputError(
                f"{str(p)!r} belongs to an erasus output folder whose write was interrupted ({exc}); re-run the "
                "command that writes it"
            ) from None
        return p
    manifest = root / MANIFEST
    if manifest.is_file():
        entry = _read_manifest(manifest)["files"].get(p.name)
        if entry is not None and (not p.is_file() or p.stat().st_size != entry.get("bytes")
                                  or sha256_of(p) != entry.get("sha256")):
            raise InvalidInputError(
                f"{str(p)!r} does not match the SHA-256 recorded in {str(manifest)!r} (changed or truncated after "
                "it was written); re-run the command that writes it"
            )
    return p


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text())
        if manifest.get("format") != _FORMAT or not isinstance(manifest.get("files"), dict):
            raise ValueError("unknown format")
    except (ValueError, AttributeError) as exc:
        raise InvalidInputError(f"{str(path)!r} is not an erasus manifest ({exc})") from None
    return manifest


def verify_run_folder(folder: str | os.PathLike[str], *, needs: tuple[str, ...] = ()) -> dict[str, Any]:
    """The manifest of a complete run folder, after checking every listed file's size and SHA-256.

    Raises :class:`InvalidInputError` naming the problem: no folder, no manifest (an interrupted save or a
    folder not written by erasus), a missing, truncated or changed file, or a required file not listed.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InvalidInputError(f"{str(root)!r} is not a run folder (no such directory)")
    path = root / MANIFEST
    if not path.is_file():
        raise InvalidInputError(
            f"{str(root)!r} has no {MANIFEST}: the save that wrote it did not finish (or it was not written by "
            "erasus >= this version); re-run the save"
        )
    manifest = _read_manifest(path)
    files = manifest["files"]
    for name in needs:
        if name not in files:
            raise InvalidInputError(f"{str(root)!r} is incomplete: its manifest does not list {name!r}")
    for name, entry in files.items():
        p = root / name
        if not p.is_file():
            raise InvalidInputError(f"{str(root)!r} is incomplete: {name!r} is listed in {MANIFEST} but missing")
        if p.stat().st_size != entry.get("bytes") or sha256_of(p) != entry.get("sha256"):
            raise InvalidInputError(
                f"{str(root)!r} is inconsistent: {name!r} does not match the SHA-256 recorded in {MANIFEST} "
                "(changed or truncated after the save); re-run the save"
            )
    return manifest
