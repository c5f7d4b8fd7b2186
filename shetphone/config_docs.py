"""The README's tables of ini keys, made from the key table in :mod:`shetphone.settings`.

``python -m shetphone.config_docs`` rewrites each table of README.rst between its
``.. BEGIN keys of [SECTION]`` and ``.. END keys of [SECTION]`` lines; the tests fail
while the README differs from what this makes.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from .settings import KEYS, Key

README = Path(__file__).resolve().parent.parent / "README.rst"
BLOCK = re.compile(
    r"^(\.\. BEGIN keys of \[(?P<section>[^\]]+)\][^\n]*\n)(?P<body>.*?)^(\.\. END keys of \[(?P=section)\]\n)",
    re.MULTILINE | re.DOTALL,
)
LONGEST_DEFAULT = 28  # longer defaults (the greeting) are cut, so the table stays readable


def shown_default(row: Key) -> str:
    if row.required:
        return "(required)"
    if row.default is None:
        return row.unset or "(none)"
    if len(row.default) > LONGEST_DEFAULT:
        return '"' + row.default[: LONGEST_DEFAULT - 4].rsplit(" ", 1)[0] + ' ..."'
    return f"``{row.default}``"


def rst_table(section: str) -> str:
    """The reStructuredText simple table of ``section``'s keys: key, default, meaning."""
    rows = [("key", "default", "meaning")] + [
        (f"``{row.name}``", shown_default(row), row.meaning) for row in KEYS if row.section == section
    ]
    widths = [max(len(cells[i]) for cells in rows) for i in range(3)]
    rule = " ".join("=" * width for width in widths)

    def line(cells: tuple[str, str, str]) -> str:
        return " ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([rule, line(rows[0]), rule, *(line(cells) for cells in rows[1:]), rule]) + "\n"


def refresh(text: str) -> str:
    """``text`` (the README) with each table between its markers made anew."""
    return BLOCK.sub(lambda m: m.group(1) + "\n" + rst_table(m.group("section")) + "\n" + m.group(4), text)


def sections_documented(text: str) -> list[str]:
    return [match.group("section") for match in BLOCK.finditer(text)]


def main() -> int:
    text = README.read_text(encoding="utf-8")
    new = refresh(text)
    if new != text:
        README.write_text(new, encoding="utf-8")
        print(f"{README}: the tables of keys are rewritten")
    else:
        print(f"{README}: the tables of keys are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
