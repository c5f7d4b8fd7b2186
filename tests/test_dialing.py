import pytest

from shetphone.dialing import DialPolicy, DialRefused, check_destination, choose_caller_id, plan_outbound_call
from shetphone.phone_numbers import NON_GEOGRAPHIC
from shetphone.settings import ANY_COUNTRY

UK_AND_US = DialPolicy(allowed_countries=frozenset({"GB", "US"}), allow_premium=False)
ALICE = ("+441595000001", "+15005550006")


@pytest.mark.parametrize(
    "dialled",
    ["+441595123456", "01595 123456", "(01595) 123-456", "00441595123456", "+44 (0)1595 123456", " 01595123456 "],
)
def test_numbers_are_made_e164_in_the_region_of_the_first_caller_id(dialled):
    call = plan_outbound_call(dialled, ALICE, UK_AND_US)
    assert call.destination == "+441595123456"
    assert call.caller_id == "+441595000001"


def test_a_us_number_without_plus_is_read_in_the_us_for_a_us_first_caller_id():
    call = plan_outbound_call("(201) 555-0123", ("+15005550006", "+441595000001"), UK_AND_US)
    assert call.destination == "+12015550123"
    assert call.caller_id == "+15005550006"


def test_the_caller_id_in_the_destinations_country_wins():
    assert plan_outbound_call("+12015550123", ALICE, UK_AND_US).caller_id == "+15005550006"
    assert plan_outbound_call("+441595123456", ALICE, UK_AND_US).caller_id == "+441595000001"


def test_else_the_first_caller_id():
    anywhere = DialPolicy(allowed_countries=frozenset({ANY_COUNTRY}), allow_premium=False)
    assert plan_outbound_call("+33142685300", ALICE, anywhere).caller_id == "+441595000001"
    assert choose_caller_id("FR", ALICE) == "+441595000001"


@pytest.mark.parametrize(
    ("dialled", "reason"),
    [
        ("", "No number"),
        ("hello", "not a valid phone number"),
        ("+4415950", "not a valid phone number"),
        ("123", "not a valid phone number"),
        ("+33142685300", "country are not allowed"),
        ("09098790000", "premium rate"),
        ("+19005550100", "premium rate"),
    ],
)
def test_refusals_say_why(dialled, reason):
    with pytest.raises(DialRefused) as refused:
        plan_outbound_call(dialled, ALICE, UK_AND_US)
    assert reason in refused.value.reason


def test_premium_allowed_when_configured():
    policy = DialPolicy(allowed_countries=frozenset({"GB"}), allow_premium=True)
    assert plan_outbound_call("09098790000", ALICE, policy).destination == "+449098790000"


def test_requested_caller_id_must_be_the_clients_own():
    call = plan_outbound_call("+441595123456", ALICE, UK_AND_US, requested_caller_id="+15005550006")
    assert call.caller_id == "+15005550006"
    with pytest.raises(DialRefused) as refused:
        plan_outbound_call("+441595123456", ALICE, UK_AND_US, requested_caller_id="+441595000004")
    assert "may not call from that number" in refused.value.reason


def test_a_client_without_caller_ids_cannot_call():
    with pytest.raises(DialRefused) as refused:
        plan_outbound_call("+441595123456", (), UK_AND_US)
    assert "no number to call from" in refused.value.reason


# Toll fraud: real numbers from libphonenumber's metadata; each passed before the type and 001 rules.
EVERYWHERE = DialPolicy(allowed_countries=frozenset({ANY_COUNTRY}), allow_premium=False)


@pytest.mark.parametrize(
    ("dialled", "reason"),
    [
        ("07012 345678", "personal numbers"),  # UK 070: forwarded anywhere at a premium
        ("05512 345678", "special rate numbers"),  # UK 055 UAN
        ("07640 123456", "pagers"),
        ("0843 123 4567", "premium rate"),
        ("0808 123 4567", None),  # toll-free: allowed
        ("07911 123456", None),  # mobile (Guernsey's 07911, in GG): every country allows it
    ],
)
def test_only_fixed_mobile_and_toll_free_numbers_are_dialled_without_allow_premium(dialled, reason):
    if reason is None:
        assert plan_outbound_call(dialled, ALICE, EVERYWHERE).destination.startswith("+44")
        return
    with pytest.raises(DialRefused) as refused:
        plan_outbound_call(dialled, ALICE, EVERYWHERE)
    assert reason in refused.value.reason


@pytest.mark.parametrize(
    "dialled",
    ["+881612345678", "+870772001799", "+883510012345", "+80012345678", "+80812345678"],
    ids=["satellite 881", "inmarsat 870", "voip 883", "freephone 800", "shared cost 808"],
)
def test_star_never_includes_the_non_geographic_region_001(dialled):
    with pytest.raises(DialRefused) as refused:
        plan_outbound_call(dialled, ALICE, EVERYWHERE)
    assert "satellite phones and other international services" in refused.value.reason
    # Listing 001 is not enough while allow_premium = no: they are premium services.
    listed = DialPolicy(allowed_countries=frozenset({ANY_COUNTRY, NON_GEOGRAPHIC}), allow_premium=False)
    with pytest.raises(DialRefused):
        plan_outbound_call(dialled, ALICE, listed)


def test_non_geographic_numbers_need_001_listed_and_allow_premium():
    both = DialPolicy(allowed_countries=frozenset({"GB", NON_GEOGRAPHIC}), allow_premium=True)
    assert plan_outbound_call("+881612345678", ALICE, both).destination == "+881612345678"
    premium_only = DialPolicy(allowed_countries=frozenset({ANY_COUNTRY}), allow_premium=True)
    with pytest.raises(DialRefused):
        plan_outbound_call("+881612345678", ALICE, premium_only)


def test_allow_premium_lets_personal_numbers_and_uan_through():
    policy = DialPolicy(allowed_countries=frozenset({"GB"}), allow_premium=True)
    assert plan_outbound_call("07012 345678", ALICE, policy).destination == "+447012345678"
    assert plan_outbound_call("05512 345678", ALICE, policy).destination == "+445512345678"


def test_default_countries_are_the_regions_of_the_team_numbers():
    policy = DialPolicy.configured(None, False, ["+441595000001", "+15005550006", "+441595000002"])
    assert policy.allowed_countries == frozenset({"GB", "US"})
    written = DialPolicy.configured(frozenset({"IE"}), False, ["+441595000001"])
    assert written.allowed_countries == frozenset({"IE"})


def test_check_destination_is_the_outgoing_check_without_a_caller_id():
    number = check_destination("01595 123456", "GB", UK_AND_US)
    assert (number.e164, number.region) == ("+441595123456", "GB")
    with pytest.raises(DialRefused):
        check_destination("+33142685300", "GB", UK_AND_US)
