"""The titles recipe's guard: a resumed training chunk must see the same train split as the first one."""

from __future__ import annotations

import pytest

from albumen.llm.train.titles_adapter import _check_same_data


def test_resuming_on_changed_data_is_refused(tmp_path):
    data, work = tmp_path / "train.jsonl", tmp_path / "work"
    with pytest.raises(SystemExit, match="no train split"):
        _check_same_data(work, data)
    data.write_text('{"messages": []}\n')
    first = _check_same_data(work, data)
    assert _check_same_data(work, data) == first  # same data: the next chunk continues
    data.write_text('{"messages": []}\n{"messages": []}\n')
    with pytest.raises(SystemExit, match="changed since the checkpoints"):
        _check_same_data(work, data)



def test_training_time_adds_up_resumed_chunks():
    from albumen.llm.train.titles_adapter import _train_seconds

    chunks = [{"seconds": 10.0}, {"seconds": 20.0}, {"seconds": 5.0}, {"seconds": 15.0}]  # killed after 20 s, resumed
    assert _train_seconds(chunks) == 35.0 and _train_seconds([]) == 0.0
