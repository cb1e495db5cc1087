"""The process that runs a submission's code. It is copied alone into the sandbox.

It knows nothing about tests, expected values or reference kernels: the judge (autograde.runner) sends
it "call attnlab.<module>.<function> with these arrays" and it sends back what the function returned,
as data only (JSON plus .npy blobs, never pickle). Every comparison happens in the judge's process, so
nothing the submission patches in here (numpy, torch, this module) can change a grade.

Standard library and numpy only: this file must run without the rest of `autograde`.

Wire format (both directions): a message is one frame holding UTF-8 JSON, followed by as many frames as
the JSON names arrays; a frame is an 8-byte big-endian length and that many bytes.
"""
import io
import json
import os
import struct
import sys
import traceback

MAX_FRAME = 64 * 1024 * 1024  # bytes; the judge refuses larger frames


# ------------------------------------------------------------------------------------- codec
class WireError(Exception):
    """A message that does not follow the wire format."""


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


def encode(value, arrays):
    """JSON-able description of value; arrays are appended to `arrays` (as .npy bytes)."""
    import numpy as np

    if value is None or isinstance(value, (bool, str)) and type(value) in (bool, str):
        return value
    if type(value) is int:
        return value
    if type(value) is float:
        return {"__float__": repr(value)}
    if type(value) in (list, tuple):
        return {"__" + type(value).__name__ + "__": [encode(v, arrays) for v in value]}
    if type(value) is dict and all(type(k) is str for k in value):
        return {"__dict__": [[k, encode(v, arrays)] for k, v in value.items()]}
    if type(value) is np.ndarray or isinstance(value, np.generic) and type(value).__module__ == "numpy":
        kind = "numpy" if type(value) is np.ndarray else "numpy_scalar"
        arr = np.asarray(value)
        if arr.dtype.hasobject or arr.dtype.fields is not None:
            return {"__unsupported__": f"numpy array of dtype {arr.dtype}"}
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
        arrays.append(buf.getvalue())
        return {"__array__": len(arrays) - 1, "kind": kind}
    torch = sys.modules.get("torch")
    if torch is not None and type(value) is torch.Tensor:
        t = value.detach()
        desc = {"kind": "torch", "dtype": str(t.dtype), "device": str(t.device),
                "requires_grad": bool(value.requires_grad)}
        if t.dtype == torch.bfloat16:
            t = t.float()
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.ascontiguousarray(t.cpu().numpy()), allow_pickle=False)
        arrays.append(buf.getvalue())
        desc["__array__"] = len(arrays) - 1
        return desc
    cls = type(value)
    return {"__unsupported__": f"{cls.__module__}.{cls.__qualname__}"}


def decode(obj, arrays, make_tensor=None):
    """Inverse of encode. Unsupported values decode to an Unsupported marker."""
    import numpy as np

    if obj is None or type(obj) in (bool, int, str):
        return obj
    if type(obj) is not dict or len(obj) == 0:
        raise WireError(f"unexpected JSON value {obj!r:.80}")
    if "__float__" in obj:
        return float(obj["__float__"])
    if "__list__" in obj:
        return [decode(v, arrays, make_tensor) for v in obj["__list__"]]
    if "__tuple__" in obj:
        return tuple(decode(v, arrays, make_tensor) for v in obj["__tuple__"])
    if "__dict__" in obj:
        return {str(k): decode(v, arrays, make_tensor) for k, v in obj["__dict__"]}
    if "__unsupported__" in obj:
        return Unsupported(str(obj["__unsupported__"]))
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
            if make_tensor is None:
                return TensorData(arr, str(obj.get("dtype")), str(obj.get("device")),
                                  bool(obj.get("requires_grad")))
            return make_tensor(arr, obj)
        if kind != "numpy":
            raise WireError(f"unknown array kind {kind!r}")
        return arr
    raise WireError(f"unexpected JSON object with keys {sorted(obj)[:5]}")


class Unsupported:
    """A returned value the wire cannot carry (an ndarray subclass, a custom object, ...)."""

    def __init__(self, type_name):
        self.type_name = type_name

    def __repr__(self):
        return f"<{self.type_name}>"


class TensorData:
    """A torch tensor as the judge receives it: its values as an ndarray plus its declared type."""

    def __init__(self, array, dtype, device, requires_grad):
        self.array, self.dtype, self.device, self.requires_grad = array, dtype, device, requires_grad

    def __repr__(self):
        return f"tensor(shape={self.array.shape}, dtype={self.dtype}, device={self.device})"


def send(fd, message, values=None):
    """Send a JSON message; `values` (a dict) is encoded into message['values']."""
    arrays = []
    if values is not None:
        message = dict(message, values=encode(values, arrays))
    message["n_arrays"] = len(arrays)
    write_frame(fd, json.dumps(message, allow_nan=True).encode())
    for blob in arrays:
        write_frame(fd, blob)


def receive(fd, make_tensor=None):
    """Read one message (all its frames together at most MAX_FRAME bytes); returns (message, values)."""
    head = read_frame(fd)
    budget = MAX_FRAME - len(head)
    message = json.loads(head)
    if type(message) is not dict:
        raise WireError("a message must be a JSON object")
    n = message.get("n_arrays", 0)
    if type(n) is not int or not 0 <= n <= 10_000:
        raise WireError("bad array count")
    arrays = []
    for _ in range(n):
        arrays.append(read_frame(fd, budget))
        budget -= len(arrays[-1])
    values = decode(message["values"], arrays, make_tensor) if "values" in message else None
    return message, values


# ------------------------------------------------------------------------------ worker side
# Captured when this file loads, before any submission code runs: replacing sys.setprofile, os.write or
# json.dumps later does not change what the worker uses.
_SETPROFILE, _GETPROFILE = sys.setprofile, sys.getprofile
_OS_WRITE, _JSON_DUMPS, _PACK = os.write, json.dumps, struct.pack
_STATE = {"armed": False, "no_spawn": False}

_BLOCKED_SYMBOLS = ("PyEval_Set", "PyThreadState", "fork", "vfork", "clone", "exec", "system", "posix_spawn",
                    "kill", "setrlimit", "prlimit")
_SPAWN_EVENTS = ("os.fork", "os.forkpty", "os.system", "os.posix_spawn", "os.exec", "subprocess.Popen",
                 "os.spawn", "pty.spawn", "socket.connect", "socket.bind")


class ForbiddenCall(Exception):
    pass


def _audit(event, args):
    """Block what a submission never needs (defence in depth; the sandbox is the real wall)."""
    if _STATE["no_spawn"]:
        if event in _SPAWN_EVENTS:
            raise RuntimeError(f"{event}: processes and sockets are blocked while grading")
        if event == "ctypes.dlsym" and len(args) > 1 and str(args[1]).startswith(_BLOCKED_SYMBOLS):
            raise RuntimeError(f"calling {args[1]} through ctypes is blocked while grading")
    if _STATE["armed"] and event in ("sys.setprofile", "sys.settrace"):
        raise RuntimeError(f"{event} is blocked while grading")


def _make_profile(rules, res_fd):
    """A profile hook that recognises forbidden callables by their own module and qualified name (an alias
    or getattr cannot rename a function), reports the first hit to the judge at once, and raises."""
    hits = []

    def key(frame, event, arg):
        if event == "c_call":
            qualname = getattr(arg, "__qualname__", None) or getattr(arg, "__name__", "") or ""
            module = getattr(arg, "__module__", None)
            if module is None and getattr(arg, "__self__", None) is not None:
                module = type(arg.__self__).__module__
            return module or "", str(qualname)
        if event == "call":
            qualname = frame.f_code.co_qualname
            module = frame.f_globals.get("__name__", "") or ""
            if qualname in ("OpOverloadPacket.__call__", "OpOverload.__call__"):  # torch.ops.aten.<op>
                return "torch.ops", str(frame.f_locals.get("self"))
            return module, qualname
        return None

    def profile(frame, event, arg):
        k = key(frame, event, arg)
        if k is None:
            return
        module, qualname = k
        for prefix, name in rules:
            if name in qualname and (module == prefix or module.startswith(prefix + ".")):
                hit = f"{module}.{qualname}"
                if hit not in hits:
                    hits.append(hit)
                    payload = _JSON_DUMPS({"op": "forbidden_hit", "name": hit, "n_arrays": 0}).encode()
                    _OS_WRITE(res_fd, _PACK(">Q", len(payload)) + payload)
                raise ForbiddenCall(f"{hit} is not allowed in this exercise")

    return profile, hits


class _DepProxy:
    """Stands in for a function the graded exercise builds on: the judge computes it (reference)."""

    def __init__(self, name, channel):
        self.name, self.channel = name, channel
        self.__name__ = name.rsplit(".", 1)[-1]
        self.__qualname__ = self.__name__

    def __call__(self, *args, **kwargs):
        cmd_fd, res_fd = self.channel
        send(res_fd, {"op": "dep_call", "name": self.name}, {"args": list(args), "kwargs": kwargs})
        message, values = receive(cmd_fd, _make_tensor)
        if message.get("op") != "dep_result":
            raise RuntimeError(f"{self.name} (reference) failed: {message.get('message', '?')}")
        return values["value"]


def _make_tensor(arr, desc):
    import torch

    t = torch.from_numpy(arr.copy())
    dtype = getattr(torch, str(desc.get("dtype", "")).replace("torch.", ""), None)
    if isinstance(dtype, torch.dtype) and t.dtype != dtype:
        t = t.to(dtype)
    return t


def _swap(deps, channel):
    """Replace each dependency, and every alias of it in the submission's modules, by a proxy."""
    import importlib

    undo = []
    for dep in deps:
        mod_name, func_name = dep.rsplit(".", 1)
        try:
            mod = importlib.import_module(f"attnlab.{mod_name}")
        except BaseException:  # a broken dependency module: the proxy still serves direct callers
            continue
        original = getattr(mod, func_name, None)
        proxy = _DepProxy(dep, channel)
        for other in [m for n, m in sys.modules.items() if n == "attnlab" or n.startswith("attnlab.")]:
            for attr, val in list(vars(other).items()):
                if (other is mod and attr == func_name) or (original is not None and val is original):
                    undo.append((other, attr, val))
                    setattr(other, attr, proxy)
        if not hasattr(mod, func_name):
            undo.append((mod, func_name, None))
            setattr(mod, func_name, proxy)
    return undo


def _describe_exception(exc):
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if "/attnlab/" in f.filename.replace(os.sep, "/")]
    where = ""
    if mine:
        last = mine[-1]
        where = f"{last.filename.rsplit('attnlab', 1)[-1].lstrip('/')}:{last.lineno}: {last.line or ''}".strip()
    return {"type": type(exc).__name__, "message": str(exc)[:2000], "where": where[:500]}


def _serve(cmd_fd, res_fd):
    import importlib
    import threading

    channel = (cmd_fd, res_fd)
    send(res_fd, {"op": "ready", "python": sys.version.split()[0]})
    while True:
        try:
            message, values = receive(cmd_fd, _make_tensor)
        except EOFError:
            return
        if message.get("op") == "exit":
            return
        if message.get("op") == "import":
            try:
                importlib.import_module(f"attnlab.{message['module']}")
            except BaseException as exc:  # SyntaxError, ImportError, SystemExit at import...
                send(res_fd, dict(op="raised", phase="import", **_describe_exception(exc)))
            else:
                send(res_fd, {"op": "imported"})
            continue
        if message.get("op") != "call":
            send(res_fd, {"op": "protocol_error", "message": f"unknown op {message.get('op')!r}"})
            continue
        module, function = message["module"], message["function"]
        try:
            mod = importlib.import_module(f"attnlab.{module}")
        except BaseException as exc:  # SyntaxError, ImportError, SystemExit at import...
            send(res_fd, dict(op="raised", phase="import", **_describe_exception(exc)))
            continue
        func = getattr(mod, function, None)
        if not callable(func):
            send(res_fd, {"op": "raised", "phase": "import", "type": "AttributeError",
                          "message": f"attnlab.{module} has no function {function!r}", "where": ""})
            continue
        undo = _swap(message.get("deps", []), channel)
        rules = tuple((str(p), str(n)) for p, n in message.get("forbidden", []))
        profile, hits = _make_profile(rules, res_fd) if rules else (None, [])
        tampered = []
        try:
            if profile is not None:
                _SETPROFILE(profile)  # before arming: the audit hook refuses setprofile once armed
                threading.setprofile(profile)
            _STATE["armed"] = True
            try:
                result = func(*values["args"], **values["kwargs"])
            finally:
                _STATE["armed"] = False
                if profile is not None:
                    if _GETPROFILE() is not profile:
                        tampered.append("the forbidden-call detector was switched off")
                    _SETPROFILE(None)
                    threading.setprofile(None)
        except BaseException as exc:  # SystemExit and KeyboardInterrupt included
            reply = dict(op="raised", phase="call", **_describe_exception(exc))
            reply["forbidden"] = list(hits) + tampered
            send(res_fd, reply)
        else:
            send(res_fd, {"op": "result", "forbidden": list(hits) + tampered}, {"value": result})
        finally:
            for obj, attr, val in reversed(undo):
                if val is None:
                    delattr(obj, attr)
                else:
                    setattr(obj, attr, val)


class _Unavailable:
    """A meta-path finder that makes some packages unimportable (torch in NumPy exercises)."""

    def __init__(self, names, reason):
        self.names, self.reason = tuple(names), reason

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".", 1)[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r}: {self.reason}", name=fullname)
        return None


UNAVAILABLE_REASON = "not available when grading NumPy exercises"


def main():
    config = json.loads(sys.argv[1])
    # The judge runs us with `python -I -S`: no site, no PYTHONPATH, no user site. Build sys.path
    # ourselves: the submission first, then the interpreter's own library and the site-packages that
    # hold numpy and torch (never the folder that installed the instructor's attnlab).
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [config["submission"]] + [p for p in sys.path if p and os.path.abspath(p) != here]
    sys.path += [p for p in config.get("site", []) if p not in sys.path]
    sys.dont_write_bytecode = True
    cmd_fd, res_fd = config["fds"]
    os.set_inheritable(cmd_fd, False)
    os.set_inheritable(res_fd, False)
    sys.addaudithook(_audit)
    if config.get("unavailable"):
        sys.meta_path.insert(0, _Unavailable(config["unavailable"], UNAVAILABLE_REASON))
    try:
        import numpy  # noqa: F401  (import outside the submission's time, so its cost is not theirs)
        import threading  # noqa: F401
    except BaseException as exc:
        send(res_fd, {"op": "fatal", "message": f"numpy is not importable in the sandbox: {exc}"})
        return 3
    _STATE["no_spawn"] = True  # from here on submission code runs: no processes, no sockets
    _serve(cmd_fd, res_fd)
    return 0


if __name__ == "__main__":
    try:
        code = main()
    except BaseException:
        sys.__stderr__.write(traceback.format_exc(limit=3))
        code = 3
    os._exit(code)
