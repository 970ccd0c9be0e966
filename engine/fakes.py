"""Fake values in the shape of real ones, for fixtures made from real traffic.

``hookmap capture`` turns stored webhooks into rule-test fixtures; the people in them
must not come along. A ``Faker`` replaces one value at a time and keeps its shape, so
the rules read the fixture as they read the original:

* an e-mail stays an e-mail: each word of its local part becomes a name (the same one
  the person's name fields got, when they hold that word), separators and digits keep
  their places, and the domain becomes ``example.com``, ``example.org``,
  ``example.net`` (then ``mailN.example.com``), reserved for documentation;
* a phone keeps its length, its format (``+``, spaces, dashes, brackets) and its
  country code: US/Canada numbers end in 555-01NN and UK mobiles read 07700 900NNN,
  the ranges set aside for fiction; elsewhere the last seven digits become 555NNNN;
* a name stays a name in its script (Latin, Cyrillic, CJK), capitalised as it was;
* an address line keeps its house numbers' length, its street types (St, Rd, Apt,
  вул., ...) and punctuation, with other words replaced by street names; cities
  become made-up towns; postcodes keep letters as letters and digits as digits;
* an IP address falls in the documentation ranges (203.0.113.0/24, 2001:db8::/32).

Deterministic within one ``Faker``: the same value always gets the same fake (a phone
by its last seven digits, so ``+1 207-555-0123`` and ``(207) 555-0123`` agree), and
distinct values get distinct fakes. A fake is made from the order in which values are
met, never from the value's own characters (beyond its shape and a phone's country
code), so it cannot be turned back into the value; nothing is random either, and
capturing the same webhook twice writes the same fixture. One ``Faker`` per captured
webhook (body, headers and the API answers its lookups got).

About 150 lines of our own rather than a faker package: such packages are large,
generate free-form values rather than keep the shape of a given one, and change
their output between versions (fixtures would churn).
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_RUNS = re.compile(r"\d+|[^\W\d_]+|[\W_]+")

_FIRST = {
    "latin": "Alex Maria John Emma Liam Nora Noah Ava Lucas Mia Ethan Zoe Adam Lena Oscar "
    "Nina Felix Iris Hugo Ada",
    "cyrillic": "Олена Іван Марія Петро Анна Андрій Оксана Тарас Ірина Богдан",
    "cjk": "花子 太郎 美咲 健太 陽菜 大翔",
}
_LAST = {
    "latin": "Smith Jones Taylor Brown Miller Davis Wilson Moore Clark Lewis Walker Hall "
    "Young King Wright Green Baker Adams Nelson Carter",
    "cyrillic": "Коваль Шевченко Бондар Мельник Ткаченко Кравець Олійник Савчук Лисенко Гончар",
    "cjk": "佐藤 鈴木 高橋 田中 伊藤 渡辺",
}
_STREET = {
    "latin": "Maple Oak Cedar Elm Pine Birch Willow Aspen Linden Spruce Hazel Rowan",
    "cyrillic": "Садова Лісова Шкільна Польова Зелена Вишнева Липова Озерна",
    "cjk": "桜 松 梅 竹 緑 若葉",
}
_CITY = {
    "latin": "Springfield Riverton Fairview Lakeside Greenville Milton Ashford Brookfield",
    "cyrillic": "Вишневе Зелене Сонячне Тихе Ясне Озерне",
    "cjk": "桜市 緑町 若葉町 松原市",
}
_POOLS = {"first": _FIRST, "last": _LAST, "street": _STREET}
_COMPANY = "Example Trading|Sample Goods|Demo Works|Placeholder Supply|Fictional Ltd"
_ADDRESS_WORDS = (
    "st street rd road ave avenue blvd boulevard ln lane dr drive ct court pl place sq "
    "square hwy highway way pkwy apt apartment suite ste unit fl floor bldg building po box "
    "no nr str strasse straße rue via calle вул вулиця просп проспект пров провулок буд "
    "будинок кв квартира м село смт обл область район"
)
#: words of an address line that say what kind of place it is: kept as they are
ADDRESS_WORDS = frozenset(_ADDRESS_WORDS.split())
_DOMAINS = ("example.com", "example.org", "example.net")


def script(text: str) -> str:
    """``latin``, ``cyrillic`` or ``cjk``: the script of the first letter of ``text``."""
    for char in text:
        if char.isalpha():
            name = unicodedata.name(char, "")
            if "CYRILLIC" in name:
                return "cyrillic"
            if any(k in name for k in ("CJK", "HIRAGANA", "KATAKANA", "HANGUL")):
                return "cjk"
            return "latin"
    return "latin"


def _like(model: str, word: str) -> str:
    """``word`` capitalised as ``model`` is (all caps, all lower, or as written)."""
    if model.isupper() and len(model) > 1:
        return word.upper()
    if model.islower():
        return word.lower()
    return word


def _number(n: int, width: int) -> str:
    """The ``n``-th fake of ``width`` digits: distinct for the first 10**width ``n``, and
    made from ``n`` alone, so nothing of the value it replaces can be read back from it
    (7919 is prime: multiplying by it is a one-to-one shuffle modulo 10**width)."""
    return str((n * 7919 + 4321) % 10**width).zfill(width)


def _pick(pools: dict[str, str], kind: str, n: int) -> str:
    words = pools[kind].split()
    if n < len(words):
        return words[n]
    # past the pool: two of its words joined, still distinct and still a word
    return words[n % len(words)] + words[(n // len(words)) % len(words)].lower()


class Faker:
    """Shape-keeping fakes, the same for the same value (see the module's docstring)."""

    def __init__(self) -> None:
        self._memo: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}

    def _once(
        self, kind: str, key: str, make: Callable[[int], str], counter: str | None = None
    ) -> str:
        """The fake of ``key``, made once: ``make(n)``, ``n`` counting the fakes made before
        it under ``counter`` (``kind`` unless given); never ``key`` itself."""
        found = self._memo.get((kind, key))
        if found is None:
            tally = counter or kind
            while True:
                n = self._counts.get(tally, 0)
                self._counts[tally] = n + 1
                found = make(n)
                if found.lower() != key.lower():
                    break
            self._memo[(kind, key)] = found
        return found

    def word(self, word: str, pool: str = "first") -> str:
        """One word of a name (``first``, ``last``) or of a street (``street``): the same
        fake wherever it stands, first name, last name or part of an e-mail."""
        kind = script(word)
        pools = _POOLS[pool]
        # counted per pool and script: each pool is used from its start before its
        # words are combined
        fake = self._once("word", word.lower(), lambda n: _pick(pools, kind, n), pool + kind)
        return _like(word, fake)

    def name(self, value: str, last: bool = False) -> str:
        """A person's name: each word faked (``last``: surnames for a lone word)."""
        runs = _RUNS.findall(value)
        words = [r for r in runs if r[0].isalpha()]
        out = []
        for run in runs:
            if not run[0].isalpha():
                out.append(run)
                continue
            surname = last or (len(words) > 1 and run is not words[0])
            out.append(self.word(run, "last" if surname else "first"))
        return "".join(out)

    def email(self, value: str) -> str:
        local, _, domain = value.rpartition("@")
        fake_local = "".join(
            self.word(run).lower()
            if run[0].isalpha()
            else self.digits(run)
            if run[0].isdigit()
            else run
            for run in _RUNS.findall(local)
        )
        fake_domain = self._once(
            "domain",
            domain.lower(),
            lambda n: _DOMAINS[n] if n < len(_DOMAINS) else f"mail{n}.example.com",
        )
        return f"{fake_local}@{fake_domain}"

    def emails_in(self, text: str) -> str:
        """``text`` with every e-mail address in it faked (notes, headers)."""
        return EMAIL.sub(lambda m: self.email(m.group(0)), text)

    def digits(self, run: str) -> str:
        """A run of digits (a house number): the same length, other digits."""
        return self._once("digits", run, lambda n: _number(n, len(run)), f"digits{len(run)}")

    def phone(self, value: str) -> str:
        digits = re.sub(r"\D", "", value)
        n = int(self._once("phone", digits[-7:], lambda n: str(n)))
        if len(digits) < 7:
            fake = str(n % 10 ** len(digits)).zfill(len(digits))
        elif re.fullmatch(r"1?[2-9]\d{9}", digits):  # US / Canada: 555-0100 to 0199
            fake = digits[:-7] + f"55501{n % 100:02d}"
        elif re.fullmatch(r"(?:44|0)7\d{9}", digits):  # UK mobile: 07700 900000 to 900999
            fake = digits[: len(digits) - 10] + f"7700900{n % 1000:03d}"
        else:
            fake = digits[:-7] + f"555{n % 10000:04d}"
        feed = iter(fake)
        return re.sub(r"\d", lambda _: next(feed), value)

    def address(self, value: str) -> str:
        """An address line: numbers and words faked, street types and punctuation kept."""
        out = []
        for run in _RUNS.findall(value):
            if run[0].isdigit():
                out.append(self.digits(run))
            elif run[0].isalpha() and run.lower().rstrip(".") not in ADDRESS_WORDS:
                out.append(self.word(run, "street"))
            else:
                out.append(run)
        return "".join(out)

    def city(self, value: str) -> str:
        kind = script(value)
        return self._once("city", value.lower(), lambda n: _pick(_CITY, kind, n))

    def postcode(self, value: str) -> str:
        """Letters stay letters (and their case), digits stay digits, others as they are."""

        def make(n: int) -> str:
            count = sum(c.isdigit() for c in value)
            digits = iter(_number(n, count)) if count else iter(())
            out = []
            for i, char in enumerate(value):
                if char.isdigit():
                    out.append(next(digits))
                elif "a" <= char.lower() <= "z":
                    letter = chr(ord("A") + (n * 11 + i * 7) % 26)
                    out.append(letter if char.isupper() else letter.lower())
                else:
                    out.append(char)
            return "".join(out)

        return self._once("postcode", value, make)

    def company(self, value: str) -> str:
        names = _COMPANY.split("|")
        return self._once(
            "company",
            value.lower(),
            lambda n: names[n % len(names)] + ("" if n < len(names) else f" {n}"),
        )

    def ip(self, value: str) -> str:
        try:
            address = ipaddress.ip_address(value.strip())
        except ValueError:
            return value
        if address.version == 4:
            return self._once("ip", value, lambda n: f"203.0.113.{10 + n % 240}")
        return self._once("ip6", value, lambda n: f"2001:db8::{n + 1:x}")

    def text(self, value: str) -> str:
        """Anything else asked for (``--scrub KEY``): letters → x, digits faked, e-mails as
        e-mails; length, case and punctuation kept."""
        out = []
        last = 0
        for match in EMAIL.finditer(value):
            out.append(self._blur(value[last : match.start()]))
            out.append(self.email(match.group(0)))
            last = match.end()
        out.append(self._blur(value[last:]))
        return "".join(out)

    def _blur(self, text: str) -> str:
        return "".join(
            self.digits(r)
            if r[0].isdigit()
            else "".join("X" if c.isupper() else "x" for c in r)
            if r[0].isalpha()
            else r
            for r in _RUNS.findall(text)
        )
