"""The presets book: ``presets.csv`` with the header ``alias,country code,number``."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from pathlib import Path

from . import phone_numbers
from .settings import ConfigError

HEADER = ["alias", "country code", "number"]


@dataclass(frozen=True)
class Preset:
    alias: str
    country_code: str
    number: str
    e164: str

    def as_json(self) -> dict[str, str]:
        return asdict(self)


def _separator_hint(row: list[str]) -> str:
    """A spreadsheet's "CSV" in many languages separates with semicolons (or tabs): say so, not just "1 field"."""
    for separator, name in ((";", "semicolons"), ("\t", "tabs")):
        if len(row) == 1 and separator in row[0]:
            return f" (its fields are separated by {name}: use commas)"
    return ""


def parse_presets(text: str, path: Path) -> tuple[Preset, ...]:
    """Parse the CSV; raise :class:`ConfigError` naming the first bad line."""
    rows = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    presets: list[Preset] = []
    header_seen = False
    for row in rows:
        line = rows.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        cells = [cell.strip() for cell in row]
        hint = _separator_hint(row)
        if not header_seen:
            if [cell.lower() for cell in cells] != HEADER:
                raise ConfigError(path, "header", f"must be {','.join(HEADER)}, found {','.join(cells)}{hint}", line)
            header_seen = True
            continue
        if len(cells) != 3:
            raise ConfigError(path, "row", f"has {len(cells)} fields; expected alias,country code,number{hint}", line)
        alias, country_code, number = cells
        if not alias:
            raise ConfigError(path, "alias", "is empty", line)
        code = country_code.lstrip("+")
        if not code.isdigit():
            raise ConfigError(path, "country code", f"{country_code!r} is not a country calling code like 44", line)
        try:
            e164 = phone_numbers.parse_in_country(code, number)
        except phone_numbers.InvalidNumber as exc:
            raise ConfigError(path, "number", str(exc), line) from None
        presets.append(Preset(alias=alias, country_code=code, number=number, e164=e164))
    if not header_seen:
        raise ConfigError(path, "header", f"is missing; the first line must be {','.join(HEADER)}", 1)
    return tuple(presets)
