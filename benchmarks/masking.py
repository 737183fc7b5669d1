"""Masking speed (issue 16): ``mask_text`` on 1 MiB inputs of several shapes.

Workers mask a task's arguments before they record anything, so masking must stay linear: the
old pattern took about 79 s on 40,000 identifier characters. Each shape is timed (best of
``REPEATS``) against two floors measured on the same string in the same run: a compiled ``re``
search for one literal character that does not occur (the engine's fastest scan) and
``str.translate`` (one pass that builds a new string, as masking must). The goal is the worst
shape, ``dense_secrets`` (every pair a secret) included: any input may reach a worker. The goal
is wall-clock; ``cpu ms`` (this process's CPU time, best of the same runs) shows the cost
without the time other processes of a loaded machine took. ``scaling`` is the time
on 1 MiB over the time on 256 KiB of the same shape: about 4 when linear, about 16 when
quadratic.

Run: ``.venv/bin/python benchmarks/masking.py`` (pure, in-process, about 20 s).
"""

from __future__ import annotations

import json
import random
import re
import string
import time
from collections.abc import Callable
from functools import partial

from quantbeat.infra.masking import MASK, mask_text

MIB = 1 << 20
REPEATS = 5
TARGET_MS = 50.0
_FLOOR = re.compile("\x00")
_TRANSLATE = str.maketrans({"\x00": "0"})


def _fill(make: Callable[[random.Random], str], size: int) -> str:
    rng = random.Random(16)
    parts, n = [], 0
    while n < size:
        part = make(rng)
        parts.append(part)
        n += len(part)
    return "".join(parts)[:size]


def identifier_run(size: int) -> str:
    """One run of [A-Za-z0-9_.-], the shape that made the old pattern quadratic."""
    rng = random.Random(16)
    alphabet = string.ascii_letters + string.digits + "_.-"
    return "".join(rng.choices(alphabet, k=size))


_KEYS = [
    "trade_date",
    "market",
    "ticker",
    "strategy",
    "chunk_size",
    "max_tokens",
    "tokens_in",
    "token_count",
    "balance_date",
    "session_date",
    "routing_key",
    "instrument",
    "api_key",
    "krw_balance",
    "password",
    "access_token",
]


def key_value_pairs(size: int) -> str:
    """``key=value&`` pairs as in query strings and env dumps; 4 of 16 keys are secret."""
    return _fill(lambda r: f"{r.choice(_KEYS)}={r.randrange(10**8):x}&", size)


def json_records(size: int) -> str:
    """A JSON list of task-result-like records; one in 20 carries an API key."""

    def record(r: random.Random) -> str:
        row: dict[str, object] = {
            "instrument": f"KOSPI:{r.randrange(10**6):06d}",
            "trade_date": "2026-11-20",
            "close": round(r.random() * 1e5, 1),
            "rs_rating": r.randrange(100),
            "max_tokens": 1024,
            "tokens_in": r.randrange(5000),
            "summary": "volume contraction after a 30 % base, pivot at 71,200",
        }
        if r.randrange(20) == 0:
            row["api_key"] = f"k-{r.randrange(10**12)}"
        return json.dumps(row) + ", "

    return "[" + _fill(record, size - 2) + "]"


def random_text(size: int) -> str:
    """Characters drawn uniformly from [A-Za-z0-9_.-], the separators =:&?,"' and space."""
    rng = random.Random(16)
    alphabet = string.ascii_letters + string.digits + "_.-" + "=:&?,\"' "
    return "".join(rng.choices(alphabet, k=size))


def dense_secrets(size: int) -> str:
    """Every pair a secret: the shape that shows any Python work per masked value (the
    reference loop's is about 1.5 us); part of the goal, as every shape is."""
    keys = ["password", "api_key", "access_token", "krw_balance"]
    return _fill(lambda r: f"{r.choice(keys)}={r.randrange(10**8):x}&", size)


SHAPES: dict[str, Callable[[int], str]] = {
    "identifier_run": identifier_run,
    "key_value_pairs": key_value_pairs,
    "json": json_records,
    "random_text": random_text,
    "dense_secrets": dense_secrets,
}
#: The shapes of the goal: all of them (the worst input a worker can receive counts).
GOAL_SHAPES = tuple(SHAPES)


def best_ms(fn: Callable[[], object]) -> float:
    """The best of REPEATS wall-clock times of ``fn()``, in milliseconds (the machine is
    shared, so the minimum is the figure least disturbed by others)."""
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def best_cpu_and_wall_ms(fn: Callable[[], object]) -> tuple[float, float]:
    """The best CPU time (this process) and the best wall-clock time of REPEATS runs of
    ``fn()``, in milliseconds. On a loaded machine the wall clock also counts the time other
    processes held the CPU; the CPU time shows what masking itself costs."""
    cpu, wall = [], []
    for _ in range(REPEATS):
        start_cpu, start = time.process_time(), time.perf_counter()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return min(cpu) * 1000, min(wall) * 1000


def main() -> None:
    print(f"mask_text on {MIB:,}-character inputs, best of {REPEATS}")
    header = (
        f"{'shape':<16} {'mask ms':>8} {'cpu ms':>7} {'re floor':>9} {'translate':>10} "
        f"{'x translate':>12} {'scaling':>8} {'masked':>8}"
    )
    print(header)
    print("-" * len(header))
    worst = ("", 0.0)
    for name, make in SHAPES.items():
        text = make(MIB)
        quarter = make(MIB // 4)
        masked = mask_text(text)
        cpu, mask = best_cpu_and_wall_ms(partial(mask_text, text))
        floor = best_ms(partial(_FLOOR.search, text))
        translate = best_ms(partial(text.translate, _TRANSLATE))
        scaling = mask / max(best_ms(partial(mask_text, quarter)), 1e-6)
        print(
            f"{name:<16} {mask:8.1f} {cpu:7.1f} {floor:9.2f} {translate:10.2f} "
            f"{mask / translate:11.1f}x {scaling:8.1f} {masked.count(MASK):8,}"
        )
        if name in GOAL_SHAPES and mask > worst[1]:
            worst = (name, mask)
    name, ms = worst
    print(f"worst shape: {name}")
    print(
        f"goal mask_1mb: {ms:.1f} ms (target < {TARGET_MS:.0f} ms) "
        f"{'met' if ms < TARGET_MS else 'missed'}"
    )


if __name__ == "__main__":
    main()
