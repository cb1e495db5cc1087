"""Red team for the new kinds of exercise: hostile classes, kernels and plot functions, and a careless random
one, graded in one `attnlab grade-batch` (bwrap) beside a correct student.

Each student is the instructor's solutions with one module replaced by hostile code. The batch must finish,
grade the correct student in full, give no hostile student more than its honest part is worth, leave the
class folders untouched, and name what each did.

Run:  .venv/bin/python -m pytest -q -s tests/test_redteam_kinds.py
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from autograde import registry, sandbox

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
IDS = ["multihead.attention_dropout", "flash.tiled_attention", "interpret.plot_attention", "frontiers.KVCache"]
KV, FLASH, PLOT, DROP = "frontiers.KVCache", "flash.tiled_attention", "interpret.plot_attention", \
    "multihead.attention_dropout"
BATCH_BOUND_S = 300.0  # ~60-90 s on the 2-core dev machine with 2 workers

# name -> (module to replace or extend, code (a leading "+" appends to the solution), {exercise: expectation})
# An expectation is a set of acceptable statuses, optionally with ("max", points) or ("needle", text).
STUDENTS = {
    "correct": (None, "", {}),
    "cache_len_lies": ("frontiers", """+
        class KVCache(KVCache):
            # keeps only the last `capacity` positions (a ring buffer) while len() claims them all
            def append(self, k, v):
                import torch
                if self.keys is not None and self.length + k.shape[-2] > self.capacity:
                    keep = max(self.capacity - k.shape[-2], 0)
                    self.keys[:, :, :keep] = self.keys[:, :, self.length - keep:self.length].clone()
                    self.values[:, :, :keep] = self.values[:, :, self.length - keep:self.length].clone()
                    self._claimed = getattr(self, "_claimed", self.length) + k.shape[-2]
                    self.length = keep
                    if k.shape[-2] > self.capacity:
                        k, v = k[:, :, -self.capacity:], v[:, :, -self.capacity:]
                super().append(k, v)

            def __len__(self):
                return max(getattr(self, "_claimed", 0), self.length)
        """, {KV: ({"failed"}, ("max", 2.5))}),
    "cache_spoofs_tensor": ("frontiers", """+
        class Tensor:  # pretends to be torch.Tensor
            pass
        Tensor.__module__, Tensor.__qualname__ = "torch", "Tensor"

        class KVCache(KVCache):
            def decode_step(self, q):
                return Tensor()
        """, {KV: ({"failed"}, ("needle", "an object of type torch.Tensor"))}),
    "cache_forges_frames": ("frontiers", """+
        class KVCache(KVCache):
            def decode_step(self, q):
                import json, os, struct, sys
                fd = json.loads(sys.argv[1])["fds"][1]  # the worker's result channel
                body = json.dumps({"op": "result", "forbidden": [], "n_arrays": 0, "values": {"__dict__": [["value", 0]]}}).encode()
                os.write(fd, struct.pack(">Q", len(body)) + body)
                return super().decode_step(q)
        """, {KV: ({"failed", "error"}, ("max", 1.0))}),
    "kernel_lifts_limit": ("flash", """+
        _honest = tiled_attention

        def tiled_attention(q, k, v, *args, **kwargs):
            import ctypes
            import resource
            for attempt in (lambda: resource.setrlimit(resource.RLIMIT_AS, (-1, -1)),
                            lambda: ctypes.CDLL(None).setrlimit,
                            lambda: ctypes.CDLL(None).syscall):
                try:
                    attempt()
                except Exception:
                    pass
            s = q @ k.transpose(-1, -2)  # then materialises L x S anyway
            return _honest(q, k, v, *args, **kwargs)
        """, {FLASH: ({"failed"}, ("needle", "ran out of its 64 MiB memory budget"))}),
    "kernel_forks_helper": ("flash", """+
        _honest = tiled_attention

        def tiled_attention(q, k, v, *args, **kwargs):
            import os
            if q.shape[-2] >= 8192:  # compute the big case in a child process, outside the limit
                try:
                    pid = os.fork()
                except Exception:
                    pid = None
                if pid == 0:
                    os._exit(0)
                return q @ k.transpose(-1, -2), None
            return _honest(q, k, v, *args, **kwargs)
        """, {FLASH: ({"failed"}, ("needle", "memory budget"))}),
    "kernel_via_torch_ops": ("flash", """
        import torch

        def tiled_attention(q, k, v, block_q=128, block_k=128, causal=False, scale=None):
            out = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, is_causal=causal, scale=scale)
            return out[0], out[1]
        """, {FLASH: ({"forbidden"}, ("max", 0.0))}),
    "kernel_obfuscated_name": ("flash", """
        import torch

        def tiled_attention(q, k, v, block_q=128, block_k=128, causal=False, scale=None):
            name = "".join(chr(c) for c in (115, 99, 97, 108, 101, 100, 95, 100, 111, 116, 95, 112, 114, 111, 100,
                                            117, 99, 116, 95, 97, 116, 116, 101, 110, 116, 105, 111, 110))
            fn = getattr(torch.nn.functional, name)
            s = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5
            return fn(q, k, v, is_causal=causal, scale=scale), torch.logsumexp(s, -1)
        """, {FLASH: ({"forbidden"}, ("max", 0.0))}),
    "plot_touches_files": ("interpret", """+
        _honest = plot_attention

        def plot_attention(weights, query_labels, key_labels, ax=None):
            import os
            for path in (@SOLUTION@, "/etc/shadow", "../solutions/attnlab/flash.py"):
                try:
                    open(path).read()
                    open(@PROOF@, "w").write("read " + path)
                except Exception:
                    pass
            for path in (@CLASS_FILE@, @RESULT_FILE@):
                try:
                    open(path, "w").write("overwritten by a plot function")
                except Exception:
                    pass
            return _honest(weights, query_labels, key_labels, ax=ax)
        """, {}),
    "plot_fake_axes": ("interpret", """+
        class Axes:
            pass
        Axes.__module__ = "matplotlib.axes._axes"

        def plot_attention(weights, query_labels, key_labels, ax=None):
            return Axes()
        """, {PLOT: ({"failed"}, ("max", 0.0))}),
    "dropout_global_rng": ("multihead", """+
        def attention_dropout(weights, p, rng):
            import numpy as np
            if not 0 <= p < 1:
                raise ValueError("p must be in [0, 1)")
            if p == 0:
                return weights.copy()
            keep = np.random.random(np.shape(weights)) < 1 - p  # not the generator it was given
            return np.where(keep, weights / (1 - p), 0).astype(weights.dtype)
        """, {DROP: ({"failed"}, ("needle", "rng"))}),
}


def _write_class(dest, results):
    texts = {p.stem: p.read_text() for p in (ROOT / "solutions" / "attnlab").glob("*.py")}
    for name, (module, code, _) in STUDENTS.items():
        package = dest / name / "attnlab"
        package.mkdir(parents=True)
        for stem, text in texts.items():
            (package / f"{stem}.py").write_text(text)
        if module:
            append = code.startswith("+")
            code = textwrap.dedent(code[1:] if append else code)
            for key, value in {"SOLUTION": str(ROOT / "solutions" / "attnlab" / "interpret.py"),
                               "PROOF": str(dest / "leaked.txt"), "CLASS_FILE": str(dest / "correct" / "attnlab" / "softmax.py"),
                               "RESULT_FILE": str(results / "correct.json")}.items():
                code = code.replace(f"@{key}@", repr(value))
            path = package / f"{module}.py"
            path.write_text((texts[module] + "\n" + code) if append else code)


def _digest(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    if sandbox.sandbox_mode() != "bwrap":
        pytest.skip("bubblewrap is not available: this red team checks the sandboxed mode")
    root = tmp_path_factory.mktemp("redteam-kinds")
    class_dir, results = root / "class", root / "results"
    _write_class(class_dir, results)
    before = _digest(class_dir)
    script = Path(sys.executable).parent / "attnlab"
    started = time.monotonic()
    proc = subprocess.run([str(script), "grade-batch", str(class_dir), "--out", str(results), "--workers", "2",
                           *IDS], capture_output=True, text=True, timeout=900, cwd=ROOT)
    elapsed = time.monotonic() - started
    reports = {name: json.loads((results / f"{name}.json").read_text()) for name in STUDENTS
               if (results / f"{name}.json").exists()}
    print(f"\nred team (new kinds): {len(reports)} students in {elapsed:.1f} s")
    for name, report in reports.items():
        row = ", ".join(f"{e['id'].split('.')[1]} {e['status']} {e['points']:g}" for e in report["exercises"])
        print(f"  {name:24s} {report['total']:5g}  {row}")
    return {"proc": proc, "elapsed": elapsed, "reports": reports, "class_dir": class_dir, "before": before,
            "results": results}


def test_batch_completes_within_bound(batch):
    assert batch["proc"].returncode == 0, batch["proc"].stderr[-2000:]
    assert set(batch["reports"]) == set(STUDENTS)
    assert batch["elapsed"] < BATCH_BOUND_S


def test_correct_student_gets_full_marks(batch):
    report = batch["reports"]["correct"]
    assert report["total"] == report["max_total"], [e for e in report["exercises"] if e["status"] != "passed"]


@pytest.mark.parametrize("name", sorted(STUDENTS))
def test_each_hostile_student_is_graded_as_expected(batch, name):
    expectations = STUDENTS[name][2]
    for entry in batch["reports"][name]["exercises"]:
        statuses, *rules = expectations.get(entry["id"], ({"passed"},))
        assert entry["status"] in statuses, (entry["id"], entry["status"], entry["tests"])
        text = " ".join(t["message"] for t in entry["tests"])
        for kind, value in rules:
            if kind == "max":
                assert entry["points"] <= value, (entry["id"], entry["points"])
            else:
                assert value in text, (entry["id"], text[:500])
        honest = registry.get(entry["id"]).points
        assert entry["points"] <= honest


def test_class_folders_untouched_and_nothing_leaked(batch):
    assert _digest(batch["class_dir"]) == batch["before"]
    assert not (batch["class_dir"] / "leaked.txt").exists()
    correct = json.loads((batch["results"] / "correct.json").read_text())
    assert correct["total"] == correct["max_total"]
