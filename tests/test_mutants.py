"""The mutant catalogue: every known mistake loses points and the grader names it."""
import pytest

from autograde import registry
from autograde.runner import InProcessBackend, grade_with_backend

EXERCISES = registry.all_exercises()
MUTANTS = [(ex, m) for ex in EXERCISES for m in ex.mutants]
ALTERNATIVES = [(ex, a) for ex in EXERCISES for a in ex.alternatives]
FAIRNESS_SEEDS = range(40)


def _grade(exercise, func, heavy=True):
    report = grade_with_backend(InProcessBackend({exercise.id: func}, heavy=heavy), [exercise.id])
    return report["exercises"][0]


def _failures(result):
    return [t["message"] for t in result["tests"] if not t["passed"] and not t.get("skipped")]


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda e: e.id)
def test_reference_scores_full_marks(exercise):
    result = _grade(exercise, exercise.reference)
    assert result["status"] == "passed", _failures(result)


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda e: e.id)
def test_catalogue_is_substantial(exercise):
    assert len(exercise.mutants) >= 2, f"{exercise.id} needs a mutant catalogue"
    assert len(exercise.cases) >= 3
    assert all(c.intent for c in exercise.cases)


@pytest.mark.parametrize("exercise,mutant", MUTANTS, ids=[f"{e.id}:{m.name}" for e, m in MUTANTS])
def test_mutant_loses_points_and_is_named(exercise, mutant):
    # Without the heavy cases first (seconds each, and replayed on every mutant when they fail); a mutant
    # that only a heavy case catches is graded again with them.
    result = _grade(exercise, mutant.func, heavy=False)
    messages = _failures(result)
    if not any(mutant.hint in m for m in messages):
        result = _grade(exercise, mutant.func)
        messages = _failures(result)
    assert result["points"] < result["max_points"], f"{mutant.name} scored full marks"
    assert any(mutant.hint in m for m in messages), f"no message names {mutant.name!r}: {messages}"
    for m in messages:  # the house format: `<function>: <what> [case]; expected X, got Y. Hint: ...`
        assert m.startswith(exercise.id + ":"), m


@pytest.mark.parametrize("exercise,alternative", ALTERNATIVES, ids=[f"{e.id}:{a.name}" for e, a in ALTERNATIVES])
def test_correct_code_written_another_way_passes_at_every_seed(exercise, alternative):
    """Fairness: a correct implementation that is not ours (log-sum-exp instead of max-shift, einsum instead
    of matmul, F.scaled_dot_product_attention inside a cache...) scores full marks whatever the seed."""
    for seed in FAIRNESS_SEEDS:  # heavy cases (seconds each) at the first seed only
        backend = InProcessBackend({exercise.id: alternative.func}, heavy=seed == FAIRNESS_SEEDS[0])
        report = grade_with_backend(backend, [exercise.id], seed=seed)
        failing = [t["message"] for t in report["exercises"][0]["tests"] if not t["passed"] and not t.get("skipped")]
        assert not failing, f"seed {seed}: {failing[:1]}"


def test_unscaled_attention_gets_the_scale_hint():
    ex = registry.get("attention.scaled_dot_product_attention")
    mutant = next(m for m in ex.mutants if m.name == "forgot scale")
    messages = _failures(_grade(ex, mutant.func))
    assert any("did you forget 1/sqrt(D)?" in m for m in messages)
    assert any("max abs error" in m and "worst at index" in m for m in messages)


def test_solutions_pass_for_many_seeds():
    """No flaky oracle: the instructor's solutions score full marks whatever the (secret) seed."""
    from conftest import solutions_package

    with solutions_package() as load:
        funcs = {e.id: getattr(load(e.module), e.function) for e in EXERCISES}
        for seed in range(12):  # heavy cases (seconds each) at the first seed only; alternatives run 40 seeds
            report = grade_with_backend(InProcessBackend(funcs, heavy=seed == 0), None, seed=seed)
            failing = [(e["id"], t["message"]) for e in report["exercises"] for t in e["tests"]
                       if not t["passed"] and not t.get("skipped")]
            assert not failing, f"seed {seed}: {failing[:2]}"


def test_no_hint_names_a_mistake_that_changes_nothing_on_the_case():
    """An output a hair outside the tolerance matches every mutant that is correct on that case; those must
    not be named (the reference is replayed too, and mutants that end like it are dropped)."""
    from autograde.references import softmax as ref

    ex = registry.get("softmax.softmax")
    result = _grade(ex, lambda x, axis=-1: ref.softmax(x, axis) * (1 + 5e-7))
    messages = _failures(result)
    assert messages
    for m in messages:
        assert "subtract the row max" not in m and "not the global max" not in m, m

