"""Builds the synthetic EN + ZH personal-data set (checksum-valid numbers, labelled spans, hard negatives).

    python bench/guard_pii_data.py --seed 2 --out tests/fixtures/guard/pii_set.jsonl   # the committed held-out set
    python bench/guard_pii_data.py --seed 1 --out /tmp/pii_dev.jsonl                   # a dev set to iterate on

Each line: {"id", "lang", "text", "spans": [{"kind", "start", "end", "text"}], "note"}. Numbers are generated with
their real check digits (Luhn, IBAN mod 97, GB 11643, DNI letter, ...); negatives are look-alikes whose checks
fail, and everyday numbers (orders, dates, versions, prices) that are not personal data.
"""

from __future__ import annotations

import argparse
import json
import random
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

Item = dict[str, Any]


# ---------------------------------------------------------------------------------------------- number makers


def luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        n = int(ch)
        if i % 2 == 0:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return str((10 - total % 10) % 10)


def card(rng: random.Random) -> str:
    prefix, length, groups = rng.choice([
        ("4", 16, (4, 4, 4, 4)), ("51", 16, (4, 4, 4, 4)), ("55", 16, (4, 4, 4, 4)), ("2221", 16, (4, 4, 4, 4)),
        ("34", 15, (4, 6, 5)), ("37", 15, (4, 6, 5)), ("6011", 16, (4, 4, 4, 4)), ("62", 16, (4, 4, 4, 4)),
        ("62", 19, (6, 13)), ("3528", 16, (4, 4, 4, 4)),
    ])
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    number = body + luhn_digit(body)
    sep = rng.choice([" ", "-", ""])
    if not sep:
        return number
    out, pos = [], 0
    for g in groups:
        out.append(number[pos : pos + g])
        pos += g
    return sep.join(out)


def bad_card(rng: random.Random) -> str:
    """A card-shaped number whose Luhn check fails."""
    good = card(rng).replace(" ", "").replace("-", "")
    digits = good[:-1] + str((int(good[-1]) + rng.randint(1, 9)) % 10)
    return " ".join(digits[i : i + 4] for i in range(0, len(digits), 4))


_IBAN_FORMATS = {
    "DE": "8n10n", "GB": "4a14n", "FR": "10n11c2n", "ES": "20n", "IT": "1a10n12c", "NL": "4a10n", "BE": "12n",
    "CH": "5n12c", "AT": "16n", "PL": "24n", "SE": "20n", "FI": "14n", "IE": "4a14n", "PT": "21n", "LU": "3n13c",
}


def _bban(fmt: str, rng: random.Random) -> str:
    out, number = [], ""
    for ch in fmt:
        if ch.isdigit():
            number += ch
            continue
        pool = {"n": string.digits, "a": string.ascii_uppercase, "c": string.ascii_uppercase + string.digits}[ch]
        out.append("".join(rng.choice(pool) for _ in range(int(number))))
        number = ""
    return "".join(out)


def iban(rng: random.Random, *, valid: bool = True) -> str:
    country = rng.choice(sorted(_IBAN_FORMATS))
    bban = _bban(_IBAN_FORMATS[country], rng)
    numeric = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    check = 98 - int(numeric) % 97
    if not valid:
        check = (check + rng.randint(1, 90)) % 97 + 2
    compact = f"{country}{check:02d}{bban}"
    if rng.random() < 0.6:
        return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))
    return compact


_CN_AREAS = ["110101", "110105", "310104", "310115", "440305", "440106", "510107", "330106", "320102", "420111"]
_CN_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def cn_id(rng: random.Random, *, valid: bool = True) -> str:
    year, month = rng.randint(1950, 2008), rng.randint(1, 12)
    day = rng.randint(1, 28)
    body = f"{rng.choice(_CN_AREAS)}{year}{month:02d}{day:02d}{rng.randint(0, 999):03d}"
    check = "10X98765432"[sum(int(d) * w for d, w in zip(body, _CN_WEIGHTS, strict=True)) % 11]
    if not valid:
        check = rng.choice([c for c in "0123456789X" if c != check])
    return body + check


def es_dni(rng: random.Random) -> str:
    n = rng.randint(10_000_000, 99_999_999)
    return f"{n}{'TRWAGMYFPDXBNJZSQVHLCKE'[n % 23]}"


def es_nie(rng: random.Random) -> str:
    lead = rng.choice("XYZ")
    n = rng.randint(1_000_000, 9_999_999)
    return f"{lead}{n}{'TRWAGMYFPDXBNJZSQVHLCKE'[int(str('XYZ'.index(lead)) + str(n)) % 23]}"


_IT_ODD = [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23]


def it_cf(rng: random.Random) -> str:
    letters = "".join(rng.choice(string.ascii_uppercase) for _ in range(6))
    body = (f"{letters}{rng.randint(40, 99)}{rng.choice('ABCDEHLMPRST')}{rng.randint(1, 71):02d}"
            f"{rng.choice(string.ascii_uppercase)}{rng.randint(100, 999)}")
    total = 0
    for i, ch in enumerate(body):
        value = int(ch) if ch.isdigit() else ord(ch) - 65
        total += _IT_ODD[value] if i % 2 == 0 else value
    return body + chr(65 + total % 26)


def fr_nir(rng: random.Random) -> str:
    body = (f"{rng.choice('12')}{rng.randint(40, 99):02d}{rng.randint(1, 12):02d}{rng.randint(1, 95):02d}"
            f"{rng.randint(1, 999):03d}{rng.randint(1, 999):03d}")
    key = 97 - int(body) % 97
    parts = [body[0], body[1:3], body[3:5], body[5:7], body[7:10], body[10:13], f"{key:02d}"]
    return " ".join(parts) if rng.random() < 0.6 else "".join(parts)


def be_nn(rng: random.Random) -> str:
    year, month, day = rng.randint(40, 99), rng.randint(1, 12), rng.randint(1, 28)
    body = f"{year:02d}{month:02d}{day:02d}{rng.randint(1, 997):03d}"
    check = 97 - int(body) % 97
    return f"{body[:2]}.{body[2:4]}.{body[4:6]}-{body[6:9]}.{check:02d}"


def pesel(rng: random.Random) -> str:
    year, month, day = rng.randint(1950, 2010), rng.randint(1, 12), rng.randint(1, 28)
    mm = month + (20 if year >= 2000 else 0)
    body = f"{year % 100:02d}{mm:02d}{day:02d}{rng.randint(0, 9999):04d}"
    total = sum(int(d) * w for d, w in zip(body, (1, 3, 7, 9, 1, 3, 7, 9, 1, 3), strict=True))
    return body + str((10 - total % 10) % 10)


def se_pnr(rng: random.Random) -> str:
    year, month, day = rng.randint(40, 99), rng.randint(1, 12), rng.randint(1, 28)
    body = f"{year:02d}{month:02d}{day:02d}{rng.randint(0, 999):03d}"
    check = luhn_digit(body)
    # luhn_digit doubles from the right of the body: the personnummer check is the same Luhn digit.
    return f"{body[:6]}-{body[6:]}{check}"


def fi_hetu(rng: random.Random) -> str:
    day, month, year = rng.randint(1, 28), rng.randint(1, 12), rng.randint(40, 99)
    individual = rng.randint(2, 899)
    number = int(f"{day:02d}{month:02d}{year:02d}{individual:03d}")
    return f"{day:02d}{month:02d}{year:02d}-{individual:03d}{'0123456789ABCDEFHJKLMNPRSTUVWXY'[number % 31]}"


def nl_bsn(rng: random.Random) -> str:
    while True:
        body = f"{rng.randint(10_000_000, 99_999_999)}"
        total = sum(int(d) * w for d, w in zip(body, (9, 8, 7, 6, 5, 4, 3, 2), strict=True))
        last = total % 11
        if last < 10:
            return body + str(last)


def de_steuer_id(rng: random.Random) -> str:
    while True:
        digits = [rng.randint(1, 9)] + rng.sample(range(10), 9)  # one digit repeated is allowed; distinct is fine
        body = "".join(str(d) for d in digits)
        product = 10
        for ch in body:
            total = (int(ch) + product) % 10 or 10
            product = total * 2 % 11
        check = (11 - product) % 10
        return body + str(check)


# ---------------------------------------------------------------------------------------------- other PII


_FIRST = ["anna", "li.wei", "j.smith", "maria", "zhang_san", "o.connor", "chen.jing", "p.dupont", "k.nowak", "s.berg"]
_DOMAINS = ["example.com", "mail.example.org", "corp.example.cn", "uni-example.de", "example.co.uk", "163.example.net"]


def email(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)}{rng.choice(['', str(rng.randint(1, 99))])}@{rng.choice(_DOMAINS)}"


def phone(rng: random.Random, lang: str) -> str:
    if lang == "zh":
        kind = rng.choice(["mobile", "mobile", "mobile_spaced", "plus86", "landline"])
        mobile = f"1{rng.choice('3456789')}{rng.randint(0, 9)}{rng.randint(0, 99999999):08d}"
        if kind == "mobile":
            return mobile
        if kind == "mobile_spaced":
            return f"{mobile[:3]} {mobile[3:7]} {mobile[7:]}"
        if kind == "plus86":
            return f"+86 {mobile}"
        return f"0{rng.choice(['10', '21', '755', '571'])}-{rng.randint(2, 8)}{rng.randint(0, 9999999):07d}"
    kind = rng.choice(["nanp", "nanp_paren", "uk", "intl_de", "intl_fr", "fr_national"])
    if kind == "nanp":
        return f"{rng.randint(201, 989)}-{rng.randint(201, 989)}-{rng.randint(0, 9999):04d}"
    if kind == "nanp_paren":
        return f"({rng.randint(201, 989)}) {rng.randint(201, 989)}-{rng.randint(0, 9999):04d}"
    if kind == "uk":
        return f"020 {rng.randint(7000, 8999)} {rng.randint(0, 9999):04d}"
    if kind == "intl_de":
        return f"+49 30 {rng.randint(1000000, 99999999)}"
    if kind == "intl_fr":
        return f"+33 6 {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)}"
    return f"06 {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)}"


_EN_STREETS = ["Baker Street", "Main St", "Elm Avenue", "Oak Road", "Sunset Blvd", "Maple Drive", "Church Lane",
               "High Street", "Park Place", "Queen's Road"]
_EN_TOWNS = ["London", "Springfield", "Boston", "Leeds", "Portland", "Austin"]
_ZH_ADDRESSES = [
    ("北京市", "朝阳区", "建国路"), ("上海市", "浦东新区", "世纪大道"), ("广东省深圳市", "南山区", "科技园路"),
    ("浙江省杭州市", "西湖区", "文三路"), ("四川省成都市", "武侯区", "人民南路"), ("江苏省南京市", "鼓楼区", "中山路"),
]


def address(rng: random.Random, lang: str) -> str:
    if lang == "zh":
        city, district, road = rng.choice(_ZH_ADDRESSES)
        tail = rng.choice(["", f"{rng.randint(1, 30)}栋{rng.randint(101, 2505)}室", f"{rng.randint(1, 9)}单元"])
        return f"{city}{district}{road}{rng.randint(1, 999)}号{tail}"
    number = f"{rng.randint(1, 9999)}{rng.choice(['', '', 'B'])}"
    street = rng.choice(_EN_STREETS)
    tail = rng.choice(["", f", Apt {rng.randint(1, 40)}", f", {rng.choice(_EN_TOWNS)}",
                       f", Springfield, IL {rng.randint(10000, 99999)}"])
    return f"{number} {street}{tail}"


# ---------------------------------------------------------------------------------------------- sentences

_EN_TEMPLATES: dict[str, list[str]] = {
    "email": ["Please write to {x} if the badge does not work.", "Contact: {x}",
              "Send the signed copy to {x} by Friday.", "Her address on file is {x}; use it for payroll questions."],
    "phone": ["Call me on {x} after 6pm.", "Emergency contact: {x}", "The hotline is {x} (24/7).",
              "You can reach the landlord at {x}."],
    "card": ["Card number: {x}, expiry 09/28.", "Charge it to {x} please.", "The refund went to card {x}."],
    "iban": ["Transfer the deposit to IBAN {x}.", "Bank details: {x} (BIC included separately).",
             "Salary account {x} was updated."],
    "cn_id": ["His Chinese ID number is {x}.", "ID card: {x}"],
    "eu_id": ["{x} was verified at the front desk.", "National ID: {x}", "Her personal number is {x}."],
    "address": ["Ship the parcel to {x}.", "I moved to {x} last month.", "Office address: {x}"],
}
_ZH_TEMPLATES: dict[str, list[str]] = {
    "email": ["请把合同发到{x}，谢谢。", "联系邮箱：{x}", "如有问题请发邮件至{x}。"],
    "phone": ["我的手机号是{x}，有事随时打。", "联系电话：{x}", "请拨打{x}预约。", "紧急联系人电话{x}"],
    "card": ["我的银行卡号是{x}。", "退款会退回到卡号{x}。"],
    "iban": ["请汇款到国际账户{x}。", "收款账号（IBAN）：{x}"],
    "cn_id": ["身份证号：{x}", "他的身份证号码是{x}，请核对。", "请提供身份证{x}的复印件。"],
    "eu_id": ["护照以外的证件号码：{x}", "欧盟身份证号{x}已登记。"],
    "address": ["收货地址：{x}", "我住在{x}，欢迎来玩。", "公司地址是{x}。"],
}
_EU_MAKERS: list[tuple[str, Callable[[random.Random], str], str]] = [
    ("es_dni", es_dni, ""), ("es_nie", es_nie, ""), ("it_codice_fiscale", it_cf, "Codice fiscale "),
    ("fr_nir", fr_nir, "NIR "), ("be_national_number", be_nn, ""), ("pl_pesel", pesel, "PESEL "),
    ("se_personnummer", se_pnr, ""), ("fi_hetu", fi_hetu, "HETU "), ("nl_bsn", nl_bsn, "BSN "),
    ("de_steuer_id", de_steuer_id, "Steuer-ID "),
]

_NEGATIVES_EN = [
    "Order #{n8} shipped on 2026-03-14 and arrives by 2026-03-18.", "Upgrade to version 2.13.0 before Monday.",
    "The invoice total was $1,299.00 including VAT.", "Room 101 is on the first floor.",
    "Ticket INC{n7} was closed at 14:35.", "The meeting moved to 10/03/2026 at 09:30.",
    "Serial number SN-{n6}-{n4} is out of warranty.", "We shipped {n4} units in Q3 and 2,310 in Q4.",
    "Policy 4.2.1 replaces section 3.9 of the handbook.", "ISBN 978-0-306-40615-7 is the second edition.",
    "The build {n8}{n4} failed on step 3.", "Latitude 51.5072, longitude -0.1276 marks the office.",
    "Timestamp 20260115_1430 opened the chat log.", "The reference code is {badcard}.",
    "Account check failed for {badiban}.", "Invalid ID {badcnid} was rejected by the form.",
    "Pay grade 7 starts at 52,000 per year.", "Call extension 4411 for the help desk.",
]
_NEGATIVES_ZH = [
    "订单号{n8}已于2026年3月14日发货。", "请在周一前升级到2.13.0版本。", "发票金额为1299.00元，含税。",
    "会议改到2026-03-10上午9:30。", "工单INC{n7}已关闭。", "第三季度共发货{n4}台。",
    "错误的身份证号{badcnid}无法通过校验。",
    "卡号{badcard}校验失败，请重新输入。", "政策第4.2.1条替代了手册第3.9节。", "本次构建编号{n8}{n4}失败。",
    "年假为15天，病假为10天。", "办公室在3楼302会议室。",
]


def _fill_negative(template: str, rng: random.Random) -> str:
    return template.format(
        n8=rng.randint(10_000_000, 99_999_999), n7=rng.randint(1_000_000, 9_999_999), n6=rng.randint(100000, 999999),
        n4=rng.randint(1000, 9999), badcard=bad_card(rng), badiban=iban(rng, valid=False),
        badcnid=cn_id(rng, valid=False),
    )


def positive(kind: str, lang: str, rng: random.Random) -> Item:
    note = ""
    prefix = ""
    if kind == "email":
        value = email(rng)
    elif kind == "phone":
        value = phone(rng, lang)
    elif kind == "card":
        value = card(rng)
    elif kind == "iban":
        value = iban(rng)
    elif kind == "cn_id":
        value = cn_id(rng)
    elif kind == "eu_id":
        note, maker, prefix = rng.choice(_EU_MAKERS)
        value = maker(rng)
    else:
        value = address(rng, lang)
    templates = (_ZH_TEMPLATES if lang == "zh" else _EN_TEMPLATES)[kind]
    template = rng.choice(templates)
    if prefix:
        template = template.replace("{x}", prefix + "{x}")
    start = template.index("{x}")
    text = template.replace("{x}", value, 1)
    return {"lang": lang, "text": text, "spans": [{"kind": kind, "start": start, "end": start + len(value),
                                                    "text": value}], "note": note or kind}


def combined(lang: str, rng: random.Random) -> Item:
    """Two kinds in one text: a record with an e-mail and a phone, or an address and a card."""
    first, second = rng.sample(["email", "phone", "address", "iban", "card", "cn_id"], 2)
    a, b = positive(first, lang, rng), positive(second, lang, rng)
    joiner = "；" if lang == "zh" else " "
    text = a["text"] + joiner + b["text"]
    offset = len(a["text"]) + len(joiner)
    spans = a["spans"] + [{**s, "start": s["start"] + offset, "end": s["end"] + offset} for s in b["spans"]]
    return {"lang": lang, "text": text, "spans": spans, "note": f"{first}+{second}"}


def build(seed: int, per_kind: int = 26, negatives: int = 70, combos: int = 40) -> list[Item]:
    rng = random.Random(seed)
    items: list[Item] = []
    for kind in ("email", "phone", "card", "iban", "cn_id", "eu_id", "address"):
        count = per_kind * (2 if kind == "eu_id" else 1)
        for i in range(count):
            items.append(positive(kind, "zh" if i % 2 else "en", rng))
    for i in range(combos):
        items.append(combined("zh" if i % 2 else "en", rng))
    for i in range(negatives):
        pool = _NEGATIVES_ZH if i % 2 else _NEGATIVES_EN
        items.append({"lang": "zh" if i % 2 else "en", "text": _fill_negative(rng.choice(pool), rng), "spans": [],
                      "note": "negative"})
    for n, item in enumerate(items):
        item["id"] = f"pii-{seed}-{n:04d}"
        for span in item["spans"]:
            assert item["text"][span["start"] : span["end"]] == span["text"], item
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures/guard/pii_set.jsonl"))
    args = parser.parse_args()
    items = build(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps({k: item[k] for k in ("id", "lang", "text", "spans", "note")}, ensure_ascii=False)
                    + "\n")
    spans = sum(len(i["spans"]) for i in items)
    print(f"wrote {len(items)} items ({spans} PII spans, {sum(not i['spans'] for i in items)} negatives) to {args.out}")


if __name__ == "__main__":
    main()
