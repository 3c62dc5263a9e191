"""Source-code parser: a program file becomes one CODE block, tagged with its programming language."""

from __future__ import annotations

from pathlib import PurePath

from ragtune.parse.text import decode_text
from ragtune.text import detect_language
from ragtune.types import Block, BlockType, Document

#: File extension (lower case, with the dot) -> programming language name, as stored in ``ChunkMeta.code_language``.
CODE_EXTENSIONS: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "typescript",
    ".go": "go",
    ".java": "java",
    ".kt": "kotlin",
    ".kts": "kotlin",
    ".c": "c",
    ".h": "c",
    ".cpp": "cpp",
    ".cc": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
    ".hxx": "cpp",
    ".cs": "csharp",
    ".rs": "rust",
    ".rb": "ruby",
    ".php": "php",
    ".swift": "swift",
    ".scala": "scala",
    ".sh": "bash",
    ".bash": "bash",
    ".zsh": "bash",
    ".sql": "sql",
    ".lua": "lua",
    ".r": "r",
    ".pl": "perl",
    ".pm": "perl",
    ".dart": "dart",
    ".ex": "elixir",
    ".exs": "elixir",
    ".erl": "erlang",
    ".hs": "haskell",
    ".jl": "julia",
    ".mm": "objective-c",
    ".ps1": "powershell",
    ".vue": "vue",
    ".svelte": "svelte",
    ".groovy": "groovy",
    ".gradle": "groovy",
    ".clj": "clojure",
    ".ml": "ocaml",
    ".zig": "zig",
    ".nim": "nim",
    ".proto": "protobuf",
}


def code_language(filename: str) -> str | None:
    """The programming language of a file by its extension (``"src/app.py"`` -> ``"python"``), or None."""
    return CODE_EXTENSIONS.get(PurePath(filename).suffix.lower())


def parse_code(data: bytes, source: str) -> Document:
    """Parse a source file into one CODE block holding the whole file.

    The file is kept verbatim apart from leading blank lines and trailing whitespace, so the first line's
    indentation and every offset a syntax tree reports stay valid; ``metadata["code_language"]`` names the
    language for the code chunker. ``language`` is the natural language of the comments and strings.
    """
    text = decode_text(data, source).rstrip()
    # Drop whole leading blank lines only: stripping the first line's indentation would change the code.
    first_line = 0
    while True:
        newline = text.find("\n", first_line)
        if newline < 0 or text[first_line:newline].strip():
            break
        first_line = newline + 1
    text = text[first_line:]
    language = code_language(source)
    name = PurePath(source).name
    blocks = [Block(type=BlockType.CODE, text=text, start=0, end=len(text))] if text.strip() else []
    return Document(
        source=source,
        source_type="code",
        text=text if blocks else "",
        blocks=blocks,
        title=name,
        language=detect_language(text),
        metadata={"code_language": language} if language else {},
    )
