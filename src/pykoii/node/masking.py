"""Task variables never reach a log, page or record in clear: ``Masker`` replaces them by ``***``.

One ``Masker`` per task holds the values of its ``TASK_VARIABLE``\\ s; it is a ``logging.Filter`` on
the task's log handler (so every line the task or the node writes to the task log is masked before
it reaches the file that the logs API and the dashboard read), and ``mask(text)`` masks what the node
keeps elsewhere (``last_error``, node events). Values shorter than ``MIN_LENGTH`` characters are not
masked: masking ``"1"`` would garble every number in the log.

>>> Masker({"API_KEY": "s3cr3t-value"}).mask("using s3cr3t-value now")
'using *** now'
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

MIN_LENGTH = 4
MASK = "***"


class Masker(logging.Filter):
    """Masks a task's variable values in text and in log records."""

    def __init__(self, variables: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.values: list[str] = []
        self.update(variables or {})

    def update(self, variables: Mapping[str, str]) -> None:
        """Mask these values from now on (longest first, so no value is half-masked)."""
        values = {str(v) for v in variables.values() if len(str(v)) >= MIN_LENGTH}
        self.values = sorted(values, key=len, reverse=True)

    def mask(self, text: str) -> str:
        for value in self.values:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.values:
            record.msg = self.mask(record.getMessage())
            record.args = None
            if record.exc_info:
                record.exc_text = self.mask(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True
