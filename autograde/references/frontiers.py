"""Reference KV cache: lists of chunks, concatenated when read; attention by the PyTorch oracle in float64,
rounded once to the query's dtype."""
from . import oracles


class KVCache:
    def __init__(self, capacity=16):
        if int(capacity) < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = int(capacity)
        self._k, self._v = [], []

    def __len__(self):
        return sum(k.shape[-2] for k in self._k)

    def append(self, k, v):
        self._k.append(k)
        self._v.append(v)
        while self.capacity < len(self):
            self.capacity *= 2

    def decode_step(self, q):
        import torch

        k, v = torch.cat(self._k, dim=-2), torch.cat(self._v, dim=-2)
        out, _ = oracles.attention(q, k, v, causal=True)
        return out.to(q.dtype)
