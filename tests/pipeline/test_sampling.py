import pytest
import torch

from mtv_core.pipeline.sampling import GenerationInterrupted, make_scheduler, sample


def test_official_schedule_is_trailing_zero_snr_v_prediction():
    scheduler = make_scheduler("dpm")
    scheduler.set_timesteps(50)
    assert scheduler.timesteps.tolist() == list(range(999, 0, -20))
    assert scheduler.config.prediction_type == "v_prediction"
    assert scheduler.alphas_cumprod[-1] < 1e-6  # zero terminal SNR (rescaled betas)


def _ideal_model(target: torch.Tensor, seen: list | None = None):
    """The exact v-prediction when every sample is `target`: any sampler must end on it."""
    alphas = make_scheduler("dpm").alphas_cumprod

    def model_fn(x, t):
        if seen is not None:
            seen.append(x.clone())
        a = alphas[t]
        eps = (x - a.sqrt() * target) / (1 - a).sqrt()
        return a.sqrt() * eps - (1 - a).sqrt() * target
    return model_fn


@pytest.mark.parametrize("sampler", ["dpm", "ddim"])
@pytest.mark.parametrize("steps", [20, 30, 50])
def test_samplers_reach_the_data_of_an_ideal_model(sampler, steps):
    target = torch.randn(1, 13, 4, 2, 2, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(1))
    out = sample(sampler, _ideal_model(target), noise, steps, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(out, target, atol=2e-3, rtol=0)


def test_same_generator_seed_gives_the_same_sample():
    model_fn = _ideal_model(torch.zeros(1, 13, 4, 2, 2))

    def run(seed):
        noise = torch.randn(1, 13, 4, 2, 2, generator=torch.Generator().manual_seed(seed))
        return sample("dpm", lambda x, t: 0.9 * model_fn(x, t), noise, 5,
                      generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(4), run(4))
    assert not torch.equal(run(4), run(5))


def test_clean_prefix_is_pasted_before_every_call_and_at_the_end():
    target = torch.randn(1, 13, 4, 2, 2, generator=torch.Generator().manual_seed(0))
    prefix = torch.randn(1, 2, 4, 2, 2, generator=torch.Generator().manual_seed(3))
    seen = []
    out = sample("dpm", _ideal_model(target, seen), torch.randn(target.shape), 4,
                 generator=torch.Generator().manual_seed(0), prefix=prefix)
    assert len(seen) == 4
    for x in seen:
        assert torch.equal(x[:, :2], prefix)
    assert torch.equal(out[:, :2], prefix)
    torch.testing.assert_close(out[:, 2:], target[:, 2:], atol=1e-2, rtol=0)


def test_progress_reports_every_step_and_interrupt_stops_the_loop():
    calls = []
    sample("ddim", _ideal_model(torch.zeros(1, 1, 1, 1, 1)), torch.randn(1, 1, 1, 1, 1), 3,
           progress=lambda step, total: calls.append((step, total)))
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]
    seen = []
    with pytest.raises(GenerationInterrupted, match="step 2 of 5"):
        sample("dpm", _ideal_model(torch.zeros(1, 1, 1, 1, 1), seen), torch.randn(1, 1, 1, 1, 1), 5,
               interrupt=lambda: len(seen) == 2)
    assert len(seen) == 2


@pytest.mark.parametrize("sampler", ["dpm", "ddim"])
def test_preview_gets_each_steps_clean_estimate_with_the_prefix(sampler):
    target = torch.randn(1, 13, 4, 2, 2, generator=torch.Generator().manual_seed(0))
    prefix = torch.randn(1, 2, 4, 2, 2, generator=torch.Generator().manual_seed(3))
    shown = []
    sample(sampler, _ideal_model(target), torch.randn(target.shape), 4, generator=torch.Generator().manual_seed(0),
           prefix=prefix, preview=lambda step, total, x0: shown.append((step, total, x0)))
    assert [(step, total) for step, total, _ in shown] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    for _, _, x0 in shown:  # the ideal model's estimate is the data at every step
        assert x0.shape == target.shape
        assert torch.equal(x0[:, :2], prefix)
        torch.testing.assert_close(x0[:, 2:], target[:, 2:], atol=1e-4, rtol=0)


def test_without_a_preview_no_estimate_is_prepared(monkeypatch):
    from mtv_core.pipeline import sampling

    pasted = []
    original = sampling.paste_prefix
    monkeypatch.setattr(sampling, "paste_prefix", lambda x, prefix: pasted.append(1) or original(x, prefix))
    model = _ideal_model(torch.zeros(1, 3, 1, 1, 1))
    sample("dpm", model, torch.randn(1, 3, 1, 1, 1), 5, prefix=torch.zeros(1, 1, 1, 1, 1))
    assert len(pasted) == 5 + 1  # before each model call and at the end, as without previews
    pasted.clear()
    sample("dpm", model, torch.randn(1, 3, 1, 1, 1), 5, prefix=torch.zeros(1, 1, 1, 1, 1), preview=lambda *a: None)
    assert len(pasted) == 5 + 1 + 5


def _wavy_model(x, t):
    return torch.sin(x * 1.3 + t / 250.0) * 0.8 - 0.1 * x


# Computed with the samplers as they were before the one-loop refactor: the loop must give these numbers exactly.
FROZEN = {
    "dpm": ([0.2712765038013458, -1.2729183435440063, 0.36362823843955994, 1.5830702781677246,
             -0.08004801720380783, -0.1780422329902649, 0.19650451838970184, 1.178805947303772],
            [0.2712765038013458, -1.2729183435440063, 1.0191282033920288, -0.33993422985076904,
             -0.2172742486000061, -0.05882054194808006, -0.7964112162590027, 1.290276288986206]),
    "ddim": ([0.2712765038013458, -1.2729183435440063, 1.125619649887085, -0.9404033422470093,
              2.392017364501953, -0.8595635890960693, -0.6282069087028503, 1.7158783674240112],
             [0.2712765038013458, -1.2729183435440063, 1.0932645797729492, -1.1177431344985962,
              1.4044593572616577, -1.1296803951263428, -0.7558517456054688, 1.283492088317871]),
}


@pytest.mark.parametrize("sampler", ["dpm", "ddim"])
def test_samplers_repeat_their_frozen_results_exactly(sampler):
    noise = torch.randn(1, 4, 1, 1, 2, generator=torch.Generator().manual_seed(7))
    prefix = torch.randn(1, 1, 1, 1, 2, generator=torch.Generator().manual_seed(8))
    shown = []
    out = sample(sampler, _wavy_model, noise, 6, generator=torch.Generator().manual_seed(9), prefix=prefix,
                 preview=lambda step, total, x0: shown.append(x0))
    final, third_estimate = FROZEN[sampler]
    assert torch.equal(out.flatten(), torch.tensor(final))
    assert torch.equal(shown[2].flatten(), torch.tensor(third_estimate))
