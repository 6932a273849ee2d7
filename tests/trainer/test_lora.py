"""LoRA adapter files: trained with --train lora, applied at a strength, merged, and refused where they do not fit."""

import subprocess

import pytest
import torch
from trainer_data import REPO, trainer_command, write_tiny_dataset

from mtv_core import lora, testing
from mtv_core.checkpoints import LORA_KIND, file_identity, load_lora, load_mtv_model, save_lora, save_mtv_model, save_safetensors
from mtv_core.errors import ModelFileError
from mtv_core.models.fp8 import FP8Linear, convert_linears_to_fp8
from trainer import TrainerError
from trainer.cli import main
from trainer.options import TrainOptions
from trainer.train import run_curriculum


def _options(data, out, **changes):
    settings = dict(stage="basic_face", data=data, out=out, config="tiny-single", steps=3, save_every=3,
                    progress=False, seed=3, train="lora", lora_rank=4, lr=2e-2)
    return TrainOptions(**{**settings, **changes})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A base model file and the adapter 3 LoRA steps on it wrote."""
    root = tmp_path_factory.mktemp("lora")
    base = save_mtv_model(testing.tiny_mtv_model(seed=5), root / "base.safetensors")
    (adapter,) = run_curriculum(_options(write_tiny_dataset(root / "data"), root / "run", init=base))
    return base, adapter


def _forward(model, seed=1):
    config = model.config
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(1, 13, 16, config.sample_height, config.sample_width, generator=generator)
    text = torch.randn(1, 226, config.text_embed_dim, generator=generator)
    features = {s: torch.randn(1, 49, config.audio_feature_dim, generator=generator) for s in model.audio_streams}
    with torch.no_grad():
        return model(latents, text, torch.tensor([600]), audio_tokens=model.project_audio(features))


def test_a_lora_run_writes_a_small_adapter_that_names_its_base(trained):
    base, path = trained
    adapter = load_lora(path)
    assert path.name == "lora.safetensors" and adapter.rank == 4 and adapter.alpha == 4
    assert adapter.base == file_identity(base)[0]
    assert path.stat().st_size < base.stat().st_size / 3
    modules = set(adapter.pairs)
    assert any(".attn1.to_q" in m for m in modules) and any(".audio_attn." in m for m in modules), sorted(modules)
    assert max(float(up.abs().max()) for _, up in adapter.pairs.values()) > 1e-3  # B left zero would be a no-op


def test_strength_one_is_the_merged_model_and_zero_is_the_base(trained, tmp_path):
    base_path, path = trained
    adapter, base = load_lora(path), load_mtv_model(base_path)
    plain = _forward(base)
    with lora.applied(base, [(adapter, 0.0)]):
        assert torch.equal(_forward(base), plain)
    with lora.applied(base, [(adapter, 1.0)]):
        adapted = _forward(base)
    with lora.applied(base, [(adapter, 0.5), (adapter, 0.5)]):
        stacked = _forward(base)
    assert torch.equal(_forward(base), plain)  # hooks are gone afterwards
    assert (adapted - plain).abs().max() > 1e-4

    out = tmp_path / "merged.safetensors"
    assert subprocess.run(trainer_command("export", "--merge", "--base", base_path, "--lora", f"{path}:1", "--out", out),
                          cwd=REPO, capture_output=True, text=True).returncode == 0
    merged = _forward(load_mtv_model(out))
    torch.testing.assert_close(merged, adapted, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(stacked, adapted, atol=2e-5, rtol=1e-4)


def test_export_never_overwrites_a_file_unless_asked(trained, tmp_path):
    base, path = trained
    out = tmp_path / "keep.safetensors"
    out.write_bytes(b"the user's file")
    result = subprocess.run(trainer_command("export", "--merge", "--base", base, "--lora", path, "--out", out),
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 1 and f"{out} exists; choose another --out or pass --overwrite" in result.stderr
    assert out.read_bytes() == b"the user's file"
    assert main(["export", "--merge", "--base", str(base), "--lora", str(path), "--out", str(out), "--overwrite"]) == 0
    assert load_mtv_model(out).config.num_layers == 2 and not list(tmp_path.glob(".*.tmp"))


def test_export_merges_onto_an_fp8_base_as_plain_weights(tmp_path, capsys):
    """The merged file holds the fp8 weights dequantized (fp8 x row scale) with the LoRA added: it computes what the
    fp8 base does with the adapter applied."""
    model = testing.tiny_mtv_model(seed=5)
    adapter_path = testing.save_random_lora(model, tmp_path / "lora.safetensors")
    convert_linears_to_fp8(model.transformer_blocks)
    base = save_mtv_model(model, tmp_path / "base-fp8.safetensors")
    out = tmp_path / "merged.safetensors"
    assert main(["export", "--merge", "--base", str(base), "--lora", str(adapter_path), "--out", str(out)]) == 0
    assert "stores its blocks' Linear weights as fp8" in capsys.readouterr().err
    fp8_base = load_mtv_model(base)
    with lora.applied(fp8_base, [(load_lora(adapter_path), 1.0)]):
        expected = _forward(fp8_base)
    merged = load_mtv_model(out)
    assert not any(isinstance(m, FP8Linear) for m in merged.modules())
    torch.testing.assert_close(_forward(merged), expected, atol=2e-5, rtol=1e-4)


def _filled_lora(model, path, value: float) -> None:
    """An adapter on every attn1.to_q with A and B filled with `value`."""
    pairs = {name: (torch.full((4, module.in_features), value), torch.full((module.out_features, 4), value))
             for name, module in model.named_modules() if name.endswith("attn1.to_q")}
    save_lora(path, pairs, 4, 4, "to_q", lora.model_identity(model))


def test_an_adapter_with_nan_is_refused_when_loaded(tmp_path):
    path = tmp_path / "nan.safetensors"
    _filled_lora(testing.tiny_mtv_model(seed=5), path, float("nan"))
    with pytest.raises(ModelFileError, match=r"nan.safetensors: tensor transformer_blocks.0.attn1.to_q.lora_A.weight "
                                             r"holds \d+ NaN or infinite"):
        load_lora(path)


def test_a_merge_that_overflows_is_refused_and_writes_nothing(tmp_path, capsys):
    """1e30 is finite, but B A is 4e60: no float dtype holds it."""
    model = testing.tiny_mtv_model(seed=5).to(torch.bfloat16)
    base = save_mtv_model(model, tmp_path / "base.safetensors")
    _filled_lora(model, tmp_path / "huge.safetensors", 1e30)
    load_lora(tmp_path / "huge.safetensors")
    out = tmp_path / "merged.safetensors"
    assert main(["export", "--merge", "--base", str(base), "--lora", str(tmp_path / "huge.safetensors"), "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert "makes" in error and "transformer_blocks.0.attn1.to_q.weight NaN or infinite in torch.bfloat16" in error
    assert "nothing was written" in error and not out.exists() and not list(tmp_path.glob(".*.tmp"))


def test_a_lora_for_another_base_or_variant_is_refused(trained):
    _, path = trained
    adapter = load_lora(path)
    with pytest.raises(ModelFileError, match="trained on another base model .its base weights"):
        lora.check_fits(adapter, testing.tiny_mtv_model(seed=6))
    with pytest.raises(ModelFileError, match="trained on another base model .its variant"):
        lora.check_fits(adapter, testing.tiny_mtv_model("tiny-multi", seed=5))


def _file(tmp_path, tensors, settings, kind=LORA_KIND):
    return save_safetensors(tmp_path / "x.safetensors", tensors, settings, kind)


BASE = {"variant": "single", "config": "0" * 16, "weights": "0" * 16}
A, B = torch.zeros(4, 8), torch.zeros(8, 4)
HOSTILE = {
    "a model file": ({"proj_out.weight": B}, {"num_layers": 1}, "mtv-transformer", "not an MTV LoRA"),
    "rank zero": ({"m.lora_A.weight": A, "m.lora_B.weight": B}, {"rank": 0, "alpha": 1, "base": BASE}, LORA_KIND,
                  "rank 0 / alpha 1 out of range"),
    "a huge rank": ({"m.lora_A.weight": A, "m.lora_B.weight": B}, {"rank": 10**9, "alpha": 1, "base": BASE},
                    LORA_KIND, "out of range"),
    "no base": ({"m.lora_A.weight": A, "m.lora_B.weight": B}, {"rank": 4, "alpha": 4}, LORA_KIND,
                "does not name its base model"),
    "an unpaired A": ({"m.lora_A.weight": A}, {"rank": 4, "alpha": 4, "base": BASE}, LORA_KIND, "do not pair"),
    "the wrong rank": ({"m.lora_A.weight": A, "m.lora_B.weight": B}, {"rank": 2, "alpha": 4, "base": BASE},
                       LORA_KIND, "do not pair at rank 2"),
    "a stray tensor": ({"m.lora_A.weight": A, "m.lora_B.weight": B, "m.weight": B.clone()}, {"rank": 4, "alpha": 4, "base": BASE},
                       LORA_KIND, "is not a LoRA A or B matrix"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_bad_lora_file_is_refused_with_its_reason(tmp_path, case):
    tensors, settings, kind, reason = HOSTILE[case]
    with pytest.raises(ModelFileError, match=reason):
        load_lora(_file(tmp_path, tensors, settings, kind))


def test_a_module_the_model_lacks_is_refused(tmp_path):
    model = testing.tiny_mtv_model(seed=5)
    path = _file(tmp_path, {"transformer_blocks.99.attn1.to_q.lora_A.weight": A,
                            "transformer_blocks.99.attn1.to_q.lora_B.weight": B},
                 {"rank": 4, "alpha": 4, "base": lora.model_identity(model)})
    with pytest.raises(ModelFileError, match="adapts transformer_blocks.99.attn1.to_q, which this model does not have"):
        lora.check_fits(load_lora(path), model)


@pytest.mark.parametrize("strength", [5.0, float("nan"), True])
def test_a_strength_out_of_range_is_refused(strength):
    with pytest.raises(ModelFileError, match="LoRA strength .* is out of range; use -4..4"):
        lora.check_strength(strength, "here")


@pytest.mark.parametrize("changes, message", [
    (dict(lora_rank=0), "--lora-rank 0 is out of range; use 1..1024"),
    (dict(lora_rank=-3), "--lora-rank -3 is out of range"),
    (dict(init=None), "--train lora adapts a model: pass --init"),
])
def test_bad_lora_training_options_are_refused_before_training(tmp_path, changes, message):
    data = write_tiny_dataset(tmp_path / "data")
    settings = {"init": tmp_path / "base.safetensors", **changes}
    with pytest.raises(TrainerError, match=message):
        run_curriculum(_options(data, tmp_path / "run", **settings))
    assert not (tmp_path / "run").exists()


def test_a_lora_trains_on_a_half_precision_model_file(tmp_path):
    """Released and demo weights are bf16/fp16 files: training keeps float32 master weights."""
    model = testing.tiny_mtv_model(seed=5).half()
    base = save_mtv_model(model, tmp_path / "base-fp16.safetensors")
    (adapter,) = run_curriculum(_options(write_tiny_dataset(tmp_path / "data"), tmp_path / "run", init=base, steps=1,
                                         save_every=1))
    lora.check_fits(load_lora(adapter), load_mtv_model(base))


def test_a_model_file_and_the_model_loaded_from_it_have_one_identity():
    """The demo's file, like converted ones, stores only part of its config: the identity must not depend on that."""
    from mtv_core import demo

    assert file_identity(demo.MODEL)[0] == lora.model_identity(load_mtv_model(demo.MODEL))
