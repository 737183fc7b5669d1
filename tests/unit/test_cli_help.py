"""Help texts read as sentences at any terminal width: rendered at 80 columns, no paragraph
of any command's help breaks where the next word would still have fitted (a docstring's hard
line break), only where the terminal wraps."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from quantbeat.cli import main as cli
from quantbeat.cli.main import cli_command, reflow

WIDTH = 80
#: Wide enough that no help paragraph needs wrapping: every line break left is the text's.
WIDE = 400
SENTENCE_END = (".", ":", ";", "!", "?", ")", "]")
LIST_START = ("-", "*", "•", "|")


def _paths(command: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield prefix
    for name, sub in sorted((getattr(command, "commands", None) or {}).items()):
        yield from _paths(sub, (*prefix, name))


PATHS = list(_paths(cli_command()))


def forced_breaks(rendered: str) -> list[str]:
    """Line pairs of one paragraph that a docstring's line break split, in help rendered so
    wide (:data:`WIDE`) that no paragraph needs wrapping: a continuation line (its first
    column blank) whose previous line does not end a sentence."""
    found = []
    lines = rendered.splitlines()
    for first, second in itertools.pairwise(lines):
        if first.startswith("│") and second.startswith("│"):
            first, second = first[1:].rstrip("│ "), second[1:].rstrip("│ ")
            if not second.startswith("  "):
                continue  # a new row, not a continuation of the cell above
        elif not (first.strip() and second.strip()) or first.startswith(("╭", "╰", "│")):
            continue
        text, following = first.rstrip(), second.strip()
        if text.endswith(SENTENCE_END) or following.startswith((*LIST_START, "[")):
            continue
        found.append(f"{text.strip()!r} / {following!r}")
    return found


def test_the_checker_finds_a_hard_break():
    assert forced_breaks(" Start beat. The others wait for\n its lock.") != []
    assert forced_breaks("│ beat  Start beat. Others wait for  │\n│       its lock.  │") != []
    assert forced_breaks("│ beat  Start beat.  │\n│ run   Run it.  │") == []
    assert forced_breaks(" One paragraph.\n\n Another one.") == []


def test_reflow_joins_sentences_and_keeps_lists():
    assert reflow("One sentence\nsplit here.\n\nSecond\nparagraph.") == (
        "One sentence split here.\n\nSecond paragraph."
    )
    listed = "Steps:\n- first\n- second"
    assert reflow(listed) == listed
    # an option name at the start of a line is not a list item
    assert reflow("Exits 4 when still running at\n--timeout.") == (
        "Exits 4 when still running at --timeout."
    )


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "quantbeat")
def test_help_reads_as_sentences_at_80_columns(path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    monkeypatch.setenv("TERM", "dumb")
    assert cli.main([*path, "--help"]) == 0
    rendered = capsys.readouterr().out
    assert "Usage" in rendered
    assert max(len(line) for line in rendered.splitlines()) <= WIDTH
    monkeypatch.setenv("COLUMNS", str(WIDE))
    assert cli.main([*path, "--help"]) == 0
    assert forced_breaks(capsys.readouterr().out) == []
