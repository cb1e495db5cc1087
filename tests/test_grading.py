"""`attnlab grade` and `attnlab check` as users call them."""
import json
import shutil
import textwrap
import time

import pytest

from autograde import registry
from conftest import ROOT

TOTAL = sum(e.points for e in registry.all_exercises())


def _grade_json(cli, tmp_path, folder, *extra):
    out = tmp_path / "grade.json"
    result = cli("grade", folder, "--json", out, *extra, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return json.loads(out.read_text())


def test_solutions_get_full_marks(cli, tmp_path):
    report = _grade_json(cli, tmp_path, ROOT / "solutions")
    assert report["total"] == report["max_total"] == TOTAL
    assert {e["status"] for e in report["exercises"]} == {"passed"}
    assert [e["id"] for e in report["exercises"]] == [e.id for e in registry.all_exercises()]
    for key in ("submission", "total", "max_total", "exercises"):
        assert key in report
    for ex in report["exercises"]:
        assert set(ex) >= {"id", "points", "max_points", "status", "tests"}
        assert all(set(t) >= {"name", "passed", "message"} for t in ex["tests"])


def test_stubs_get_zero_and_not_implemented(cli, tmp_path):
    report = _grade_json(cli, tmp_path, ROOT / "src")
    assert report["total"] == 0 and report["max_total"] == TOTAL
    assert {e["status"] for e in report["exercises"]} == {"not_implemented"}


def test_a_course_checkout_is_accepted_as_submission(cli, tmp_path):
    """`attnlab grade .` from a learner's checkout finds src/attnlab."""
    report = _grade_json(cli, tmp_path, ROOT, "masks.causal_mask")
    assert report["exercises"][0]["status"] == "not_implemented"


def test_selected_exercises_and_modules(cli, tmp_path):
    report = _grade_json(cli, tmp_path, ROOT / "solutions", "softmax", "masks.padding_mask")
    assert [e["id"] for e in report["exercises"]] == ["softmax.softmax", "softmax.masked_softmax", "masks.padding_mask"]


def test_grading_is_deterministic_and_order_independent(cli, tmp_path):
    sub = tmp_path / "sub"
    shutil.copytree(ROOT / "solutions" / "attnlab", sub / "attnlab")
    bug = sub / "attnlab" / "softmax.py"
    bug.write_text(bug.read_text().replace("x - np.max(x, axis=axis, keepdims=True)", "x - np.max(x)"))
    ids = ["softmax.softmax", "softmax.masked_softmax", "attention.scaled_dot_product_attention"]
    first = _grade_json(cli, tmp_path, sub, *ids)
    second = _grade_json(cli, tmp_path, sub, *reversed(ids))
    assert first == second
    assert 0 < first["exercises"][0]["points"] < 2  # the planted bug loses some, not all
    assert "not the global max" in json.dumps(first)


@pytest.mark.parametrize("args,needle", [
    (["grade", "/no/such/folder"], "no such folder"),
    (["grade", "{tmp}"], "no attnlab/ package"),
    (["grade", "{solutions}", "softmax.nope"], "unknown exercise"),
    (["check", "nope"], "unknown exercise"),
    (["grade-batch", "/no/such/folder", "--out", "{tmp}/out"], "no such folder"),
    (["grade"], "the following arguments are required"),
    (["frobnicate"], "invalid choice"),
    (["grade", "{solutions}", "masks", "--timeout", "-1"], "--timeout must be a positive"),
    (["grade", "{solutions}", "masks.causal_mask", "--json", "/proc/no/such/dir/g.json"], "No such file"),
    (["grade-batch", "{tmp}", "--out", "{tmp}/out", "--workers", "0"], "--workers must be at least 1"),
    (["classroom", "release", "{tmp}/nope", "01_what_attention_computes"], "no such assignment"),
    (["classroom", "source"], "needs COURSE_DIR"),
])
def test_bad_input_gives_one_line_and_nonzero_exit(cli, tmp_path, args, needle):
    args = [a.format(tmp=tmp_path, solutions=ROOT / "solutions") for a in args]
    result = cli(*args, cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_check_progress_table_and_exit_codes(cli, tmp_path):
    result = cli("check", cwd=tmp_path)
    assert result.returncode == 1
    assert "0/9 exercises passed" in result.stdout.replace(str(len(registry.all_exercises())), "9")
    assert "softmax.softmax" in result.stdout and "not implemented" in result.stdout
    done = cli("check", "masks", "--src", ROOT / "solutions", cwd=tmp_path)
    assert done.returncode == 0, done.stdout
    assert "2/2 exercises passed" in done.stdout


def test_check_verbose_shows_per_case_hints(cli, tmp_path):
    sub = tmp_path / "mine"
    shutil.copytree(ROOT / "solutions" / "attnlab", sub / "attnlab")
    f = sub / "attnlab" / "scoring.py"
    f.write_text(f.read_text().replace("scale = 1.0 / np.sqrt(q.shape[-1])", "scale = 1.0"))
    result = cli("check", "scoring.scaled_dot_scores", "--src", sub, "-v", cwd=tmp_path)
    assert result.returncode == 1
    assert "PASS" in result.stdout and "FAIL" in result.stdout
    assert "did you forget 1/sqrt(D)?" in result.stdout


def test_an_infinite_loop_times_out_without_hanging(cli, tmp_path):
    sub = tmp_path / "loop"
    shutil.copytree(ROOT / "solutions" / "attnlab", sub / "attnlab")
    f = sub / "attnlab" / "masks.py"
    f.write_text(f.read_text() + "\n\ndef causal_mask(L, S=None):\n    while True:\n        pass\n")
    report = _grade_json(cli, tmp_path, sub, "masks", "--timeout", "2")
    statuses = {e["id"]: e["status"] for e in report["exercises"]}
    assert statuses == {"masks.causal_mask": "timeout", "masks.padding_mask": "passed"}


def test_a_half_sent_message_cannot_hang_the_grader(cli, tmp_path):
    """The submission forges a frame header on the grader's result channel and stalls: timeout, not a hang."""
    sub = tmp_path / "forge"
    shutil.copytree(ROOT / "solutions" / "attnlab", sub / "attnlab")
    f = sub / "attnlab" / "masks.py"
    f.write_text(f.read_text() + textwrap.dedent("""

        def causal_mask(L, S=None):
            import json, os, sys, time
            result_fd = json.loads(sys.argv[1])["fds"][1]
            os.write(result_fd, (1000).to_bytes(8, "big") + b"{")
            time.sleep(60)
        """))
    started = time.monotonic()
    report = _grade_json(cli, tmp_path, sub, "masks", "--timeout", "2")
    assert time.monotonic() - started < 30
    statuses = {e["id"]: e["status"] for e in report["exercises"]}
    assert statuses == {"masks.causal_mask": "timeout", "masks.padding_mask": "passed"}
