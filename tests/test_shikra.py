"""The Shikra format: prompt, image-token splice, batched greedy generation, projector loading, delta weights.

Models here are tiny random LLaMAs built and saved by path (no hub); their tokenizer is the demo's word-level one.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

from brainot.caption import shikra
from brainot_demo import captioner as demo_captioner

PROMPT = "Describe this image <image> as simply as possible."
T, D = 5, 12
WORDS = "a man woman child on the beach in kitchen forest street with red blue ball kite sign"


def tiny_tokenizer():
    return demo_captioner.build_tokenizer([shikra.conversation(PROMPT), "a short answer .", WORDS])


def tiny_model(tokenizer, hidden=32, seed=0, vocab=None):
    torch.manual_seed(seed)
    # a wide initialisation so greedy decoding has clear winners (no near-ties between batched and single runs)
    config = LlamaConfig(vocab_size=vocab or len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                         initializer_range=0.2, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(config).eval(), torch.nn.Linear(D, hidden)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("shikra-tiny")
    tokenizer = tiny_tokenizer()
    model, projector = tiny_model(tokenizer)
    shikra.save(model, tokenizer, projector, out)
    return out


@pytest.fixture(scope="module")
def captioner(model_dir):
    return shikra.load(model_dir, device="cpu")


def image_tokens(n, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, T, D)).astype(np.float32))


# --------------------------------------------------------------------------------------------- prompt
def umbrae_input_text(prompt: str, n_tokens: int) -> str:
    """UMBRAE's inference.py, its prompt construction verbatim (with 256 -> n_tokens)."""
    system = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
              "helpful, detailed, and polite answers to the user's questions. USER:")
    user_image = " <im_start>" + "<im_patch>" * n_tokens + "<im_end> "
    if '<image>' in prompt:
        user_prompt = prompt.replace('<image>', user_image)
    else:
        user_prompt = prompt + user_image
    return system + user_prompt + " ASSISTANT:"


def test_conversation_is_umbrae_text_with_image_expanded():
    text = shikra.expand_image(shikra.conversation(PROMPT), 3)
    assert text == umbrae_input_text(PROMPT, 3)
    assert text == ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
                    "helpful, detailed, and polite answers to the user's questions. USER:Describe this image  "
                    "<im_start><im_patch><im_patch><im_patch><im_end>  as simply as possible. ASSISTANT:")
    for bad in ("no image here", "<image> and <image>"):
        with pytest.raises(shikra.ShikraFormatError, match="exactly once"):
            shikra.expand_image(bad, 3)


def test_prompt_ids_hold_T_patch_tokens_between_start_and_end(captioner):
    tok = captioner.tokenizer
    ids = shikra.prompt_ids(tok, PROMPT, T)
    patch, start, end = (tok.convert_tokens_to_ids(t) for t in (shikra.IM_PATCH, shikra.IM_START, shikra.IM_END))
    assert ids[0] == tok.bos_token_id
    assert ids.count(patch) == T and ids.count(start) == 1 and ids.count(end) == 1
    s = ids.index(start)
    assert ids[s + 1:s + 1 + T] == [patch] * T and ids[s + 1 + T] == end
    text = tok.decode(ids[1:s])
    assert text.startswith("a chat between a curious user") and text.endswith("questions. user : describe this image")
    assert tok.decode(ids[s + T + 2:]) == "as simply as possible. assistant :"


def test_tokenizer_without_image_tokens_gets_them_added_and_splits_fail_loudly(tmp_path):
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", "<", ">", "im_patch", "im_start", "im_end", "x"])}
    raw = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    plain = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", eos_token="</s>", bos_token="<s>")
    with pytest.raises(shikra.ShikraFormatError, match="single tokens"):
        shikra.prompt_ids(plain, "x <image> x", 2)   # "<im_patch>" split into "<", "im_patch", ">"
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2))
    shikra.prepare_tokenizer(plain, model)
    assert plain.pad_token == "<unk>" and plain.padding_side == "left"   # Shikra v1: pad = unk
    assert model.get_input_embeddings().num_embeddings == len(vocab) + 3
    ids = shikra.prompt_ids(plain, "x <image> x", 2)
    assert ids.count(plain.convert_tokens_to_ids(shikra.IM_PATCH)) == 2


# ------------------------------------------------------------------------------------------- splice
def test_image_tokens_replace_the_patch_embeddings(captioner):
    x = image_tokens(2)
    embeds, mask = shikra.build_inputs(captioner, x, PROMPT)
    ids = torch.tensor([shikra.prompt_ids(captioner.tokenizer, PROMPT, T)] * 2)
    is_patch = ids == captioner.special_id(shikra.IM_PATCH)
    with torch.no_grad():
        plain = captioner.model.get_input_embeddings()(ids)
        projected = captioner.projector(x)
    assert torch.equal(embeds[is_patch].view(2, T, -1), projected)
    assert torch.equal(embeds[~is_patch], plain[~is_patch])
    assert mask.all()


def _last_logits(captioner, x):
    embeds, mask = shikra.build_inputs(captioner, x, PROMPT)
    with torch.no_grad():
        return captioner.model(inputs_embeds=embeds, attention_mask=mask).logits[:, -1]


def test_logits_depend_on_the_image_tokens_and_on_the_projector(model_dir):
    captioner = shikra.load(model_dir, device="cpu")
    x = image_tokens(1)
    base = _last_logits(captioner, x)
    assert torch.equal(base, _last_logits(captioner, x.clone()))
    other = x.clone()
    other[0, 2] += 1.0   # one token changed
    assert (base - _last_logits(captioner, other)).abs().max() > 1e-3
    with torch.no_grad():
        captioner.projector.weight.mul_(1.5)
    assert (base - _last_logits(captioner, x)).abs().max() > 1e-3


def test_token_width_mismatch_is_a_clear_error(captioner):
    with pytest.raises(shikra.ShikraFormatError, match=f"width {D + 1}.*takes {D}"):
        shikra.build_inputs(captioner, torch.zeros(1, T, D + 1), PROMPT)


# --------------------------------------------------------------------------------------- generation
def test_batched_generation_with_left_padding_equals_one_at_a_time(captioner):
    x = image_tokens(6, seed=1)
    # two prompts of different lengths in one batch, so the shorter ones really are left-padded
    prompts = [PROMPT, "Describe <image> ."] * 3
    embeds, mask = shikra.build_inputs(captioner, x, prompts)
    assert (mask == 0).any(dim=1).tolist() == [False, True] * 3
    assert (mask[1] == 0).nonzero().max() < (mask[1] == 1).nonzero().min()   # padding on the left
    batched = shikra.generate(captioner, x, prompts, 8, "none")
    single = [shikra.generate(captioner, x[i:i + 1], prompts[i], 8, "none")[0] for i in range(6)]
    assert batched == single
    assert len(set(batched)) > 1 and all(batched)
    assert shikra.caption(captioner, x.numpy(), PROMPT, 8, 4, "none", progress=False) == \
        [shikra.generate(captioner, x[i:i + 1], PROMPT, 8, "none")[0] for i in range(6)]


def test_generate_returns_only_new_tokens(captioner):
    x = image_tokens(2)
    embeds, mask = shikra.build_inputs(captioner, x, PROMPT)
    out = captioner.model.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=4, min_new_tokens=4,
                                   do_sample=False, pad_token_id=captioner.tokenizer.pad_token_id)
    assert out.shape == (2, 4)


# ------------------------------------------------------------------------------------------ loading
def _projector_state(projector, prefix=shikra.PROJECTOR_PREFIX):
    return {prefix + "weight": projector.weight.detach().clone(), prefix + "bias": projector.bias.detach().clone()}


def test_projector_is_read_from_the_checkpoint_prefix(model_dir):
    from safetensors import safe_open

    with safe_open(str(model_dir / "model.safetensors"), "pt") as fh:
        assert {shikra.PROJECTOR_PREFIX + "weight", shikra.PROJECTOR_PREFIX + "bias"} <= set(fh.keys())
        weight = fh.get_tensor(shikra.PROJECTOR_PREFIX + "weight")
    projector, source = shikra.load_projector(model_dir, hidden_size=32)
    assert torch.equal(projector.weight, weight) and "model.mm_projector" in source
    assert json.loads((model_dir / "config.json").read_text())["mm_hidden_size"] == D


def test_projector_is_found_through_a_sharded_index(tmp_path):
    tok = tiny_tokenizer()
    model, projector = tiny_model(tok, seed=3)
    state = dict(model.state_dict()) | _projector_state(projector)
    model.save_pretrained(tmp_path, state_dict=state, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    loaded, _ = shikra.load_projector(tmp_path, hidden_size=32)
    assert torch.equal(loaded.weight, projector.weight) and torch.equal(loaded.bias, projector.bias)


@pytest.mark.parametrize("filename", ["mm_projector.bin", "mm_projector.safetensors"])
def test_projector_is_read_from_a_separate_file(tmp_path, filename):
    tok = tiny_tokenizer()
    model, projector = tiny_model(tok, seed=4)
    model.save_pretrained(tmp_path)   # a plain LLaMA checkpoint, no projector inside
    tok.save_pretrained(tmp_path)
    with pytest.raises(shikra.ShikraFormatError, match="no mm_projector found"):
        shikra.load_projector(tmp_path, hidden_size=32)
    state = _projector_state(projector)
    if filename.endswith(".bin"):
        torch.save(state, tmp_path / filename)
    else:
        save_file(state, str(tmp_path / filename))
    captioner = shikra.load(tmp_path, device="cpu")
    assert torch.equal(captioner.projector.weight, projector.weight)
    with pytest.raises(shikra.ShikraFormatError, match="expected \\(hidden_size=64"):
        shikra.load_projector(tmp_path, hidden_size=64)


def test_missing_model_directory_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        shikra.load(tmp_path / "shikra-7b", device="cpu")


# -------------------------------------------------------------------------------------------- delta
def test_apply_delta_rebuilds_the_shikra_weights(tmp_path):
    """Base LLaMA (vocab V) + delta (vocab V + 3 image tokens, projector) = the target, as Shikra's script does."""
    tok = tiny_tokenizer()
    n_base = len(tok) - 3
    target, projector = tiny_model(tok, seed=5)
    base, _ = tiny_model(tok, seed=6, vocab=n_base)
    delta, _ = tiny_model(tok, seed=5)
    with torch.no_grad():
        base_state = base.state_dict()
        for name, param in delta.state_dict().items():
            param[:base_state[name].shape[0]] -= base_state[name]
    base.save_pretrained(tmp_path / "llama")
    shikra.save(delta, tok, projector, tmp_path / "delta")
    assert shikra.main(["apply-delta", "--base", str(tmp_path / "llama"), "--delta", str(tmp_path / "delta"),
                        "--target", str(tmp_path / "shikra")]) == 0
    rebuilt = shikra.load(tmp_path / "shikra", device="cpu")
    # fp16 storage, as the real 7B
    for name, param in target.state_dict().items():
        torch.testing.assert_close(rebuilt.model.state_dict()[name].float(), param, atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(rebuilt.projector.weight.float(), projector.weight, atol=1e-3, rtol=1e-3)
    # a base with another hidden size is not this model's base
    other, _ = tiny_model(tok, hidden=16, vocab=n_base)
    other.save_pretrained(tmp_path / "wrong")
    with pytest.raises(shikra.ShikraFormatError, match="does not extend base"):
        shikra.apply_delta(tmp_path / "wrong", tmp_path / "delta", tmp_path / "bad")


# ------------------------------------------------------------------------ the published formats
# Shikra-7B is published with LLaMA's tokenizer as a SentencePiece tokenizer.model (no tokenizer.json), the three
# image tokens in added_tokens.json after LLaMA's vocabulary, and a config.json of model_type "shikra". The
# fixtures below write those files offline: a small BPE SentencePiece model with LLaMA's trainer settings.
SP_TEXT = [shikra.SYSTEM, "Describe this image as simply as possible. ASSISTANT:",
           "a man riding a wave on top of a surfboard.", "two dogs playing with a red ball in the grass",
           "a kitchen with a stove and a sink [0.12,0.30,0.56,0.91]", "a street sign on a pole near buildings"]


def write_sentencepiece(out, image_tokens=True):
    """A LLaMA-style tokenizer directory as published: tokenizer.model (+ added_tokens.json), no tokenizer.json."""
    import io

    import sentencepiece as spm

    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    # LLaMA's settings: BPE, byte fallback, unk/bos/eos = 0/1/2, no pad, a word-boundary prefix, no normalisation
    spm.SentencePieceTrainer.train(sentence_iterator=iter(SP_TEXT * 20), model_writer=buf, vocab_size=400,
                                   model_type="bpe", byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
                                   add_dummy_prefix=True, remove_extra_whitespaces=False,
                                   normalization_rule_name="identity", split_digits=True, minloglevel=2)
    (out / "tokenizer.model").write_bytes(buf.getvalue())
    n = spm.SentencePieceProcessor(model_proto=buf.getvalue()).get_piece_size()
    if image_tokens:
        (out / "added_tokens.json").write_text(json.dumps({"<im_patch>": n, "<im_start>": n + 1, "<im_end>": n + 2}))
    (out / "special_tokens_map.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>",
                                                             "unk_token": "<unk>"}))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>",
        "eos_token": "</s>", "unk_token": "<unk>", "model_max_length": 2048, "clean_up_tokenization_spaces": False}))
    return n


def write_published_shikra(out, model, projector):
    """A Shikra checkpoint directory as published: config of model_type shikra, mm_projector inside the weights."""
    state = dict(model.state_dict()) | _projector_state(projector)
    model.save_pretrained(out, state_dict=state)
    config = json.loads((out / "config.json").read_text())
    config.update(model_type="shikra", architectures=["ShikraLlamaForCausalLM"], use_mm_proj=True,
                  mm_hidden_size=projector.in_features, mm_use_im_start_end=True,
                  mm_vision_tower="openai/clip-vit-large-patch14")
    (out / "config.json").write_text(json.dumps(config))


def sp_tiny_model(n_vocab, hidden=32, seed=0):
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=n_vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, initializer_range=0.2, bos_token_id=1,
                         eos_token_id=2, pad_token_id=0)
    return LlamaForCausalLM(config).eval(), torch.nn.Linear(D, hidden)


@pytest.fixture(scope="module")
def published_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("shikra-published")
    n = write_sentencepiece(out)
    model, projector = sp_tiny_model(n + 3)
    write_published_shikra(out, model, projector)
    return out


def test_published_sentencepiece_shikra_loads(published_dir):
    import sentencepiece as spm

    assert not (published_dir / "tokenizer.json").exists()
    assert json.loads((published_dir / "config.json").read_text())["model_type"] == "shikra"
    captioner = shikra.load(published_dir, device="cpu")
    tok = captioner.tokenizer
    n = spm.SentencePieceProcessor(model_file=str(published_dir / "tokenizer.model")).get_piece_size()
    # the image tokens keep their published ids after the SentencePiece vocabulary; no embedding was added
    assert [tok.convert_tokens_to_ids(t) for t in (shikra.IM_PATCH, shikra.IM_START, shikra.IM_END)] == \
        [n, n + 1, n + 2]
    assert captioner.model.get_input_embeddings().num_embeddings == n + 3 == len(tok)
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 2, 0)   # pad = unk, Shikra v1
    assert captioner.projector.in_features == D


@pytest.mark.parametrize("prompt", [PROMPT, "Describe <image>", "<image> What is in the image?"])
def test_prompt_ids_equal_umbrae_on_a_sentencepiece_tokenizer(published_dir, prompt):
    """UMBRAE tokenizes its text with Shikra's slow LlamaTokenizer (transformers 4.28): the text is split at the
    added image tokens, the neighbouring text loses its whitespace on that side, each piece is SentencePiece-encoded
    on its own, BOS first. The reference here is the sentencepiece library itself on UMBRAE's string."""
    import re

    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(published_dir / "tokenizer.model"))
    n = sp.get_piece_size()
    ids_of = {shikra.IM_PATCH: n, shikra.IM_START: n + 1, shikra.IM_END: n + 2}
    text = umbrae_input_text(prompt, T)
    before, rest = text.split(shikra.IM_START, 1)
    after = rest.split(shikra.IM_END, 1)[1]
    assert re.fullmatch(f"({re.escape(shikra.IM_PATCH)}){{{T}}}", rest.split(shikra.IM_END, 1)[0])
    expected = ([1] + sp.encode(before.rstrip()) + [ids_of[shikra.IM_START]] + [ids_of[shikra.IM_PATCH]] * T
                + [ids_of[shikra.IM_END]] + sp.encode(after.lstrip()))
    tok = shikra.load(published_dir, device="cpu").tokenizer
    ours = shikra.prompt_ids(tok, prompt, T)
    assert ours == expected
    # what the converted (fast) tokenizer makes of the whole string keeps the spaces as extra tokens
    assert tok(text).input_ids != expected


def umbrae_clean(response: str) -> str:
    """UMBRAE's utils.extract_id_bbox_caption, its caption part verbatim."""
    import re

    return re.sub(r'\[\d.*?\]', '', response).strip(" <s></s>")


ANSWERS = ["A man riding a wave on top of a surfboard.</s>", "two dogs playing in the grass</s>",
           "A kitchen[0.120,0.300,0.560,0.910] with a stove[0.2,0.3,0.4,0.5].</s>", "sheep on a hill",
           "  a [cat] sits.  </s>"]


def test_umbrae_postprocess_is_umbraes_cleaning():
    assert [shikra.clean_answer(a, "umbrae") for a in ANSWERS] == [umbrae_clean(a) for a in ANSWERS]
    # the character strip cuts a final or leading "s" as UMBRAE does; "boxes" keeps it
    assert shikra.clean_answer(ANSWERS[1], "umbrae") == "two dogs playing in the gra"
    assert shikra.clean_answer("sheep on a hill", "umbrae") == "heep on a hill"
    assert shikra.clean_answer(" two dogs ", "boxes") == "two dogs"
    assert shikra.clean_answer(ANSWERS[2].removesuffix("</s>"), "boxes") == "A kitchen with a stove."
    assert shikra.clean_answer(" a [0.1] b ", "none") == "a [0.1] b"
    with pytest.raises(ValueError, match="caption.postprocess 'strip'"):
        shikra.clean_answer("x", "strip")


def test_decode_answers_stops_at_eos_and_cleans(published_dir):
    tok = shikra.load(published_dir, device="cpu").tokenizer
    first = tok("a man riding a wave [0.12,0.30,0.56,0.91]", add_special_tokens=False).input_ids
    second = tok("two dogs", add_special_tokens=False).input_ids
    width = max(len(first), len(second)) + 2
    # after EOS, generate pads with pad_token_id (unk): it must not reach the caption
    rows = [first + [tok.eos_token_id] + [tok.pad_token_id] * (width - len(first) - 1),
            second + [tok.eos_token_id] + [tok.pad_token_id] * (width - len(second) - 1)]
    out = torch.tensor(rows)
    assert shikra.decode_answers(tok, out, "umbrae") == ["a man riding a wave", "two dog"]
    assert shikra.decode_answers(tok, out, "boxes") == ["a man riding a wave", "two dogs"]
    assert shikra.decode_answers(tok, out, "none") == ["a man riding a wave [0.12,0.30,0.56,0.91]", "two dogs"]


def test_apply_delta_on_published_formats_through_the_command_line(tmp_path):
    """LLaMA base (SentencePiece tokenizer, vocab V) + Shikra delta as published (vocab V + 3, model_type shikra,
    projector inside, tokenizer.model + added_tokens.json) -> a directory shikra.load reads and prompts."""
    import subprocess
    import sys

    n = write_sentencepiece(tmp_path / "llama", image_tokens=False)
    base, _ = sp_tiny_model(n, seed=6)
    base.save_pretrained(tmp_path / "llama")
    target, projector = sp_tiny_model(n + 3, seed=5)
    delta, _ = sp_tiny_model(n + 3, seed=5)
    with torch.no_grad():
        base_state = base.state_dict()
        for name, param in delta.state_dict().items():
            param[:base_state[name].shape[0]] -= base_state[name]
    write_sentencepiece(tmp_path / "delta")
    write_published_shikra(tmp_path / "delta", delta, projector)
    run = subprocess.run([sys.executable, "-m", "brainot.caption.shikra", "apply-delta", "--base", str(tmp_path / "llama"),
                          "--delta", str(tmp_path / "delta"), "--target", str(tmp_path / "shikra")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "2 grown (vocabulary)" in run.stderr
    rebuilt = shikra.load(tmp_path / "shikra", device="cpu")
    for name, param in target.state_dict().items():
        torch.testing.assert_close(rebuilt.model.state_dict()[name].float(), param, atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(rebuilt.projector.weight.float(), projector.weight, atol=1e-3, rtol=1e-3)
    assert shikra.prompt_ids(rebuilt.tokenizer, PROMPT, T).count(n) == T


def test_vit_l14_config_gives_256_by_1024_tokens_at_layer_minus_2_without_weights(tmp_path):
    """Shikra-7B's image input: CLIP ViT-L/14 (224 px, patch 14) at hidden_states[-2] without the class token.
    The model is built on the meta device from a config as published (a CLIPConfig with vision_config), so the
    300M weights are never allocated; the forward pass runs on shapes only."""
    from transformers import CLIPConfig, CLIPVisionConfig, CLIPVisionModel

    from brainot import embed

    vision = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                  image_size=224, patch_size=14, projection_dim=768)
    CLIPConfig(vision_config=vision, projection_dim=768).save_pretrained(tmp_path)
    config = CLIPVisionConfig.from_pretrained(tmp_path)
    with torch.device("meta"):
        model = CLIPVisionModel(config).eval()
    assert sum(p.numel() for p in model.parameters()) > 300_000_000
    assert embed.tokens_shape(model, -2, True) == (256, 1024)
    with torch.no_grad():
        tokens = embed.hidden_tokens(model, torch.empty(2, 3, 224, 224, device="meta"), -2, True)
    assert tokens.shape == (2, 256, 1024) and tokens.device.type == "meta"
