"""Who an incoming call rings (SPEC §7): every case, as a plan and as the TwiML Twilio gets."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from shetphone import twiml
from shetphone.presence import State
from shetphone.ringing import RingGroup, RingPlan, leg_caller_id, plan_ringing, ring_twiml

TEAM_NUMBER = "+441595000001"
CALLER = "+441595123456"  # a valid UK number
OUTSIDE = "+447911123401"
FORWARD = {"alice": "+447911123402", "bob": "+447911123403", "carol": "+447911123404", "dave": "+447911123405"}
USERS = {"alice", "bob", "carol", "dave"}
ACTION = "https://phone.example.test/voice/dial-complete"
STATUS = "https://phone.example.test/voice/status"
EVENTS = "initiated ringing answered completed"
VOICEMAIL = twiml.voicemail("Leave a message.", None, "https://phone.example.test/voice/recording",
                            "https://phone.example.test/voice/recorded")


def states(**given: State) -> dict[str, State]:
    return dict(given)


def answer(plan: RingPlan, caller: str = CALLER) -> ET.Element:
    document = ring_twiml(plan, caller=caller, team_number=TEAM_NUMBER, timeout=20, action_url=ACTION,
                          status_url=STATUS, voicemail=lambda: VOICEMAIL)
    root = ET.fromstring(document)
    assert root.tag == "Response"
    return root


def legs(root: ET.Element) -> list[tuple[str, str]]:
    (dial,) = root
    assert dial.tag == "Dial"
    for leg in dial:
        assert leg.attrib == {"statusCallback": STATUS, "statusCallbackEvent": EVENTS}
    return [(leg.tag, leg.text) for leg in dial]


def test_available_members_ring_on_their_browsers_with_the_callers_own_id():
    plan = plan_ringing(RingGroup(("alice", "bob")), states(alice=State.AVAILABLE, bob=State.AVAILABLE), FORWARD,
                        USERS)
    assert plan == RingPlan(clients=("alice", "bob"), numbers=())
    root = answer(plan)
    assert root[0].attrib == {"timeout": "20", "action": ACTION, "answerOnBridge": "true"}  # Twilio's default ID
    assert legs(root) == [("Client", "alice"), ("Client", "bob")]


def test_dnd_and_busy_members_are_rung_nowhere_not_even_on_their_forward_number():
    group = RingGroup(("alice", "bob", "carol"))
    plan = plan_ringing(group, states(alice=State.AVAILABLE, bob=State.DND, carol=State.BUSY), FORWARD, USERS)
    assert plan == RingPlan(clients=("alice",), numbers=())
    assert legs(answer(plan)) == [("Client", "alice")]


def test_an_offline_member_is_rung_on_their_forward_number():
    plan = plan_ringing(RingGroup(("alice", "bob")), states(alice=State.AVAILABLE, bob=State.OFFLINE), FORWARD,
                        USERS)
    assert plan == RingPlan(clients=("alice",), numbers=(FORWARD["bob"],))
    root = answer(plan)
    assert root[0].attrib == {"timeout": "20", "action": ACTION, "answerOnBridge": "true", "callerId": CALLER}
    assert legs(root) == [("Client", "alice"), ("Number", FORWARD["bob"])]


def test_an_offline_member_without_a_forward_number_is_not_rung():
    plan = plan_ringing(RingGroup(("alice", "bob")), states(alice=State.OFFLINE, bob=State.AVAILABLE), {}, USERS)
    assert plan == RingPlan(clients=("bob",), numbers=())


def test_outside_phones_ring_with_the_group_whatever_the_members_states():
    group = RingGroup(("alice", "bob"), (OUTSIDE,))
    plan = plan_ringing(group, states(alice=State.DND, bob=State.BUSY), FORWARD, USERS)
    assert plan == RingPlan(clients=(), numbers=(OUTSIDE,))
    assert legs(answer(plan)) == [("Number", OUTSIDE)]


def test_everything_at_once():
    group = RingGroup(("alice", "bob", "carol", "dave"), (OUTSIDE,))
    given = states(alice=State.AVAILABLE, bob=State.OFFLINE, carol=State.BUSY, dave=State.DND)
    plan = plan_ringing(group, given, FORWARD, USERS)
    assert plan == RingPlan(clients=("alice",), numbers=(OUTSIDE, FORWARD["bob"]))
    assert legs(answer(plan)) == [("Client", "alice"), ("Number", OUTSIDE), ("Number", FORWARD["bob"])]


@pytest.mark.parametrize(
    "given",
    [
        states(alice=State.DND, bob=State.BUSY),
        states(alice=State.OFFLINE, bob=State.OFFLINE),  # offline, and no forward number
        states(),  # nobody has a state: offline
    ],
)
def test_nobody_to_ring_goes_straight_to_voicemail(given):
    plan = plan_ringing(RingGroup(("alice", "bob")), given, {}, USERS)
    assert plan.voicemail
    root = answer(plan)
    assert [child.tag for child in root] == ["Say", "Record", "Hangup"]  # no <Dial>: no ringing first


def test_a_removed_user_is_never_rung_nor_forwarded_to():
    group = RingGroup(("alice", "bob"))
    given = states(alice=State.AVAILABLE, bob=State.OFFLINE)
    assert plan_ringing(group, given, FORWARD, {"bob"}) == RingPlan(clients=(), numbers=(FORWARD["bob"],))
    assert plan_ringing(group, given, FORWARD, {"alice"}) == RingPlan(clients=("alice",), numbers=())
    assert plan_ringing(group, given, FORWARD, set()).voicemail


def test_a_number_is_rung_once_even_as_outside_phone_and_forward_number():
    group = RingGroup(("alice", "bob"), (OUTSIDE, OUTSIDE))
    plan = plan_ringing(group, states(alice=State.OFFLINE, bob=State.OFFLINE),
                        {"alice": OUTSIDE, "bob": OUTSIDE}, USERS)
    assert plan == RingPlan(clients=(), numbers=(OUTSIDE,))


def test_a_withheld_or_invalid_caller_shows_the_team_number_on_phone_legs():
    plan = RingPlan(clients=(), numbers=(OUTSIDE,))
    for caller in ("anonymous", "restricted", "+266696687", "", "441595123456", "client:alice"):
        assert answer(plan, caller)[0].attrib["callerId"] == TEAM_NUMBER, caller


def test_leg_caller_id():
    assert leg_caller_id(CALLER, TEAM_NUMBER) == CALLER
    assert leg_caller_id("+1 202 555 0123", TEAM_NUMBER) == "+12025550123"
    assert leg_caller_id("Anonymous", TEAM_NUMBER) == TEAM_NUMBER


def test_ring_legs_refuses_an_empty_dial():
    with pytest.raises(ValueError, match="voicemail"):
        twiml.ring_legs((), (), TEAM_NUMBER, 20, ACTION, STATUS)
