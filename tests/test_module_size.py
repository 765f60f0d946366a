"""No module in src/pykoii grows past 600 lines (STYLE §4: one module per concept)."""

from __future__ import annotations

from pathlib import Path

import pykoii

LIMIT = 600
SOURCE = Path(pykoii.__file__).parent


def test_no_module_over_the_limit():
    sizes = {path.relative_to(SOURCE): len(path.read_text().splitlines()) for path in SOURCE.rglob("*.py")}
    assert sizes, "no modules found"
    too_big = {str(path): lines for path, lines in sizes.items() if lines > LIMIT}
    assert not too_big, f"modules over {LIMIT} lines (split them by concept): {too_big}"
