"""Resumable blockwise runs: where finished blocks are recorded, and run fingerprints.

Layout of the state of a run writing the array ``GROUP/0`` (an OME-Zarr level)::

    GROUP/.vemkit-blockwise/        a (hidden) Zarr group, so Zarr lists it quietly
      0/                            one folder per target array
        fingerprint.json            what produced the blocks: fn, kwargs, sources, tiling
        map/0.0.0                   map_layer: one marker per finished block
        label/0.0.0                 label_blockwise: block labelled ({"n": labels})
        faces/0.0.0, views/0.0.0    ... its boundary labels for matching (scratch)
        local-ids.zarr              ... its labels renumbered 1..n (scratch)
        mapping.npy                 ... provisional id -> final id, once matched
        relabel/0.0.0               ... final ids written
        complete.json               ... all done (scratch data removed)

A marker is written *after* the block's data has been written to the target, by the
worker that computed it, with an atomic rename; so a crash (even ``SIGKILL``) at any moment
leaves only markers of complete blocks, and a re-run with ``resume=True`` recomputes every
block without a marker. The fingerprint is compared before any work: a run with another
function, other parameters, other sources or another tiling raises
:class:`ResumeMismatchError` instead of silently mixing stale blocks into the result.

Function identity is recorded as its qualified name plus a digest of its byte code,
defaults and the immutable values it closes over (mutable ones — caches, counters,
models — only by type); :func:`functools.partial` objects include their arguments; other
callable objects are identified by their type and ``repr`` when the repr holds no memory
address (define a ``__vemkit_fingerprint__()`` method returning JSON-able data to
control it). ``fn_kwargs`` are compared by value (arrays by a digest of their contents).
Sources are identified by location (file and array path), shape, dtype, offset and voxel
size — not by content, except NumPy arrays, which are hashed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import re
import threading
import types
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from zarr.storage import LocalStore, MemoryStore

from vemkit.errors import OutputExistsError
from vemkit.io.atomic import remove_path

__all__ = [
    "STATE_FOLDER",
    "BlockLog",
    "DirectoryState",
    "MemoryState",
    "ResumeMismatchError",
    "RunState",
    "begin_run",
    "describe_callable",
    "fingerprint_value",
]

logger = logging.getLogger(__name__)

#: Hidden folder (a Zarr group) next to a target array that holds blockwise run state.
STATE_FOLDER = ".vemkit-blockwise"
_FINGERPRINT_KEY = "fingerprint.json"
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


class ResumeMismatchError(OutputExistsError):
    """The target holds blocks from a run with other parameters than the one requested."""


class RunState(Protocol):
    """Small key-value store for the state of one blockwise run (markers, side results)."""

    @property
    def is_shared(self) -> bool:
        """Whether other processes (workers) see the same state (a file system path)."""

    def read(self, key: str) -> bytes | None:
        """Return the bytes stored under ``key`` (None when absent)."""

    def write(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically (readers see old or new, never half)."""

    def names(self, prefix: str) -> list[str]:
        """Names of the entries directly under the folder ``prefix``."""

    def clear(self, prefix: str = "") -> None:
        """Remove ``prefix`` and everything under it (all state when empty)."""

    def zarr_store(self, key: str) -> Any:
        """Return a Zarr store for a scratch array at ``key``."""


@dataclass(frozen=True)
class DirectoryState:
    """Run state in a folder; workers on other machines need it on a shared file system."""

    root: Path

    @property
    def is_shared(self) -> bool:  # noqa: D102
        return True

    def read(self, key: str) -> bytes | None:  # noqa: D102
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, key: str, data: bytes) -> None:  # noqa: D102
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def names(self, prefix: str) -> list[str]:  # noqa: D102
        folder = self.root / prefix
        try:
            return [n for n in os.listdir(folder) if not n.startswith(".")]
        except FileNotFoundError:
            return []

    def clear(self, prefix: str = "") -> None:  # noqa: D102
        remove_path(self.root / prefix if prefix else self.root)

    def zarr_store(self, key: str) -> Any:  # noqa: D102
        (self.root / key).parent.mkdir(parents=True, exist_ok=True)
        return LocalStore(self.root / key)


@dataclass
class MemoryState:
    """Run state held in this process (in-memory targets; nothing survives the run)."""

    entries: dict[str, bytes] = field(default_factory=dict)
    stores: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def is_shared(self) -> bool:  # noqa: D102
        return False

    def read(self, key: str) -> bytes | None:  # noqa: D102
        return self.entries.get(key)

    def write(self, key: str, data: bytes) -> None:  # noqa: D102
        with self._lock:
            self.entries[key] = data

    def names(self, prefix: str) -> list[str]:  # noqa: D102
        start = prefix.rstrip("/") + "/"
        with self._lock:
            keys = list(self.entries)
        return [k[len(start) :] for k in keys if k.startswith(start) and "/" not in k[len(start) :]]

    def clear(self, prefix: str = "") -> None:  # noqa: D102
        def inside(key: str) -> bool:
            return not prefix or key == prefix or key.startswith(prefix.rstrip("/") + "/")

        with self._lock:
            for key in [k for k in self.entries if inside(k)]:
                del self.entries[key]
            for key in [k for k in self.stores if inside(k)]:
                del self.stores[key]

    def zarr_store(self, key: str) -> Any:  # noqa: D102
        with self._lock:
            return self.stores.setdefault(key, MemoryStore())

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError(
            "in-memory blockwise state cannot be sent to other processes; write to a Zarr "
            "target (e.g. vemkit.io.ome_zarr.create_ome_zarr) to use processes or a cluster"
        )


@dataclass(frozen=True)
class BlockLog:
    """Markers of the finished blocks of one stage of a run.

    Parameters
    ----------
    state : RunState
        Where the markers live.
    stage : str
        Name of the stage (a folder in ``state``), e.g. ``"map"`` or ``"label"``.
    """

    state: Any
    stage: str

    def mark(self, key: str, info: dict[str, Any] | None = None) -> None:
        """Record block ``key`` as finished, with a small JSON-able result ``info``."""
        self.state.write(f"{self.stage}/{key}", json.dumps(info or {}).encode())

    def done(self) -> dict[str, dict[str, Any]]:
        """Every finished block: key → the ``info`` recorded with it."""
        result = {}
        for key in self.state.names(self.stage):
            raw = self.state.read(f"{self.stage}/{key}")
            if raw is None:  # removed meanwhile
                continue
            try:
                result[key] = json.loads(raw.decode())
            except (ValueError, UnicodeDecodeError):
                logger.warning("ignoring damaged block marker %s/%s", self.stage, key)
        return result

    def clear(self) -> None:
        """Forget every finished block of this stage."""
        self.state.clear(self.stage)


def begin_run(state: RunState, fingerprint: dict[str, Any], *, resume: bool, where: str) -> bool:
    """Start or resume a run: compare fingerprints, reset the state when starting afresh.

    Parameters
    ----------
    state : RunState
        The run's state.
    fingerprint : dict
        JSON-able description of what the run computes (see :func:`fingerprint_value`).
    resume : bool
        Keep finished blocks of an identical earlier run; False clears all state.
    where : str
        The target, for messages.

    Returns
    -------
    bool
        True when an earlier identical run's blocks are kept.

    Raises
    ------
    ResumeMismatchError
        ``resume`` is true and the earlier run had another fingerprint.
    """
    wanted = json.loads(json.dumps(fingerprint, sort_keys=True))
    raw = state.read(_FINGERPRINT_KEY)
    if resume and raw is not None:
        try:
            previous = json.loads(raw.decode())
        except (ValueError, UnicodeDecodeError):
            previous = None
        if not isinstance(previous, dict):  # damaged: nothing can be trusted
            previous = None
        if previous == wanted:
            logger.info("resuming blockwise run into %s", where)
            return True
        if previous is not None:
            changed = sorted(
                k for k in set(previous) | set(wanted) if previous.get(k) != wanted.get(k)
            )
            raise ResumeMismatchError(
                f"{where} holds blocks computed with other settings (changed: "
                f"{', '.join(changed)}); they cannot be reused. Recompute every block with "
                "resume=False (CLI: --overwrite), or write to a new output"
            )
    state.clear()
    state.write(_FINGERPRINT_KEY, json.dumps(wanted, sort_keys=True, indent=1).encode())
    return False


def fingerprint_value(value: Any) -> Any:
    """Return a JSON-able stand-in for ``value`` that changes whenever the value does.

    Examples
    --------
    >>> fingerprint_value({"sigma": 2.0, "sizes": (1, 2)})
    {'sigma': 2.0, 'sizes': [1, 2]}
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, np.generic):
        return fingerprint_value(value.item())
    if isinstance(value, np.ndarray):
        return {
            "array": _digest_array(value),
            "shape": list(value.shape),
            "dtype": str(value.dtype),
        }
    if isinstance(value, list | tuple):
        return [fingerprint_value(v) for v in value]
    if isinstance(value, dict):
        return {
            str(k): fingerprint_value(v) for k, v in sorted(value.items(), key=lambda i: str(i[0]))
        }
    if isinstance(value, set | frozenset):
        return sorted((fingerprint_value(v) for v in value), key=repr)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if callable(value) and not hasattr(value, "__dataclass_fields__"):
        return describe_callable(value)
    text = repr(value)
    if _ADDRESS.search(text):
        # a repr with a memory address differs in every process: use the type only
        return f"<{type(value).__module__}.{type(value).__qualname__}>"
    return text


def describe_callable(fn: Callable[..., Any]) -> Any:
    """Return the JSON-able identity of a function: name plus digest of code and values."""
    custom = getattr(fn, "__vemkit_fingerprint__", None)
    if callable(custom):
        return fingerprint_value(custom())
    if isinstance(fn, functools.partial):
        return {
            "partial": describe_callable(fn.func),
            "args": fingerprint_value(fn.args),
            "keywords": fingerprint_value(fn.keywords),
        }
    if isinstance(fn, types.MethodType):
        return {"method": describe_callable(fn.__func__), "self": fingerprint_value(fn.__self__)}
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"
    code = getattr(fn, "__code__", None)
    if code is None:  # builtins, ufuncs, callable objects
        if isinstance(fn, types.BuiltinFunctionType | np.ufunc):
            return name
        return {
            "object": f"{type(fn).__module__}.{type(fn).__qualname__}",
            "repr": fingerprint_value(repr(fn)),
        }
    digest = hashlib.sha1(usedforsecurity=False)
    _hash_code(code, digest)
    extras = {
        "defaults": fingerprint_value(getattr(fn, "__defaults__", None)),
        "kwdefaults": fingerprint_value(getattr(fn, "__kwdefaults__", None)),
        "closure": [
            _closure_value(_cell_value(cell)) for cell in (getattr(fn, "__closure__", None) or ())
        ],
    }
    digest.update(json.dumps(extras, sort_keys=True, default=repr).encode())
    return {"function": name, "digest": digest.hexdigest()}


def _closure_value(value: Any) -> Any:
    """Fingerprint a closure variable: by value when immutable, else by type only.

    Mutable objects a function closes over (counters, caches, loaded models) change while
    it runs; comparing them would make every resume fail.
    """
    immutable = (type(None), bool, int, float, str, bytes, tuple, frozenset, np.ndarray, np.generic)
    if isinstance(value, immutable) or callable(value):
        return fingerprint_value(value)
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


def _cell_value(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # empty cell
        return None


def _hash_code(code: types.CodeType, digest: Any) -> None:
    digest.update(code.co_code)
    digest.update(repr(code.co_names).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _hash_code(const, digest)
        elif isinstance(const, frozenset):
            digest.update(repr(sorted(const, key=repr)).encode())
        else:
            digest.update(repr(const).encode())


def _digest_array(array: np.ndarray) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    flat = np.ascontiguousarray(array).reshape(-1)
    digest.update(flat.view(np.uint8).data if flat.dtype != object else repr(flat).encode())
    return digest.hexdigest()
