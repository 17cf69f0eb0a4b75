"""Fakes for tests: a tiny random Transformer and a byte-level tokenizer.

Other subsystems' unit tests (quantization, adapters, speculative decoding, memories) build on these, so they are part
of the public API and stay small and deterministic. This module knows nothing about model files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch

from albumen.llm.model import ModelArgs, Transformer
from albumen.llm.tokenizer import Tokenizer

__all__ = ["ByteTokenizer", "byte_level_tokenizer_json", "one_thread", "save_tiny_folder", "tiny_args", "tiny_model"]

_SPECIALS = ("<bos>", "<eos>", "<|im_start|>", "<|im_end|>")
_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class ByteTokenizer(Tokenizer):
    """Ids 0..255 are bytes; then ``<bos>``, ``<eos>``, ``<|im_start|>``, ``<|im_end|>``; vocab 260 (or larger, padded)."""

    def __init__(self, vocab_size: int = 260) -> None:
        if vocab_size < 256 + len(_SPECIALS):
            raise ValueError(f"vocab_size must be at least {256 + len(_SPECIALS)}")
        self._vocab_size = vocab_size
        self.special = {name: 256 + i for i, name in enumerate(_SPECIALS)}
        self.bos_id = self.special["<bos>"]
        self.eos_ids = (self.special["<eos>"], self.special["<|im_end|>"])
        self.chat_template = _CHAT_TEMPLATE
        self.special_tokens = {"bos_token": "<bos>", "eos_token": "<eos>"}

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def encode(self, text: str, add_bos: bool | None = None) -> list[int]:
        ids: list[int] = [self.bos_id] if add_bos else []
        i = 0
        while i < len(text):
            for name, idx in self.special.items():
                if text.startswith(name, i):
                    ids.append(idx)
                    i += len(name)
                    break
            else:
                ids.extend(text[i].encode("utf-8"))
                i += 1
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    def token_bytes(self) -> list[bytes | None]:
        return [bytes([i]) for i in range(256)] + [None] * (self._vocab_size - 256)


def tiny_args(vocab: int = 260, dim: int = 64, n_layers: int = 2, arch: str = "llama", **changes: object) -> ModelArgs:
    """A small architecture: 4 heads, 2 KV heads (so GQA is exercised), context 512."""
    base = ModelArgs(
        vocab_size=vocab, dim=dim, n_layers=n_layers, n_heads=4, n_kv_heads=2, intermediate_size=dim * 2,
        norm_eps=1e-5, rope_theta=10000.0, max_seq_len=512, tie_word_embeddings=arch == "llama",
        attention_bias=arch == "qwen2", arch=arch,
    )
    return base.replace(**changes) if changes else base


def tiny_model(
    vocab: int = 260, dim: int = 64, n_layers: int = 2, seed: int = 0, arch: str = "llama",
    dtype: torch.dtype = torch.float32, **changes: object,
) -> Transformer:
    """A seeded random Transformer in eval mode. Norm weights are random too, so bugs there show in the logits."""
    gen = torch.Generator().manual_seed(seed)
    model = Transformer(tiny_args(vocab, dim, n_layers, arch, **changes))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layernorm.weight") or name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * (0.5 / p.shape[-1] ** 0.5 if p.ndim == 2 else 0.02))
    return model.to(dtype).eval()


def byte_level_tokenizer_json(specials: Sequence[str] = _SPECIALS) -> str:
    """A ``tokenizers`` JSON: byte-level BPE with no merges (ids 0..255 = bytes), then ``specials``."""
    from tokenizers import AddedToken, Tokenizer as Backend, decoders, models, pre_tokenizers

    from albumen.llm.tokenizer import byte_decoder

    vocab = {ch: b for ch, b in byte_decoder().items()}
    tok = Backend(models.BPE(vocab=vocab, merges=[], fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return tok.to_str()


def save_tiny_folder(folder: str | Path, arch: str = "llama", seed: int = 0) -> Path:
    """A complete model folder (config, safetensors, tokenizer with chat template) holding ``tiny_model``.

    The tokenizer is byte-level with the same ids as ``ByteTokenizer``, so CLI and loading tests run end to end.
    """
    from albumen.llm.weights.safetensors_io import save_folder

    folder = Path(folder)
    model = tiny_model(seed=seed, arch=arch)
    save_folder(folder, model.args, model.state_dict())
    (folder / "tokenizer.json").write_text(byte_level_tokenizer_json(), encoding="utf-8")
    config = {"bos_token": "<bos>", "eos_token": "<eos>", "add_bos_token": False, "chat_template": _CHAT_TEMPLATE}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread inside the block (restored after).

    Decoding is thousands of tiny ops; on a busy shared machine every multi-threaded one waits for a descheduled
    OpenMP worker (measured: the SmolLM2 tests took 150 s on two threads, 14 s on one).
    """
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)
