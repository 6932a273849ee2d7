"""Structured captions in the template the MTV weights were trained on (the official examples,
e.g. baaivision/MTVCraft examples/One_person.txt).

One person:  "One person conversation. Persons: Person1: <desc>. Person1 is speaking. Scene Description: <scene>"
Two persons: "Two person conversation. Persons: Person1: <desc>. Person2: <desc>. Person<k> is speaking. Scene Description: <scene>"
No speech:   "No conversation. Scene Description: <scene>"
"""

from ..errors import ConfigError

CONVERSATION_TYPES = {"none": "No conversation", "one": "One person conversation", "two": "Two person conversation"}


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    return text if text.endswith((".", "!", "?")) else text + "."


def _require(value, what: str, conversation: str) -> str:
    if not value or not str(value).strip():
        raise ConfigError(f"a '{conversation}' caption needs {what}, got {value!r}; pass it or change the conversation type")
    return str(value)


def build_caption(conversation: str, scene: str, person1: str | None = None, person2: str | None = None,
                  speaker: int = 1) -> str:
    """Build an MTV caption. conversation is "none", "one" or "two"; speaker (1 or 2) names who speaks."""
    if conversation not in CONVERSATION_TYPES:
        raise ConfigError(f"conversation type {conversation!r} is unknown; use one of {sorted(CONVERSATION_TYPES)}")
    scene_text = " ".join(_require(scene, "a scene description", conversation).split())
    head = CONVERSATION_TYPES[conversation] + "."
    if conversation == "none":
        return f"{head} Scene Description: {scene_text}"
    persons = [f"Person1: {_sentence(_require(person1, 'a Person1 description', conversation))}"]
    if conversation == "two":
        persons.append(f"Person2: {_sentence(_require(person2, 'a Person2 description', conversation))}")
    if speaker not in range(1, len(persons) + 1):
        raise ConfigError(f"active speaker {speaker!r} does not exist in a '{conversation}' caption; "
                          f"use 1{' or 2' if conversation == 'two' else ''}")
    return f"{head} Persons: {' '.join(persons)} Person{speaker} is speaking. Scene Description: {scene_text}"
