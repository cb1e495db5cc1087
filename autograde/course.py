"""The course plan: notebooks, the modules they teach, and the interview questions they answer.

This table is the single place that maps modules to notebooks (stub messages, `attnlab check`, the
classroom build and the question-coverage test all read it). Notebooks not written yet are listed so
that the foundation is designed for all twelve.
"""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Notebook:
    number: int
    slug: str
    title: str
    modules: tuple
    questions: tuple = field(default_factory=tuple)

    @property
    def name(self):
        return f"{self.number:02d}_{self.slug}"


def _q(qa=(), theory=()):
    return tuple(f"qa-{n}" for n in qa) + tuple(f"theory-{n}" for n in theory)


NOTEBOOKS = (
    Notebook(1, "what_attention_computes", "What attention computes", ("softmax", "scoring"),
             _q(qa=[1], theory=[1, 2, 6, 7, 8, 9])),
    Notebook(2, "scaled_dot_product_attention", "Scaled dot-product attention", ("attention", "masks"),
             _q(qa=[2, 3, 4, 5], theory=[5, 11, 13, 14, 16, 35, 36])),
    Notebook(3, "seq2seq_attention", "Attention in seq2seq", ("seq2seq",),
             _q(qa=[10], theory=[3, 4, 10, 17, 28, 30, 31, 32])),
    Notebook(4, "multihead_transformer", "Multi-head attention and the Transformer block",
             ("multihead", "transformer"), _q(qa=[6, 7, 11, 12, 15], theory=[12, 34])),
    Notebook(5, "positions", "Positions", ("positions",), _q(qa=[8], theory=[44, 45])),
    Notebook(6, "cost_of_attention", "The cost of attention", ("cost",), _q(qa=[9], theory=[15, 18, 37, 38])),
    Notebook(7, "efficient_attention", "Sparse, local and linear attention", ("efficient",),
             _q(theory=[19, 20, 21])),
    Notebook(8, "flash_attention", "FlashAttention", ("flash",), _q(qa=[14], theory=[39])),
    Notebook(9, "reading_attention", "Reading attention", ("interpret",), _q(theory=[22, 23, 33, 50])),
    Notebook(10, "vision_attention", "Attention in vision", ("vision",), _q(qa=[13], theory=[24, 25, 26, 27])),
    Notebook(11, "beyond_text", "Beyond text", ("applications",), _q(theory=[29, 40, 41, 42, 43])),
    Notebook(12, "limits_frontiers", "Limits and frontiers", ("frontiers",), _q(theory=[46, 47, 48, 49])),
)

ALL_QUESTIONS = _q(qa=range(1, 16), theory=range(1, 51))


def notebook_for_module(module):
    for nb in NOTEBOOKS:
        if module in nb.modules:
            return nb
    raise KeyError(f"no notebook teaches module {module!r}")
