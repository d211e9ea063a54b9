"""Reading pickled dataset files without running code from them.

Some datasets ship as pickles: AIST++ motions are a pickled dict of numpy arrays, and the
Motorica skeleton lives in a joblib-pickled scikit-learn/pymo pipeline. `pickle.load` on such a
file runs whatever callables the file names, so a file handed to dancegen must never reach it.
Two readers here, both written by hand because no maintained library reads these formats
without executing them:

- `load_array_pickle(path)`: a pickle of plain data (dicts, lists, tuples, numbers, strings) and
  numpy arrays. Only the handful of numpy functions that rebuild an array may be named; anything
  else (``os.system``, ``builtins.eval``, any class) is refused with a `UserError` before it is
  called.
- `load_inert_joblib(path)`: a joblib file of arbitrary objects, read for its data only. Every
  class or function the file names is replaced by an `Inert` stand-in that records the arguments
  and state it is given and runs nothing; numpy arrays are rebuilt from their bytes (joblib
  writes them raw between pickle opcodes). The result is a tree of `Inert`s, dicts, lists and
  arrays to pick values out of.

Both run on Python's pure-Python unpickler (`pickle._Unpickler`, the implementation joblib
itself extends) so that BUILD can be intercepted: state is only ever applied to numpy arrays and
dtypes (whose ``__setstate__`` reads bytes) or recorded on an `Inert`.
"""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]

_MAX_ARRAY_BYTES = 1 << 31  # 2 GiB: far above any motion file, refuses absurd declared shapes


class _Refused(Exception):
    """Raised inside the unpickler; turned into a UserError naming the file."""


class _NdarrayMarker:
    """Stands in for ``numpy.ndarray`` in the stream: only `_reconstruct` may receive it."""


def _reconstruct(subtype, shape, dtype):
    if subtype is not _NdarrayMarker:
        raise _Refused(f"it rebuilds an array of type {getattr(subtype, '__name__', subtype)!r}")
    # numpy writes an empty placeholder here and the real shape and bytes in the BUILD state
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and 0 <= n <= 1 for n in shape):
        raise _Refused(f"it rebuilds an array with placeholder shape {shape!r}")
    return _multiarray._reconstruct(np.ndarray, shape, dtype)


def _dtype(spec, align=False, copy=False):
    if not isinstance(spec, str):
        raise _Refused(f"it builds a dtype from {type(spec).__name__}")
    return np.dtype(spec, bool(align), bool(copy))


def _scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise _Refused("it builds a numpy scalar of a non-numeric dtype")
    if not isinstance(data, bytes):
        raise _Refused("it builds a numpy scalar from non-bytes")
    return _multiarray.scalar(dtype, data)


def _frombuffer(buf, dtype, shape, order):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise _Refused("it builds an array of Python objects from a buffer")
    if not isinstance(buf, (bytes, bytearray)):
        raise _Refused("it builds an array from a non-bytes buffer")
    return _numeric._frombuffer(buf, dtype, shape, order)


def _codecs_encode(text, encoding="utf-8"):
    # Protocol-2 pickles store bytes as _codecs.encode(str, "latin1").
    if not isinstance(text, str) or encoding != "latin1":
        raise _Refused("it calls _codecs.encode with unexpected arguments")
    return text.encode("latin1")


def _plain_bytes(x):
    if isinstance(x, (bytes, bytearray)):
        return bytes(x)
    return x


# (module, name) -> what the unpickler gets instead of importing it. Old numpy writes
# numpy.core.*, numpy >= 2 writes numpy._core.*; both map to the same guarded functions.
_NUMPY_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _NdarrayMarker,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _codecs_encode,
}
for _core in ("numpy.core", "numpy._core"):
    _NUMPY_GLOBALS[(f"{_core}.multiarray", "_reconstruct")] = _reconstruct
    _NUMPY_GLOBALS[(f"{_core}.multiarray", "scalar")] = _scalar
    _NUMPY_GLOBALS[(f"{_core}.numeric", "_frombuffer")] = _frombuffer


# What REDUCE may call: the guarded functions only (the ndarray marker is not callable).
_CALLABLE = (_reconstruct, _dtype, _scalar, _frombuffer, _codecs_encode)


def _numpy_dtype_class(module: str, name: str):
    """numpy 2 may pickle a dtype through its class (numpy.dtypes.Float64DType)."""
    if module == "numpy.dtypes" and name.endswith("DType"):
        cls = getattr(np.dtypes, name, None)
        if isinstance(cls, type) and issubclass(cls, np.dtype):
            return cls
    return None


class _NumpyUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    """Pure-Python unpickler that resolves only the guarded numpy globals above. Arrays of Python
    objects are refused too (plain data only); the inert joblib reader allows them."""

    object_arrays = False

    def find_class(self, module: str, name: str):
        found = _NUMPY_GLOBALS.get((module, name)) or _numpy_dtype_class(module, name)
        if found is None:
            raise _Refused(f"it references {module}.{name}")
        return found

    def persistent_load(self, pid):
        raise _Refused("it references an external object (persistent id)")

    def load_build(self):
        state = self.stack.pop()
        inst = self.stack[-1]
        if type(inst) is np.ndarray or isinstance(inst, np.dtype):
            inst.__setstate__(_plain_state(state))
            if type(inst) is np.ndarray and inst.dtype.hasobject and not self.object_arrays:
                raise _Refused("it holds an array of Python objects, not of numbers")
        else:
            raise _Refused(f"it sets the state of a {type(inst).__name__}")

    def load_newobj(self):
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args, {}))

    def load_newobj_ex(self):
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args, kwargs))

    def _new(self, cls, args, kwargs):
        if isinstance(cls, type) and issubclass(cls, np.dtype):
            return cls.__new__(cls, *args, **kwargs)
        raise _Refused(f"it creates a {getattr(cls, '__name__', type(cls).__name__)} object")

    def load_reduce(self):
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args)

    def _call(self, func, args):
        if any(func is f for f in _CALLABLE) or (isinstance(func, type) and issubclass(func, np.dtype)):
            return func(*args)
        raise _Refused(f"it calls {getattr(func, '__name__', type(func).__name__)}")

    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]
    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.REDUCE[0]] = load_reduce


def _plain_state(state):
    if isinstance(state, tuple):
        return tuple(_plain_bytes(s) for s in state)
    return state


# What a damaged or crafted pickle makes the pure-Python unpickler raise (struct.error: an opcode's
# argument cut short; RecursionError: numpy's setstate on absurd nesting; OverflowError: huge sizes).
_UNREADABLE = (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
               UnicodeDecodeError, MemoryError, struct.error, OverflowError, RecursionError)


def load_array_pickle(path: str | os.PathLike) -> Any:
    """Load a pickle of plain data and numpy arrays without running code from it.

    Raises UserError naming the file when it references anything else, or is not a pickle.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _NumpyUnpickler(f).load()
    except _Refused as e:
        raise UserError(path, f"refusing to load this pickle: {e}") from None
    except _UNREADABLE as e:
        raise UserError(path, f"not a readable pickle of arrays ({type(e).__name__}: {e})") from None


# --- inert reading of joblib files ---------------------------------------------------------


class Inert:
    """A stand-in for a class or function named in a pickle: records, never runs.

    `Inert.named(module, name)` makes a stand-in *class*; creating it (pickle's NEWOBJ or REDUCE)
    gives an instance with `args`, and BUILD stores the pickled state in `state`. Nothing of the
    real class is imported or called.
    """

    module: str = ""
    qualname: str = ""
    args: tuple = ()
    kwargs: dict = {}
    state: Any = None

    def __init__(self, *args, **kwargs):
        self.args = args
        self.kwargs = kwargs
        self.state: Any = None

    @classmethod
    def named(cls, module: str, name: str) -> type["Inert"]:
        return type(f"Inert[{module}.{name}]", (cls,), {"module": module, "qualname": name})

    @property
    def fullname(self) -> str:
        return f"{self.module}.{self.qualname}"

    def __reduce__(self):  # never pickle a stand-in back out
        raise TypeError("Inert stand-ins are not picklable")

    def __repr__(self) -> str:
        return f"<inert {self.fullname}>"


def find_inert(tree: Any, fullname: str) -> list[Inert]:
    """Every stand-in for `fullname` ("module.name") in a tree that `load_inert_joblib` returned."""
    found: list[Inert] = []
    seen: set[int] = set()
    stack = [tree]
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, Inert):
            if x.fullname == fullname:
                found.append(x)
            stack += [x.state, x.kwargs, x.args]
        elif isinstance(x, dict):
            stack += [v for kv in reversed(list(x.items())) for v in kv[::-1]]
        elif isinstance(x, (list, tuple, set, frozenset)):
            stack += list(x)[::-1]
    return found


class _InertUnpickler(_NumpyUnpickler):
    """Numpy globals are guarded as above; every other global becomes an `Inert` class."""

    object_arrays = True  # joblib's pipelines hold them; their items went through this unpickler

    def __init__(self, file, depth: int = 0):
        super().__init__(file)
        self._file = file
        self._depth = depth
        self._classes: dict[tuple[str, str], type[Inert]] = {}

    def find_class(self, module: str, name: str):
        try:
            return super().find_class(module, name)
        except _Refused:
            pass
        key = (module, name)
        if key not in self._classes:
            self._classes[key] = Inert.named(module, name)
        return self._classes[key]

    def _new(self, cls, args, kwargs):
        if isinstance(cls, type) and issubclass(cls, Inert):
            return cls(*args, **kwargs)
        return super()._new(cls, args, kwargs)

    def load_build(self):
        inst = self.stack[-2]
        if not isinstance(inst, Inert):
            return super().load_build()
        inst.state = self.stack.pop()
        if inst.fullname == "joblib.numpy_pickle.NumpyArrayWrapper":
            self.stack[-1] = self._read_joblib_array(inst)

    def _read_joblib_array(self, wrapper: Inert) -> np.ndarray:
        """The array joblib wrote right after this wrapper (joblib's NumpyArrayWrapper.read_array)."""
        state = wrapper.state if isinstance(wrapper.state, dict) else {}
        dtype, shape, order = state.get("dtype"), state.get("shape"), state.get("order", "C")
        if not isinstance(dtype, np.dtype) or not isinstance(shape, tuple) or order not in ("C", "F"):
            raise _Refused("it holds a joblib array without a valid dtype, shape and order")
        frame = self._unframer.current_frame
        if frame is not None and frame.tell() < len(frame.getbuffer()):
            raise _Refused("it places joblib array data inside a pickle frame")
        if dtype.hasobject:  # an array of Python objects: a nested pickle follows
            if self._depth > 8:
                raise _Refused("it nests arrays of objects too deeply")
            array = _InertUnpickler(self._file, self._depth + 1).load()
            if not isinstance(array, np.ndarray):
                raise _Refused("its joblib object array is not an array")
            return array
        if state.get("numpy_array_alignment_bytes") is not None:
            pad = self._file.read(1)
            if len(pad) != 1:
                raise EOFError("file ends inside a joblib array")
            self._file.read(pad[0])
        count = int(np.prod([int(s) for s in shape], dtype=np.int64))
        nbytes = count * dtype.itemsize
        if count < 0 or nbytes > _MAX_ARRAY_BYTES:
            raise _Refused(f"it declares an array of shape {shape}")
        data = self._file.read(nbytes)
        if len(data) != nbytes:
            raise EOFError("file ends inside a joblib array")
        return np.frombuffer(data, dtype=dtype, count=count).reshape(shape, order=order).copy()

    def _call(self, func, args):
        if isinstance(func, type) and issubclass(func, Inert):
            return func(*args)
        return super()._call(func, args)

    dispatch = dict(_NumpyUnpickler.dispatch)
    dispatch[pickle.BUILD[0]] = load_build


def load_inert_joblib(path: str | os.PathLike) -> Any:
    """Read an uncompressed joblib file for its data, without importing or running anything it names."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            if head[:1] != b"\x80":
                raise UserError(path, "not an uncompressed joblib/pickle file")
            f.seek(0)
            return _InertUnpickler(f).load()
    except _Refused as e:
        raise UserError(path, f"refusing to load this pickle: {e}") from None
    except _UNREADABLE as e:
        raise UserError(path, f"not a readable joblib file ({type(e).__name__}: {e})") from None
