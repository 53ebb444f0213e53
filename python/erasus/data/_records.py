"""Reading JSON / JSON-lines record files with errors that name the file and the line.

Every loader in :mod:`erasus.data` that accepts ``.json`` / ``.jsonl`` goes through these two functions, so a
malformed line is reported the same way everywhere (``InvalidInputError: captions.jsonl line 3 is not JSON:
Expecting value``) instead of as a bare :class:`json.JSONDecodeError` from deep inside a dataset constructor.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from erasus.errors import InvalidInputError


def read_json_lines(path: Path, text: str | None = None, *, objects: bool = True) -> list[Any]:
    """The values of a JSON-lines file, one per non-blank line.

    ``text`` is the file's content when the caller has read it already. With ``objects`` (the default) every
    value must be a JSON object; the error names the first line that is not one.
    """
    if text is None:
        text = path.read_text(encoding="utf-8")
    rows: list[Any] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{path} line {n} is not JSON: {exc.msg}") from None
        if objects and not isinstance(row, dict):
            raise InvalidInputError(f"{path} line {n} must be a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def read_json_or_lines(path: Path) -> Any:
    """A whole-file JSON document, or — when the file is not one — its JSON lines (whatever the extension says).

    The error for a file that is neither names the first line that fails to parse as JSON lines.
    """
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return read_json_lines(path, text, objects=False)
