"""Exception types shared by the package. The CLI prints any `TreasureError` as one clear line."""

from __future__ import annotations


class TreasureError(Exception):
    """Base class of every error treasure raises on purpose (bad input, bad config)."""


class TaxonomyError(TreasureError):
    """A taxonomy file is invalid; `problems` lists every problem found, each with file and key."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(f"{len(problems)} taxonomy problem(s):\n  " + "\n  ".join(problems))


class MarkerError(TreasureError, ValueError):
    """An unknown marker name or a value the taxonomy does not allow."""


class DataError(TreasureError):
    """A dataset row or file is malformed; the message names the file, line and field; `raw` holds the
    record or the line text as read, when there is one."""

    def __init__(
        self,
        path: str,
        message: str,
        line: int | None = None,
        field: str | None = None,
        unit: str = "line",
        raw: object = None,
    ):
        self.path, self.line, self.field, self.reason = str(path), line, field, message
        self.raw = raw  # the record or line text as read, when there is one (for the rejects file)
        if line is None:
            where = self.path
        else:
            where = f"{self.path}:{line}" if unit == "line" else f"{self.path}: {unit} {line}"
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {what}{message}")
