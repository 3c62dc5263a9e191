"""Settings precedence: ./ragtune.toml < KB/ragtune.toml < RAGTUNE_* < explicit overrides."""

from __future__ import annotations

import pytest

from ragtune.errors import ConfigError
from ragtune.settings import default_kb_path, load_settings

pytestmark = pytest.mark.unit


def test_layers_override_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    kb = tmp_path / "kb"
    kb.mkdir()
    assert load_settings(kb).chunk_size == 256
    (tmp_path / "ragtune.toml").write_text("chunk_size = 300\ncandidates = 40\n")
    assert load_settings(kb).chunk_size == 300
    (kb / "ragtune.toml").write_text("chunk_size = 400\n")
    settings = load_settings(kb)
    assert settings.chunk_size == 400 and settings.candidates == 40  # layers merge key by key
    monkeypatch.setenv("RAGTUNE_CHUNK_SIZE", "500")
    assert load_settings(kb).chunk_size == 500
    assert load_settings(kb, chunk_size=600).chunk_size == 600
    assert load_settings(kb, chunk_size=None).chunk_size == 500  # unset flags fall through


def test_invalid_values_name_the_key_and_the_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ragtune.toml").write_text('chunker = "semantik"\n')
    with pytest.raises(ConfigError, match=r"chunker.*ragtune\.toml"):
        load_settings(None)
    (tmp_path / "ragtune.toml").write_text("chunk_sise = 100\n")
    with pytest.raises(ConfigError, match="chunk_sise"):
        load_settings(None)


def test_default_kb_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("RAGTUNE_KB", raising=False)
    assert str(default_kb_path()) == "ragtune_kb"
    monkeypatch.setenv("RAGTUNE_KB", "/srv/kb")
    assert str(default_kb_path()) == "/srv/kb"
    load_settings(None)  # RAGTUNE_KB is not a setting and must not be rejected as an unknown key
