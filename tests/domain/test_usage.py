import pytest

from oneflow_ai.domain.usage import Usage


def test_defaults_are_zero_and_reported() -> None:
    usage = Usage()
    assert (usage.input_tokens, usage.output_tokens, usage.images, usage.characters) == (0, 0, 0, 0)
    assert usage.estimated is False


@pytest.mark.parametrize("field", ["input_tokens", "output_tokens", "images", "characters"])
def test_rejects_negative_counts(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Usage(**{field: -1})


@pytest.mark.parametrize("bad", [1.0, True, "3"])
def test_rejects_non_int_counts(bad: object) -> None:
    with pytest.raises(TypeError, match="input_tokens"):
        Usage(input_tokens=bad)  # type: ignore[arg-type]


def test_is_frozen() -> None:
    usage = Usage(input_tokens=1)
    with pytest.raises(AttributeError):
        usage.input_tokens = 2  # type: ignore[misc]


def test_addition_sums_counts_and_keeps_estimated() -> None:
    a = Usage(input_tokens=10, output_tokens=2)
    b = Usage(output_tokens=5, estimated=True)
    assert a + b == Usage(input_tokens=10, output_tokens=7, estimated=True)


def test_addition_of_images_requires_same_size_and_quality() -> None:
    a = Usage(images=1, image_size="1024x1024", image_quality="hd")
    assert (a + Usage()).image_quality == "hd"
    assert (Usage() + a).image_size == "1024x1024"
    assert (a + a).images == 2
    with pytest.raises(ValueError):
        a + Usage(images=1, image_size="1792x1024", image_quality="hd")
