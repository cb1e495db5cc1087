"""Project-level promises: dependencies in step, README commands, CI, question coverage."""
import re
import tomllib

from autograde import build
from autograde.course import ALL_QUESTIONS, NOTEBOOKS
from conftest import ROOT


def _norm(req):
    return re.sub(r"\s+", "", req).lower()


def test_environment_yml_and_pyproject_name_the_same_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_norm(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    env = (ROOT / "environment.yml").read_text()
    pip_section = env.split("- pip:", 1)[1]
    listed = {_norm(line.strip()[2:]) for line in pip_section.splitlines()
              if line.strip().startswith("- ") and not line.strip().startswith("- -e")}
    assert listed == wanted


def test_constraints_pin_within_the_declared_ranges():
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ranges = {Requirement(r).name.lower(): Requirement(r).specifier for r in project["dependencies"]}
    for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            if name.lower() in ranges:
                assert version in ranges[name.lower()], f"{name}=={version} is outside {ranges[name.lower()]}"


def test_readme_names_the_two_commands_and_ci_calls_the_test_one():
    readme = (ROOT / "README.md").read_text()
    first_screen = "\n".join(readme.splitlines()[:40])
    assert "make lab" in first_screen and "make test" in first_screen
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_question_is_tagged_in_exactly_one_notebook_as_planned():
    seen = {}
    for path in sorted((ROOT / "solutions" / "notebooks").glob("[0-9][0-9]_*.py")):
        nb = build.load_source_notebook(path)
        for cell in nb.cells:
            for tag in build.cell_tags(cell):
                if tag.startswith("question:"):
                    qid = tag.split(":", 1)[1]
                    assert qid not in seen, f"{qid} tagged in {seen.get(qid)} and {path.name}"
                    seen[qid] = path.stem
                    assert cell.cell_type == "markdown"
                    assert cell.source.lstrip().startswith("###"), f"{qid}: start with the question as a heading"
                    assert len(cell.source.split()) > 60, f"{qid}: the answer is too short for an interview"
    assert set(seen) <= set(ALL_QUESTIONS)
    for nb in NOTEBOOKS:
        if (ROOT / "solutions" / "notebooks" / f"{nb.name}.py").exists():
            mine = {q for q, name in seen.items() if name == nb.name}
            assert mine == set(nb.questions), f"{nb.name}: tagged {sorted(mine)}, planned {sorted(nb.questions)}"


def test_every_exercise_has_a_check_cell_in_its_notebook():
    """Exercises of written notebooks each have their check cell; the others are graded ahead of their
    notebook and their stubs point at the notebook that will teach them."""
    from autograde import registry
    from autograde.course import notebook_for_module

    checks = set()
    for path in sorted((ROOT / "solutions" / "notebooks").glob("[0-9][0-9]_*.py")):
        for cell in build.load_source_notebook(path).cells:
            if "check" in build.cell_tags(cell):
                m = re.fullmatch(r'check\("([\w.]+)"\)', cell.source.strip())
                assert m, f"{path.name}: a check cell must be exactly check(\"module.function\")"
                checks.add(m.group(1))
    written = {nb.name for nb in NOTEBOOKS if (ROOT / "solutions" / "notebooks" / f"{nb.name}.py").exists()}
    taught = {e.id for e in registry.all_exercises() if notebook_for_module(e.module).name in written}
    assert checks == taught
    for e in registry.all_exercises():
        stub = (ROOT / "src" / "attnlab" / f"{e.module}.py").read_text()
        assert f"see notebooks/{notebook_for_module(e.module).name}.ipynb" in stub


def test_package_lists_every_module_of_the_course_plan():
    from autograde.course import NOTEBOOKS

    namespace = {}
    exec((ROOT / "solutions" / "attnlab" / "__init__.py").read_text(), namespace)
    assert namespace["__all__"] == [m for nb in NOTEBOOKS for m in nb.modules]
