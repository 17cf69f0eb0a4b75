from pathlib import Path

import pytest

from albumen.config import AppConfig, ConfigError, load_config


def test_defaults_file_then_flags(tmp_path: Path) -> None:
    cfg_file = tmp_path / "config.toml"
    cfg_file.write_text('data_dir = "/tmp/from-file"\n[index]\nworkers = 3\nthumbnail_sizes = [128]\n[llm]\ntemperature = 1\n')
    cfg = load_config(cfg_file, {"index.workers": 1, "data_dir": None})
    assert cfg.data_dir == Path("/tmp/from-file")  # file beats default, unset flag leaves it
    assert cfg.index.workers == 1  # flag beats file
    assert cfg.index.thumbnail_sizes == (128,)
    assert cfg.llm.temperature == 1.0 and isinstance(cfg.llm.temperature, float)
    assert cfg.vision == AppConfig().vision  # untouched section keeps defaults


def test_unknown_key_is_a_clear_error(tmp_path: Path) -> None:
    cfg_file = tmp_path / "config.toml"
    cfg_file.write_text("[index]\nworkerz = 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'workerz'"):
        load_config(cfg_file)


def test_wrong_type_and_bad_toml(tmp_path: Path) -> None:
    cfg_file = tmp_path / "config.toml"
    cfg_file.write_text('[index]\nworkers = "two"\n')
    with pytest.raises(ConfigError, match="expected an integer"):
        load_config(cfg_file)
    cfg_file.write_text("[index\n")
    with pytest.raises(ConfigError, match="config.toml"):
        load_config(cfg_file)


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_default_paths_follow_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ALBUMEN_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("ALBUMEN_CONFIG", str(tmp_path / "absent.toml"))
    cfg = load_config()
    assert cfg.data_dir == tmp_path / "d"
    assert cfg.db_path.parent == cfg.data_dir and cfg.thumbnails_dir.parent == cfg.data_dir
