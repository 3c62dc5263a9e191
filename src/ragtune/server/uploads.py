"""Uploaded files: safe names, content sniffing (never trusting the extension), size caps, zip-bomb-safe archives."""

from __future__ import annotations

import os
import re
import stat
import unicodedata
import uuid
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ragtune.errors import RagtuneError
from ragtune.parse import supported_extensions

FILES_DIR = "files"
_INCOMING = ".incoming"
_NAME_MAX = 120
_UNSAFE = re.compile(r"[^\w.\- ()\[\]+,@]", re.UNICODE)
_TEXT_TYPES = {".txt", ".text", ".log", ".md", ".markdown", ".html", ".htm", ".xhtml"}
# Magic numbers of common binary formats that must never pass as text.
_BINARY_MAGIC = (b"%PDF-", b"PK\x03\x04", b"PK\x05\x06", b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"\x7fELF", b"MZ",
                 b"\x1f\x8b", b"BZh", b"7z\xbc\xaf", b"Rar!", b"\xd0\xcf\x11\xe0")
ARCHIVE_MAX_MEMBERS = 1000
# Real documents compress 2–20×; a member claiming more than this is treated as a bomb.
ARCHIVE_MAX_RATIO = 200
_COPY_CHUNK = 1 << 16


class UploadError(RagtuneError):
    """An upload was refused; ``status`` is the HTTP status that says why."""

    def __init__(self, message: str, status: int = 400, code: str = "invalid_upload") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass
class SavedUpload:
    """What one uploaded file became: the files stored for ingestion, and archive members left out."""

    name: str
    paths: list[Path] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


def accepted_extensions() -> list[str]:
    return sorted({*supported_extensions(), ".zip"})


def safe_filename(name: str) -> str:
    """A file name that cannot leave its folder: the last path component, no control or shell-special
    characters, no leading dots, at most 120 characters (extension kept). Raises UploadError when nothing is left."""
    name = unicodedata.normalize("NFKC", name or "")
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = _UNSAFE.sub("_", name).strip(" .")
    name = name.lstrip("-")  # a leading dash reads as an option to command-line tools
    if len(name) > _NAME_MAX:
        stem, ext = os.path.splitext(name)
        name = stem[: _NAME_MAX - len(ext)] + ext
    if not name or name in (".", ".."):
        raise UploadError(f"file name {name!r} is empty after removing unsafe characters — rename the file")
    return name


def sniff(head: bytes, path: Path | None = None) -> str:
    """What the bytes are: 'pdf', 'docx', 'zip', 'text' or 'binary' (``path``: the whole file, for zips)."""
    if b"%PDF-" in head[:1024]:
        return "pdf"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        if path is not None:
            try:
                with zipfile.ZipFile(path) as archive:
                    if "word/document.xml" in archive.namelist():
                        return "docx"
            except zipfile.BadZipFile:
                return "binary"
        return "zip"
    if head.startswith(_BINARY_MAGIC):
        return "binary"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 with a byte-order mark
        return "text"
    if b"\x00" in head:
        return "binary"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sample is fine; garbage in the middle is not.
        if exc.start < len(head) - 4:
            from charset_normalizer import from_bytes

            if from_bytes(head).best() is None:
                return "binary"
    return "text"


def expected_kind(extension: str) -> str | None:
    ext = extension.lower()
    if ext in _TEXT_TYPES:
        return "text"
    return {".pdf": "pdf", ".docx": "docx", ".zip": "zip"}.get(ext)


class UploadArea:
    """The ``files/`` folder of a knowledge base, where uploads are kept (they are the documents' sources)."""

    def __init__(self, kb_dir: Path, *, max_bytes: int, max_archive_bytes: int) -> None:
        self.root = (kb_dir / FILES_DIR).resolve()
        self.max_bytes = max_bytes
        self.max_archive_bytes = max_archive_bytes

    def save(self, filename: str, stream: BinaryIO) -> SavedUpload:
        """Store one uploaded file (an archive is unpacked); raises UploadError for refused content."""
        name = safe_filename(filename)
        ext = Path(name).suffix.lower()
        kind = expected_kind(ext)
        if kind is None:
            raise UploadError(
                f"{name}: file type {ext or '(none)'} is not supported — upload one of "
                f"{', '.join(accepted_extensions())}",
                415, "unsupported_file_type",
            )
        incoming = self.root / _INCOMING
        incoming.mkdir(parents=True, exist_ok=True)
        temp = incoming / f"{uuid.uuid4().hex}{ext}"
        try:
            self._copy(stream, temp, name)
            with temp.open("rb") as f:
                head = f.read(8192)
            actual = sniff(head, temp)
            if actual != kind:
                raise UploadError(f"{name}: the content is {actual}, not what its extension {ext} says — upload "
                                  f"the file with its real extension", 415, "content_mismatch")
            if kind in ("zip", "docx"):
                self._check_archive(temp, name)
            if kind == "zip":
                return self._unpack(temp, name)
            target = self.root / name
            os.replace(temp, target)
            return SavedUpload(name, [target])
        finally:
            temp.unlink(missing_ok=True)

    def _copy(self, stream: BinaryIO, target: Path, name: str) -> None:
        size = 0
        with target.open("wb") as out:
            while chunk := stream.read(_COPY_CHUNK):
                size += len(chunk)
                if size > self.max_bytes:
                    raise UploadError(f"{name}: larger than the {self.max_bytes:,}-byte upload limit — split it or "
                                      f"raise max_upload_bytes", 413, "upload_too_large")
                out.write(chunk)
        if size == 0:
            raise UploadError(f"{name}: the file is empty", 400, "empty_upload")

    def _check_archive(self, path: Path, name: str) -> list[zipfile.ZipInfo]:
        try:
            with zipfile.ZipFile(path) as archive:
                members = archive.infolist()
        except zipfile.BadZipFile as exc:
            raise UploadError(f"{name}: not a readable zip archive ({exc})", 415, "content_mismatch") from None
        if len(members) > ARCHIVE_MAX_MEMBERS:
            raise UploadError(f"{name}: {len(members)} entries, more than {ARCHIVE_MAX_MEMBERS} — split the archive",
                              413, "archive_too_large")
        total = sum(m.file_size for m in members)
        if total > self.max_archive_bytes:
            raise UploadError(f"{name}: unpacks to {total:,} bytes, more than max_archive_bytes="
                              f"{self.max_archive_bytes:,}", 413, "archive_too_large")
        for m in members:
            if m.file_size > 1 << 20 and m.file_size > ARCHIVE_MAX_RATIO * max(m.compress_size, 1):
                raise UploadError(f"{name}: entry {m.filename!r} expands {m.file_size // max(m.compress_size, 1)}× "
                                  f"— refusing a likely zip bomb", 413, "zip_bomb")
        return members

    def _unpack(self, path: Path, name: str) -> SavedUpload:
        saved = SavedUpload(name)
        folder = self.root / safe_filename(Path(name).stem)
        try:
            self._extract(path, name, folder, saved)
        except BaseException:
            cleanup(saved.paths)  # an archive is stored whole or not at all
            raise
        if not saved.paths:
            raise UploadError(f"{name}: the archive holds no supported documents", 415, "unsupported_file_type")
        return saved

    def _extract(self, path: Path, name: str, folder: Path, saved: SavedUpload) -> None:
        supported = set(supported_extensions())
        budget = self.max_archive_bytes
        with zipfile.ZipFile(path) as archive:
            for member in self._check_archive(path, name):
                if member.is_dir():
                    continue
                mode = member.external_attr >> 16
                if stat.S_ISLNK(mode):
                    saved.skipped.append({"name": member.filename, "reason": "symbolic link"})
                    continue
                try:
                    parts = [safe_filename(p) for p in re.split(r"[\\/]", member.filename) if p not in ("", ".", "..")]
                except UploadError:
                    parts = []
                if not parts or any(p.startswith(".") for p in parts):
                    saved.skipped.append({"name": member.filename, "reason": "unsafe or hidden name"})
                    continue
                member_name = "__".join(parts)
                if Path(member_name).suffix.lower() not in supported:
                    saved.skipped.append({"name": member.filename, "reason": "unsupported file type"})
                    continue
                target = folder / member_name
                folder.mkdir(parents=True, exist_ok=True)
                temp = folder / f".{uuid.uuid4().hex}.part"
                try:
                    # Declared sizes can lie: count what actually comes out.
                    written = 0
                    with archive.open(member) as src, temp.open("wb") as out:
                        while chunk := src.read(_COPY_CHUNK):
                            written += len(chunk)
                            if written > member.file_size or written > budget:
                                raise UploadError(f"{name}: entry {member.filename!r} unpacks to more than it declares"
                                                  " — refusing a likely zip bomb", 413, "zip_bomb")
                            out.write(chunk)
                    budget -= written
                    os.replace(temp, target)
                finally:
                    temp.unlink(missing_ok=True)
                saved.paths.append(target)

    def owns(self, uri: str) -> Path | None:
        """The stored upload behind a document URI, when it lies inside this folder."""
        path = Path(uri)
        try:
            path.resolve().relative_to(self.root)
        except ValueError:
            return None
        return path


def cleanup(paths: Iterable[Path]) -> None:
    for path in paths:
        Path(path).unlink(missing_ok=True)
