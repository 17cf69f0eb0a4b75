"""Read a GGUF file into what the engine needs: ``ModelArgs``, a HF-named fp32 state dict, and a tokenizer.

Tensors are dequantized with the ``gguf`` package (Q4_0/Q4_1/Q8_0/K-quants ... -> float32). llama.cpp's converter
permutes the rows of ``attn_q``/``attn_k`` for the Llama architecture (its rope pairs interleaved elements, HF's pairs
the two halves); we undo that here so the weights equal the original HF checkpoint. Qwen2 files are not permuted.
The tokenizer (byte-level BPE, ``tokenizer.ggml.model == "gpt2"``) is rebuilt as a ``tokenizers`` JSON with the
pre-tokenizer llama.cpp names in ``tokenizer.ggml.pre``. This module knows nothing about the cache or generation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from albumen.llm.model import ModelArgs

__all__ = ["GGUFContents", "read_gguf", "unpermute_rope_rows"]

_TENSOR_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
# Split regexes for byte-level BPE vocabularies, by ``tokenizer.ggml.pre`` (the regexes the vocabularies were trained with).
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_SPLITS = {"qwen2": _QWEN2_SPLIT, "deepseek-r1-qwen": _QWEN2_SPLIT, "llama-bpe": _LLAMA3_SPLIT, "llama3": _LLAMA3_SPLIT}


@dataclass
class GGUFContents:
    """What a GGUF file holds, in engine terms. ``tensors()`` dequantizes lazily, one tensor at a time."""

    path: Path
    args: ModelArgs
    tokenizer_json: str
    tokenizer_config: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    _reader: Any = None

    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(HF name, fp32 tensor) pairs, in file order."""
        from gguf.quants import dequantize

        for t in self._reader.tensors:
            name = _hf_name(t.name)
            if name is None:
                continue
            shape = tuple(int(d) for d in reversed(t.shape))  # ggml lists dims fastest-first
            data = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(shape)
            tensor = torch.from_numpy(data.copy())
            if self.args.arch == "llama" and name.endswith(("q_proj.weight", "k_proj.weight")):
                n_heads = self.args.n_heads if "q_proj" in name else self.args.n_kv_heads
                tensor = unpermute_rope_rows(tensor, n_heads)
            yield name, tensor


def _hf_name(gguf_name: str) -> str | None:
    if gguf_name in _TENSOR_NAMES:
        return _TENSOR_NAMES[gguf_name]
    parts = gguf_name.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[2] in _LAYER_NAMES:
        return f"model.layers.{parts[1]}.{_LAYER_NAMES[parts[2]]}.{parts[3]}"
    return None  # e.g. rope_freqs: recomputed, not loaded


def unpermute_rope_rows(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's q/k row permutation: (out, in) rows go from interleaved pairs back to halves per head."""
    out_features = w.shape[0]
    head_dim = out_features // n_heads
    rest = w.shape[1:]
    return w.reshape(n_heads, head_dim // 2, 2, *rest).transpose(1, 2).reshape(out_features, *rest)


def _field(reader: Any, key: str, default: Any = None) -> Any:
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def read_gguf(path: str | Path) -> GGUFContents:
    """Open a GGUF file (memory-mapped) and read its architecture, tokenizer and tensor index."""
    from gguf import GGUFReader

    path = Path(path)
    try:
        reader = GGUFReader(path)
    except Exception as exc:  # gguf raises ValueError/struct.error on corrupt files
        raise ValueError(f"{path}: not a readable GGUF file ({exc})") from exc
    arch = _field(reader, "general.architecture")
    if arch not in ("llama", "qwen2"):
        raise ValueError(f"{path}: architecture {arch!r} is not supported (supported: llama, qwen2)")
    names = {t.name: t for t in reader.tensors}
    embd = names["token_embd.weight"]
    vocab_size, dim = int(embd.shape[1]), int(embd.shape[0])
    n_heads = int(_field(reader, f"{arch}.attention.head_count"))
    args = ModelArgs(
        vocab_size=vocab_size,
        dim=dim,
        n_layers=int(_field(reader, f"{arch}.block_count")),
        n_heads=n_heads,
        n_kv_heads=int(_field(reader, f"{arch}.attention.head_count_kv", n_heads)),
        intermediate_size=int(_field(reader, f"{arch}.feed_forward_length")),
        norm_eps=float(_field(reader, f"{arch}.attention.layer_norm_rms_epsilon", 1e-6)),
        rope_theta=float(_field(reader, f"{arch}.rope.freq_base", 10000.0)),
        max_seq_len=int(_field(reader, f"{arch}.context_length", 2048)),
        tie_word_embeddings="output.weight" not in names,
        attention_bias="blk.0.attn_q.bias" in names,
        head_dim=int(_field(reader, f"{arch}.attention.key_length", 0) or dim // n_heads),
        arch=arch,
    )
    tokenizer_json, tokenizer_config = _tokenizer_from_metadata(reader, path)
    meta = {k: _field(reader, k) for k in ("general.name", "general.file_type", "tokenizer.ggml.pre")}
    return GGUFContents(path, args, tokenizer_json, tokenizer_config, meta, reader)


def _tokenizer_from_metadata(reader: Any, path: Path) -> tuple[str, dict[str, Any]]:
    """Rebuild a byte-level BPE ``tokenizer.json`` and a ``tokenizer_config.json`` dict from GGUF metadata."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    kind = _field(reader, "tokenizer.ggml.model")
    if kind != "gpt2":
        raise ValueError(f"{path}: tokenizer model {kind!r} is not supported (only byte-level BPE, 'gpt2')")
    tokens: list[str] = list(_field(reader, "tokenizer.ggml.tokens"))
    types: list[int] = list(_field(reader, "tokenizer.ggml.token_type", [1] * len(tokens)))
    merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges", [])]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    pre = _field(reader, "tokenizer.ggml.pre", "default")
    if pre in _SPLITS:
        tok.normalizer = normalizers.NFC() if pre.startswith(("qwen2", "deepseek")) else None
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(_SPLITS[pre]), behavior="isolated"),
             pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
        )
    elif pre == "smollm":  # GPT-2's regex with every digit on its own
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True),
             pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
        )
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    # 3 = CONTROL (special, e.g. <|im_end|>), 4 = USER_DEFINED (matched whole, not special).
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, types) if k == 3])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t, k in zip(tokens, types) if k == 4])

    def token(key: str) -> str | None:
        idx = _field(reader, f"tokenizer.ggml.{key}")
        return tokens[int(idx)] if idx is not None and int(idx) < len(tokens) else None

    config = {
        "bos_token": token("bos_token_id"),
        "eos_token": token("eos_token_id"),
        "pad_token": token("padding_token_id"),
        "unk_token": token("unknown_token_id"),
        "add_bos_token": bool(_field(reader, "tokenizer.ggml.add_bos_token", False)),
        "chat_template": _field(reader, "tokenizer.chat_template"),
    }
    eot = _field(reader, "tokenizer.ggml.eot_token_id")
    if eot is not None:
        config["eos_token_ids"] = [int(eot)]
    return tok.to_str(), config


def write_tokenizer_files(contents: GGUFContents, folder: Path) -> None:
    """Write ``tokenizer.json`` and ``tokenizer_config.json`` for a GGUF's tokenizer into ``folder``."""
    (folder / "tokenizer.json").write_text(contents.tokenizer_json, encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps(contents.tokenizer_config, indent=1), encoding="utf-8")
