"""The bounds-checked parse of a ``.tflite`` flatbuffer: step 1 of :func:`trec_tflm.spec.validate.validate_model`.

:func:`verified_parse` reads a model with the object API of the one schema (:func:`trec_tflm.spec.model.schema`),
but through a drop-in for ``flatbuffers.table.Table`` whose every read of an offset, vtable, vector or string
must lie inside the bytes; anything else is a :class:`ModelValidationError`. TFLM reads the same fields without
checking them, so an offset out of range there would be a read past the model.
"""

from __future__ import annotations

import threading

import numpy as np
from flatbuffers import encode
from flatbuffers import number_types as N
from flatbuffers import table as fb_table

from trec_tflm.errors import TrecTflmError
from trec_tflm.spec import model as tm

INT32_MAX = 2**31 - 1


class ModelValidationError(tm.TfliteModelError):
    """The model is malformed or breaks a rule; the message names the problem."""


class _OutOfBounds(TrecTflmError):
    pass


_parse_lock = threading.Lock()


def _make_checked_table(base, encode, N, budget: list):
    """A drop-in for ``flatbuffers.table.Table`` whose every read is bounds-checked; ``budget``
    counts reads so a buffer whose offsets share subtables many times over cannot make the object
    API walk for ever."""
    u32 = N.UOffsetTFlags

    class CheckedTable(base):
        __slots__ = ()

        def _at(self, packer, off):
            if budget[0] <= 0:
                raise _OutOfBounds("the flatbuffer's tables reference each other far more often than its size "
                                   "allows (shared or overlapping tables)")
            budget[0] -= 1
            size = packer.size
            if off < 0 or off + size > len(self.Bytes):
                raise _OutOfBounds(f"a {size}-byte field at offset {off} lies outside the {len(self.Bytes)} bytes")
            return packer.unpack_from(self.Bytes, off)[0]

        def Get(self, flags, off):
            return flags.py_type(self._at(flags.packer_type, off))

        def Offset(self, vtableOffset):
            vtable = self.Pos - self._at(N.SOffsetTFlags.packer_type, self.Pos)
            vt_size = self._at(N.VOffsetTFlags.packer_type, vtable)
            obj_size = self._at(N.VOffsetTFlags.packer_type, vtable + 2)
            if vt_size < 4 or vt_size % 2 or vtable + vt_size > len(self.Bytes) or \
                    self.Pos + obj_size > len(self.Bytes):
                raise _OutOfBounds(f"the table at offset {self.Pos} has a vtable (size {vt_size}) or an object "
                                   f"(size {obj_size}) that does not fit the bytes")
            if vtableOffset < vt_size:
                field = self._at(N.VOffsetTFlags.packer_type, vtable + vtableOffset)
                if field and field >= max(obj_size, 4):
                    raise _OutOfBounds(f"a field of the table at offset {self.Pos} lies outside its object")
                return field
            return 0

        def Indirect(self, off):
            return off + self._at(u32.packer_type, off)

        def String(self, off):
            off += self._at(u32.packer_type, off)
            length = self._at(u32.packer_type, off)
            start = off + 4
            # flatbuffers strings are NUL-terminated: C++ readers rely on the terminator
            if start + length + 1 > len(self.Bytes):
                raise _OutOfBounds(f"a string of {length} bytes at offset {off} runs past the end")
            return bytes(self.Bytes[start:start + length])

        def _vector(self, off):
            off += self.Pos
            start = off + self._at(u32.packer_type, off)
            return start + 4, self._at(u32.packer_type, start)

        def VectorLen(self, off):
            start, length = self._vector(off)
            # every element is at least one byte
            if start + length > len(self.Bytes):
                raise _OutOfBounds(f"a vector of {length} elements at offset {start} runs past the end")
            return length

        def Vector(self, off):
            return self._vector(off)[0]

        def Union(self, t2, off):
            off += self.Pos
            t2.Pos = off + self._at(u32.packer_type, off)
            t2.Bytes = self.Bytes

        def GetVectorAsNumpy(self, flags, off):
            start, length = self._vector(off)
            width = np.dtype(N.to_numpy_type(flags)).itemsize
            if start + length * width > len(self.Bytes):
                raise _OutOfBounds(f"a vector of {length} x {width} bytes at offset {start} runs past the end")
            budget[0] -= 1
            return encode.GetVectorAsNumpy(N.to_numpy_type(flags), self.Bytes, length, start)

        def GetArrayAsNumpy(self, flags, off, length):
            width = np.dtype(N.to_numpy_type(flags)).itemsize
            if off < 0 or off + length * width > len(self.Bytes):
                raise _OutOfBounds(f"an array of {length} x {width} bytes at offset {off} runs past the end")
            return encode.GetVectorAsNumpy(N.to_numpy_type(flags), self.Bytes, length, off)

    return CheckedTable


def verified_parse(buf: bytes, what: str = "the model"):
    """Parse ``buf`` with TFLite's object API (:func:`trec_tflm.spec.model.schema`), every read
    bounds-checked; ``ModelT``."""
    try:
        tm.check_identifier(buf, what)
    except tm.TfliteModelError as exc:
        raise ModelValidationError(str(exc)) from None
    if len(buf) >= INT32_MAX:
        raise ModelValidationError(f"{what} is {len(buf)} bytes; models of 2 GB or more are not supported")
    root = int.from_bytes(buf[0:4], "little")
    if root < 8 or root + 4 > len(buf):
        raise ModelValidationError(f"{what} is not a valid flatbuffer: its root table offset {root} lies outside "
                                   f"its {len(buf)} bytes")
    s = tm.schema()
    budget = [64 * len(buf) + 100_000]
    with _parse_lock:
        original = fb_table.Table
        fb_table.Table = _make_checked_table(original, encode, N, budget)
        try:
            return s.ModelT.InitFromObj(s.Model.GetRootAsModel(buf, 0))
        except _OutOfBounds as exc:
            raise ModelValidationError(f"{what} is not a valid flatbuffer: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - garbage makes the generated reader raise anything
            raise ModelValidationError(f"{what} is not a readable TFLite flatbuffer "
                                       f"({type(exc).__name__}: {exc})") from None
        finally:
            fb_table.Table = original
