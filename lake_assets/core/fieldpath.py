"""Field paths: where a value sits in a record — field names, array positions — as one typed value
with one text form, and the other notations we read or must keep writing.

The text form is the rescued column's keys (public): names joined by `.`, array positions as
`[2]`, any element as `[]`; a name holding `.`, a backtick or brackets is backtick-quoted with
backticks doubled, as Spark quotes names: `` meta.`CodePipeline.job`.id ``, `signals[2].unit`.
`parse` reads exactly what `format` writes (`{}`, any map value, is written by `plain` only).
Other notations: `plain()` for schema diffs and new-field messages (names as they are, `m{}` for
map values), `from_arrow` for pyarrow's `/a/[]/b` (its error texts), `fold` for quality's top
paths (positions as `[]`). Pure Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class _Every:
    """A step standing for every array element (`[]`) or every map value (`{}`)."""
    text: str

    def __repr__(self) -> str:
        return self.text


ELEMENT = _Every("[]")
VALUES = _Every("{}")

_NEEDS_QUOTES = re.compile(r"[.`\[\]]").search


def segment(name: str) -> str:
    """A name as it stands in a path: backtick-quoted when it holds `.`, a backtick or brackets."""
    return "`" + name.replace("`", "``") + "`" if _NEEDS_QUOTES(name) else name


def join(prefix: str | None, step) -> str:
    """`prefix` (None: the record itself) one step down: a name or an array position. What
    `format` writes, one step at a time (the Fitter builds its rescued keys with it)."""
    if isinstance(step, str):
        return segment(step) if prefix is None else f"{prefix}.{segment(step)}"
    return f"{prefix or ''}[{'' if step is ELEMENT else step}]"


# An array position outside backtick quotes, as `[]`: Java, Rust and Python regexes alike (no
# lookaround; an unmatched group is empty). fold() here, quality's fold in the engine.
FOLD_PATTERN = r"(`(?:[^`]|``)*`)|(\[)[0-9]+(\])"
FOLD_REPLACEMENT = "$1$2$3"
_FOLD = re.compile(FOLD_PATTERN)


def fold(text: str) -> str:
    """A path's text with every array position as `[]` (the rest of the text kept as it is)."""
    return _FOLD.sub(r"\1\2\3", text)


_SEGMENT = re.compile(r"`((?:[^`]|``)*)`|([^.`\[\]]*)")
_POSITION = re.compile(r"\[([0-9]*)\]")


@dataclass(frozen=True)
class FieldPath:
    """Steps from the record down: names (str), array positions (int), ELEMENT, VALUES."""
    steps: tuple = ()

    @classmethod
    def parse(cls, text: str) -> FieldPath:
        """The path `format` wrote as `text` (ValueError if it is not one)."""
        steps, pos = [], 0
        while True:
            name = _SEGMENT.match(text, pos)
            quoted = name.group(1)
            steps.append(name.group(2) if quoted is None else quoted.replace("``", "`"))
            pos = name.end()
            while position := _POSITION.match(text, pos):
                steps.append(int(position.group(1)) if position.group(1) else ELEMENT)
                pos = position.end()
            if pos == len(text):
                return cls(tuple(steps))
            if text[pos] != ".":
                raise ValueError(f"not a field path: {text!r}")
            pos += 1

    @classmethod
    def from_arrow(cls, text: str) -> FieldPath:
        """pyarrow's column path from its error texts, `/a/[]/b`."""
        return cls(tuple(ELEMENT if s == "[]" else s for s in text.split("/")[1:]))

    def child(self, step) -> FieldPath:
        return FieldPath(self.steps + (step,))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s for s in self.steps if isinstance(s, str))

    @property
    def leaf(self) -> str:
        """The last name."""
        return self.names[-1]

    @property
    def in_array(self) -> bool:
        return any(not isinstance(s, str) for s in self.steps)

    def under(self, ancestor: FieldPath) -> bool:
        """Whether `ancestor` is a proper prefix of this path."""
        return len(ancestor.steps) < len(self.steps) and self.steps[:len(ancestor.steps)] == ancestor.steps

    def format(self) -> str:
        return self._text(quote=True)

    __str__ = format

    def plain(self) -> str:
        """The notation of schema diffs and new-field messages: names as they are (`a.b`,
        `arr[].x`, `m{}`)."""
        return self._text(quote=False)

    def _text(self, quote: bool) -> str:
        out = None
        for s in self.steps:
            if isinstance(s, str) and not quote:
                out = s if out is None else f"{out}.{s}"
            elif s is VALUES:
                out = (out or "") + VALUES.text
            else:
                out = join(out, s)
        return out or ""
