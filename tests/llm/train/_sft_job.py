"""A tiny SFT run used by the tests, in-process or as a subprocess that SIGKILLs itself at a given step.

    python _sft_job.py OUT_DIR KILL_AT_STEP   (0: never)
"""

from __future__ import annotations

import os
import signal
import sys

import torch

from albumen.llm.adapters.config import AdapterConfig
from albumen.llm.adapters.registry import AdapterRegistry
from albumen.llm.testing import ByteTokenizer, tiny_model
from albumen.llm.train.data import encode_chat
from albumen.llm.train.sft import SFTConfig, SFTResult, train_sft

CONFIG = SFTConfig(lr=5e-3, max_steps=8, batch_size=2, grad_accum=2, seq_len=96, warmup_steps=2, save_every=2,
                   eval_every=4, seed=3, keep_checkpoints=2)


def examples(n: int = 24) -> list:
    tok = ByteTokenizer()
    out = []
    for i in range(n):
        msgs = [{"role": "user", "content": f"n={i}"}, {"role": "assistant", "content": f"{i * 7 % 13} ok"}]
        out.append(encode_chat(msgs, tok))
    return out


def run(out_dir: str, kill_at: int = 0, config: SFTConfig = CONFIG, dropout: float = 0.1,
        stop_after: int | None = None) -> tuple[SFTResult, dict[str, torch.Tensor]]:
    model = tiny_model(seed=0)
    reg = AdapterRegistry(model)
    torch.manual_seed(config.seed)  # LoRA A's random init
    reg.add("job", AdapterConfig(r=4, alpha=8, dropout=dropout, target_modules=("q_proj", "v_proj", "down_proj")))
    data = examples()

    def on_log(rec: dict) -> None:
        if kill_at and rec["step"] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # a real kill: no cleanup, no flush

    res = train_sft(model, reg, "job", data[:20], config, out_dir, pad_id=0, eval_rows=data[20:], on_log=on_log,
                    stop_after=stop_after)
    return res, {k: v.clone() for k, v in reg.state_dict("job").items()}


if __name__ == "__main__":
    run(sys.argv[1], int(sys.argv[2]))
