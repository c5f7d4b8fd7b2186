"""Phone numbers: parse, validate, region, type and display form, on libphonenumber's real metadata."""

import pytest

from shetphone.phone_numbers import (
    NON_GEOGRAPHIC,
    InvalidNumber,
    NumberType,
    display,
    is_region,
    parse_dialled,
    parse_e164,
    parse_in_country,
    region_of,
)


def test_e164_is_returned_as_written():
    assert parse_e164("+441595000001") == "+441595000001"
    assert parse_e164("+881612345678") == "+881612345678"


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("+441595 000001", "'+441595 000001' is not in E.164 form; write +441595000001"),
        ("01595 000001", "not a valid phone number in E.164 form (like +441595000001)"),
        ("441595000001", "not a valid phone number in E.164 form"),
        ("+4415950", "not a valid phone number in E.164 form"),
        ("+44 hello", "not a valid phone number in E.164 form"),
    ],
)
def test_e164_mistakes_say_what_is_wrong(text, what):
    with pytest.raises(InvalidNumber) as caught:
        parse_e164(text)
    assert what in str(caught.value)


@pytest.mark.parametrize(
    ("dialled", "region", "e164"),
    [
        ("01595 123456", "GB", "+441595123456"),
        ("(01595) 123-456", "GB", "+441595123456"),
        ("00441595123456", "GB", "+441595123456"),
        ("+44 (0)1595 123456", "US", "+441595123456"),
        ("(201) 555-0123", "US", "+12015550123"),
        ("011 44 1595 123456", "US", "+441595123456"),
        (" +12015550123 ", None, "+12015550123"),
    ],
)
def test_what_a_person_dialled_is_read_in_the_default_region(dialled, region, e164):
    assert parse_dialled(dialled, region).e164 == e164


@pytest.mark.parametrize(("dialled", "region"), [("", "GB"), ("hello", "GB"), ("123", "GB"), ("01595 123456", None)])
def test_what_is_not_a_number_is_refused(dialled, region):
    with pytest.raises(InvalidNumber):
        parse_dialled(dialled, region)


@pytest.mark.parametrize(
    ("e164", "region", "kind"),
    [
        ("+441595123456", "GB", NumberType.FIXED_LINE),
        ("+447911123456", "GG", NumberType.MOBILE),
        ("+12015550123", "US", NumberType.FIXED_LINE_OR_MOBILE),
        ("+448001234567", "GB", NumberType.TOLL_FREE),
        ("+449098790000", "GB", NumberType.PREMIUM_RATE),
        ("+447012345678", "GB", NumberType.PERSONAL_NUMBER),
        ("+445512345678", "GB", NumberType.UAN),
        ("+447640123456", "GB", NumberType.PAGER),
        ("+881612345678", NON_GEOGRAPHIC, NumberType.MOBILE),  # satellite, yet "mobile" to libphonenumber
        ("+883510012345", NON_GEOGRAPHIC, NumberType.VOIP),
        ("+80012345678", NON_GEOGRAPHIC, NumberType.TOLL_FREE),
    ],
)
def test_region_and_type_of_a_number(e164, region, kind):
    number = parse_dialled(e164, None)
    assert (number.region, number.type) == (region, kind)
    assert number.non_geographic == (region == NON_GEOGRAPHIC)
    assert region_of(e164) == region


def test_region_of_something_unparseable_is_none():
    assert region_of("client:alice") is None


def test_a_national_number_with_its_country_code():
    assert parse_in_country("44", "1595 123456") == "+441595123456"
    assert parse_in_country("1", "(201) 555-0123") == "+12015550123"
    for code, national in [("44", "12"), ("UK", "1595 123456")]:
        with pytest.raises(InvalidNumber) as caught:
            parse_in_country(code, national)
        assert f"{national!r} is not a valid number for country code {code}" == str(caught.value)


def test_display_form_is_international():
    assert display("+441595123456") == "+44 1595 123456"
    assert display("+12015550123") == "+1 201-555-0123"
    assert display("anonymous") == "anonymous"


def test_region_codes_include_the_non_geographic_one():
    assert is_region("GB") and is_region("IE") and is_region(NON_GEOGRAPHIC)
    assert not is_region("XX") and not is_region("UK") and not is_region("*")
