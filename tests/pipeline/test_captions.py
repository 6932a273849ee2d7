import pytest

from mtv_core.errors import ConfigError
from mtv_core.pipeline.captions import build_caption


def test_one_person_caption_matches_official_example():
    caption = build_caption("one", "The video features a car.", person1="A driver wears a brown leather jacket")
    assert caption == ("One person conversation. Persons: Person1: A driver wears a brown leather jacket. "
                       "Person1 is speaking. Scene Description: The video features a car.")


def test_two_person_caption_names_the_active_speaker():
    caption = build_caption("two", "A kitchen.", person1="A man, left.", person2="A woman, right", speaker=2)
    assert caption == ("Two person conversation. Persons: Person1: A man, left. Person2: A woman, right. "
                       "Person2 is speaking. Scene Description: A kitchen.")


def test_no_conversation_caption_has_only_the_scene():
    assert build_caption("none", "Waves  hit\nrocks.") == "No conversation. Scene Description: Waves hit rocks."


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(conversation="three", scene="x"), "conversation type 'three'"),
    (dict(conversation="one", scene="x"), "Person1 description"),
    (dict(conversation="two", scene="x", person1="a"), "Person2 description"),
    (dict(conversation="one", scene="x", person1="a", speaker=2), "active speaker 2"),
    (dict(conversation="none", scene=" "), "scene description"),
])
def test_bad_caption_fields_are_named(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        build_caption(**kwargs)
