"""The fMRI encoder: UMBRAE's BrainXS / BrainX, checked against a literal transcription of UMBRAE's forward pass."""

from __future__ import annotations

import pytest
import torch

from brainot.model.encoder import BrainX, build_encoder, count_parameters, model_spec

SIZES = dict(latents=5, hidden=24, out_dim=12, depth=2, heads=3, head_dim=4)


def umbrae_input_layers(x, lin1, lin2):
    """UMBRAE's BrainXS.forward before the perceiver: per-voxel Linear(1, L), transpose, Linear(V, H)."""
    x = x.unsqueeze(1).transpose(1, 2)      # (B, V, 1)
    x = lin1(x)                             # (B, V, L)
    return lin2(x.transpose(1, 2))          # (B, L, H)


def umbrae_attention(attn, x, latents):
    """UMBRAE's PerceiverAttention.forward (flamingo-pytorch), written with explicit softmax."""
    x = attn.norm_media(x)
    latents = attn.norm_latents(latents)
    h = attn.heads
    q = attn.to_q(latents)
    k, v = attn.to_kv(torch.cat((x, latents), dim=-2)).chunk(2, dim=-1)
    q, k, v = (t.reshape(t.shape[0], t.shape[1], h, -1).transpose(1, 2) for t in (q, k, v))
    q = q * attn.head_dim ** -0.5
    sim = torch.einsum("bhid,bhjd->bhij", q, k)
    sim = sim - sim.amax(dim=-1, keepdim=True).detach()
    out = torch.einsum("bhij,bhjd->bhid", sim.softmax(dim=-1), v)
    return attn.to_out(out.transpose(1, 2).reshape(out.shape[0], -1, h * attn.head_dim))


def umbrae_forward(model: BrainX, x, subject):
    embed = model.embed[subject]
    tokens = model.ln_vision(umbrae_input_layers(x, embed.lin1, embed.lin2))
    res = model.perceiver
    tokens = tokens + res.media_pos_emb
    latents = res.latents.expand(x.shape[0], -1, -1)
    for attn, ff in res.layers:
        latents = umbrae_attention(attn, tokens, latents) + latents
        latents = ff(latents) + latents
    return model.proj(res.norm(latents))


def test_whole_forward_matches_umbrae_transcription():
    torch.manual_seed(0)
    model = BrainX({"subj01": 37}, **SIZES).double()
    x = torch.randn(6, 37, dtype=torch.float64)
    out = model(x, "subj01")
    assert out.shape == (6, SIZES["latents"], SIZES["out_dim"])
    torch.testing.assert_close(out, umbrae_forward(model, x, "subj01"), rtol=1e-10, atol=1e-10)


def test_closed_form_input_layers_equal_per_voxel_linear():
    torch.manual_seed(1)
    model = BrainX({"subj01": 53}, **SIZES).double()
    embed = model.embed["subj01"]
    with torch.no_grad():  # non-zero biases everywhere, so every term of the closed form is exercised
        embed.lin1.bias.normal_()
        embed.lin2.bias.normal_()
    x = torch.randn(4, 53, dtype=torch.float64)
    torch.testing.assert_close(embed(x), umbrae_input_layers(x, embed.lin1, embed.lin2), rtol=1e-10, atol=1e-10)


def test_cross_subject_model_has_own_input_layers_and_shared_rest():
    torch.manual_seed(2)
    model = BrainX({"subj01": 30, "subj02": 22}, **SIZES)
    a = model(torch.randn(3, 30), "subj01")
    b = model(torch.randn(3, 22), "subj02")
    assert a.shape == b.shape == (3, SIZES["latents"], SIZES["out_dim"])
    assert model.embed["subj01"].lin2.in_features == 30 and model.embed["subj02"].lin2.in_features == 22

    # A subject-2 step touches subject 2's input layers and the shared part, never subject 1's.
    model.zero_grad()
    model(torch.randn(3, 22), "subj02").square().mean().backward()
    assert all(p.grad is None for p in model.embed["subj01"].parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.embed["subj02"].parameters())
    assert model.perceiver.latents.grad.abs().sum() > 0 and model.proj.weight.grad.abs().sum() > 0


def test_unknown_subject_is_named():
    model = BrainX({"subj01": 10}, **SIZES)
    with pytest.raises(KeyError, match=r"subj05.*subj01"):
        model(torch.randn(2, 10), "subj05")


def test_model_spec_checks_latents_against_embedding_tokens():
    enc = {"hidden": 24, "latents": 5, "depth": 2, "heads": 3, "head_dim": 4}
    with pytest.raises(ValueError, match=r"latents = 5.*T = 7"):
        model_spec(enc, {"subj01": 10}, n_tokens=7, dim=12)
    spec = model_spec(enc, {"subj01": 10, "subj02": 11}, n_tokens=5, dim=12)
    assert spec["kind"] == "BrainX" and spec["out_dim"] == 12
    assert model_spec(enc, {"subj01": 10}, n_tokens=5, dim=12)["kind"] == "BrainXS"


def test_rebuilt_model_loads_weights_and_predicts_the_same():
    torch.manual_seed(3)
    enc = {"hidden": 24, "latents": 5, "depth": 2, "heads": 3, "head_dim": 4}
    spec = model_spec(enc, {"subj01": 10}, n_tokens=5, dim=12)
    model = build_encoder(spec)
    twin = build_encoder(spec)
    x = torch.randn(4, 10)
    assert not torch.equal(model(x, "subj01"), twin(x, "subj01"))
    twin.load_state_dict(model.state_dict())
    assert torch.equal(model(x, "subj01"), twin(x, "subj01"))


def test_parameter_count_at_paper_sizes():
    """subj01's 15724 nsdgeneral voxels, the paper's sizes: every parameter counted from the architecture."""
    V, L, H, D, depth, heads, hd = 15724, 256, 1024, 1024, 6, 16, 96
    with torch.device("meta"):
        model = BrainX({"subj01": V}, latents=L, hidden=H, out_dim=D, depth=depth, heads=heads, head_dim=hd)
    inner = heads * hd
    per_block = 2 * 2 * H + H * inner + H * 2 * inner + inner * H + 2 * H + 2 * 4 * H * H
    subject = 2 * L + V * H + H
    expected = subject + 2 * H + L * H + H + depth * per_block + 2 * H + H * D + D
    counts = count_parameters(model)
    assert counts == {"total": expected, "input": subject, "shared": expected - subject}
    assert 100e6 < counts["total"] < 110e6   # UMBRAE's BrainXS for subj01: about 105 M
