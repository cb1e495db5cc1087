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


# Difficulty of each interview question, as the review deck (`attnlab cards`) shows it, with the meaning
# the question bank gives its chips: Easy = a definition or intuition said in one breath; Medium = a
# mechanism with its formula, shapes or cost, derivable on a whiteboard; Hard = trade-offs across papers,
# history in detail, or systems-level knowledge. The qa-N entries are copied from
# ../shared/seeds/000_07c87db1aaf45abd.txt (each card's own chip); the theory-N ones are the course's.
DIFFICULTY = {
    "qa-1": "Easy", "qa-2": "Easy", "qa-3": "Medium", "qa-4": "Medium", "qa-5": "Medium",
    "qa-6": "Medium", "qa-7": "Hard", "qa-8": "Easy", "qa-9": "Medium", "qa-10": "Hard",
    "qa-11": "Easy", "qa-12": "Easy", "qa-13": "Medium", "qa-14": "Hard", "qa-15": "Medium",
    "theory-1": "Easy",      # the concept of attention
    "theory-2": "Easy",      # the seq2seq bottleneck
    "theory-3": "Hard",      # Bahdanau et al. in detail
    "theory-4": "Hard",      # Luong vs Bahdanau (qa-10 is Hard)
    "theory-5": "Easy",      # Q, K, V (qa-2 is Easy)
    "theory-6": "Medium",    # additive vs multiplicative
    "theory-7": "Easy",      # computing the weights
    "theory-8": "Easy",      # softmax normalisation
    "theory-9": "Easy",      # the context vector
    "theory-10": "Medium",   # global vs local
    "theory-11": "Medium",   # self-attention (qa-4 is Medium)
    "theory-12": "Medium",   # multi-head (qa-6 is Medium)
    "theory-13": "Medium",   # the formula (qa-3 is Medium)
    "theory-14": "Medium",   # why scale
    "theory-15": "Medium",   # complexities (qa-9 is Medium)
    "theory-16": "Medium",   # cross-attention (qa-4 is Medium)
    "theory-17": "Medium",   # vanishing gradients
    "theory-18": "Hard",     # the attention bottleneck and its remedies
    "theory-19": "Hard",     # sparse patterns
    "theory-20": "Medium",   # window attention
    "theory-21": "Hard",     # linear attention and its approximations
    "theory-22": "Medium",   # visualising and interpreting weights
    "theory-23": "Easy",     # heatmaps
    "theory-24": "Medium",   # attention in vision (qa-13 is Medium)
    "theory-25": "Medium",   # spatial and channel attention
    "theory-26": "Medium",   # Squeeze-and-Excitation
    "theory-27": "Medium",   # image captioning
    "theory-28": "Medium",   # hard vs soft
    "theory-29": "Hard",     # speech recognition
    "theory-30": "Medium",   # attention in recurrent models
    "theory-31": "Hard",     # coverage
    "theory-32": "Medium",   # alignment in translation
    "theory-33": "Hard",     # attention regularisation
    "theory-34": "Easy",     # attention dropout (qa-12 is Easy)
    "theory-35": "Medium",   # variable-length sequences
    "theory-36": "Medium",   # causal masks (qa-5 is Medium)
    "theory-37": "Medium",   # memory requirements
    "theory-38": "Hard",     # optimising attention
    "theory-39": "Hard",     # FlashAttention (qa-14 is Hard)
    "theory-40": "Medium",   # graph attention
    "theory-41": "Medium",   # recommendation systems
    "theory-42": "Medium",   # hierarchical attention
    "theory-43": "Medium",   # co-attention
    "theory-44": "Medium",   # position-aware attention
    "theory-45": "Hard",     # relative position encoding
    "theory-46": "Medium",   # limitations
    "theory-47": "Easy",     # human cognitive attention
    "theory-48": "Hard",     # recent advances
    "theory-49": "Hard",     # alternatives to attention
    "theory-50": "Hard",     # debugging attention models
}
