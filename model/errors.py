"""The one error type for bad input: it names the file, the row and the column."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    file: str
    row: str  # "line 7 (id 'launches-x')", "header", or a TOML key path
    column: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}, {self.row}, column '{self.column}': {self.message}"


class InputError(ValueError):
    """Raised for invalid case or evidence files; lists every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        lines = [str(p) for p in self.problems]
        head = f"{len(lines)} problem(s) in the input:" if len(lines) > 1 else "invalid input:"
        super().__init__("\n  ".join([head, *lines]))


class Busy(RuntimeError):
    """Another process holds the lock on what this one would write (a case's report folder,
    a ledger): the command is refused, like bad input, and writes nothing."""
