"""``albumen llm finetune`` on a tiny model folder: trains, writes a PEFT adapter, resumes, rejects bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from albumen.cli.main import build_app
from albumen.llm.adapters.registry import AdapterRegistry
from albumen.llm.testing import tiny_model
from albumen.llm.tokenizer import byte_decoder
from albumen.llm.weights.safetensors_io import save_folder

TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _byte_tokenizer_json(folder: Path) -> None:
    """A byte-level BPE without merges: ids 0..255 are bytes, then 4 special tokens (vocab 260)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    chars = sorted(byte_decoder().items(), key=lambda kv: kv[1])  # (char, byte)
    tok = Tokenizer(models.BPE(vocab={ch: b for ch, b in chars}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<bos>", "<eos>", "<|im_start|>", "<|im_end|>"])
    tok.save(str(folder / "tokenizer.json"))
    cfg = {"bos_token": "<bos>", "eos_token": "<|im_end|>", "chat_template": TEMPLATE}
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    model = tiny_model()
    folder = tmp_path / "tiny"
    save_folder(folder, model.args, model.state_dict())
    _byte_tokenizer_json(folder)
    return folder


def _data(path: Path, n: int = 24, bad: bool = False) -> Path:
    lines = [json.dumps({"messages": [{"role": "user", "content": f"x{i}"},
                                      {"role": "assistant", "content": f"y{i % 5}"}]}) for i in range(n)]
    if bad:
        lines.insert(3, "{broken")
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(args: list[str], tmp_path: Path):
    res = CliRunner().invoke(build_app(), ["--data-dir", str(tmp_path / "data"), "llm", "finetune", *args])
    res.flat = " ".join(res.output.split())  # rich wraps long error lines
    return res


def test_finetune_trains_a_loadable_adapter_and_resumes(tmp_path: Path, model_folder: Path) -> None:
    out = tmp_path / "adapters" / "tiny"
    args = ["--model", str(model_folder), "--data", str(_data(tmp_path / "d.jsonl", bad=True)), "--out", str(out),
            "--rank", "4", "--targets", "q_proj,v_proj", "--max-steps", "6", "--batch-size", "2", "--seq-len", "64",
            "--lr", "5e-3", "--warmup", "1", "--save-every", "3", "--json"]
    res = _run(args, tmp_path)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output.strip().splitlines()[-1])
    assert summary["steps"] == 6 and summary["skipped_lines"] == 1 and summary["eval_examples"] == 1
    assert 0 < summary["trainable_share"] < 0.1
    assert "d.jsonl:4" in res.output  # the bad line is named
    model = tiny_model()
    reg = AdapterRegistry(model)
    reg.load("tiny", out)
    reg.activate("tiny")
    ids = torch.tensor([[256, 1, 2, 3]])
    with torch.no_grad():
        adapted = model(ids)
        reg.activate(None)
        assert not torch.allclose(adapted, model(ids))  # the trained adapter changes the output
    again = _run(args, tmp_path)  # a finished run resumes from its last checkpoint: nothing left to do
    assert again.exit_code == 0 and json.loads(again.output.strip().splitlines()[-1])["steps"] == 6


def test_finetune_qlora_base_and_progress_bar(tmp_path: Path, model_folder: Path) -> None:
    args = ["--model", str(model_folder), "--data", str(_data(tmp_path / "d.jsonl")), "--out", str(tmp_path / "o"),
            "--rank", "2", "--base", "int8", "--max-steps", "2", "--batch-size", "4", "--seq-len", "64"]
    res = _run(args, tmp_path)
    assert res.exit_code == 0, res.output
    assert "finetune" in res.output and "steps: 2" in res.output


def test_finetune_errors_are_clear(tmp_path: Path, model_folder: Path) -> None:
    res = _run(["--model", str(model_folder), "--data", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "o")],
               tmp_path)
    assert res.exit_code == 2 and "no such data file" in res.flat
    res = _run(["--model", str(tmp_path / "nope"), "--data", str(_data(tmp_path / "d.jsonl")), "--out",
                str(tmp_path / "o")], tmp_path)
    assert res.exit_code == 2 and "cannot load model" in res.flat
    res = _run(["--model", str(model_folder), "--data", str(_data(tmp_path / "d.jsonl")), "--out", str(tmp_path / "o"),
                "--targets", "nothing_proj"], tmp_path)
    assert res.exit_code == 2 and "match no linear layer" in res.flat

