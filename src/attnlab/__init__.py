"""attnlab: the functions you implement in *Attention, from Intuition to Kernels*.

One topic per module; each module names the notebook that teaches it. Submodules are not imported
here on purpose: a mistake in one module must never stop the others from loading or being graded.

Shape legend (used everywhere): B batch, H heads, L query length, S key/value length,
D query/key width, D_v value width. Boolean masks mean *may attend*: True keeps a position.
"""

__all__ = ["softmax", "scoring", "attention", "masks", "seq2seq", "multihead", "transformer", "positions", "cost",
           "efficient", "flash", "interpret", "vision", "applications", "frontiers"]
