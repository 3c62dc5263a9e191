"""The converted-model cache: its location, atomic publication, reuse, and recovery from a failed conversion."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ragtune.errors import LLMError
from ragtune.llm import converted_gguf_dir, default_cache_dir
from ragtune.llm import local as local_module

pytestmark = pytest.mark.unit


@pytest.fixture()
def gguf(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF")
    return path


@pytest.fixture()
def conversions(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Replaces the real (30 s) conversion by one that writes a marker file, and records where it wrote."""
    done: list[Path] = []

    def convert(gguf_path: Path, out_dir: Path) -> None:
        (out_dir / "config.json").write_text("{}")
        done.append(out_dir)

    monkeypatch.setattr(local_module, "_convert", convert)
    return done


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RAGTUNE_MODEL_CACHE", raising=False)
    assert default_cache_dir() == Path.home() / ".cache" / "ragtune" / "models"
    monkeypatch.setenv("RAGTUNE_MODEL_CACHE", str(tmp_path / "models"))
    assert default_cache_dir() == tmp_path / "models"


def test_converts_once_then_reuses(gguf: Path, conversions: list[Path], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    target = converted_gguf_dir(gguf, cache)
    assert target.parent == cache
    assert target.name.startswith("tiny-")
    assert (target / "config.json").is_file()
    assert converted_gguf_dir(gguf, cache) == target
    assert len(conversions) == 1
    assert [p.name for p in cache.iterdir()] == [target.name]


def test_env_var_is_the_default_cache(
    gguf: Path, conversions: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGTUNE_MODEL_CACHE", str(tmp_path / "env-cache"))
    assert converted_gguf_dir(gguf).parent == tmp_path / "env-cache"


def test_a_changed_file_is_converted_again(gguf: Path, conversions: list[Path], tmp_path: Path) -> None:
    first = converted_gguf_dir(gguf, tmp_path / "cache")
    gguf.write_bytes(b"GGUF, but another version")
    assert converted_gguf_dir(gguf, tmp_path / "cache") != first
    assert len(conversions) == 2


def test_the_same_model_installed_elsewhere_reuses_the_conversion(
    gguf: Path, conversions: list[Path], tmp_path: Path
) -> None:
    """A fresh virtual environment installs the same file under another path, with another mtime: each install
    used to add half a gigabyte to the cache."""
    cache = tmp_path / "cache"
    first = converted_gguf_dir(gguf, cache)
    reinstalled = tmp_path / "venv2" / "tiny.gguf"
    reinstalled.parent.mkdir()
    reinstalled.write_bytes(gguf.read_bytes())
    os.utime(reinstalled, (time.time() + 60, time.time() + 60))
    assert converted_gguf_dir(reinstalled, cache) == first
    assert len(conversions) == 1


def test_the_fingerprint_sees_a_change_deep_inside_a_large_file(tmp_path: Path) -> None:
    big = tmp_path / "big.gguf"
    data = bytearray(b"GGUF" + bytes(40 << 20))
    big.write_bytes(bytes(data))
    before = local_module.gguf_fingerprint(big)
    data[len(data) // 2 + 17] = 1
    big.write_bytes(bytes(data))
    assert local_module.gguf_fingerprint(big) != before
    assert local_module.gguf_fingerprint(big) == local_module.gguf_fingerprint(big)


def test_a_new_conversion_removes_the_ones_nothing_uses(gguf: Path, conversions: list[Path], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    legacy = cache / "tiny-0123456789ab"  # named after a path and mtime by an earlier release
    legacy.mkdir(parents=True)
    other_model = cache / "other-0123456789ab"
    other_model.mkdir()
    elsewhere = tmp_path / "elsewhere" / "tiny.gguf"  # another model of the same name, still installed
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"GGUF of another model")
    kept = converted_gguf_dir(elsewhere, cache)
    first = converted_gguf_dir(gguf, cache)
    assert not legacy.exists()
    assert other_model.exists() and kept.exists()
    gguf.write_bytes(b"GGUF, upgraded in place")
    second = converted_gguf_dir(gguf, cache)
    assert not first.exists(), "the conversion of the replaced file is removed"
    assert sorted(p.name for p in cache.iterdir()) == sorted([second.name, kept.name, other_model.name])
    elsewhere.unlink()
    gguf.write_bytes(b"GGUF, upgraded twice")
    third = converted_gguf_dir(gguf, cache)
    assert not kept.exists(), "a conversion whose file was uninstalled is removed"
    assert sorted(p.name for p in cache.iterdir()) == sorted([third.name, other_model.name])


def test_a_failed_conversion_leaves_nothing_behind(
    gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(gguf_path: Path, out_dir: Path) -> None:
        (out_dir / "config.json").write_text("{}")
        raise MemoryError("killed half-way")

    monkeypatch.setattr(local_module, "_convert", crash)
    cache = tmp_path / "cache"
    with pytest.raises(LLMError, match="converting .*tiny.gguf into .*cache failed: killed half-way"):
        converted_gguf_dir(gguf, cache)
    assert list(cache.iterdir()) == []


def test_abandoned_partial_directories_are_cleaned_up(gguf: Path, conversions: list[Path], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    old, recent = cache / ".tiny-x.partial-old", cache / ".tiny-x.partial-recent"
    old.mkdir(parents=True)
    recent.mkdir()
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    converted_gguf_dir(gguf, cache)
    # A recent one may be another process converting right now.
    assert not old.exists() and recent.exists()


def test_unwritable_cache(gguf: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(LLMError, match="cannot create the model cache .*RAGTUNE_MODEL_CACHE"):
        converted_gguf_dir(gguf, blocker / "cache")
