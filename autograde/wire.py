"""The wire between the judge and a worker: frames, and a data-only codec (JSON plus .npy blobs, never pickle).

Both sides use this file; it is copied into the sandbox next to worker.py, so it needs only the standard
library and numpy (torch is imported when a tensor, a torch dtype or a torch device crosses).

A message is one frame of UTF-8 JSON followed by as many frames as the JSON names arrays; a frame is an
8-byte big-endian length and that many bytes.

What crosses, both ways:
  None, bool, int, str, float (NaN and inf kept), list, tuple, dict and OrderedDict with str keys;
  numpy arrays (exact ``ndarray``, bool/int/uint/float of any width incl. float16) and numpy scalars;
  torch tensors (dtype incl. bfloat16, which travels as its raw 16 bits, device, requires_grad;
  ``nn.Parameter`` marked as such), ``torch.dtype`` and ``torch.device``;
  numpy random ``Generator``s, as their bit generator's state, rebuilt on the other side (same stream);
  handles: references to live objects the worker holds (an instance of a learner's class, an Axes).
Worker to judge only: a matplotlib Axes is sent as data extracted in the worker (`AxesData`) plus its handle.

The judge's encoder raises `WireError` for anything else, loudly and in the judge (a grader bug must never
reach the learner as a placeholder). The worker's encoder hands anything else to ``on_object``, which
registers the object and returns a handle: the judge sees its type name, never the object.
"""
import io
import json
import os
import struct
import sys
from collections import OrderedDict

MAX_FRAME = 64 * 1024 * 1024  # bytes per message (all frames together); the judge refuses more
MAX_DEPTH = 64                # nesting of lists/dicts in one value
GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


class WireError(Exception):
    """A value that cannot cross, or a message that does not follow the wire format."""


# -------------------------------------------------------------------------------------- frames
def _read_exact(fd, n):
    if not isinstance(fd, int):  # the judge's side: a channel that enforces a deadline
        return fd.read_exact(n)
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("peer closed the channel")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frame(fd, limit=MAX_FRAME):
    (size,) = struct.unpack(">Q", _read_exact(fd, 8))
    if size > limit:
        raise WireError(f"a message larger than the {MAX_FRAME}-byte limit")
    return _read_exact(fd, size)


def write_frame(fd, payload):
    data = struct.pack(">Q", len(payload)) + payload
    if not isinstance(fd, int):
        return fd.write_all(data)
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


# ------------------------------------------------------------------------------- judge-side types
class Handle:
    """A live object held by the worker: the judge knows its id and its type's name, nothing else."""

    __slots__ = ("id", "type_name")

    def __init__(self, id, type_name):
        self.id, self.type_name = int(id), str(type_name)

    def __eq__(self, other):
        return isinstance(other, Handle) and other.id == self.id

    def __hash__(self):
        return hash(("handle", self.id))

    def __repr__(self):
        return f"<{self.type_name} held by the worker, handle {self.id}>"


class AxesData(Handle):
    """A matplotlib Axes as the judge sees it: what was drawn, extracted in the worker (never pixels)."""

    __slots__ = ("data",)

    def __init__(self, id, type_name, data):
        super().__init__(id, type_name)
        self.data = data

    def __repr__(self):
        return f"<{self.type_name}: {len(self.data.get('images', []))} image(s), title {self.data.get('title')!r}>"


# ------------------------------------------------------------------------------------- encoding
def _npy(arr):
    buf = io.BytesIO()
    import numpy as np

    arr = np.asarray(arr)
    # not np.ascontiguousarray: it returns at least 1-d, and a scalar would arrive as shape (1,)
    np.lib.format.write_array(buf, arr if arr.flags.c_contiguous else arr.copy(order="C"), allow_pickle=False)
    return buf.getvalue()


def encode(value, arrays, on_object=None, _depth=0):
    """JSON-able description of `value`; array payloads are appended to `arrays` (as .npy bytes).

    on_object: None on the judge's side (an unknown value raises WireError); on the worker's side a
    callable (object, arrays) -> description (a handle) for values that are not data."""
    import numpy as np

    if _depth > MAX_DEPTH:
        raise WireError(f"a value nested more than {MAX_DEPTH} levels deep")
    kind = type(value)
    if value is None or kind in (bool, str, int):
        return value
    if kind is float:
        return {"__float__": repr(value)}
    if kind in (list, tuple):
        return {"__" + kind.__name__ + "__": [encode(v, arrays, on_object, _depth + 1) for v in value]}
    if kind in (dict, OrderedDict) and all(type(k) is str for k in value):
        tag = "__dict__" if kind is dict else "__odict__"
        return {tag: [[k, encode(v, arrays, on_object, _depth + 1)] for k, v in value.items()]}
    if kind is np.ndarray or (isinstance(value, np.generic) and kind.__module__ == "numpy"):
        arr = np.asarray(value)
        if arr.dtype.kind in "biufc" and arr.dtype.fields is None:
            arrays.append(_npy(arr))
            return {"__array__": len(arrays) - 1, "kind": "numpy" if kind is np.ndarray else "numpy_scalar"}
    elif kind is np.random.Generator:
        bitgen = value.bit_generator
        name = type(bitgen).__name__
        if name in GENERATORS:
            return {"__generator__": name, "state": encode(bitgen.state, arrays, None, _depth + 1)}
    elif on_object is None and isinstance(value, Handle):  # judge side only: a worker cannot forge one
        return {"__handle__": value.id}
    elif on_object is None and hasattr(type(value), "__wire_handle__"):  # the judge's Remote wrapper
        return {"__handle__": value.__wire_handle__.id}
    else:
        torch = sys.modules.get("torch")
        if torch is not None:
            desc = _encode_torch(torch, value, arrays)
            if desc is not None:
                return desc
    if on_object is not None:
        return on_object(value, arrays)
    raise WireError(f"cannot send a value of type {kind.__module__}.{kind.__qualname__} to the worker "
                    "(a grader bug: see autograde/wire.py for what crosses)")


def _encode_torch(torch, value, arrays):
    kind = type(value)
    if kind is torch.dtype:
        return {"__torch_dtype__": str(value).replace("torch.", "")}
    if kind is torch.device:
        return {"__torch_device__": str(value)}
    if kind not in (torch.Tensor, torch.nn.Parameter) or value.layout != torch.strided:
        return None
    t = value.detach()
    dtype = str(t.dtype).replace("torch.", "")
    desc = {"kind": "torch", "dtype": dtype, "device": str(t.device), "requires_grad": bool(value.requires_grad)}
    if kind is torch.nn.Parameter:
        desc["parameter"] = True
    t = t.cpu().resolve_conj().resolve_neg().contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)  # numpy has no bfloat16: send the raw bits
    try:
        arr = t.numpy()
    except (TypeError, RuntimeError):
        return None  # a dtype numpy cannot hold (float8, complex32...)
    arrays.append(_npy(arr))
    desc["__array__"] = len(arrays) - 1
    return desc


# ------------------------------------------------------------------------------------- decoding
def decode(obj, arrays, resolve_handle=None, _depth=0):
    """Inverse of encode. resolve_handle: the worker's id -> object lookup (None on the judge's side,
    where handles decode to `Handle`)."""
    import numpy as np

    if _depth > MAX_DEPTH:
        raise WireError(f"a value nested more than {MAX_DEPTH} levels deep")
    if obj is None or type(obj) in (bool, int, str):
        return obj
    if type(obj) is not dict or len(obj) == 0:
        raise WireError(f"unexpected JSON value {obj!r:.80}")
    sub = lambda v: decode(v, arrays, resolve_handle, _depth + 1)  # noqa: E731
    if "__float__" in obj:
        return float(obj["__float__"])
    if "__list__" in obj:
        return [sub(v) for v in _seq(obj["__list__"])]
    if "__tuple__" in obj:
        return tuple(sub(v) for v in _seq(obj["__tuple__"]))
    if "__dict__" in obj or "__odict__" in obj:
        items = [(str(k), sub(v)) for k, v in _pairs(obj.get("__dict__", obj.get("__odict__")))]
        return dict(items) if "__dict__" in obj else OrderedDict(items)
    if "__handle__" in obj:
        if type(obj["__handle__"]) is not int:
            raise WireError("bad handle")
        if resolve_handle is not None:
            return resolve_handle(obj["__handle__"])
        if "__axes__" in obj:
            return AxesData(obj["__handle__"], obj.get("type", "matplotlib.axes.Axes"), sub(obj["__axes__"]))
        return Handle(obj["__handle__"], obj.get("type", "object"))
    if "__generator__" in obj:
        name = obj["__generator__"]
        if name not in GENERATORS:
            raise WireError(f"unknown bit generator {name!r}")
        bitgen = getattr(np.random, name)()
        bitgen.state = sub(obj["state"])
        return np.random.Generator(bitgen)
    if "__torch_dtype__" in obj or "__torch_device__" in obj:
        import torch

        if "__torch_device__" in obj:
            return torch.device(str(obj["__torch_device__"]))
        dtype = getattr(torch, str(obj["__torch_dtype__"]), None)
        if not isinstance(dtype, torch.dtype):
            raise WireError(f"unknown torch dtype {obj['__torch_dtype__']!r}")
        return dtype
    if "__array__" in obj:
        index = obj["__array__"]
        if type(index) is not int or not 0 <= index < len(arrays):
            raise WireError("array index out of range")
        arr = np.lib.format.read_array(io.BytesIO(arrays[index]), allow_pickle=False)
        if arr.dtype.hasobject or arr.dtype.fields is not None:
            raise WireError(f"refused array of dtype {arr.dtype}")
        kind = obj.get("kind")
        if kind == "numpy_scalar":
            return arr[()]
        if kind == "torch":
            return _make_tensor(arr, obj)
        if kind != "numpy":
            raise WireError(f"unknown array kind {kind!r}")
        return arr
    raise WireError(f"unexpected JSON object with keys {sorted(obj)[:5]}")


def _seq(value):
    if type(value) is not list:
        raise WireError("a sequence must be a JSON list")
    return value


def _pairs(value):
    if type(value) is not list or any(type(p) is not list or len(p) != 2 for p in value):
        raise WireError("a dict must be a JSON list of pairs")
    return value


def _make_tensor(arr, desc):
    import torch

    dtype = getattr(torch, str(desc.get("dtype", "")), None)
    if not isinstance(dtype, torch.dtype):
        raise WireError(f"unknown torch dtype {desc.get('dtype')!r}")
    t = torch.from_numpy(arr.copy())
    if dtype == torch.bfloat16:
        if t.dtype != torch.int16:
            raise WireError("bfloat16 travels as int16 bits")
        t = t.view(torch.bfloat16)
    elif t.dtype != dtype:
        raise WireError(f"tensor declared {dtype}, carried {t.dtype}")
    device = str(desc.get("device", "cpu"))
    if device != "cpu":
        try:
            t = t.to(device)
        except (RuntimeError, AssertionError) as exc:
            raise WireError(f"a tensor on {device}, which this process cannot use ({exc})") from None
    if desc.get("parameter"):
        return torch.nn.Parameter(t, requires_grad=bool(desc.get("requires_grad")))
    if desc.get("requires_grad") and t.is_floating_point():
        t.requires_grad_(True)
    return t


# ------------------------------------------------------------------------------------- messages
def send(fd, message, values=None, on_object=None):
    """Send a JSON message; `values` (a dict) is encoded into message['values']."""
    arrays = []
    if values is not None:
        message = dict(message, values=encode(values, arrays, on_object))
    message["n_arrays"] = len(arrays)
    write_frame(fd, json.dumps(message, allow_nan=True).encode())
    for blob in arrays:
        write_frame(fd, blob)


def receive(fd, resolve_handle=None):
    """Read one message (all its frames together at most MAX_FRAME bytes); returns (message, values)."""
    head = read_frame(fd)
    budget = MAX_FRAME - len(head)
    try:
        message = json.loads(head)
    except RecursionError:
        raise WireError("a message nested too deeply") from None
    if type(message) is not dict:
        raise WireError("a message must be a JSON object")
    n = message.get("n_arrays", 0)
    if type(n) is not int or not 0 <= n <= 10_000:
        raise WireError("bad array count")
    arrays = []
    for _ in range(n):
        arrays.append(read_frame(fd, budget))
        budget -= len(arrays[-1])
    values = decode(message["values"], arrays, resolve_handle) if "values" in message else None
    return message, values


def roundtrip(value, on_object=None, resolve_handle=None):
    """Encode then decode in one process: what the other side would see (the in-process backend uses it so
    trusted code is typed exactly as a sandboxed submission is)."""
    arrays = []
    return decode(encode(value, arrays, on_object), arrays, resolve_handle)
