import json

import pytest
import torch

from mtv_core.errors import ConfigError
from mtv_core.pipeline.prompt_schedule import PromptSchedule, ScheduledPrompt, load_prompt_schedule


def _schedule():
    return PromptSchedule((ScheduledPrompt("a", 0.0), ScheduledPrompt("b", 4.0, 2.0), ScheduledPrompt("c", 8.0)))


@pytest.mark.parametrize("time, weights", [(0.0, [1, 0, 0]), (3.9, [1, 0, 0]), (4.0, [1, 0, 0]), (4.5, [0.75, 0.25, 0]),
                                           (5.0, [0.5, 0.5, 0]), (6.0, [0, 1, 0]), (7.9, [0, 1, 0]),
                                           (8.0, [0, 0, 1]), (100.0, [0, 0, 1])])
def test_weights_blend_linearly_across_the_transition(time, weights):
    assert _schedule().weights_at(time) == pytest.approx(weights)


def test_embedding_is_the_weighted_blend():
    embeddings = torch.randn(3, 226, 8)
    blended = _schedule().embedding_at(embeddings, 5.5)
    torch.testing.assert_close(blended, (0.25 * embeddings[0] + 0.75 * embeddings[1])[None])


def test_a_single_prompt_applies_everywhere():
    schedule = PromptSchedule.single("x")
    assert schedule.weights_at(0.0) == schedule.weights_at(99.0) == [1.0]


@pytest.mark.parametrize("entries, fragment", [
    ((ScheduledPrompt("a", -1.0),), "start -1.0"),
    ((ScheduledPrompt("a"), ScheduledPrompt("b", 2.0, -0.5)), "transition -0.5"),
    ((ScheduledPrompt("a"), ScheduledPrompt("b", 2.0), ScheduledPrompt("c", 2.0)), "not after entry 1"),
    ((ScheduledPrompt("a"), ScheduledPrompt("b", 2.0, 3.0), ScheduledPrompt("c", 4.0)), "transition ends at 5.0s"),
    ((ScheduledPrompt(""),), "empty prompt"),
    ((), "empty"),
])
def test_bad_schedules_are_explained(entries, fragment):
    with pytest.raises(ConfigError, match=fragment):
        PromptSchedule(entries)


def test_loads_a_json_schedule(tmp_path):
    path = tmp_path / "schedule.json"
    path.write_text(json.dumps([{"prompt": "a"}, {"prompt": "b", "start": 3, "transition": 1}]))
    assert load_prompt_schedule(path).entries == (ScheduledPrompt("a"), ScheduledPrompt("b", 3, 1))
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read prompt schedule"):
        load_prompt_schedule(path)
