"""The example ini, the README's tables and check-config agree with the key table of settings.py."""

from __future__ import annotations

import configparser
import re
import shutil

from conftest import ROOT

from shetphone import config_docs
from shetphone.settings import ENVIRONMENT_VARIABLES, KEYED_SECTIONS, KEYS, SECTION_BRIDGE, load_settings

EXAMPLE = ROOT / "shetphone.ini.example"
README = ROOT / "README.rst"


def keys_of(section: str) -> set[str]:
    return {row.name for row in KEYS if row.section == section}


def example_ini() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";", "#"))
    parser.optionxform = str
    parser.read(EXAMPLE, encoding="utf-8")
    return parser


def test_the_example_has_every_key_of_the_table_and_no_other():
    example = example_ini()
    for section in KEYED_SECTIONS:
        assert set(example[section]) == keys_of(section), section


def test_the_example_is_a_good_configuration(tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "shetphone.ini")
    settings = load_settings(tmp_path, {"SHETPHONE_SECRET_KEY": "k"})
    assert settings.allowed_countries == frozenset({"GB", "IE"})
    assert settings.twilio_api_base == "https://api.twilio.com"


def test_every_key_has_its_default_when_left_out(tmp_path):
    (tmp_path / "shetphone.ini").write_text("[shetphone]\npublic_url = https://phone.example.test\n")
    settings = load_settings(tmp_path, {"SHETPHONE_SECRET_KEY": "k"})
    for row in KEYS:
        assert row.meaning, row.name
        if row.required:
            continue
        holder = settings.bridge if row.section == SECTION_BRIDGE else settings
        expected = None if row.default is None else row.parse(row.default, tmp_path)
        assert getattr(holder, row.attribute) == expected, row.name


def test_the_readme_documents_each_section_of_the_table():
    assert sorted(config_docs.sections_documented(README.read_text(encoding="utf-8"))) == sorted(KEYED_SECTIONS)


def test_the_readme_tables_are_made_from_the_table():
    text = README.read_text(encoding="utf-8")
    assert config_docs.refresh(text) == text, "run: python -m shetphone.config_docs"
    for row in KEYS:
        assert re.search(rf"^``{row.name}`` +.*{re.escape(row.meaning)}$", text, re.MULTILINE), row.name


def test_a_readme_that_lacks_a_key_or_names_another_is_caught():
    text = README.read_text(encoding="utf-8")
    lacking = re.sub(r"^``ring_timeout``.*\n", "", text, flags=re.MULTILINE)
    naming_another = text.replace("``ring_timeout``  ", "``ring_timeouts`` ", 1)
    assert lacking != text and naming_another != text
    assert config_docs.refresh(lacking) == text
    assert config_docs.refresh(naming_another) == text


def test_the_readme_names_every_environment_variable_read_and_no_other():
    text = README.read_text(encoding="utf-8")
    table = text[text.index("Environment\n-----------") : text.index("shetphone.ini\n-------------")]
    assert set(re.findall(r"``([A-Z][A-Z0-9_]+)``", table)) == set(ENVIRONMENT_VARIABLES)
