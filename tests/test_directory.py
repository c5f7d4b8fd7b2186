from shetphone.directory import Directory
from shetphone.settings import NumberTarget


def make_directory() -> Directory:
    numbers = {
        "+441595000001": NumberTarget("clients", ("alice", "bob")),
        "+441595000002": NumberTarget("discord", discord_channel=123456789012345678),
        "+441595000004": NumberTarget("clients", ("carol",)),
    }
    clients = {"alice": ("+441595000001", "+15005550006"), "dave": ("+441595000009",)}
    return Directory(numbers, clients)


def test_clients_for_a_number():
    directory = make_directory()
    assert directory.clients_for("+441595000001") == ("alice", "bob")
    assert directory.clients_for("+441595000002") == ()
    assert directory.clients_for("+449999999999") == ()


def test_target_for_unknown_number_is_none():
    directory = make_directory()
    assert directory.target_for("+441595000002").kind == "discord"
    assert directory.target_for("+441595000099") is None


def test_a_user_belongs_to_the_numbers_they_ring_on_and_call_from():
    directory = make_directory()
    assert directory.numbers_of("alice") == {"+441595000001", "+15005550006"}
    assert directory.numbers_of("bob") == {"+441595000001"}  # rings on it, no caller IDs of his own
    assert directory.numbers_of("dave") == {"+441595000009"}
    assert directory.numbers_of("mallory") == frozenset()


def test_rooms_are_derived_from_the_directory():
    directory = make_directory()
    assert directory.rooms_for("alice") == ["user:alice", "number:+15005550006", "number:+441595000001"]
    assert directory.rooms_for("carol") == ["user:carol", "number:+441595000004"]
    assert directory.rooms_for("mallory") == ["user:mallory"]


def test_caller_ids_keep_their_order():
    directory = make_directory()
    assert directory.caller_ids_for("alice") == ("+441595000001", "+15005550006")
    assert directory.caller_ids_for("bob") == ()



def test_without_a_clients_section_the_numbers_are_read_the_other_way_round():
    numbers = {
        "+441595000001": NumberTarget("clients", ("alice", "bob")),
        "+441595000003": NumberTarget("echo"),
        "+441595000004": NumberTarget("clients", ("alice",)),
    }
    directory = Directory(numbers, None)
    assert directory.caller_ids_for("alice") == ("+441595000001", "+441595000004")
    assert directory.caller_ids_for("bob") == ("+441595000001",)
    assert Directory(numbers, {}).caller_ids_for("alice") == ()  # an empty section is not a missing one


def test_team_numbers_are_the_numbers_that_ring_and_every_caller_id():
    assert make_directory().team_numbers() == {
        "+441595000001", "+441595000002", "+441595000004", "+15005550006", "+441595000009"}


def test_teammates_share_a_number_rung_or_called_from():
    directory = make_directory()
    assert directory.members_of("+441595000001") == {"alice", "bob"}
    assert directory.members_of("+15005550006") == {"alice"}
    assert directory.teammates_of("bob") == {"alice", "bob"}
    assert directory.teammates_of("carol") == {"carol"}  # alone on her number
    assert directory.teammates_of("eve") == {"eve"}  # in no line at all: only herself
    assert directory.users() == {"alice", "bob", "carol", "dave"}
