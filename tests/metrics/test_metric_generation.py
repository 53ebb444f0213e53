"""Generation metrics (erasure / retained accuracy, CLIP score, FID, KID, generation distance) against hand
computation, closed forms and brute force in float64."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import erasus
from erasus.errors import ErasusTypeError, InvalidInputError, NonFiniteError
from erasus.metrics.generation import (clip_score, concept_accuracy, feature_statistics, frechet_distance,
                                       frechet_distance_from_features, generate_images, generation_distance,
                                       kernel_inception_distance, mmd2_unbiased)


def _spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return a @ a.T + 0.1 * np.eye(d)


def _fd_reference(mu1, s1, mu2, s2) -> float:
    """Tr sqrt(S1 S2) = Tr sqrt(S1^1/2 S2 S1^1/2), the latter symmetric PSD: eigendecompositions in float64 torch."""
    s1t, s2t = torch.tensor(s1, dtype=torch.float64), torch.tensor(s2, dtype=torch.float64)
    w, v = torch.linalg.eigh(s1t)
    r = v @ torch.diag(w.clamp_min(0).sqrt()) @ v.T
    inner = torch.linalg.eigvalsh(r @ s2t @ r).clamp_min(0).sqrt().sum()
    diff = torch.tensor(mu1 - mu2, dtype=torch.float64)
    return float(diff @ diff + s1t.trace() + s2t.trace() - 2 * inner)


def test_frechet_distance_closed_form_for_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    want = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))  # = 5 + (4 + 1 + 0) = 10
    assert want == pytest.approx(10.0)
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(want, abs=1e-10)
    assert frechet_distance(mu1, np.diag(v1), mu1, np.diag(v1)) == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frechet_distance_matches_float64_eigh_reference(seed):
    rng = np.random.default_rng(seed)
    d = 6
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = _spd(rng, d), _spd(rng, d)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_fd_reference(mu1, s1, mu2, s2), rel=1e-8)


def test_fid_from_features_uses_unbiased_covariance_and_recovers_gaussian_distance():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((50, 4)), rng.standard_normal((60, 4)) * 2 + 1
    mu, cov = feature_statistics(a)
    np.testing.assert_allclose(cov, (a - a.mean(0)).T @ (a - a.mean(0)) / 49, rtol=1e-12)
    np.testing.assert_allclose(mu, a.mean(0), rtol=1e-12)
    want = _fd_reference(a.mean(0), np.cov(a.T), b.mean(0), np.cov(b.T))
    assert frechet_distance_from_features(a, b) == pytest.approx(want, rel=1e-8)
    # large samples of N(0, I) and N(1, 4 I) in d=3: closed form 3 * 1 + 3 * (1 + 4 - 2 * 2) = 6
    x, y = rng.standard_normal((200_000, 3)), rng.standard_normal((200_000, 3)) * 2 + 1
    assert frechet_distance_from_features(x, y) == pytest.approx(6.0, rel=0.02)


def _mmd_brute(x, y, k):
    m, n = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return kxx + kyy - 2 * kxy


def test_mmd2_unbiased_matches_pairwise_loop():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((7, 5)), rng.standard_normal((9, 5)) + 0.5
    cubic = lambda u, v: (float(u @ v) / 5 + 1) ** 3  # noqa: E731  (KID's kernel)
    assert mmd2_unbiased(x, y) == pytest.approx(_mmd_brute(x, y, cubic), rel=1e-10)
    quad = lambda u, v: (0.3 * float(u @ v) + 2) ** 2  # noqa: E731
    assert mmd2_unbiased(x, y, degree=2, gamma=0.3, coef0=2) == pytest.approx(_mmd_brute(x, y, quad), rel=1e-10)


def test_kid_with_whole_sets_is_the_full_unbiased_mmd_and_vanishes_in_distribution():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 3)) + 1
    cubic = lambda u, v: (float(u @ v) / 3 + 1) ** 3  # noqa: E731
    out = kernel_inception_distance(x, y, num_subsets=5, max_subset_size=100)
    # a subset of all 8 rows is a permutation, and the unbiased MMD does not depend on the order
    assert out["kid"] == pytest.approx(_mmd_brute(x, y, cubic), rel=1e-10)
    assert out["kid_std"] == pytest.approx(0.0, abs=1e-12)
    same = kernel_inception_distance(rng.standard_normal((400, 3)), rng.standard_normal((400, 3)), num_subsets=20,
                                     max_subset_size=200)
    shifted = kernel_inception_distance(rng.standard_normal((400, 3)), rng.standard_normal((400, 3)) + 1,
                                        num_subsets=20, max_subset_size=200)
    assert abs(same["kid"]) < 0.1 * shifted["kid"]


def test_concept_accuracy_clip_score_and_generation_distance_by_hand():
    assert concept_accuracy([2, 0, 2, 1], 2) == 0.5
    assert concept_accuracy(torch.tensor([[0.1, 0.9], [2.0, -1.0], [0.0, 1.0]]), [1, 1, 1]) == pytest.approx(2 / 3)
    img = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    txt = torch.tensor([[1.0, 1.0], [-1.0, 0.0], [0.0, 2.0]])
    # cosines: 1/sqrt(2), -1 (clipped to 0), 1
    assert clip_score(img, txt) == pytest.approx((100 / np.sqrt(2) + 0 + 100) / 3, rel=1e-12)
    a = torch.zeros(2, 1, 2, 2)
    b = torch.zeros(2, 1, 2, 2)
    b[0, 0, 0, 0] = 3.0
    b[0, 0, 1, 1] = 4.0  # pair 0 differs by a vector of norm 5, pair 1 is equal
    out = generation_distance(a, b, features=np.array([[0.0, 0.0], [1.0, 1.0]]),
                              reference_features=np.array([[3.0, 4.0], [1.0, 1.0]]))
    assert out == pytest.approx({"pixel_l2": 2.5, "pixel_mse": 25 / 8, "feature_l2": 2.5})


def test_pure_functions_refuse_bad_input():
    with pytest.raises(NonFiniteError):
        frechet_distance_from_features(np.array([[0.0, np.nan], [1.0, 2.0]]), np.ones((3, 2)))
    with pytest.raises(InvalidInputError, match="dimension"):
        frechet_distance_from_features(np.ones((3, 2)), np.ones((3, 4)))
    with pytest.raises(InvalidInputError, match="n >= 2"):
        kernel_inception_distance(np.ones((1, 2)), np.ones((3, 2)))
    with pytest.raises(InvalidInputError, match="same shape"):
        clip_score(torch.ones(2, 3), torch.ones(3, 3))
    with pytest.raises(InvalidInputError, match="one shape"):
        generation_distance(torch.ones(2, 1, 2, 2), torch.ones(3, 1, 2, 2))
    with pytest.raises(InvalidInputError, match="one class index or one per"):
        concept_accuracy([0, 1, 2], [0, 1])


# --------------------------------------------------------------------------- classes, with generation
class _ShadeModel:
    """A fake text-to-image model: the image of prompt p is filled with its class's shade plus seeded noise."""

    shades = {"a photo of a cat": 0.1, "a photo of a dog": 0.5, "a photo of a car": 0.9}

    def __call__(self, prompts, *, generators):
        return torch.stack([torch.full((1, 4, 4), self.shades[p]) + 0.3 * torch.randn(1, 4, 4, generator=g)
                            for p, g in zip(prompts, generators, strict=True)])


def _shade_classifier(x: torch.Tensor) -> torch.Tensor:
    centers = torch.tensor([0.1, 0.5, 0.9])
    return -(x.mean(dim=(1, 2, 3))[:, None] - centers).abs()


def _hand_accuracy(prompts, seed, labels):
    hits = 0
    for i, (p, lab) in enumerate(zip(prompts, labels, strict=True)):
        g = torch.Generator().manual_seed(seed * 1_000_003 + i)
        mean = float((torch.full((1, 4, 4), _ShadeModel.shades[p]) + 0.3 * torch.randn(1, 4, 4, generator=g)).mean())
        hits += int(np.argmin(np.abs(np.array([0.1, 0.5, 0.9]) - mean)) == lab)
    return hits / len(prompts)


def test_erasure_and_retained_accuracy_match_per_image_seeded_hand_count():
    model = _ShadeModel()
    prompts = ["a photo of a cat"] * 5
    m = erasus.get_metric("erasure_accuracy", classifier=_shade_classifier, concept=0, seeds=(0, 7), batch_size=2)
    out = m.compute(model, prompts)
    want = {s: _hand_accuracy(prompts, s, [0] * 5) for s in (0, 7)}
    assert out["erasure_accuracy_seed0"] == want[0] and out["erasure_accuracy_seed7"] == want[7]
    assert out["erasure_accuracy"] == pytest.approx(np.mean(list(want.values())))
    assert out["erasure_accuracy_std"] == pytest.approx(np.std(list(want.values())))
    retain = ["a photo of a dog", "a photo of a car", "a photo of a dog"]
    r = erasus.get_metric("retained_accuracy", classifier=_shade_classifier, seeds=(1,)).compute(model, retain,
                                                                                                 [1, 2, 1])
    assert r["retained_accuracy"] == _hand_accuracy(retain, 1, [1, 2, 1])


def test_generation_metrics_refuse_bad_input_before_generating():
    calls = []

    def model(prompts, *, generators):
        calls.append(prompts)
        return torch.zeros(len(prompts), 1, 2, 2)

    with pytest.raises(InvalidInputError, match="non-empty list of strings"):
        erasus.get_metric("erasure_accuracy", classifier=_shade_classifier, concept=0).compute(model, [])
    with pytest.raises(InvalidInputError, match="one non-negative class index per prompt"):
        erasus.get_metric("retained_accuracy", classifier=_shade_classifier).compute(model, ["a", "b"], [0])
    with pytest.raises(InvalidInputError, match="seeds"):
        erasus.get_metric("erasure_accuracy", classifier=_shade_classifier, concept=0, seeds=())
    with pytest.raises(InvalidInputError, match="concept"):
        erasus.get_metric("erasure_accuracy", classifier=_shade_classifier, concept=-1)
    with pytest.raises(ErasusTypeError, match="classifier"):
        erasus.get_metric("erasure_accuracy", classifier="resnet", concept=0)
    with pytest.raises(InvalidInputError, match="reference_model"):
        erasus.get_metric("generation_distance").compute(model, ["a"])
    assert calls == []
    with pytest.raises(InvalidInputError, match="not a class of the classifier"):
        erasus.get_metric("erasure_accuracy", classifier=_shade_classifier, concept=5, seeds=(0,)).compute(model, ["a"])


def test_fid_kid_and_distance_classes_match_the_functions_on_the_same_seeded_images():
    model, prompts = _ShadeModel(), ["a photo of a cat", "a photo of a dog", "a photo of a car"] * 4
    extractor = lambda x: x.flatten(1)[:, :3]  # noqa: E731
    ref = torch.rand(20, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    images = {s: generate_images(model, prompts, seed=s) for s in (0, 1)}
    fid = erasus.get_metric("fid", feature_extractor=extractor, reference=ref, seeds=(0, 1)).compute(model, prompts)
    want = [frechet_distance_from_features(extractor(images[s]), extractor(ref)) for s in (0, 1)]
    assert fid["fid"] == pytest.approx(np.mean(want), rel=1e-10)
    kid = erasus.get_metric("kid", feature_extractor=extractor, reference=ref, seeds=(0,), num_subsets=3,
                            max_subset_size=12).compute(model, prompts)
    # m = 12 = all generated rows: each subset's value only depends on which 12 of the 20 reference rows it draws
    assert kid["kid"] == pytest.approx(kernel_inception_distance(extractor(images[0]), extractor(ref), num_subsets=3,
                                                                 max_subset_size=12, seed=0)["kid"], rel=1e-10)
    dist = erasus.get_metric("generation_distance", seeds=(0,)).compute(model, prompts, reference_model=model)
    assert dist["pixel_l2"] == 0.0 and dist["pixel_mse"] == 0.0


def test_generate_images_is_per_image_seeded_through_a_diffusers_pipeline():
    pytest.importorskip("diffusers")
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                                block_out_channels=(8, 16), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
                                attention_head_dim=4, norm_num_groups=4)
    import json
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
        for c in "abcdefghijklmnopqrstuvwxyz":
            vocab[c], vocab[c + "</w>"] = len(vocab), len(vocab) + 1
        (Path(d) / "v.json").write_text(json.dumps(vocab))
        (Path(d) / "m.txt").write_text("#version: 0.2\n")
        tok = CLIPTokenizer(str(Path(d) / "v.json"), str(Path(d) / "m.txt"), model_max_length=16)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                                        num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=16))
    pipe = StableDiffusionPipeline(vae=None, text_encoder=text, tokenizer=tok, unet=unet,
                                   scheduler=DDIMScheduler(num_train_timesteps=100), safety_checker=None,
                                   feature_extractor=None, image_encoder=None, requires_safety_checker=False)
    kw = {"num_inference_steps": 2, "guidance_scale": 2.0, "output_type": "latent", "height": 64, "width": 64}
    prompts = ["a cat", "a dog", "a cat"]
    whole = generate_images(pipe, prompts, seed=3, **kw)
    split = generate_images(pipe, prompts, seed=3, batch_size=1, **kw)
    assert whole.shape == (3, 1, 8, 8)
    torch.testing.assert_close(whole, split)  # an image depends on its seed and index, not on the batching
    assert not torch.allclose(whole[0], whole[2])  # the same prompt twice gets two noises
    assert not torch.allclose(whole, generate_images(pipe, prompts, seed=4, **kw))


def test_clip_score_metric_matches_clip_models_own_logits():
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer
    import json
    import tempfile
    from pathlib import Path

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as d:
        vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
        for c in "abcdefghijklmnopqrstuvwxyz":
            vocab[c], vocab[c + "</w>"] = len(vocab), len(vocab) + 1
        (Path(d) / "v.json").write_text(json.dumps(vocab))
        (Path(d) / "m.txt").write_text("#version: 0.2\n")
        tok = CLIPTokenizer(str(Path(d) / "v.json"), str(Path(d) / "m.txt"), model_max_length=16)
    cfg = CLIPConfig(text_config={"vocab_size": len(vocab), "hidden_size": 16, "intermediate_size": 32,
                                  "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 16},
                     vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                                    "num_attention_heads": 2, "image_size": 8, "patch_size": 4},
                     projection_dim=8)
    clip = CLIPModel(cfg).eval()
    proc = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 8}, crop_size={"height": 8,
                                                                                                  "width": 8}),
                         tokenizer=tok)

    def model(prompts, *, generators):
        return torch.stack([torch.rand(3, 8, 8, generator=g) for g in generators])

    prompts = ["a cat", "a red car", "dog"]
    out = erasus.get_metric("clip_score", clip_model=clip, processor=proc, seeds=(2,)).compute(model, prompts)
    images = generate_images(model, prompts, seed=2)
    inputs = proc(text=prompts, images=[im.permute(1, 2, 0).numpy() for im in images], return_tensors="pt",
                  padding=True, do_rescale=False)
    with torch.no_grad():
        logits = clip(**inputs).logits_per_image.double() / clip.logit_scale.exp().double()
    want = float((100 * torch.diagonal(logits)).clamp_min(0).mean())
    assert out["clip_score"] == pytest.approx(want, rel=1e-5)


def test_generate_images_through_the_erasus_wrapper_seeds_each_image_and_matches_its_sampler():
    from erasus.models import StableDiffusionWrapper
    from erasus.models.diffusion import tiny_components

    w = StableDiffusionWrapper(tiny_components(pixel_space=True, image_channels=1, sample_size=8)).eval()
    kw = {"num_inference_steps": 2, "guidance_scale": 2.0}
    prompts = ["a cat", "a dog", "a cat"]
    whole = generate_images(w, prompts, seed=5, **kw)
    torch.testing.assert_close(whole, generate_images(w, prompts, seed=5, batch_size=2, **kw))
    assert whole.shape == (3, 1, 8, 8) and 0.0 <= float(whole.min()) and float(whole.max()) <= 1.0
    # image 1 by hand: its own seeded noise through the wrapper's sampler, then decode
    noise = torch.randn(w.latent_shape, generator=torch.Generator().manual_seed(5 * 1_000_003 + 1))[None]
    with torch.no_grad():
        z, _ = w.sample(["a dog"], latents=noise, **kw)
    torch.testing.assert_close(whole[1:2], w.decode(z).float())
