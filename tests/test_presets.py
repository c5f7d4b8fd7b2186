import pytest

from shetphone.presets import Preset, parse_presets
from shetphone.settings import ConfigError


def test_presets_are_parsed_with_e164(tmp_path):
    text = "alias,country code,number\nMum,44,1595 123456\n\nDad,+1,(201) 555-0123\n"
    presets = parse_presets(text, tmp_path / "presets.csv")
    assert presets == (
        Preset("Mum", "44", "1595 123456", "+441595123456"),
        Preset("Dad", "1", "(201) 555-0123", "+12015550123"),
    )


def test_quoted_alias_with_comma(tmp_path):
    presets = parse_presets('alias,country code,number\n"Smith, John",44,1595 123456\n', tmp_path / "p.csv")
    assert presets[0].alias == "Smith, John"


def test_header_with_byte_order_mark_and_case(tmp_path):
    assert len(parse_presets("\ufeffAlias,Country Code,Number\nMum,44,1595 123456\n", tmp_path / "p.csv")) == 1


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("name,number\nMum,441595123456\n", 1, "header: must be alias,country code,number"),
        ("", 1, "header: is missing"),
        ("alias,country code,number\nMum,44\n", 2, "row: has 2 fields"),
        ("alias,country code,number\nMum,44,1595 123456\n,44,1595 123456\n", 3, "alias: is empty"),
        ("alias,country code,number\nMum,UK,1595 123456\n", 2, "country code: 'UK' is not"),
        ("alias,country code,number\nMum,44,12\n", 2, "number: '12' is not a valid number for country code 44"),
        ("alias;country code;number\nMum;44;1595 123456\n", 1, "header: must be alias,country code,number, found "
         "alias;country code;number (its fields are separated by semicolons: use commas)"),
        ("alias,country code,number\nMum\t44\t1595 123456\n", 2, "row: has 1 fields; expected alias,country code,"
         "number (its fields are separated by tabs: use commas)"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path, text, line, what):
    path = tmp_path / "presets.csv"
    with pytest.raises(ConfigError) as caught:
        parse_presets(text, path)
    assert str(caught.value).startswith(f"{path}:{line}: {what}")
