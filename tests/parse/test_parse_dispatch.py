"""Tests for parser dispatch, the registry and the shared block helpers of ragtune.parse."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ragtune.errors import ParseError
from ragtune.parse import (
    HeadingPath,
    detect_language,
    markdown_table,
    parse,
    parse_text,
    register_parser,
    registry,
    source_type_for,
    supported_extensions,
)
from ragtune.types import Block, BlockType, Document

pytestmark = pytest.mark.unit


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made by a test do not leak into the others."""
    monkeypatch.setattr(registry, "_registry", dict(registry._registry))


class TestRegistry:
    def test_supported_extensions(self) -> None:
        extensions = supported_extensions()
        for ext in (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx"):
            assert ext in extensions
        assert extensions == sorted(extensions)

    @pytest.mark.parametrize(
        ("filename", "expected"),
        [
            ("a.txt", "txt"),
            ("notes.MD", "md"),
            ("x.markdown", "md"),
            ("page.htm", "html"),
            ("dir/page.html", "html"),
            ("Report.PDF", "pdf"),
            ("memo.docx", "docx"),
            ("sheet.xyz", None),
            ("Makefile", None),
        ],
    )
    def test_source_type_for(self, filename: str, expected: str | None) -> None:
        assert source_type_for(filename) == expected

    def test_register_custom_parser(self, isolated_registry: None) -> None:
        def parse_shout(data: bytes, source: str) -> Document:
            block = Block(type=BlockType.PARAGRAPH, text=data.decode().upper())
            return Document.assemble([block], source=source, source_type="shout")

        register_parser(["shout", ".SHT"], parse_shout, source_type="shout")
        assert source_type_for("a.sht") == "shout"
        assert ".shout" in supported_extensions()
        document = parse(b"hello", filename="greeting.shout")
        assert document.text == "HELLO"
        assert document.source_type == "shout"

    def test_register_defaults_source_type_to_extension(self, isolated_registry: None) -> None:
        register_parser(".rst", parse_text)
        assert source_type_for("guide.rst") == "rst"

    def test_register_needs_an_extension(self) -> None:
        with pytest.raises(ValueError):
            register_parser([], parse_text)


class TestParse:
    def test_unknown_extension(self, write_file) -> None:
        path = write_file("data.xyz", "hello")
        with pytest.raises(ParseError) as info:
            parse(path)
        message = str(info.value)
        assert str(path) in message
        assert "unsupported file type '.xyz'" in message
        assert "supported:" in message and ".pdf" in message

    def test_no_extension(self) -> None:
        with pytest.raises(ParseError, match="no extension"):
            parse(b"hello", filename="README")

    def test_bytes_need_filename(self) -> None:
        with pytest.raises(ValueError, match="filename"):
            parse(b"hello")

    def test_bytes_with_filename(self) -> None:
        document = parse(b"first\n\nsecond", filename="notes.txt")
        assert document.source == "notes.txt"
        assert document.source_type == "txt"
        assert [b.text for b in document.blocks] == ["first", "second"]

    def test_path_and_str(self, write_file) -> None:
        path = write_file("a.txt", "hello world")
        assert parse(path).source == str(path)
        assert parse(str(path)).text == "hello world"

    def test_filename_overrides_name_of_path(self, write_file) -> None:
        path = write_file("upload.bin", "# Title\n\nbody")
        document = parse(path, filename="notes.md")
        assert document.source == "notes.md"
        assert document.source_type == "md"

    def test_missing_file(self, tmp_path: Path) -> None:
        path = tmp_path / "missing.txt"
        with pytest.raises(ParseError, match="not found") as info:
            parse(path)
        assert info.value.source == str(path)

    def test_directory(self, tmp_path: Path) -> None:
        folder = tmp_path / "folder.txt"
        folder.mkdir()
        with pytest.raises(ParseError, match="directory"):
            parse(folder)

    @pytest.mark.parametrize("as_bytes", [True, False])
    def test_max_bytes(self, write_file, as_bytes: bool) -> None:
        path = write_file("big.txt", "x" * 100)
        source = path.read_bytes() if as_bytes else path
        with pytest.raises(ParseError) as info:
            parse(source, filename="big.txt" if as_bytes else None, max_bytes=10)
        assert "larger than max_bytes=10" in str(info.value)
        assert "RAGTUNE_MAX_FILE_BYTES" in str(info.value)
        assert parse(source, filename="big.txt" if as_bytes else None, max_bytes=100).text == "x" * 100

    def test_library_errors_are_wrapped(self, isolated_registry: None) -> None:
        def broken(data: bytes, source: str) -> Document:
            raise KeyError("word/document.xml")

        register_parser(".brk", broken, source_type="broken")
        with pytest.raises(ParseError) as info:
            parse(b"x", filename="bad.brk")
        assert info.value.source == "bad.brk"
        assert "KeyError" in info.value.cause
        assert isinstance(info.value.__cause__, KeyError)

    def test_import_is_cheap(self) -> None:
        code = (
            "import sys, ragtune.parse; "
            "print(sorted(m for m in ('pymupdf', 'docx', 'bs4', 'lxml', 'charset_normalizer') if m in sys.modules))"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert result.stdout.strip() == "[]"


class TestDetectLanguage:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("The quick brown fox jumps over the lazy dog.", "en"),
            ("本办法适用于公司全体员工，员工应当遵守劳动纪律。", "zh"),
            ("使用 Python 和 PyTorch 训练模型，然后部署到服务器上。", "zh"),
            ("This English paragraph mentions 北京 once.", "en"),
            ("", None),
            ("12345 !!! ---", None),
        ],
    )
    def test_detect(self, text: str, expected: str | None) -> None:
        assert detect_language(text) == expected


class TestHelpers:
    def test_markdown_table(self) -> None:
        table = markdown_table([["Name", "Note"], ["a|b", "multi\n  line"], ["only"]])
        assert table.split("\n") == [
            "| Name | Note |",
            "| --- | --- |",
            "| a\\|b | multi line |",
            "| only |  |",
        ]

    def test_markdown_table_empty(self) -> None:
        assert markdown_table([]) == ""

    def test_heading_path(self) -> None:
        path = HeadingPath()
        assert path.enter(1, "A") == ["A"]
        assert path.enter(2, "A.1") == ["A", "A.1"]
        assert path.path == ["A", "A.1"]
        assert path.enter(3, "A.1.a") == ["A", "A.1", "A.1.a"]
        assert path.enter(2, "A.2") == ["A", "A.2"]
        assert path.enter(1, "B") == ["B"]
