import uuid

from oneflow_ai.domain.ids import uuid4_hex


def test_uuid4_hex_is_a_random_version_4_uuid_in_hex() -> None:
    made = {uuid4_hex() for _ in range(1000)}
    assert len(made) == 1000
    for value in made:
        parsed = uuid.UUID(hex=value)
        assert parsed.hex == value
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
