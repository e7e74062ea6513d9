"""Classes named by the body side they lie on, and what a left-right flip does to them.

A left-right flip turns a left kidney into a right one. Where the classes come
in pairs ("kidney_left" / "kidney_right", "Left-Hippocampus" /
"Right-Hippocampus"), the flip must also swap the pair's labels; where a side
has no partner ("left lung" alone), the flip would make a false label, so it
must not happen. Names are matched by their words, in any order and case
("Left kidney" pairs with "kidney_right").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

__all__ = ["Laterality", "laterality"]

_OPPOSITE = {"left": "right", "right": "left"}
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")  # words of snake, kebab, camel and spaced names


@dataclass(frozen=True)
class Laterality:
    """``swap``: the class index each class becomes under a left-right flip
    (the identity when no class names a side); ``unpaired``: the names of
    sided classes without a partner, under which left-right flips are wrong."""

    swap: tuple[int, ...]
    unpaired: tuple[str, ...]

    @property
    def pairs(self) -> list[tuple[int, int]]:
        return [(a, b) for a, b in enumerate(self.swap) if a < b]

    @property
    def flips_left_right(self) -> bool:
        return not self.unpaired


def _side_and_rest(name: str) -> tuple[str | None, tuple[str, ...]]:
    words = [w.lower() for w in _WORD.findall(name)]
    sides = {w for w in words if w in _OPPOSITE}
    if len(sides) != 1:  # no side, or both ("left-right boundary"): not sided
        return None, ()
    (side,) = sides
    return side, tuple(sorted(w for w in words if w not in _OPPOSITE))


def laterality(class_names: Sequence[str]) -> Laterality:
    """How a left-right flip maps the classes named ``class_names``."""
    keys = [_side_and_rest(n) for n in class_names]
    swap = list(range(len(class_names)))
    unpaired = []
    for index, (side, rest) in enumerate(keys):
        if side is None:
            continue
        partners = [j for j, key in enumerate(keys) if key == (_OPPOSITE[side], rest)]
        twins = [j for j, key in enumerate(keys) if key == (side, rest)]
        if len(partners) == 1 and len(twins) == 1:
            swap[index] = partners[0]
        else:  # none, or no unique one to swap with
            unpaired.append(class_names[index])
    return Laterality(tuple(swap), tuple(unpaired))
