"""Feed-forward variants and the two model families of the built-in zoo.

The gated FFN follows LLaMA's naming: down_proj(act(gate_proj(x)) * up_proj(x)). Gated variants
use two thirds of the ungated hidden width, so that SwiGLU and ReLU have the same parameter count
(Shazeer 2020, "GLU Variants Improve Transformer"). All projections are bias-free for that reason.
Models take images in [0, 1] and normalise inside (the torchattacks contract) and return logits.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# name -> (gated?, activation). Users may add variants with `register_ffn`.
FFN_VARIANTS: dict[str, tuple[bool, Callable[[torch.Tensor], torch.Tensor]]] = {
    "swiglu": (True, F.silu),
    "geglu": (True, F.gelu),
    "reglu": (True, F.relu),
    "gelu": (False, F.gelu),
    "relu": (False, F.relu),
}


def register_ffn(name: str, gated: bool, activation: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Add a feed-forward variant that the zoo can then name in `variants`."""
    if name in FFN_VARIANTS:
        raise ValueError(f"FFN variant {name!r} already exists; pick another name")
    FFN_VARIANTS[name] = (gated, activation)


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """The reference SwiGLU op: silu(gate) * up, elementwise."""
    return F.silu(gate) * up


@dataclass(frozen=True)
class ModelConfig:
    family: str = "mlp"  # "mlp" (residual MLP classifier) or "vit" (small vision transformer)
    ffn: str = "swiglu"  # a key of FFN_VARIANTS
    input_shape: tuple[int, ...] = (1, 8, 8)  # (C, H, W) of one input image
    n_classes: int = 10
    d_model: int = 64  # residual stream width
    ffn_hidden: int = 192  # hidden width of an ungated FFN; gated ones use 2/3 of it
    n_layers: int = 2  # residual blocks
    patch_size: int = 2  # vit only: side of a square patch
    n_heads: int = 4  # vit only
    pixel_mean: float = 0.5  # normalisation applied inside the model
    pixel_std: float = 0.5


class FeedForward(nn.Module):
    """An ungated (act(up(x))) or gated (act(gate(x)) * up(x)) FFN, projected back down."""

    def __init__(self, d_model: int, ffn_hidden: int, variant: str):
        super().__init__()
        if variant not in FFN_VARIANTS:
            raise ValueError(f"unknown FFN variant {variant!r}; known: {sorted(FFN_VARIANTS)}")
        self.variant = variant
        self.gated, self.act = FFN_VARIANTS[variant]
        hidden = round(ffn_hidden * 2 / 3) if self.gated else ffn_hidden
        self.gate_proj = nn.Linear(d_model, hidden, bias=False) if self.gated else None
        self.up_proj = nn.Linear(d_model, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (..., d_model)
        up = self.up_proj(x)  # (..., hidden)
        h = self.act(self.gate_proj(x)) * up if self.gated else self.act(up)
        return self.down_proj(h)  # (..., d_model)


class _Normalise(nn.Module):
    def __init__(self, mean: float, std: float):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ResidualMLP(nn.Module):
    """Flatten -> embed -> n_layers x (x + FFN(LN(x))) -> LN -> head."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.normalise = _Normalise(cfg.pixel_mean, cfg.pixel_std)
        self.embed = nn.Linear(math.prod(cfg.input_shape), cfg.d_model)
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.d_model) for _ in range(cfg.n_layers))
        self.ffns = nn.ModuleList(FeedForward(cfg.d_model, cfg.ffn_hidden, cfg.ffn)
                                  for _ in range(cfg.n_layers))
        self.final_norm = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.n_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C, H, W) in [0, 1]
        h = self.embed(self.normalise(x).flatten(1))  # (B, d_model)
        for norm, ffn in zip(self.norms, self.ffns):
            h = h + ffn(norm(h))
        return self.final_norm(h)  # (B, d_model): penultimate features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))  # (B, n_classes) logits


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.ln_1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln_2 = nn.LayerNorm(cfg.d_model)
        self.ffn = FeedForward(cfg.d_model, cfg.ffn_hidden, cfg.ffn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, T, d_model)
        B, T, D = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(D, dim=2)
        q, k, v = (t.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2) for t in (q, k, v))
        att = F.scaled_dot_product_attention(q, k, v)  # (B, heads, T, D/heads)
        x = x + self.proj(att.transpose(1, 2).reshape(B, T, D))
        return x + self.ffn(self.ln_2(x))


class VisionTransformer(nn.Module):
    """Patchify -> + position embedding -> blocks -> LN -> mean-pool -> head."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        channels, height, width = cfg.input_shape
        if height % cfg.patch_size or width % cfg.patch_size:
            raise ValueError(f"patch_size {cfg.patch_size} must divide the image size {height}x{width}")
        if cfg.d_model % cfg.n_heads:
            raise ValueError(f"d_model {cfg.d_model} must be divisible by n_heads {cfg.n_heads}")
        self.cfg = cfg
        n_patches = (height // cfg.patch_size) * (width // cfg.patch_size)
        self.normalise = _Normalise(cfg.pixel_mean, cfg.pixel_std)
        self.patch_embed = nn.Conv2d(channels, cfg.d_model, cfg.patch_size, stride=cfg.patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, n_patches, cfg.d_model))
        nn.init.normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.final_norm = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.n_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C, H, W) in [0, 1]
        h = self.patch_embed(self.normalise(x))  # (B, d_model, H/p, W/p)
        h = h.flatten(2).transpose(1, 2) + self.pos_embed  # (B, T, d_model)
        for block in self.blocks:
            h = block(h)
        return self.final_norm(h).mean(dim=1)  # (B, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))  # (B, n_classes) logits


FAMILIES = {"mlp": ResidualMLP, "vit": VisionTransformer}

def build_model(cfg: ModelConfig) -> nn.Module:
    if cfg.family not in FAMILIES:
        raise ValueError(f"unknown model family {cfg.family!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[cfg.family](cfg)


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Eval mode for the block, then the model's own mode again (the torchattacks contract)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
