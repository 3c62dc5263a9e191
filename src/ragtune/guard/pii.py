"""Personal data in text (EN + ZH): find it and redact it, with checksums wherever a number format has one.

The one redaction module of ragtune: ingest (``pii = "flag" | "redact"``), every dataset written from
feedback, and the audit log's stored questions all call :func:`redact` or :func:`find_pii`.

Kinds (``PII_KINDS``): ``email``; ``phone`` (international +CC numbers, Chinese mobiles and landlines, North
American and European national formats); ``iban`` (country length and mod-97 check); ``card`` (payment cards:
issuer prefix and Luhn check); ``cn_id`` (Chinese resident identity card: region, birth date and ISO 7064
check character); ``eu_id`` (national ID formats with their check: Spanish DNI/NIE, Italian codice fiscale,
French NIR, Belgian national number, Polish PESEL, Swedish personnummer, Finnish HETU, and — next to a word
that names them, as the bare digits are too common — Dutch BSN and German Steuer-ID); ``address`` (street
addresses with a house number, English and Chinese, and UK postcodes).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from ragtune.text import HAN
from ragtune.types import Document

__all__ = [
    "PII_KINDS",
    "PiiKind",
    "PiiMatch",
    "find_pii",
    "has_pii",
    "pii_kinds",
    "redact",
    "redact_document",
    "redact_value",
]

PiiKind = Literal["email", "phone", "iban", "card", "cn_id", "eu_id", "address"]
PII_KINDS: tuple[PiiKind, ...] = ("email", "phone", "iban", "card", "cn_id", "eu_id", "address")

# When two findings overlap, the one with a checksum (or the more specific format) wins.
_PRIORITY: dict[str, int] = {"email": 7, "iban": 6, "card": 5, "cn_id": 5, "eu_id": 4, "phone": 2, "address": 1}


@dataclass(frozen=True)
class PiiMatch:
    """One piece of personal data: its kind, exact span in the text, the text itself and the format it matched
    (``"visa"``, ``"es_dni"``, ``"cn_mobile"``, ...)."""

    kind: PiiKind
    start: int
    end: int
    text: str
    detail: str = ""


def find_pii(text: str, kinds: Iterable[str] | None = None) -> list[PiiMatch]:
    """Every piece of personal data in ``text``, in order, without overlaps (``kinds``: only these)."""
    wanted = _check_kinds(kinds)
    found: list[PiiMatch] = []
    for kind, finder in _FINDERS:
        if kind in wanted:
            found.extend(finder(text))
    # Resolve overlaps: higher priority first, then longer.
    found.sort(key=lambda m: (-_PRIORITY[m.kind], -(m.end - m.start), m.start))
    kept: list[PiiMatch] = []
    for match in found:
        if all(match.end <= k.start or match.start >= k.end for k in kept):
            kept.append(match)
    return sorted(kept, key=lambda m: m.start)


def has_pii(text: str, kinds: Iterable[str] | None = None) -> bool:
    return bool(find_pii(text, kinds))


def pii_kinds(text: str, kinds: Iterable[str] | None = None) -> list[str]:
    """The kinds of personal data in ``text``, each once, in ``PII_KINDS`` order."""
    present = {m.kind for m in find_pii(text, kinds)}
    return [k for k in PII_KINDS if k in present]


def redact(
    text: str, kinds: Iterable[str] | None = None, *, mask: Callable[[PiiMatch], str] | None = None
) -> str:
    """``text`` with each piece of personal data replaced by ``[EMAIL]``, ``[PHONE]``, ... (or ``mask(match)``)."""
    matches = find_pii(text, kinds)
    if not matches:
        return text
    label = mask or _label
    parts: list[str] = []
    pos = 0
    for m in matches:
        parts.append(text[pos : m.start])
        parts.append(label(m))
        pos = m.end
    parts.append(text[pos:])
    return "".join(parts)


def redact_value(value: Any, kinds: Iterable[str] | None = None) -> Any:
    """Redact every string inside a JSON-like value (dicts, lists, strings); other values are returned as is.
    Dict keys are kept: they are field names, not data."""
    if isinstance(value, str):
        return redact(value, kinds)
    if isinstance(value, dict):
        return {key: redact_value(item, kinds) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(item, kinds) for item in value]
    return value


def redact_document(document: Document, kinds: Iterable[str] | None = None) -> Document:
    """A parsed document with personal data redacted in every block (offsets recomputed) and in its title."""
    blocks = [block.model_copy(update={"text": redact(block.text, kinds)}) for block in document.blocks]
    fields = document.model_dump(exclude={"blocks", "text", "source", "source_type"})
    fields["title"] = redact(document.title, kinds) if document.title else document.title
    return Document.assemble(blocks, source=document.source, source_type=document.source_type, **fields)


def _label(match: PiiMatch) -> str:
    return f"[{match.kind.upper()}]"


def _check_kinds(kinds: Iterable[str] | None) -> set[str]:
    if kinds is None:
        return set(PII_KINDS)
    wanted = set(kinds)
    unknown = wanted - set(PII_KINDS)
    if unknown:
        from ragtune.errors import ConfigError

        raise ConfigError(f"unknown PII kind(s) {', '.join(sorted(unknown))} — choose from {', '.join(PII_KINDS)}")
    return wanted


# ---------------------------------------------------------------------------------------------- checksums


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of payment cards and Swedish personal numbers."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _valid_date(year: int, month: int, day: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------------------- finders

_NOT_DIGIT_BEFORE = r"(?<![0-9A-Za-z])"
_NOT_DIGIT_AFTER = r"(?![0-9A-Za-z])"

_EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,24}(?![A-Za-z0-9-])"
)


def _emails(text: str) -> list[PiiMatch]:
    return [PiiMatch("email", m.start(), m.end(), m.group()) for m in _EMAIL_RE.finditer(text)]


# Cards: 13–19 digits in groups separated by single spaces or dashes.
_CARD_RE = re.compile(_NOT_DIGIT_BEFORE + r"\d(?:[ -]?\d){12,18}" + _NOT_DIGIT_AFTER)
_CARD_ISSUERS: tuple[tuple[str, re.Pattern[str], tuple[int, ...]], ...] = (
    ("visa", re.compile(r"4"), (13, 16, 19)),
    ("mastercard", re.compile(r"5[1-5]|2(?:2[2-9][1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)"), (16,)),
    ("amex", re.compile(r"3[47]"), (15,)),
    ("discover", re.compile(r"6011|65|64[4-9]"), (16, 19)),
    ("jcb", re.compile(r"35(?:2[89]|[3-8]\d)"), (16, 17, 18, 19)),
    ("unionpay", re.compile(r"62"), (16, 17, 18, 19)),
    ("diners", re.compile(r"3(?:0[0-5]|[689])"), (14, 16)),
    ("maestro", re.compile(r"5[06-8]|6[37]"), (12, 13, 14, 15, 16, 17, 18, 19)),
)


def _cards(text: str) -> list[PiiMatch]:
    out = []
    for m in _CARD_RE.finditer(text):
        raw = m.group()
        if "  " in raw or "--" in raw:
            continue
        digits = re.sub(r"\D", "", raw)
        if not luhn_valid(digits):
            continue
        for name, prefix, lengths in _CARD_ISSUERS:
            if len(digits) in lengths and prefix.match(digits):
                out.append(PiiMatch("card", m.start(), m.end(), raw, name))
                break
    return out


# IBAN lengths per country (SWIFT IBAN registry).
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "BY": 28,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19,
    "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}
_IBAN_RE = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")


def iban_valid(iban: str) -> bool:
    """Country length and the ISO 13616 mod-97 check (spaces ignored)."""
    compact = iban.replace(" ", "").upper()
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact[2:4].isdigit():
        return False
    moved = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    return int(number) % 97 == 1


def _ibans(text: str) -> list[PiiMatch]:
    out = []
    for m in _IBAN_RE.finditer(text):
        raw = m.group()
        compact = raw.replace(" ", "")
        length = _IBAN_LENGTHS.get(compact[:2])
        if length is None or len(compact) < length:
            continue
        if len(compact) > length:
            # A word may follow the IBAN after a space ("... 3000 IBAN"): cut at the country's length.
            count = 0
            for cut, ch in enumerate(raw, 1):
                count += ch != " "
                if count == length:
                    raw = raw[:cut]
                    break
        if iban_valid(raw):
            out.append(PiiMatch("iban", m.start(), m.start() + len(raw), raw, compact[:2].lower()))
    return out


_CN_ID_RE = re.compile(r"(?<![0-9A-Za-z])[1-8]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])\d{2}\d{3}[\dXx](?![0-9A-Za-z])")
_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def cn_id_valid(number: str) -> bool:
    """Chinese resident identity number (GB 11643): a real birth date and the ISO 7064 MOD 11-2 check character."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    if not _valid_date(int(number[6:10]), int(number[10:12]), int(number[12:14])):
        return False
    total = sum(int(d) * w for d, w in zip(number[:17], _CN_ID_WEIGHTS, strict=True))
    return "10X98765432"[total % 11] == number[17].upper()


def _cn_ids(text: str) -> list[PiiMatch]:
    return [PiiMatch("cn_id", m.start(), m.end(), m.group(), "cn_resident_id")
            for m in _CN_ID_RE.finditer(text) if cn_id_valid(m.group())]


# ---------------------------------------------------------------------------------------------- EU national IDs

_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
_ES_RE = re.compile(r"(?<![0-9A-Za-z])(?:\d{8}|[XYZxyz]-?\d{7})-?[A-Za-z](?![0-9A-Za-z])")


def _es(text: str) -> list[PiiMatch]:
    out = []
    for m in _ES_RE.finditer(text):
        raw = m.group().replace("-", "").upper()
        body = raw[:-1]
        kind = "es_nie" if body[0] in "XYZ" else "es_dni"
        number = int(str("XYZ".index(body[0])) + body[1:]) if kind == "es_nie" else int(body)
        if _DNI_LETTERS[number % 23] == raw[-1]:
            out.append(PiiMatch("eu_id", m.start(), m.end(), m.group(), kind))
    return out


_IT_RE = re.compile(r"(?<![0-9A-Za-z])[A-Z]{6}\d{2}[ABCDEHLMPRST]\d{2}[A-Z]\d{3}[A-Z](?![0-9A-Za-z])")
_IT_ODD = [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23]


def _it_check(code: str) -> str:
    total = 0
    for i, ch in enumerate(code[:15]):
        value = int(ch) if ch.isdigit() else ord(ch) - ord("A")
        total += _IT_ODD[value] if i % 2 == 0 else value
    return chr(ord("A") + total % 26)


def _it(text: str) -> list[PiiMatch]:
    return [PiiMatch("eu_id", m.start(), m.end(), m.group(), "it_codice_fiscale")
            for m in _IT_RE.finditer(text) if _it_check(m.group()) == m.group()[15]]


_FR_RE = re.compile(
    r"(?<![0-9A-Za-z])[12] ?\d{2} ?(?:0[1-9]|1[0-2]|[2-9]\d) ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}(?![0-9A-Za-z])"
)


def _fr(text: str) -> list[PiiMatch]:
    out = []
    for m in _FR_RE.finditer(text):
        compact = m.group().replace(" ", "")
        body, key = compact[:13], int(compact[13:])
        # Corsica: 2A and 2B stand for 19 and 18 in the key's computation.
        number = int(body.replace("2A", "19").replace("2B", "18"))
        if 97 - number % 97 == key:
            out.append(PiiMatch("eu_id", m.start(), m.end(), m.group(), "fr_nir"))
    return out


_BE_RE = re.compile(r"(?<![0-9A-Za-z])\d{2}\.?\d{2}\.?\d{2}-?\d{3}\.?\d{2}(?![0-9A-Za-z])")


def _be(text: str) -> list[PiiMatch]:
    out = []
    for m in _BE_RE.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if len(digits) != 11 or not ("." in m.group() or "-" in m.group()):
            continue  # bare 11-digit runs are left to the formats with context
        body, check = int(digits[:9]), int(digits[9:])
        if (97 - body % 97 == check and _be_date("19" + digits[:6])) or (
            97 - int("2" + digits[:9]) % 97 == check and _be_date("20" + digits[:6])
        ):
            out.append(PiiMatch("eu_id", m.start(), m.end(), m.group(), "be_national_number"))
    return out


def _be_date(yyyymmdd: str) -> bool:
    month, day = int(yyyymmdd[4:6]), int(yyyymmdd[6:8])
    # Numbers given without a known birth date use month or day 00.
    return month == 0 or day == 0 or _valid_date(int(yyyymmdd[:4]), month, day)


_PESEL_RE = re.compile(r"(?<![0-9A-Za-z])\d{11}(?![0-9A-Za-z])")
_PESEL_WEIGHTS = (1, 3, 7, 9, 1, 3, 7, 9, 1, 3)


def pesel_valid(number: str) -> bool:
    if len(number) != 11 or not number.isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(number[:10], _PESEL_WEIGHTS, strict=True))
    if (10 - total % 10) % 10 != int(number[10]):
        return False
    year, month, day = int(number[:2]), int(number[2:4]), int(number[4:6])
    century = {0: 1900, 20: 2000, 40: 2100, 60: 2200, 80: 1800}.get(month // 20 * 20)
    return century is not None and _valid_date(century + year, month % 20, day)


def _pl(text: str) -> list[PiiMatch]:
    out = []
    for m in _PESEL_RE.finditer(text):
        # A Chinese mobile number is 11 digits starting with 1: leave those to the phone finder.
        if re.fullmatch(r"1[3-9]\d{9}", m.group()):
            continue
        if pesel_valid(m.group()):
            out.append(PiiMatch("eu_id", m.start(), m.end(), m.group(), "pl_pesel"))
    return out


_SE_RE = re.compile(r"(?<![0-9A-Za-z])(?:19|20)?\d{6}[-+]\d{4}(?![0-9A-Za-z])")


def _se(text: str) -> list[PiiMatch]:
    out = []
    for m in _SE_RE.finditer(text):
        digits = re.sub(r"\D", "", m.group())[-10:]
        day = int(digits[4:6])
        # Co-ordination numbers add 60 to the day.
        if _valid_date(2000, int(digits[2:4]), day - 60 if day > 60 else day) and luhn_valid(digits):
            out.append(PiiMatch("eu_id", m.start(), m.end(), m.group(), "se_personnummer"))
    return out


_FI_RE = re.compile(r"(?<![0-9A-Za-z])\d{6}[-+ABCDEFUVWXY]\d{3}[0-9A-Y](?![0-9A-Za-z])")
_FI_CHECK = "0123456789ABCDEFHJKLMNPRSTUVWXY"


def _fi(text: str) -> list[PiiMatch]:
    out = []
    for m in _FI_RE.finditer(text):
        raw = m.group()
        if not _valid_date(2000, int(raw[2:4]), int(raw[:2])):
            continue
        if _FI_CHECK[int(raw[:6] + raw[7:10]) % 31] == raw[10]:
            out.append(PiiMatch("eu_id", m.start(), m.end(), raw, "fi_hetu"))
    return out


# Formats whose digits alone are too common (9 or 11 digits): only next to the word that names them.
_NL_RE = re.compile(r"(?i)(?:(?<![A-Za-z])BSN(?![A-Za-z])|burgerservicenummer|sofinummer)[^\n0-9]{0,20}"
                    r"(\d{4}\.?\d{2}\.?\d{3}|\d{9})(?![0-9A-Za-z])")
_DE_RE = re.compile(r"(?i)(?:steuer-?id(?:entifikationsnummer)?|steuer-?idnr|(?<![A-Za-z])IdNr(?![A-Za-z])|tax id)"
                    r"[^\n0-9]{0,20}(\d{2} ?\d{3} ?\d{3} ?\d{3})(?![0-9A-Za-z])")


def bsn_valid(number: str) -> bool:
    """The Dutch citizen service number's eleven test."""
    if len(number) != 9 or not number.isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(number, (9, 8, 7, 6, 5, 4, 3, 2, -1), strict=True))
    return total % 11 == 0 and total != 0


def steuer_id_valid(number: str) -> bool:
    """The German tax identification number: 11 digits, no leading 0, the ISO 7064 MOD 11,10 check digit."""
    if len(number) != 11 or not number.isdigit() or number[0] == "0":
        return False
    product = 10
    for ch in number[:10]:
        total = (int(ch) + product) % 10 or 10
        product = total * 2 % 11
    return (11 - product) % 10 == int(number[10])


def _nl_de(text: str) -> list[PiiMatch]:
    out = []
    for pattern, valid, name in ((_NL_RE, bsn_valid, "nl_bsn"), (_DE_RE, steuer_id_valid, "de_steuer_id")):
        for m in pattern.finditer(text):
            digits = re.sub(r"\D", "", m.group(1))
            if valid(digits):
                out.append(PiiMatch("eu_id", m.start(1), m.end(1), m.group(1), name))
    return out


def _eu_ids(text: str) -> list[PiiMatch]:
    return [*_es(text), *_it(text), *_fr(text), *_be(text), *_pl(text), *_se(text), *_fi(text), *_nl_de(text)]


# ---------------------------------------------------------------------------------------------- phones

_PHONE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # +CC then 6–14 more digits in groups (spaces, dots, dashes, one optional bracketed area code).
    ("international", re.compile(
        r"(?<![0-9A-Za-z+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){1,5}[ .-]?\d{2,4}(?![0-9A-Za-z])")),
    ("international", re.compile(r"(?<![0-9A-Za-z])00[1-9]\d{0,2}(?:[ .-]\d{1,4}){2,5}(?![0-9A-Za-z])")),
    ("cn_mobile", re.compile(r"(?<![0-9A-Za-z])1[3-9]\d(?:[ -]?\d{4}){2}(?![0-9A-Za-z])")),
    ("cn_landline", re.compile(r"(?<![0-9A-Za-z])\(?0\d{2,3}\)?[ -]?[2-9]\d{6,7}(?:-\d{1,4})?(?![0-9A-Za-z])")),
    # North American: (415) 555-2671, 415-555-2671, 415.555.2671, +1 / 1- prefixes; one separator style.
    ("nanp", re.compile(r"(?<![0-9A-Za-z])(?:1[ .-]?)?(?:\([2-9]\d{2}\) ?[2-9]\d{2}[ .-]\d{4}|"
                        r"[2-9]\d{2}([ .-])[2-9]\d{2}\1\d{4})(?![0-9A-Za-z])")),
    # European national numbers: a trunk 0 and 9–11 digits in groups ("020 7946 0958", "06 12 34 56 78").
    ("national", re.compile(r"(?<![0-9A-Za-z])0\d{1,4}(?:[ ./-]\d{2,4}){2,4}(?![0-9A-Za-z])")),
)


def _phones(text: str) -> list[PiiMatch]:
    out = []
    for name, pattern in _PHONE_PATTERNS:
        for m in pattern.finditer(text):
            raw = m.group()
            digits = re.sub(r"\D", "", raw)
            if not 8 <= len(digits) <= 15:
                continue
            if name == "national" and not 9 <= len(digits) <= 12:
                continue
            if _looks_like_date(raw):
                continue
            out.append(PiiMatch("phone", m.start(), m.end(), raw, name))
    return out


_DATE_RE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{4}")


def _looks_like_date(raw: str) -> bool:
    return _DATE_RE.fullmatch(raw.strip()) is not None


# ---------------------------------------------------------------------------------------------- addresses

_STREET_TYPES = (
    r"Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Square|Sq|"
    r"Parkway|Pkwy|Highway|Hwy|Close|Crescent|Gardens|Row|Walk"
)
_EN_ADDRESS_RE = re.compile(
    r"(?<![0-9A-Za-z])\d{1,5}[A-Za-z]?,?\s+(?:[A-Z][A-Za-z'.-]+\s+){1,4}(?:" + _STREET_TYPES + r")\b\.?"
    r"(?:,?\s*(?:Apt|Apartment|Suite|Unit|Flat|Floor|Fl)\.?\s*#?[0-9A-Za-z-]+)?"
    r"(?:,\s*[A-Z][A-Za-z]+(?:\s[A-Z][A-Za-z]+){0,2})?"
    r"(?:,?\s*[A-Z]{2}\s+\d{5}(?:-\d{4})?)?"
)
_UK_POSTCODE_RE = re.compile(r"(?<![0-9A-Za-z])(?:[A-Z]{1,2}\d[A-Z\d]?|GIR) ?\d[ABD-HJLNP-UW-Z]{2}(?![0-9A-Za-z])")
_H = f"[{HAN}]"
_ZH_ADDRESS_RE = re.compile(
    rf"(?:{_H}{{2,7}}(?:省|自治区))?(?:{_H}{{2,7}}市)?(?:{_H}{{1,7}}(?:区|县|旗))?"
    rf"(?:{_H}{{1,7}}(?:镇|乡|街道))?{_H}{{1,10}}(?:路|街|大街|大道|巷|胡同|道|弄)"
    rf"\d{{1,5}}(?:号|號)(?:院)?(?:\d{{1,4}}(?:号楼|栋|幢|座|单元|层|楼|室|号)|{_H}{{1,4}}(?:大厦|中心|小区|公寓))*"
)

_ZH_LEAD_RE = re.compile(r".*(?:住在|位于|地址是|地址为|地址|寄到|寄往|送到|送往|搬到|搬去|来自|去|在|是|到|于|至|往)")


def _addresses(text: str) -> list[PiiMatch]:
    out = [PiiMatch("address", m.start(), m.end(), m.group().rstrip(",. "), "en_street")
           for m in _EN_ADDRESS_RE.finditer(text)]
    out = [PiiMatch(m.kind, m.start, m.start + len(m.text), m.text, m.detail) for m in out]
    out += [PiiMatch("address", m.start(), m.end(), m.group(), "uk_postcode") for m in _UK_POSTCODE_RE.finditer(text)
            if _uk_postcode_plausible(text, m.start())]
    for m in _ZH_ADDRESS_RE.finditer(text):
        # The Han run before a city or road name often holds the words that lead into it ("我住在", "地址是").
        lead = _ZH_LEAD_RE.match(m.group())
        start = m.start() + (lead.end() if lead else 0)
        if _ZH_ADDRESS_RE.fullmatch(text, start, m.end()):
            out.append(PiiMatch("address", start, m.end(), text[start : m.end()], "zh_street"))
    return out


def _uk_postcode_plausible(text: str, start: int) -> bool:
    # Model numbers look like postcodes ("A1 2BC" is rare, "SW1A 1AA" common): ask for an address-like
    # neighbour — a comma or a line break just before, or a capitalised town name.
    before = text[max(0, start - 30) : start]
    return bool(re.search(r"(?:,|\n)\s*$|[A-Z][a-z]+\s+$", before))


_FINDERS: tuple[tuple[str, Callable[[str], list[PiiMatch]]], ...] = (
    ("email", _emails),
    ("card", _cards),
    ("iban", _ibans),
    ("cn_id", _cn_ids),
    ("eu_id", _eu_ids),
    ("phone", _phones),
    ("address", _addresses),
)
