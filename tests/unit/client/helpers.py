"""Small helpers for the ``gc-api`` tests."""

from __future__ import annotations

import json
from typing import Any


class Result:
    """What one ``gc-api`` run returned and printed."""

    def __init__(self, rc: int, out: str, err: str) -> None:
        self.rc, self.out, self.err = rc, out, err

    @property
    def json(self) -> Any:
        return json.loads(self.out)

    def __repr__(self) -> str:
        return f'<Result rc={self.rc} out={self.out!r} err={self.err!r}>'


def assert_one_error_line(result: Result, *fragments: str) -> None:
    """Exit 1 with exactly one ``ERROR: ...`` line on stderr containing ``fragments``."""
    assert result.rc == 1, result
    assert result.err.startswith('ERROR: '), result
    assert result.err.count('\n') == 1 and result.err.endswith('\n'), result
    for fragment in fragments:
        assert fragment in result.err, result
