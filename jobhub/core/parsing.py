"""Reading numbers and text out of requests, strictly: what a client sends is not trusted.

ascii_int("42")           # 42
ascii_int("²")            # None: str.isdigit() says yes, int() says no
ascii_int("٤٢")           # None: int() would read 42 from Arabic-Indic digits
utf8_error(b"a\\xffb")    # 'byte 0xff at offset 1: invalid start byte'
"""

from __future__ import annotations

__all__ = ["MAX_DIGITS", "ascii_int", "describe", "utf8_error"]

MAX_DIGITS = 18
"""Longest run of digits ``ascii_int`` reads: every number jobhub parses fits (a cursor is at
most 18 digits), and it stays far below ``sys.get_int_max_str_digits()``, past which
``int()`` raises instead of refusing."""


def ascii_int(text: str, *, max_digits: int = MAX_DIGITS) -> int | None:
    """``text`` as a non-negative integer if it is 1 to ``max_digits`` ASCII digits, else None.

    ``str.isdigit()`` accepts superscripts ('²', which ``int()`` then refuses) and ``int()``
    accepts digits of every script ('٤٢'), signs, spaces and underscores; none of that is a
    number in a header or a query.
    """
    if 0 < len(text) <= max_digits and text.isascii() and text.isdigit():
        return int(text)
    return None


def utf8_error(raw: bytes) -> str | None:
    """Why ``raw`` is not UTF-8, or None when it is.

    Strict decoding refuses what a lenient one turns into U+FFFD, or lets through as a lone
    surrogate that cannot be encoded again later: stray continuation bytes, truncated
    sequences, overlong forms (``c0 af``), encoded surrogates (``ed a0 80``).
    """
    if raw.isascii():
        return None  # the common case, one scan in C
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return describe(exc)
    return None


def describe(exc: UnicodeDecodeError) -> str:
    """A decoding error in words that are safe to echo (the bytes in hex, never as text)."""
    return f"byte 0x{exc.object[exc.start]:02x} at offset {exc.start}: {exc.reason}"
