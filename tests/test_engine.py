"""The grading engine's guarantees, one kind at a time: profiles, the wire, classes by handle, the memory
proof, the source scan, GPU binds and skips, limits per exercise, dependency handling, module reset.

Submissions are temporary copies of solutions/attnlab with one module replaced, graded through the real
sandbox (autograde.runner.grade_submission), as a student's would be."""
import json
import os
import shutil
import textwrap
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from autograde import backends, profiles, registry, scan, wire
from autograde.errors import GraderDefinitionError
from autograde.framework import Exercise
from autograde.runner import grade_submission
from autograde.sandbox import Limits, Worker, address_space_limit, copy_submission, sandbox_mode
from conftest import ROOT

torch = pytest.importorskip("torch")


def submission(tmp_path, **modules):
    """A copy of the solutions with some modules' text replaced (or appended to, when it starts with '+')."""
    dest = tmp_path / "sub"
    shutil.copytree(ROOT / "solutions" / "attnlab", dest / "attnlab")
    for name, text in modules.items():
        path = dest / "attnlab" / f"{name}.py"
        append = text.startswith("+")
        text = textwrap.dedent(text[1:] if append else text)
        path.write_text(path.read_text() + "\n" + text if append else text)
    return dest


def by_id(report):
    return {e["id"]: e for e in report["exercises"]}


def messages(entry):
    return " | ".join(t["message"] for t in entry["tests"] if not t["passed"])


# ------------------------------------------------------------------------------------------ profiles
def test_numpy_exercise_beside_a_torch_one_still_cannot_import_torch(tmp_path):
    """A grade never depends on what else is selected: NumPy exercises get their own torch-less worker."""
    sub = submission(tmp_path, scoring="""+
        import torch

        def dot_scores(q, k):
            return torch.einsum("...ld,...sd->...ls", torch.from_numpy(q), torch.from_numpy(k)).numpy()
        """)
    alone = by_id(grade_submission(sub, ["scoring.dot_scores"]))
    beside = by_id(grade_submission(sub, ["scoring.dot_scores", "frontiers.KVCache"]))
    assert alone["scoring.dot_scores"]["status"] == "forbidden"
    assert beside["scoring.dot_scores"]["status"] == "forbidden"
    assert beside["frontiers.KVCache"]["status"] == "passed"
    assert "which NumPy exercises may not use" in messages(beside["scoring.dot_scores"])


def test_every_profile_starts_and_imports_before_the_clock(tmp_path):
    copy = copy_submission(ROOT / "solutions" / "attnlab", Limits())
    try:
        for name in ("numpy", "torch", "matplotlib"):
            worker = Worker(copy, Limits(), sandbox_mode(), name)
            worker.start()
            try:
                assert worker.info["profile"] == name
                assert ("torch" in worker.info) == (name == "torch")
                assert ("matplotlib" in worker.info) == (name == "matplotlib")
            finally:
                worker.close()
    finally:
        shutil.rmtree(copy, ignore_errors=True)


# ------------------------------------------------------------------------------------------ the wire
def test_wire_carries_every_value_the_course_needs():
    rng = np.random.default_rng(7)
    value = {
        "f16": np.arange(6, dtype=np.float16).reshape(2, 3) / 3,
        "f32": np.float32(1.5), "i64": np.arange(3), "b": np.array([True, False]),
        "bf16": torch.randn(3, 4).to(torch.bfloat16), "t64": torch.randn(2, dtype=torch.float64),
        "param": torch.nn.Parameter(torch.ones(2)), "dtype": torch.float16, "device": torch.device("cpu"),
        "od": OrderedDict([("w", torch.zeros(1)), ("b", torch.ones(1))]), "s": "text", "nan": float("nan"),
        "rng": rng, "nested": [(1, 2.5), {"x": None}],
    }
    back = wire.roundtrip(value)
    assert back["f16"].dtype == np.float16 and np.array_equal(back["f16"], value["f16"])
    assert back["bf16"].dtype == torch.bfloat16 and torch.equal(back["bf16"], value["bf16"])
    assert type(back["param"]) is torch.nn.Parameter and back["param"].requires_grad
    assert back["dtype"] is torch.float16 and back["device"] == torch.device("cpu")
    assert type(back["od"]) is OrderedDict and list(back["od"]) == ["w", "b"]
    assert back["s"] == "text" and np.isnan(back["nan"]) and back["nested"] == [(1, 2.5), {"x": None}]
    # a Generator travels as its state: the copy draws the same stream, the original is not advanced
    assert type(back["rng"]) is np.random.Generator
    assert np.array_equal(back["rng"].random(5), np.random.default_rng(7).random(5))
    assert np.array_equal(rng.random(5), np.random.default_rng(7).random(5))


def test_scalars_and_zero_dim_values_keep_their_shape_across_the_wire():
    import torch

    for value in (np.int64(5), np.float16(2.5), np.bool_(True), np.array(3.5), torch.tensor(1.25, dtype=torch.float64)):
        arrays = []
        back = wire.decode(json.loads(json.dumps(wire.encode(value, arrays))), arrays)
        assert type(back) is type(value) and np.shape(back) == () and back.dtype == value.dtype, (value, back)
        assert back == value
    arrays = []  # a non-contiguous view arrives as the same values
    view = np.arange(12.0).reshape(3, 4)[:, ::2]
    assert np.array_equal(wire.decode(wire.encode(view, arrays), arrays), view)


def test_the_judge_refuses_loudly_what_the_wire_cannot_carry():
    class Thing:
        pass

    for bad in (Thing(), {1: "non-str key"}, np.array([object()]), {1, 2}):
        with pytest.raises(wire.WireError, match="cannot send"):
            wire.encode(bad, [])


def test_worker_side_objects_become_handles_and_come_back_as_the_same_handle():
    session = backends.Session(lambda module, name: None)
    obj = object()
    first = wire.roundtrip(obj, on_object=session.describe)
    again = wire.roundtrip([obj], on_object=session.describe)[0]
    assert isinstance(first, wire.Handle) and first == again and first.type_name == "builtins.object"


# ---------------------------------------------------------------------------------- classes by handle
def test_a_class_is_driven_by_handle_in_the_sandbox(tmp_path):
    report = grade_submission(ROOT / "solutions", ["frontiers.KVCache"])
    entry = by_id(report)["frontiers.KVCache"]
    assert entry["status"] == "passed", messages(entry)
    sub = submission(tmp_path, frontiers="""+
        _real = KVCache

        class KVCache(_real):
            def decode_step(self, q):  # ignores everything but the last cached position
                import torch
                out = _real.decode_step(self, q)
                return out[..., -1:, :].expand_as(out).clone()
        """)
    entry = by_id(grade_submission(sub, ["frontiers.KVCache"]))["frontiers.KVCache"]
    assert entry["status"] == "failed" and 0 < entry["points"] < 3


def test_module_state_does_not_carry_from_one_exercise_to_the_next(tmp_path):
    """softmax.softmax is graded first in the same worker; masked_softmax must see a fresh module."""
    sub = submission(tmp_path, softmax="""+
        _calls = []
        _real_softmax, _real_masked = softmax, masked_softmax

        def softmax(x, axis=-1):
            _calls.append(1)
            return _real_softmax(x, axis)

        def masked_softmax(x, mask, axis=-1):
            if _calls:
                raise RuntimeError("state leaked from the previous exercise")
            return _real_masked(x, mask, axis)
        """)
    report = by_id(grade_submission(sub, ["softmax"]))
    assert report["softmax.softmax"]["status"] == "passed"
    assert report["softmax.masked_softmax"]["status"] == "passed", messages(report["softmax.masked_softmax"])


# ------------------------------------------------------------------------------------ the memory proof
def test_the_memory_limit_is_set_before_submission_code_and_confirmed_from_outside():
    copy = copy_submission(ROOT / "solutions" / "attnlab", Limits())
    try:
        worker = Worker(copy, Limits(), sandbox_mode(), "torch", memory_budget_mb=64)
        worker.start()
        try:
            soft, hard = address_space_limit(worker.pid)
            assert soft == hard == worker.info["memory_limit"] == worker.confirm_memory_limit()
            with open(f"/proc/{worker.pid}/status") as fh:
                vm = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
            assert 0 < soft - vm <= 64 << 20  # the budget is what is left above current use
        finally:
            worker.close()
    finally:
        shutil.rmtree(copy, ignore_errors=True)


MEMORY_CASE = next(c.name for c in registry.get("flash.tiled_attention").cases if c.memory_budget_mb)


def _memory_result(report):
    entry = by_id(report)["flash.tiled_attention"]
    return entry, next(t for t in entry["tests"] if t["name"] == MEMORY_CASE)


@pytest.mark.slow
@pytest.mark.parametrize("body,needle", [
    ("""
     def tiled_attention(q, k, v, block_q=128, block_k=128, causal=False, scale=None):
         import torch
         s = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5   # (..., L, S): the whole matrix
         if causal:
             L, S = s.shape[-2:]
             s = s.masked_fill(torch.ones(L, S, dtype=torch.bool).tril(S - L).logical_not(), float("-inf"))
         lse = torch.logsumexp(s, -1)
         return torch.nan_to_num(torch.exp(s - lse[..., None])) @ v, lse
     """, "s = q @ k.transpose"),
    ("""
     def tiled_attention(q, k, v, block_q=128, block_k=128, causal=False, scale=None):
         import numpy as np, torch
         s = q.numpy() @ np.swapaxes(k.numpy(), -1, -2)   # a NumPy detour: still L x S
         raise AssertionError("unreachable")
     """, "Unable to allocate"),
])
def test_the_memory_proof_catches_a_naive_kernel_and_a_numpy_detour(tmp_path, body, needle):
    sub = submission(tmp_path, flash=body)
    entry, memory = _memory_result(grade_submission(sub, ["flash.tiled_attention"]))
    assert not memory["passed"]
    assert "ran out of its 64 MiB memory budget" in memory["message"] and needle in memory["message"]
    assert "never holds an L x S matrix" in memory["message"]


@pytest.mark.slow
def test_a_kernel_that_tries_to_lift_its_memory_limit_gets_nowhere(tmp_path):
    sub = submission(tmp_path, flash="""+
        _tiled = tiled_attention

        def tiled_attention(q, k, v, *args, **kwargs):
            import resource
            try:
                resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            except Exception:
                pass
            try:
                import ctypes
                ctypes.CDLL(None).setrlimit
            except Exception:
                pass
            s = q @ k.transpose(-1, -2)   # then materialises anyway
            return _tiled(q, k, v, *args, **kwargs)
        """)
    entry, memory = _memory_result(grade_submission(sub, ["flash.tiled_attention"]))
    assert not memory["passed"] and "memory budget" in memory["message"]
    assert entry["points"] < entry["max_points"]


# ---------------------------------------------------------------------------------- the source scan
@pytest.mark.parametrize("source,expected", [
    ("from torch.nn.functional import scaled_dot_product_attention as f\n", "imports scaled_dot_product_attention"),
    ("import torch.nn.functional as F\nsdpa = F.scaled_dot_product_attention\n", "uses scaled_dot_product_attention"),
    ("import torch\nf = getattr(torch.nn.functional, 'scaled_dot_' + 'product_attention')\n", "computed name"),
    ("import torch\nf = getattr(torch.nn.functional, 'scaled_dot_product_attention')\n", "names 'scaled_dot_product"),
    ("import torch\nF = torch.nn.functional\nf = vars(F)\n", "vars()"),
    ("import torch\nop = torch.ops.aten\n", "torch.ops"),
    ("f = eval('1')\n", "eval()"),
    ("import importlib\n", "importlib"),
])
def test_the_source_scan_flags_pytorch_attention_however_written(source, expected):
    findings = scan.scan_source(source, "flash.py", registry.get("flash.tiled_attention").scan_names)
    assert any(expected in f for f in findings), findings


def test_the_source_scan_ignores_docstrings_and_the_solution():
    text = '"""Compare with F.scaled_dot_product_attention."""\nimport torch\n\ndef f():\n    """scaled_dot_product"""\n'
    assert scan.scan_source(text, "flash.py", ("scaled_dot_product",)) == []
    assert scan.scan_package(ROOT / "solutions" / "attnlab", "flash", registry.get("flash.tiled_attention").scan_names) == []


def test_an_aliased_sdpa_is_forbidden_in_the_sandbox(tmp_path):
    sub = submission(tmp_path, flash="""
        from torch.nn import functional as _nnf

        _attend = getattr(_nnf, "scaled_dot_product_attention")

        def tiled_attention(q, k, v, block_q=128, block_k=128, causal=False, scale=None):
            return _attend(q, k, v), None
        """)
    entry = by_id(grade_submission(sub, ["flash.tiled_attention"]))["flash.tiled_attention"]
    assert entry["status"] == "forbidden" and entry["points"] == 0
    assert "scaled_dot_product_attention" in messages(entry)


def test_the_runtime_detector_sees_sdpa_reached_without_its_name(monkeypatch, tmp_path):
    """With the source scan off, the worker's TorchFunctionMode still recognises the function by its name."""
    monkeypatch.setattr(registry.get("flash.tiled_attention"), "scan_names", ())
    sub = submission(tmp_path, flash="""
        import torch

        def tiled_attention(q, k, v, block_q=128, block_k=128, causal=False, scale=None):
            fn = [f for n, f in vars(torch.nn.functional).items() if n.startswith("scaled_dot")][0]
            return fn(q, k, v), torch.logsumexp(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, -1)
        """)
    entry = by_id(grade_submission(sub, ["flash.tiled_attention"]))["flash.tiled_attention"]
    assert entry["status"] == "forbidden"
    assert "scaled_dot_product_attention" in messages(entry)


# ---------------------------------------------------------------------------------------------- GPU
def test_gpu_cases_are_skipped_with_a_reason_and_never_change_the_score(monkeypatch):
    from autograde import sandbox

    monkeypatch.setattr(sandbox, "_CUDA", [(False, "no CUDA device (a test)")])
    report = grade_submission(ROOT / "solutions", ["flash.tiled_attention"])
    entry = by_id(report)["flash.tiled_attention"]
    gpu = [t for t in entry["tests"] if "cuda" in t["name"]]
    assert gpu and all(t["skipped"] == "no CUDA device (a test)" for t in gpu)
    assert entry["points"] == entry["max_points"] and entry["status"] == "passed"
    assert report["device"] == {"cuda": None, "skipped": "GPU cases skipped and not counted: no CUDA device (a test)"}


def test_the_cuda_profile_binds_the_nvidia_devices(monkeypatch, tmp_path):
    from autograde import sandbox

    monkeypatch.setattr(sandbox, "nvidia_device_nodes", lambda: ["/dev/nvidia0", "/dev/nvidiactl"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    argv = sandbox._bwrap_argv(tmp_path, "{}", profiles.get("cuda"), None)
    text = " ".join(argv)
    assert "--dev-bind /dev/nvidia0 /dev/nvidia0" in text and "--dev-bind /dev/nvidiactl /dev/nvidiactl" in text
    assert "--ro-bind /sys /sys" in text and "--setenv CUDA_VISIBLE_DEVICES 0" in text
    plain = " ".join(sandbox._bwrap_argv(tmp_path, "{}", profiles.get("torch"), None))
    assert "nvidia" not in plain and "/sys" not in plain


# --------------------------------------------------------------------------------- limits, dependencies
BURN = """+
    import time as _time
    _burned = []
    _real_{name} = {name}

    def {name}(*args, **kwargs):
        if not _burned:  # 0.6 CPU seconds once per import: once per exercise, as modules are re-imported
            start = _time.process_time()
            while _time.process_time() - start < 0.6:
                pass
            _burned.append(1)
        return _real_{name}(*args, **kwargs)
    """


def test_the_cpu_budget_is_per_exercise(tmp_path):
    """Each exercise gets its own CPU budget: correct exercises that together use more CPU than one budget
    are never killed late, and one exercise that burns CPU is stopped."""
    sub = submission(tmp_path, softmax=BURN.format(name="softmax"), scoring=BURN.format(name="dot_scores"),
                     attention=BURN.format(name="scaled_dot_product_attention"),
                     masks=BURN.format(name="causal_mask") + textwrap.dedent("""
                         def padding_mask(lengths, max_len):
                             while True:
                                 pass
                         """))
    limits = Limits(cpu_s=1.5, wall_s=30)  # 4 x 0.6 s of burning alone is more than one budget
    report = by_id(grade_submission(sub, ["softmax.softmax", "scoring.dot_scores",
                                          "attention.scaled_dot_product_attention", "masks"], limits=limits))
    assert report["masks.padding_mask"]["status"] == "timeout"
    assert "CPU seconds" in messages(report["masks.padding_mask"])
    assert all(e["status"] == "passed" for i, e in report.items() if i != "masks.padding_mask"), \
        {i: messages(e) for i, e in report.items()}


def test_the_judges_dependency_work_is_not_on_the_learners_clock(monkeypatch):
    real = backends._reference_for_dep

    def slow(name, args, kwargs):
        time.sleep(0.3)
        return real(name, args, kwargs)

    monkeypatch.setattr(backends, "_reference_for_dep", slow)
    report = grade_submission(ROOT / "solutions", ["attention.scaled_dot_product_attention"], timeout=1.5)
    entry = by_id(report)["attention.scaled_dot_product_attention"]
    assert entry["status"] == "passed", messages(entry)  # > 3 s of reference work inside a 1.5 s budget


def test_dependency_calls_are_capped(tmp_path):
    sub = submission(tmp_path, attention="""+
        _real = scaled_dot_product_attention

        def scaled_dot_product_attention(q, k, v, mask=None, scale=None):
            for _ in range(2500):
                softmax(np.zeros(3))
            return _real(q, k, v, mask, scale)
        """)
    entry = by_id(grade_submission(sub, ["attention.scaled_dot_product_attention"]))
    text = messages(entry["attention.scaled_dot_product_attention"])
    assert "more than 2000 calls to softmax.softmax" in text


def test_a_mistyped_dependency_fails_at_load():
    ok = Exercise("softmax.x", 1, reference=lambda: None)
    ok.case("a", "b")(lambda t: None)
    bad = Exercise("softmax.y", 1, reference=lambda: None, deps=("softmax.sofmax",))
    bad.case("a", "b")(lambda t: None)
    with pytest.raises(GraderDefinitionError, match="unknown dependency 'softmax.sofmax'"):
        registry.validate({"softmax.x": ok, "softmax.y": bad})
    klass = Exercise("frontiers.Thing", 1, reference=type("Thing", (), {}), profile="torch")
    klass.case("a", "b")(lambda t: None)
    uses = Exercise("frontiers.f", 1, reference=lambda: None, deps=("frontiers.Thing",), profile="torch")
    uses.case("a", "b")(lambda t: None)
    with pytest.raises(GraderDefinitionError, match="is a class"):
        registry.validate({"frontiers.Thing": klass, "frontiers.f": uses})
    with pytest.raises(KeyError, match="unknown profile"):
        Exercise("softmax.z", 1, reference=lambda: None, profile="jax")


# ------------------------------------------------------------------------------------ learner-facing
def test_check_returns_a_one_line_result():
    from autograde.notebook import CheckResult

    result = CheckResult({"exercises": [{"id": "masks.causal_mask"}], "total": 1.0, "max_total": 1.0})
    assert repr(result) == "<check masks.causal_mask: 1/1 points>"
    assert result["total"] == 1.0


def test_progress_table_groups_exercises_under_their_notebook(cli, tmp_path):
    out = cli("check", "masks", "frontiers", "--src", ROOT / "solutions", cwd=tmp_path).stdout
    lines = out.splitlines()
    assert lines.index("02 Scaled dot-product attention") < lines.index("12 Limits and frontiers")
    assert any(line.startswith("  frontiers.KVCache") for line in lines)


def test_solutions_score_full_and_stubs_zero_in_every_profile(cli, tmp_path):
    full = json.loads(cli("grade", ROOT / "solutions", "--json", "-", cwd=tmp_path).stdout)
    stubs = json.loads(cli("grade", ROOT / "src", "--json", "-", cwd=tmp_path).stdout)
    assert full["total"] == full["max_total"] and {e["status"] for e in full["exercises"]} == {"passed"}
    assert stubs["total"] == 0 and {e["status"] for e in stubs["exercises"]} == {"not_implemented"}
    kinds = {registry.get(e["id"]).profile for e in full["exercises"]}
    assert {"numpy", "torch"} <= kinds
