"""A token table read from a quantized matrix: ``QuantizedEmbedding``.

The table is a ``QuantizedLinear`` of shape (vocab, dim) (``rows(ids)`` dequantizes only the rows looked up). When
the model ties its embeddings to the LM head, the table *is* the quantized head: one copy in memory and on disk.
This module knows nothing about which model it sits in.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from albumen.llm.quant.config import LayerScheme
from albumen.llm.quant.linear import QuantizedLinear, quantized_linear_class

__all__ = ["QuantizedEmbedding"]


class QuantizedEmbedding(nn.Module):
    """Embedding lookup on a quantized (num_embeddings, embedding_dim) table.

    ``tied_to`` is the quantized LM head when the weights are tied; it is kept as a plain attribute (not a
    submodule) so the shared buffers appear once in the state dict, under the head.
    """

    def __init__(self, table: QuantizedLinear, dtype: torch.dtype = torch.float32, tied: bool = False) -> None:
        super().__init__()
        self.num_embeddings = table.out_features
        self.embedding_dim = table.in_features
        self.tied = tied
        if tied:
            object.__setattr__(self, "_tied_table", table)
        else:
            self.table = table
        # The engine reads ``embed_tokens.weight.dtype`` / ``.device`` to size its caches; an empty marker answers
        # that without materialising the float table.
        self.register_buffer("weight", torch.empty(0, dtype=dtype), persistent=False)

    @property
    def source(self) -> QuantizedLinear:
        return self._tied_table if self.tied else self.table

    @classmethod
    def from_float(cls, emb: nn.Embedding, scheme: LayerScheme) -> QuantizedEmbedding:
        """Quantize ``emb.weight`` (vocab, dim) as if it were a linear's weight."""
        lin = nn.Linear(emb.embedding_dim, emb.num_embeddings, bias=False, device="meta")
        lin.weight = emb.weight
        table = quantized_linear_class(scheme).from_float(lin, scheme)
        return cls(table, emb.weight.dtype)

    def forward(self, ids: Tensor) -> Tensor:  # (...,) int -> (..., dim)
        return self.source.rows(ids).to(self.weight.dtype)

    def dequantize(self) -> Tensor:
        """(num_embeddings, embedding_dim) float32."""
        return self.source.dequantize()

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, scheme={self.source.scheme.name}, tied={self.tied}"
