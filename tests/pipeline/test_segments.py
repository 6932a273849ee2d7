import pytest
import torch

from mtv_core.errors import GenerationError
from mtv_core.pipeline.segments import (
    SegmentStore,
    _to_ycbcr,
    match_colour,
    output_frame_count,
    plan_segments,
    to_uint8,
)


@pytest.mark.parametrize("frames, starts", [(1, [0]), (49, [0]), (50, [0, 44]), (93, [0, 44]), (94, [0, 44, 88]),
                                            (240, [0, 44, 88, 132, 176, 220])])
def test_plan_uses_the_fewest_segments_at_stride_44(frames, starts):
    plan = plan_segments(frames)
    assert [s.start_frame for s in plan.segments] == starts
    assert [s.keep_from for s in plan.segments] == [0] + [5] * (len(starts) - 1)
    kept = 49 + 44 * (len(starts) - 1)
    assert kept >= frames > kept - 44 or len(starts) == 1


def test_output_length_is_rounded_audio_duration_times_fps():
    assert output_frame_count(10.0, 24) == 240
    assert output_frame_count(2.02, 24) == 48
    assert output_frame_count(2.03, 24) == 49
    with pytest.raises(GenerationError, match="0 video frames"):
        plan_segments(output_frame_count(0.01, 24))


def test_segment_centre_time():
    assert plan_segments(100).segments[2].centre_time(24) == (88 + 24) / 24


def test_colour_match_gives_the_reference_statistics_on_the_overlap():
    g = torch.Generator().manual_seed(0)
    reference = torch.rand(3, 5, 8, 8, generator=g) * 0.6 - 0.3
    frames = torch.rand(3, 20, 8, 8, generator=g) * 0.4 + 0.2
    matched = match_colour(frames, reference)
    ours, theirs = _to_ycbcr(matched[:, :5]), _to_ycbcr(reference)
    torch.testing.assert_close(ours.mean((1, 2, 3)), theirs.mean((1, 2, 3)), atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.std((1, 2, 3)), theirs.std((1, 2, 3)), atol=1e-5, rtol=0)
    assert matched.shape == frames.shape


def test_colour_match_of_a_matching_segment_changes_nothing():
    frames = torch.rand(3, 20, 8, 8, generator=torch.Generator().manual_seed(1)) - 0.5
    torch.testing.assert_close(match_colour(frames, frames[:, :5]), frames, atol=1e-5, rtol=0)


def test_to_uint8_maps_the_range_and_layout():
    frames = torch.tensor([-1.0, 0.0, 1.0]).reshape(1, 3, 1, 1).expand(3, 3, 1, 1)
    out = to_uint8(frames)
    assert out.shape == (3, 1, 1, 3) and out[:, 0, 0, 0].tolist() == [0, 128, 255]


def test_store_round_trip_and_completed_count(tmp_path):
    with SegmentStore(tmp_path / "work", "abc") as store:
        kept, tail = torch.randint(0, 255, (44, 4, 4, 3), dtype=torch.uint8), torch.randn(3, 5, 4, 4)
        store.save(0, kept, tail)
        store.save(1, kept, tail)
        store.save(3, kept, tail)
        assert store.completed() == 2
    with SegmentStore(tmp_path / "work", "abc") as again:
        loaded = again.load(1)
    assert torch.equal(loaded[0], kept) and torch.equal(loaded[1], tail)
    assert not list((tmp_path / "work").rglob("*.tmp"))
    assert oct(store.path(0).stat().st_mode & 0o777) != oct(0o600)  # ordinary permissions, not mkstemp's


def test_jobs_share_a_work_folder_without_touching_each_other(tmp_path):
    user_file = tmp_path / "work" / "segment_0000.safetensors"
    user_file.parent.mkdir()
    user_file.write_bytes(b"the user's own file")
    with SegmentStore(tmp_path / "work", "abc") as first:
        first.save(0, torch.zeros(1, 2, 2, 3, dtype=torch.uint8), torch.zeros(3, 5, 2, 2))
    with SegmentStore(tmp_path / "work", "other") as second:
        assert second.completed() == 0 and second.load(0) is None
        second.save(0, torch.ones(1, 2, 2, 3, dtype=torch.uint8), torch.zeros(3, 5, 2, 2))
        second.remove()
    with SegmentStore(tmp_path / "work", "abc") as first_again:  # a setting changed back: the old job resumes
        assert first_again.completed() == 1 and int(first_again.load(0)[0].sum()) == 0
    assert user_file.read_bytes() == b"the user's own file"


def test_a_second_run_of_the_same_job_is_refused_while_the_first_works(tmp_path):
    with SegmentStore(tmp_path / "work", "abc"):
        with pytest.raises(GenerationError, match="is in use by process"):
            SegmentStore(tmp_path / "work", "abc")
    SegmentStore(tmp_path / "work", "abc").close()  # free again once the first is done


def test_a_damaged_segment_or_manifest_is_named_and_computed_again(tmp_path):
    with SegmentStore(tmp_path / "work", "abc") as store:
        store.save(0, torch.zeros(4, 2, 2, 3, dtype=torch.uint8), torch.zeros(3, 5, 2, 2))
        damaged = store.path(0).read_bytes()[:-10]
    store.path(0).write_bytes(damaged)
    (store.folder / "job.json").write_text("{not json")
    with pytest.warns(UserWarning) as caught:
        with SegmentStore(tmp_path / "work", "abc") as again:
            assert again.load(0) is None
    messages = " ".join(str(w.message) for w in caught)
    assert "job.json is unreadable" in messages and "segment_0000.safetensors: truncated" in messages
