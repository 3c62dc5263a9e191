"""Source-code parser: language by extension, the file kept verbatim as one CODE block, encodings decoded."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragtune.parse.code import CODE_EXTENSIONS, code_language, parse_code
from ragtune.types import BlockType

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "code"


@pytest.mark.parametrize(
    ("filename", "language"),
    [
        ("app.py", "python"),
        ("stubs/typing.pyi", "python"),
        ("web/main.MJS", "javascript"),
        ("ui/App.jsx", "javascript"),
        ("src/index.ts", "typescript"),
        ("src/Badge.tsx", "typescript"),
        ("cmd/server/main.go", "go"),
        ("Ledger.java", "java"),
        ("lib.rs", "rust"),
        ("kernel.cu.cpp", "cpp"),
        ("include/list.h", "c"),
        ("deploy.sh", "bash"),
        ("schema.sql", "sql"),
        ("analysis.R", "r"),
    ],
)
def test_code_language_comes_from_the_extension(filename, language):
    assert code_language(filename) == language


@pytest.mark.parametrize("filename", ["README.md", "notes.txt", "Makefile", "data.json", "archive.tar.gz"])
def test_files_that_are_not_source_code_have_no_code_language(filename):
    assert code_language(filename) is None


def test_the_extension_table_is_lower_case_with_dots():
    assert all(ext.startswith(".") and ext == ext.lower() for ext in CODE_EXTENSIONS)
    assert {".py", ".js", ".ts", ".tsx", ".go", ".java", ".kt", ".c", ".cpp", ".cs", ".rs", ".rb", ".php"} <= set(
        CODE_EXTENSIONS
    )


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.iterdir()))
def test_a_source_file_becomes_one_verbatim_code_block(name, check_offsets):
    data = (FIXTURES / name).read_bytes()
    document = parse_code(data, f"repo/{name}")

    assert document.source_type == "code"
    assert document.title == name
    assert document.metadata == {"code_language": code_language(name)}
    assert [b.type for b in document.blocks] == [BlockType.CODE]
    assert document.text == data.decode("utf-8").rstrip()
    check_offsets(document)


def test_leading_blank_lines_go_but_the_first_lines_indentation_stays(check_offsets):
    document = parse_code(b"\n\n   \n    return value  # continuation of a snippet\n\n", "snippet.py")
    assert document.text == "    return value  # continuation of a snippet"
    check_offsets(document)


def test_crlf_and_legacy_chinese_encodings_are_decoded():
    source = "# 计算订单总价\r\ndef total(prices):\r\n    return sum(prices)  # 单位：元\r\n"
    document = parse_code(source.encode("gb18030"), "orders.py")
    assert document.text == "# 计算订单总价\ndef total(prices):\n    return sum(prices)  # 单位：元"


def test_an_empty_file_has_no_blocks():
    document = parse_code(b"  \n\n", "empty.go")
    assert document.blocks == [] and document.text == ""
    assert document.metadata == {"code_language": "go"}
