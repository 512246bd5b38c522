"""Corrupt inputs for the fuzzing benchmark: seeded mutations of a valid file (text, JSON or
binary), made the way files really break (cut short, a line lost or repeated, rows swapped, a
value replaced by something hostile, bytes flipped) and the way an attacker would break them
(NaN, huge numbers, NUL bytes, invalid UTF-8, deep nesting, markup)."""

from __future__ import annotations

import json
import random
from typing import Any

HOSTILE_TOKENS: tuple[str, ...] = (
    "nan", "NaN", "inf", "-inf", "1e300", "-1e300", "1e-320", "0", "-0", "-1", "", "x",
    "9" * 400, '"', "[", "]", "{", "}", "true", "[]", "{}", "1e9", "-1e9", "2147483648",
    "9223372036854775808", "$\\foo$", "[/x]", "=cmd|' /C calc'!A0", "\x1b[2J", "\t", ",",
    "0x10", "1_000", "１２", "²",
)  # fmt: skip
HOSTILE_JSON: tuple[Any, ...] = (
    None, "", [], {}, -1, 0, 1e308, -1e308, 2**64, "nan", True, "x" * 10_000, [[[[[]]]]],
    {"format": None}, "2026-13-45", "9999-12-31T00:00:00+00:00", "$\\foo$",
)  # fmt: skip


def mutate_text(data: bytes, rng: random.Random) -> bytes:
    """One of the ways a text file (CSV, TRC, TOML) breaks."""
    lines = data.split(b"\n")
    op = rng.randrange(11)
    if op == 0:  # cut short
        return data[: rng.randrange(len(data) + 1)]
    if op == 1 and len(lines) > 1:  # a line lost
        del lines[rng.randrange(len(lines))]
    elif op == 2:  # a line repeated
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i])
    elif op == 3 and len(lines) > 2:  # two lines swapped
        i, j = rng.sample(range(len(lines)), 2)
        lines[i], lines[j] = lines[j], lines[i]
    elif op in (4, 5, 6):  # a value replaced by a hostile one
        i = rng.randrange(len(lines))
        tokens = _split_tokens(lines[i])
        if tokens:
            k = rng.randrange(len(tokens))
            tokens[k] = rng.choice(HOSTILE_TOKENS).encode()
            lines[i] = b"".join(tokens)
    elif op == 7:  # bytes flipped
        buf = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            if buf:
                buf[rng.randrange(len(buf))] = rng.randrange(256)
        return bytes(buf)
    elif op == 8:  # garbage inserted
        at = rng.randrange(len(data) + 1)
        junk = rng.choice([b"\x00", b"\xff\xfe", b"\r", b"\n" * 3, rng.randbytes(8)])
        return data[:at] + junk + data[at:]
    elif op == 9:
        return rng.choice([b"", b"\n", b"\xef\xbb\xbf", data * 3])
    else:  # rows shuffled
        head, body = lines[:1], lines[1:]
        rng.shuffle(body)
        lines = head + body
    return b"\n".join(lines)


def _split_tokens(line: bytes) -> list[bytes]:
    """A line as alternating values and separators (so joining gives the line back)."""
    out, current = [], b""
    for b in line:
        c = bytes([b])
        if c in b",\t =[]\"'":
            out += [current, c]
            current = b""
        else:
            current += c
    return [*out, current]


def mutate_json(data: bytes, rng: random.Random) -> bytes:
    """A JSON document with one value replaced, removed or added (or broken as text)."""
    try:
        doc = json.loads(data)
    except ValueError:
        return mutate_text(data, rng)
    if rng.random() < 0.2:
        return mutate_text(data, rng)
    paths = json_paths(doc)
    path = rng.choice(paths)
    if not path:
        return json.dumps(rng.choice(HOSTILE_JSON)).encode()
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    op = rng.randrange(3)
    if op == 0 and isinstance(parent, dict):
        del parent[path[-1]]
    elif op == 1 and isinstance(parent, dict):
        parent["unexpected_" + str(rng.randrange(100))] = rng.choice(HOSTILE_JSON)
    else:
        parent[path[-1]] = rng.choice(HOSTILE_JSON)
    return json.dumps(doc).encode()


def json_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path into a JSON document (the first four items of a list)."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += json_paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:4]):
            out += json_paths(v, (*prefix, i))
    return out


def mutate_binary(data: bytes, rng: random.Random) -> bytes:
    """A binary file (Parquet, weights, a model) damaged: cut, flipped, zeroed or padded."""
    op = rng.randrange(4)
    if op == 0:
        return data[: rng.randrange(len(data) + 1)]
    buf = bytearray(data)
    if op == 1:
        for _ in range(rng.randint(1, 16)):
            if buf:
                buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    elif op == 2 and buf:
        at = rng.randrange(len(buf))
        buf[at : at + rng.randint(1, 256)] = bytes(min(256, len(buf) - at))
    else:
        buf += rng.randbytes(rng.randint(1, 64))
    return bytes(buf)


MUTATORS = {"text": mutate_text, "json": mutate_json, "binary": mutate_binary}
