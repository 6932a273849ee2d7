"""`trainer prepare` reads a generated world like user clips: the manifest's subsets are the world's truth."""

from mtv_core.testing import save_tiny_wav2vec2
from mtv_lab.world import world_clips
from trainer.dataset import read_manifest
from trainer.prepare import PrepareOptions, prepare_dataset


def test_prepare_finds_every_clip_with_the_subsets_of_its_truth(world, tmp_path):
    wav2vec = save_tiny_wav2vec2(tmp_path / "wav2vec")
    report = prepare_dataset(PrepareOptions(clips=world, out=tmp_path / "data", wav2vec=wav2vec, captions=world / "captions.csv"))
    assert report.skipped == {} and report.windows == 6
    records = {record.source.rsplit("/", 1)[-1]: record for record in read_manifest(tmp_path / "data")}
    for spec in world_clips(world):
        record = records[f"{spec.name}.mp4"]
        assert record.subsets == spec.subsets, spec.name
        assert record.persons == len(spec.persons) and record.caption == spec.caption and record.start_frame == 3
    covered = {subset for record in records.values() for subset in record.subsets}
    assert covered == {"basic_face", "single_character", "multi_character", "sound_event", "visual_mood"}
