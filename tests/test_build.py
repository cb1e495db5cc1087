"""One source: stubs and learner notebooks are generated from solutions/ and committed in sync."""
import json

import pytest

from autograde import build
from autograde.course import NOTEBOOKS
from conftest import ROOT


def test_generated_files_are_in_sync_with_solutions(cli):
    result = cli("build", "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "in sync" in result.stdout


def test_check_detects_a_hand_edited_stub(tmp_path, monkeypatch):
    stub = ROOT / "src" / "attnlab" / "softmax.py"
    original = stub.read_text()
    try:
        stub.write_text(original + "\n# edited by hand\n")
        lines = []
        assert build.build(check=True, out=lines.append) == 1
        assert any("src/attnlab/softmax.py" in line for line in lines)
    finally:
        stub.write_text(original)


def test_stubs_contain_no_solution_line():
    for path in sorted((ROOT / "solutions" / "attnlab").glob("*.py")):
        text = path.read_text()
        stub = (ROOT / "src" / "attnlab" / path.name).read_text()
        solution_lines = [l for l in build.solution_lines(text) if len(l) > 12 and not l.startswith("#")]
        leaked = [l for l in solution_lines if l in {s.strip() for s in stub.splitlines()}]
        assert not leaked, f"{path.name}: solution lines in the stub: {leaked}"


def test_every_stub_function_raises_not_implemented_with_its_notebook():
    stub = (ROOT / "src" / "attnlab" / "softmax.py").read_text()
    assert 'raise NotImplementedError(' in stub
    assert "softmax.softmax is not implemented yet: see notebooks/01_what_attention_computes.ipynb" in stub
    assert "### BEGIN" not in stub and "### END" not in stub
    assert "# 1. " in stub  # numbered hints are kept


def test_unbalanced_markers_are_rejected():
    with pytest.raises(build.BuildError):
        build.make_stub("def f():\n    ### BEGIN SOLUTION\n    return 1\n", "softmax")
    with pytest.raises(build.BuildError):
        build.make_stub("def f():\n    ### END SOLUTION\n", "softmax")


def test_learner_notebooks_have_no_outputs_and_no_model_answers():
    for nb in NOTEBOOKS[:2]:
        data = json.loads((ROOT / "notebooks" / f"{nb.name}.ipynb").read_text())
        source = build.load_source_notebook(ROOT / "solutions" / "notebooks" / f"{nb.name}.py")
        answers = ["".join(c.source) for c in source.cells if "answer" in build.cell_tags(c)]
        assert answers, f"{nb.name} has no written-answer cell"
        for cell in data["cells"]:
            assert not cell.get("outputs"), f"{nb.name}: a cell has outputs"
            assert cell.get("execution_count") is None
            text = "".join(cell["source"])
            for answer in answers:
                assert answer.strip()[:60] not in text, f"{nb.name}: a model answer leaked"
        setup = [c for c in data["cells"] if "setup" in c["metadata"].get("tags", [])]
        assert len(setup) == 1 and "".join(setup[0]["source"]) == build.SETUP_SOURCE
