"""The fMRI encoder: voxels of a region set -> a sequence of image-like tokens (UMBRAE's BrainX / BrainXS).

Architecture (UMBRAE, Xia et al. 2024, ``umbrae/model.py`` and ``perceiver.py``; used unchanged by the
OT-alignment paper's code):

1. subject-specific input layers: ``Linear(1 -> L)`` applied to every voxel, ``(B, V) -> (B, V, L)``, transpose,
   ``Linear(V -> H)`` -> ``(B, L, H)``;
2. a shared Perceiver resampler (Flamingo style, Alayrac et al. 2022): ``LayerNorm``, a learned media position
   embedding, ``L`` learned latent queries, ``depth`` blocks of cross-attention (keys/values = the input tokens
   concatenated with the latents) + feed-forward (x4, GELU), each residual, then a final ``LayerNorm``;
3. a shared ``Linear(H -> D)`` head.

With one subject this is UMBRAE's BrainXS (single-subject model); with several it is BrainX (cross-subject:
one pair of input layers per subject, everything after them shared). ``L`` is the number of image tokens
``T`` and ``D`` their width.

The input layers are computed in closed form. Writing ``w1, b1`` for ``Linear(1 -> L)`` and ``W2, b2`` for
``Linear(V -> H)``:

    out[b, l, h] = sum_v W2[h, v] (x[b, v] w1[l] + b1[l]) + b2[h] = w1[l] (W2 x_b)[h] + b1[l] (W2 1)[h] + b2[h]

so the ``(B, V, L)`` intermediate (1 GiB in float32 for B = 64 at NSD sizes) and its ``B L V H`` multiply-adds
are never formed; the parameters (and so the state dict) are exactly UMBRAE's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FF_MULT = 4  # UMBRAE's (and Flamingo's) feed-forward expansion


class VoxelTokens(nn.Module):
    """Subject-specific input layers: ``(B, V)`` voxels -> ``(B, L, H)`` tokens (see the module docstring)."""

    def __init__(self, n_voxels: int, latents: int, hidden: int):
        super().__init__()
        if n_voxels < 1:
            raise ValueError(f"a subject needs at least one voxel, got n_voxels={n_voxels}")
        self.lin1 = nn.Linear(1, latents)
        self.lin2 = nn.Linear(n_voxels, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        projected = F.linear(x, self.lin2.weight)                         # (B, H) = W2 x
        offset = self.lin2.weight.sum(dim=1)                              # (H,) = W2 1
        w1, b1 = self.lin1.weight[:, 0], self.lin1.bias                   # (L,)
        return (w1[None, :, None] * projected[:, None, :]
                + (b1[:, None] * offset[None, :] + self.lin2.bias[None, :])[None])


class PerceiverAttention(nn.Module):
    """Latents attend to ``[inputs; latents]`` (Flamingo's variant of Perceiver cross-attention)."""

    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        inner = heads * head_dim
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        return t.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)   # (B, heads, n, head_dim)

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        x = self.norm_media(x)
        latents = self.norm_latents(latents)
        q = self.to_q(latents)
        k, v = self.to_kv(torch.cat([x, latents], dim=1)).chunk(2, dim=-1)
        out = F.scaled_dot_product_attention(self._split(q), self._split(k), self._split(v))
        return self.to_out(out.transpose(1, 2).flatten(2))


def feed_forward(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, FF_MULT * dim, bias=False), nn.GELU(),
                         nn.Linear(FF_MULT * dim, dim, bias=False))


class PerceiverResampler(nn.Module):
    """``(B, n, H)`` tokens -> ``(B, L, H)``: ``depth`` residual (cross-attention, feed-forward) blocks."""

    def __init__(self, dim: int, latents: int, depth: int, heads: int, head_dim: int):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(latents, dim))
        self.media_pos_emb = nn.Parameter(torch.randn(1, dim))
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(dim, heads, head_dim), feed_forward(dim)]) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.media_pos_emb
        latents = self.latents.expand(x.shape[0], -1, -1)
        for attn, ff in self.layers:
            latents = attn(x, latents) + latents
            latents = ff(latents) + latents
        return self.norm(latents)


class BrainX(nn.Module):
    """Voxels of one subject -> ``(B, latents, out_dim)`` tokens.

    ``n_voxels`` maps each subject name (``'subj01'``) to its voxel count ``V``. One subject = UMBRAE's BrainXS,
    several = BrainX (subject-specific :class:`VoxelTokens`, shared resampler and head).
    """

    def __init__(self, n_voxels: dict[str, int], latents: int, hidden: int, out_dim: int, depth: int,
                 heads: int, head_dim: int):
        super().__init__()
        if not n_voxels:
            raise ValueError("BrainX needs at least one subject")
        self.subjects = list(n_voxels)
        self.embed = nn.ModuleDict({s: VoxelTokens(v, latents, hidden) for s, v in n_voxels.items()})
        self.ln_vision = nn.LayerNorm(hidden)
        self.perceiver = PerceiverResampler(hidden, latents, depth, heads, head_dim)
        self.proj = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor, subject: str) -> torch.Tensor:
        """``x`` (B, V_subject) -> (B, latents, out_dim)."""
        if subject not in self.embed:
            raise KeyError(f"subject {subject!r} is not one this encoder was built for ({', '.join(self.subjects)})")
        tokens = self.embed[subject](x)
        return self.proj(self.perceiver(self.ln_vision(tokens)))


def build_encoder(spec: dict) -> BrainX:
    """The encoder described by the ``model`` section of a run's ``config.json`` (see :func:`model_spec`)."""
    return BrainX(n_voxels=dict(spec["n_voxels"]), latents=spec["latents"], hidden=spec["hidden"],
                  out_dim=spec["out_dim"], depth=spec["depth"], heads=spec["heads"], head_dim=spec["head_dim"])


def model_spec(encoder_cfg: dict, n_voxels: dict[str, int], n_tokens: int, dim: int) -> dict:
    """Everything :func:`build_encoder` needs: config ``encoder:`` sizes, voxels per subject, token shape."""
    if encoder_cfg["latents"] != n_tokens:
        raise ValueError(f"encoder.latents = {encoder_cfg['latents']} but the image embeddings have "
                         f"T = {n_tokens} tokens per image; the encoder must output one token per image token")
    return {
        "kind": "BrainXS" if len(n_voxels) == 1 else "BrainX",
        "n_voxels": dict(n_voxels),
        "latents": encoder_cfg["latents"],
        "hidden": encoder_cfg["hidden"],
        "out_dim": dim,
        "depth": encoder_cfg["depth"],
        "heads": encoder_cfg["heads"],
        "head_dim": encoder_cfg["head_dim"],
    }


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Trainable parameters: ``total``, ``input`` (the subject-specific layers) and ``shared``."""
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    subject = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and n.startswith("embed."))
    return {"total": total, "input": subject, "shared": total - subject}
