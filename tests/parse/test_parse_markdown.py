"""Tests for the Markdown parser: headings, code fences, tables, lists and front matter."""

from __future__ import annotations

import pytest

from ragtune.parse import parse
from ragtune.types import BlockType

pytestmark = pytest.mark.unit

GUIDE = """\
---
title: "Operator Guide"
author: Ada Lovelace
date: 2024-03-01
tags: [ops]
---
# Install

Run the installer.
It takes a minute.

## Requirements

- Python 3.11
- 8 GB RAM
  with swap
1. nested? no, a new item

```bash
# not a heading
pip install ragtune

echo done
```

| Option | Default |
| ------ | ------- |
| `k`    | 10      |
| a \\| b | x       |

### Deep

Text under deep.

Usage
=====

Setext body.

Tips
----

~~~
## also not a heading
~~~

***

Closing ##
"""


def types_and_texts(document) -> list[tuple[BlockType, str]]:
    return [(b.type, b.text) for b in document.blocks]


class TestParseMarkdown:
    def test_blocks(self, check_offsets) -> None:
        document = parse(GUIDE.encode(), filename="guide.md")
        assert document.source_type == "md"
        kinds = [b.type for b in document.blocks]
        assert kinds == [
            BlockType.HEADING,  # Install
            BlockType.PARAGRAPH,
            BlockType.HEADING,  # Requirements
            BlockType.LIST,
            BlockType.CODE,
            BlockType.TABLE,
            BlockType.HEADING,  # Deep
            BlockType.PARAGRAPH,
            BlockType.HEADING,  # Usage (setext)
            BlockType.PARAGRAPH,
            BlockType.HEADING,  # Tips (setext)
            BlockType.CODE,
            BlockType.PARAGRAPH,  # "Closing ##"
        ]
        check_offsets(document)

    def test_front_matter(self) -> None:
        document = parse(GUIDE.encode(), filename="guide.md")
        assert document.title == "Operator Guide"
        assert document.author == "Ada Lovelace"
        assert document.created_at == "2024-03-01"
        assert document.metadata["front_matter"]["tags"] == "[ops]"
        assert "---" not in document.text.split("\n")[0]
        assert "Ada Lovelace" not in document.text

    def test_headings_and_paths(self) -> None:
        document = parse(GUIDE.encode(), filename="guide.md")
        headings = [(b.text, b.level, b.heading_path) for b in document.blocks if b.type is BlockType.HEADING]
        assert headings == [
            ("Install", 1, ["Install"]),
            ("Requirements", 2, ["Install", "Requirements"]),
            ("Deep", 3, ["Install", "Requirements", "Deep"]),
            ("Usage", 1, ["Usage"]),
            ("Tips", 2, ["Usage", "Tips"]),
        ]
        table = next(b for b in document.blocks if b.type is BlockType.TABLE)
        assert table.heading_path == ["Install", "Requirements"]
        deep_text = document.blocks[7]
        assert deep_text.heading_path == ["Install", "Requirements", "Deep"]

    def test_code_fences_are_whole_and_never_headings(self) -> None:
        document = parse(GUIDE.encode(), filename="guide.md")
        codes = [b.text for b in document.blocks if b.type is BlockType.CODE]
        assert codes[0] == "```bash\n# not a heading\npip install ragtune\n\necho done\n```"
        assert codes[1] == "~~~\n## also not a heading\n~~~"
        assert all("not a heading" not in b.text for b in document.blocks if b.type is BlockType.HEADING)

    def test_table_verbatim(self) -> None:
        document = parse(GUIDE.encode(), filename="guide.md")
        table = next(b for b in document.blocks if b.type is BlockType.TABLE)
        assert table.text.split("\n") == [
            "| Option | Default |",
            "| ------ | ------- |",
            "| `k`    | 10      |",
            "| a \\| b | x       |",
        ]

    def test_list(self) -> None:
        document = parse(GUIDE.encode(), filename="guide.md")
        lists = [b.text for b in document.blocks if b.type is BlockType.LIST]
        assert lists == ["- Python 3.11\n- 8 GB RAM\n  with swap\n1. nested? no, a new item"]

    def test_loose_and_nested_list(self) -> None:
        text = "Intro:\n- one\n\n  more about one\n- two\n  - two.a\n\nAfter."
        document = parse(text.encode(), filename="l.md")
        assert types_and_texts(document) == [
            (BlockType.PARAGRAPH, "Intro:"),
            (BlockType.LIST, "- one\n\n  more about one\n- two\n  - two.a"),
            (BlockType.PARAGRAPH, "After."),
        ]

    def test_fence_inside_list_stays_in_list(self) -> None:
        text = "- step one:\n\n  ```\n  # comment\n\n  run\n  ```\n- step two\n\n# Real"
        document = parse(text.encode(), filename="l.md")
        assert [b.type for b in document.blocks] == [BlockType.LIST, BlockType.HEADING]
        assert document.blocks[1].text == "Real"

    def test_unclosed_fence_runs_to_end(self) -> None:
        document = parse(b"Intro\n\n```\n# code\n\nmore", filename="u.md")
        assert types_and_texts(document) == [(BlockType.PARAGRAPH, "Intro"), (BlockType.CODE, "```\n# code\n\nmore")]

    def test_atx_details(self) -> None:
        document = parse(b"#NotHeading\n\n# C# notes #\n\n####### seven", filename="a.md")
        assert types_and_texts(document) == [
            (BlockType.PARAGRAPH, "#NotHeading"),
            (BlockType.HEADING, "C# notes"),
            (BlockType.PARAGRAPH, "####### seven"),
        ]

    def test_indented_code(self) -> None:
        document = parse(b"Para.\n\n    x = 1\n\n    y = 2\n\nEnd.", filename="c.md")
        assert types_and_texts(document) == [
            (BlockType.PARAGRAPH, "Para."),
            (BlockType.CODE, "x = 1\n\ny = 2"),
            (BlockType.PARAGRAPH, "End."),
        ]

    def test_title_falls_back_to_first_heading(self) -> None:
        document = parse(b"Preface.\n\n# Handbook\n\nText", filename="h.md")
        assert document.title == "Handbook"
        assert document.author is None

    def test_no_front_matter_when_unclosed(self) -> None:
        document = parse(b"---\ntitle: x\n\nBody", filename="f.md")
        assert document.title is None
        assert "title: x" in document.text

    def test_chinese(self, check_offsets) -> None:
        text = "# 员工手册\n\n## 考勤制度\n\n员工应当按时上下班。\n\n| 项目 | 说明 |\n| --- | --- |\n| 迟到 | 扣款 |\n"
        document = parse(text.encode("gbk"), filename="手册.md")
        assert document.language == "zh"
        assert document.blocks[2].heading_path == ["员工手册", "考勤制度"]
        assert document.blocks[3].type is BlockType.TABLE
        assert "| 迟到 | 扣款 |" in document.blocks[3].text
        check_offsets(document)

    def test_empty(self) -> None:
        assert parse(b"", filename="e.md").blocks == []
