"""Hostile-input guards for container formats: zip bomb checks and an XML parser that never expands entities."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, TypeVar

from ragtune.errors import ParseError
from ragtune.parse.options import current_options

if TYPE_CHECKING:
    from lxml import etree

T = TypeVar("T")

#: Legacy .doc/.xls/.ppt files and password-protected Office files are OLE2 compound files, not zip packages.
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"

#: Where Office packages keep author/dates. Its presence is checked because python-docx, python-pptx and openpyxl
#: invent defaults (a "python-docx" author, a creation date of now) when it is missing.
CORE_PROPERTIES_PART = "docProps/core.xml"
#: Below this size a member is too small to be a bomb, and a high ratio only means repetitive XML.
_RATIO_FLOOR_BYTES = 1024 * 1024
#: Decompression step while members are measured, so memory stays bounded whatever a member claims.
_READ_STEP = 1024 * 1024
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_LOCAL_HEADER_SIGNATURE = b"PK\x03\x04"
# Zip's encrypted-member flag; OOXML and EPUB never encrypt members, so a set flag is a password or DRM.
_ENCRYPTED_FLAG = 0x1


def open_office_package(
    data: bytes, source: str, *, kind: str, legacy: str, application: str, opener: Callable[[IO[bytes]], T]
) -> tuple[T, frozenset[str]]:
    """Open a DOCX/PPTX with its library after the zip checks: (the library's object, the package's part names).

    ``legacy`` names the old binary format ("Word (.doc)"), ``application`` what the file should be ("Word
    document"); both appear in the error a user gets for the wrong kind of file."""
    extension = kind.lower()
    if data.startswith(OLE2_MAGIC):
        raise ParseError(source, f"is an encrypted or legacy {legacy} file — remove the password or save it as "
                                 f".{extension}")
    parts = check_zip(data, source, kind=kind)
    try:
        return opener(io.BytesIO(data)), parts
    except Exception as exc:  # KeyError for missing parts, ValueError for another Office type...
        raise ParseError(
            source, f"not a valid {kind} (file is damaged or not a {application}) — re-save it as .{extension}"
        ) from exc


def check_zip(data: bytes, source: str, *, kind: str = "ZIP package") -> frozenset[str]:
    """Reject a ZIP container that is damaged, encrypted, or would decompress beyond the current limits.

    Run it before a format library opens the file: those libraries trust the archive's declared sizes
    and would happily inflate a zip bomb into memory. Every member is decompressed once here, in bounded
    steps, to prove it is no larger than it claims. ``kind`` names the format in messages ("DOCX", "EPUB").
    Returns the member names, so callers can test for optional parts without reopening the archive.
    """
    options = current_options()
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
        raise ParseError(
            source,
            f"not a valid {kind} (not a readable ZIP package: damaged, truncated or another format) — "
            "re-save it in its usual application",
        ) from exc
    with archive:
        members = archive.infolist()
        if len(members) > options.max_archive_members:
            raise ParseError(
                source,
                f"{kind} holds {len(members)} files, more than max_archive_members={options.max_archive_members} "
                "(possible zip bomb) — raise max_archive_members if the file is genuine",
            )
        total = 0
        for member in members:
            _check_declared(member, source, kind, options.max_archive_member_bytes, options.max_archive_ratio)
            total += member.file_size
            if total > options.max_archive_total_bytes:
                raise ParseError(
                    source,
                    f"{kind} would decompress to more than max_archive_total_bytes={options.max_archive_total_bytes} "
                    "(possible zip bomb) — raise max_archive_total_bytes if the file is genuine",
                )
        for member in members:
            _check_actual_size(data, archive, member, source, kind)
    return frozenset(member.filename for member in members)


def _check_declared(member: zipfile.ZipInfo, source: str, kind: str, max_bytes: int, max_ratio: float) -> None:
    name = member.filename
    if member.flag_bits & _ENCRYPTED_FLAG:
        raise ParseError(source, f"{kind} member '{name}' is encrypted — remove the password or DRM and re-save it")
    if member.file_size > max_bytes:
        raise ParseError(
            source,
            f"{kind} member '{name}' would decompress to {member.file_size} bytes, more than "
            f"max_archive_member_bytes={max_bytes} (possible zip bomb) — raise max_archive_member_bytes "
            "if the file is genuine",
        )
    ratio = member.file_size / max(member.compress_size, 1)
    if member.file_size > _RATIO_FLOOR_BYTES and ratio > max_ratio:
        raise ParseError(
            source,
            f"{kind} member '{name}' has a compression ratio of {ratio:.0f}:1, more than "
            f"max_archive_ratio={max_ratio:g} (possible zip bomb) — raise max_archive_ratio if the file is genuine",
        )


def _check_actual_size(data: bytes, archive: zipfile.ZipFile, member: zipfile.ZipInfo, source: str, kind: str) -> None:
    """Decompress ``member`` in bounded steps; fail when it yields more than its declared size, or is corrupt."""
    declared = member.file_size
    try:
        if member.compress_type == zipfile.ZIP_DEFLATED:
            actual, crc = _inflate(_raw_member(data, member), declared + 1)
            if actual == declared and crc != member.CRC:
                raise zipfile.BadZipFile("CRC check failed")
            if actual < declared:
                raise zipfile.BadZipFile(f"{actual} of {declared} bytes present")
        elif member.compress_type == zipfile.ZIP_STORED:
            actual = member.compress_size
        else:
            # bzip2/lzma: Python's reader stops at the declared size itself and checks the CRC, so reading to
            # the end is enough.
            with archive.open(member) as stream:
                actual = 0
                while chunk := stream.read(_READ_STEP):
                    actual += len(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, struct.error) as exc:
        raise ParseError(
            source, f"{kind} member '{member.filename}' is corrupt ({exc}) — re-save the file in its usual application"
        ) from exc
    if actual > declared:
        raise ParseError(
            source,
            f"{kind} member '{member.filename}' decompresses to more than its declared {declared} bytes "
            "(a forged archive, possible zip bomb) — re-save the file in its usual application",
        )


def _raw_member(data: bytes, member: zipfile.ZipInfo) -> memoryview:
    """The member's compressed bytes, located through its local header (whose name/extra lengths may differ)."""
    offset = member.header_offset
    header = _LOCAL_HEADER.unpack_from(data, offset)
    if header[0] != _LOCAL_HEADER_SIGNATURE:
        raise zipfile.BadZipFile("bad local file header")
    start = offset + _LOCAL_HEADER.size + header[9] + header[10]
    return memoryview(data)[start : start + member.compress_size]


def _inflate(raw: memoryview, cap: int) -> tuple[int, int]:
    """(size, CRC-32) of what raw deflate data inflates to, inflating at most about ``cap`` bytes (never a bomb)."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    size = crc = 0
    pending: bytes | memoryview = raw
    while size < cap:
        chunk = inflater.decompress(pending, _READ_STEP)
        size += len(chunk)
        crc = zlib.crc32(chunk, crc)
        pending = inflater.unconsumed_tail
        if not chunk and not pending:
            break
    return size, crc


def safe_xml_parser() -> etree.XMLParser:
    """An lxml parser that never expands entities, reads DTDs or touches the network (no XXE, no billion laughs)."""
    from lxml import etree

    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False
    )
