import pytest
import torch
import torch.nn.functional as F

from swiglu_audit.training.nn import FFN_VARIANTS, FeedForward, ModelConfig, build_model, count_parameters, register_ffn, swiglu
from swiglu_audit.training.specs import load_zoo_table

ZOO = load_zoo_table()


@pytest.mark.parametrize("family", ["mlp", "vit"])
def test_variants_have_matched_parameter_counts(family):
    counts = {v: count_parameters(build_model(ModelConfig(family=family, ffn=v, **ZOO["families"][family])))
              for v in ("swiglu", "geglu", "reglu", "gelu", "relu")}
    assert len(set(counts.values())) == 1, counts


def test_gated_ffn_uses_two_thirds_hidden_width_and_llama_names():
    gated, plain = FeedForward(64, 192, "swiglu"), FeedForward(64, 192, "relu")
    assert gated.gate_proj.out_features == gated.up_proj.out_features == 128
    assert plain.gate_proj is None and plain.up_proj.out_features == 192
    assert gated.down_proj.in_features == 128


def test_swiglu_ffn_computes_silu_gate_times_up():
    ffn = FeedForward(8, 12, "swiglu")
    x = torch.randn(5, 8)
    expected = ffn.down_proj(F.silu(ffn.gate_proj(x)) * ffn.up_proj(x))
    torch.testing.assert_close(ffn(x), expected)
    torch.testing.assert_close(swiglu(x, x), F.silu(x) * x)


@pytest.mark.parametrize("family", ["mlp", "vit"])
def test_models_map_images_to_logits(family):
    model = build_model(ModelConfig(family=family, ffn="swiglu", **ZOO["families"][family]))
    out = model(torch.rand(3, 1, 8, 8))
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    assert model.forward_features(torch.rand(3, 1, 8, 8)).ndim == 2
    assert sum(isinstance(m, FeedForward) for m in model.modules()) == ZOO["families"][family]["n_layers"]


def test_register_ffn_adds_a_variant_and_refuses_duplicates():
    name = "test-squared-relu"
    register_ffn(name, False, lambda t: F.relu(t) ** 2)
    try:
        assert FeedForward(4, 6, name)(torch.ones(1, 4)).shape == (1, 4)
        with pytest.raises(ValueError, match="already exists"):
            register_ffn(name, False, F.relu)
    finally:
        FFN_VARIANTS.pop(name)


def test_vit_rejects_patch_size_that_does_not_divide_the_image():
    with pytest.raises(ValueError, match="patch_size"):
        build_model(ModelConfig(family="vit", patch_size=3, d_model=48, n_heads=4))
