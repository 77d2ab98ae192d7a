"""NPA, DKN, MaskNet, GDCN and BST (issue 15): each module against its paper's equations, written out here in
plain torch from the module's own weights; title entities read by `prepare` and written by the demo data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import NEWS_DEV, NEWS_TRAIN, write_mind
from torch.nn import functional as F

from oncerec.config.loader import build_config
from oncerec.config.schema import DataConfig
from oncerec.data.batching import TrainSampler
from oncerec.data.dataset import Dataset
from oncerec.data.formats.mind import parse_entities
from oncerec.data.prepare import prepare
from oncerec.errors import ConfigError, DataError
from oncerec.models.ctr import GatedCrossNetwork
from oncerec.models.packing import pack_sequence
from oncerec.models.recommender import Recommender
from oncerec.training.build import build_recommender
from oncerec.training.evaluate import predict_fast, predict_slow

SMALL = ["model.hidden_size=32", "model.attention_hidden=16", "embed.dim=24"]
QUIET = {"progress": False}
MODELS = ["npa", "dkn", "masknet", "gdcn", "bst"]
CTR = {"dkn", "masknet", "gdcn", "bst"}  # their predictors have an MLP: a compact one


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(tiny: Dataset, preset: str, *overrides: str) -> Recommender:
    mlp = ["model.predictor.mlp_layers=[24,16]"] if preset in CTR else []
    cfg = build_config([f"model={preset}", *SMALL, "model.num_heads=4", *mlp, *overrides])
    torch.manual_seed(0)
    return build_recommender(cfg.model, cfg.embed, tiny).eval()


@pytest.mark.parametrize("name", MODELS)
def test_trains_and_fast_evaluation_equals_slow_path(tiny: Dataset, name: str):
    model = _model(tiny, name).train()
    batch = TrainSampler(tiny, tiny.split("train"), 8, 4, seed=0).batch(0, 0)
    scores = model(batch)
    assert scores.shape == batch.candidates.shape and torch.isfinite(scores).all()
    scores.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.item_encoder.parameters())
    model.eval()
    split = tiny.split("valid")
    fast = predict_fast(model, tiny, split, 37, "cpu")
    np.testing.assert_allclose(fast, predict_slow(model, tiny, split, 11, "cpu"), rtol=1e-4, atol=1e-5)
    assert np.std(fast) > 0


def _npa_title_states(model: Recommender, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """c_i = ReLU(conv(title words)) [N, L, d] and the title mask, written out from the module's weights."""
    content = model.content.gather(items)
    ids, mask = content["title"], content["title_mask"]
    conv = model.item_encoder.cnn.conv
    words = model.item_encoder.words(ids).masked_fill(~mask[..., None], 0)
    return F.conv1d(words.transpose(1, 2), conv.weight, conv.bias, padding=1).transpose(1, 2).relu(), mask


def _check_npa(tiny: Dataset, model: Recommender, word_pool, news_pool) -> None:
    """Scores of two users (user 2 clicked two news) against two candidates each equal u . r', with u and r'
    pooled by `word_pool(c, mask, b)` / `news_pool(r, b)` for user b."""
    items = torch.tensor([3, 5, 8, 13, 21])
    c, mask = _npa_title_states(model, items)
    hist = torch.tensor([[0, 1, 2], [3, 4, 0]])  # rows of `items`
    hmask = torch.tensor([[True, True, True], [True, True, False]])
    cands = [[4, 0], [1, 2]]
    packed = model.encode_items(items)
    user = torch.tensor([1, 2])
    got = model.score(model.encode_users(packed[hist], hmask, user), packed[torch.tensor(cands)])
    for b in range(2):
        r = torch.stack([word_pool(c[j], mask[j], b) for j in hist[b][hmask[b]]])
        u = news_pool(r, b)
        for k, j in enumerate(cands[b]):
            torch.testing.assert_close(got[b, k], u @ word_pool(c[j], mask[j], b), rtol=1e-4, atol=1e-5)


def _user_vectors(tiny: Dataset, model: Recommender) -> torch.Tensor:
    user = torch.tensor([1, 2])
    enc = model.user_encoder
    return enc.user_emb.weight[user] * torch.from_numpy(tiny.train_users[user.numpy()])[:, None]


def _softmax_pool(values, keys, m, q):
    return torch.softmax((keys @ q).masked_fill(~m, float("-inf")), 0) @ values


def test_npa_personalised_attention_is_the_papers(tiny: Dataset):
    """Wu et al. 2019 as printed (`model.item.npa_attention=paper`): q_w = ReLU(V_w e_u + v_w), a_i = c_i .
    tanh(W_p q_w + b_p), r = sum softmax(a)_i c_i; the same at news level with q_d; score u . r' with r'
    pooled by the user's own word query."""
    model = _model(tiny, "npa", "model.item.npa_attention=paper")
    enc, e = model.user_encoder, _user_vectors(tiny, model)

    def key(seq):  # tanh(W ReLU(V e + v) + b)
        return torch.tanh(seq[2](torch.relu(seq[0](e))))

    kw, kd = key(enc.word_query), key(enc.news_query)
    _check_npa(
        tiny,
        model,
        lambda c, m, b: _softmax_pool(c, c, m, kw[b]),
        lambda r, b: _softmax_pool(r, r, torch.ones(len(r), dtype=torch.bool), kd[b]),
    )


def test_npa_additive_attention_is_the_authors_code(tiny: Dataset):
    """The default, as Microsoft Recommenders' NPA (the authors' code, `PersonalizedAttentivePooling`):
    q = ReLU(V e_u + v), a_i = q . tanh(W c_i + b), at word level (W of the news encoder, shared by clicked and
    candidate titles) and at news level (W of the user encoder)."""
    model = _model(tiny, "npa")
    assert model.cfg.item.npa_attention == "additive"
    enc, e = model.user_encoder, _user_vectors(tiny, model)
    qw, qd = (torch.relu(seq[0](e)) for seq in (enc.word_query, enc.news_query))
    wk, nk = model.item_encoder.keys[0], enc.news_keys[0]
    _check_npa(
        tiny,
        model,
        lambda c, m, b: _softmax_pool(c, torch.tanh(wk(c)), m, qw[b]),
        lambda r, b: _softmax_pool(r, torch.tanh(nk(r)), torch.ones(len(r), dtype=torch.bool), qd[b]),
    )


def test_npa_pairs_only_with_its_own_parts(tiny: Dataset):
    with pytest.raises(ConfigError, match="model.item=npa with model.user=attention"):
        _model(tiny, "npa", "model.user=attention")
    with pytest.raises(ConfigError, match="model.user=npa with model.predictor=dot"):
        _model(tiny, "npa", "model.predictor=dot")
    with pytest.raises(ConfigError, match="reads one text field"):
        _model(tiny, "npa", "model.item_fields=[title,category]")


def test_dkn_kcnn_and_attention_are_the_papers(tiny: Dataset):
    """Wang et al. 2018: W = [[w_1, g(e_1)] ...], g(e) = tanh(M e + b); c_i = ReLU(h * W_{i:i+l-1} + b),
    max over i, concatenated over window sizes; user = sum_k softmax_k(H([e(t_k), e(t_j)])) e(t_k)."""
    model = _model(tiny, "dkn")
    enc = model.item_encoder
    items = torch.arange(1, 40)
    content = model.content.gather(items)
    assert (content["title_entities"] > 0).any()  # the demo titles name their concepts
    got = model.encode_items(items)
    for n in range(len(items)):
        length = int(content["title_mask"][n].sum())
        ids, ent = content["title"][n, :length], content["title_entities"][n, :length]
        g = torch.tanh(enc.transform[0](enc.entities.weight[ent])) * (ent > 0)[:, None]
        w = torch.cat([enc.words(ids), g], -1)  # [L, 2E]
        parts = []
        for conv in enc.convs:
            size = conv.kernel_size[0]
            padded = torch.cat([w, w.new_zeros(size - 1, w.shape[1])])
            windows = torch.stack([padded[i : i + size].T.flatten() for i in range(length)])  # [L, 2E * l]
            parts.append((windows @ conv.weight.flatten(1).T + conv.bias).relu().amax(0))
        torch.testing.assert_close(got[n], torch.cat(parts), rtol=1e-4, atol=1e-5)

    hist, cands = got[:5].unsqueeze(0), got[5:8].unsqueeze(0)
    mask = torch.tensor([[True, True, True, True, False]])
    p = model.predictor
    scores = model.score(model.encode_users(hist, mask, None), cands)
    for k in range(3):
        c = cands[0, k]
        h = hist[0, :4]
        logits = p.att_out(p.att_hist(h) + p.att_cand(c)).squeeze(-1)  # H([e(t_k), e(t_j)])
        u = torch.softmax(logits, 0) @ h
        want = p.mlp(torch.cat([u, c, u * c]))
        torch.testing.assert_close(scores[0, k], want[0], rtol=1e-4, atol=1e-5)


def test_gdcn_gated_cross_layer():
    """Wang et al. 2023: c_{l+1} = c_0 * (W_c c_l + b_c) * sigmoid(W_g c_l) + c_l."""
    torch.manual_seed(0)
    net = GatedCrossNetwork(6, 2)
    c0 = torch.randn(3, 6)
    c = c0
    for w, g in zip(net.cross, net.gate, strict=True):
        c = c0 * (c @ w.weight.T + w.bias) * torch.sigmoid(c @ g.weight.T) + c
    torch.testing.assert_close(net(c0), c)


def test_masknet_serial_mask_blocks(tiny: Dataset):
    """Wang et al. 2021: V_mask = W_d2 ReLU(W_d1 V_emb + b_d1) + b_d2; block 1 masks LN_EMB(V_emb), each later
    block the previous output: V_out = ReLU(LN(W_i (V_mask * V_in)))."""
    model = _model(tiny, "masknet")
    p = model.predictor
    u, c = torch.randn(2, 32), torch.randn(2, 3, 32)
    got = model.score(u, c)
    for b in range(2):
        for k in range(3):
            emb = torch.cat([u[b], c[b, k]])
            x = torch.cat(
                [F.layer_norm(v, (32,), p.emb_norm.weight, p.emb_norm.bias) for v in (u[b], c[b, k])]
            )
            for block in p.blocks:
                m1, m2 = block.mask[0], block.mask[2]
                mask = m2.weight @ torch.relu(m1.weight @ emb + m1.bias) + m2.bias
                h = block.hidden.weight @ (mask * x)
                x = torch.relu(F.layer_norm(h, h.shape, block.norm.weight, block.norm.bias))
            torch.testing.assert_close(got[b, k], (p.out.weight @ x + p.out.bias)[0], rtol=1e-4, atol=1e-5)


def test_bst_transformer_layer_is_the_papers(tiny: Dataset):
    """Chen et al. 2019: S' = LN(S + MH(S)), F = LN(S' + LeakyReLU(S' W1 + b1) W2 + b2) over [h_1..h_n, c]
    (recency positions added), the outputs of every position concatenated into the MLP."""
    model = _model(tiny, "bst")
    p = model.predictor
    length = tiny.history_len
    clicked, n = torch.randn(1, 3, 32), 3
    cand = torch.randn(1, 2, 32)
    user = pack_sequence(clicked, torch.ones(1, 3, dtype=torch.bool), length)
    got = model.score(user, cand)
    layer = p.transformer.layers[0]
    att = layer.self_attn
    heads, d = att.num_heads, 32
    for k in range(2):
        s = (
            torch.cat([clicked[0], cand[0, k : k + 1]]) + p.pos.weight[torch.tensor([3, 2, 1, 0])]
        )  # [n + 1, d]
        q, kk, v = (s @ att.in_proj_weight.T + att.in_proj_bias).split(d, -1)
        split = lambda t: t.view(n + 1, heads, d // heads).transpose(0, 1)  # noqa: E731
        a = torch.softmax(split(q) @ split(kk).transpose(1, 2) / (d // heads) ** 0.5, -1) @ split(v)
        mh = a.transpose(0, 1).reshape(n + 1, d) @ att.out_proj.weight.T + att.out_proj.bias
        s1 = layer.norm1(s + mh)
        ff = F.leaky_relu(layer.linear1(s1)) @ layer.linear2.weight.T + layer.linear2.bias
        out = torch.zeros(length + 1, d)
        out[:n], out[length] = layer.norm2(s1 + ff)[:n], layer.norm2(s1 + ff)[n]
        torch.testing.assert_close(got[0, k], p.mlp(out.flatten())[0], rtol=1e-4, atol=1e-4)


def _vec(*rows: str) -> str:
    return "".join(r + "\n" for r in rows)


def test_prepare_reads_title_entities_and_vectors(tmp_path: Path):
    root = write_mind(tmp_path / "mind")
    (root / "train" / "entity_embedding.vec").write_text(_vec("Q207185\t0.5\t-1\t2\t", "Q1\t1\t1\t1\t"))
    (root / "dev" / "entity_embedding.vec").write_text(_vec("Q207185\t0.5\t-1\t2\t"))
    prepare(root, DataConfig.model_validate({}), tmp_path / "ds", **QUIET)
    ds = Dataset(tmp_path / "ds")
    assert ds.vocab("entity") == ["<none>", "Q207185"]  # only entities some title names
    np.testing.assert_array_equal(ds.entity_vectors(), [[0, 0, 0], [0.5, -1, 2]])
    titles = ds.items_table.column("title").to_pylist()
    row = titles.index("Cr\u00e8me br\u00fbl\u00e9e in 10 minutes \U0001f370")
    ids, lengths = ds.tokens("word", "title")
    ents = np.asarray(ds.token_entities("word", "title"))
    assert ents[row, : lengths[row]].tolist() == [1, 1, 0, 0, 0, 0]  # "crème", "brûlée" are the entity
    assert ents[[r for r in range(len(titles)) if r != row]].sum() == 0
    assert ds.stats["title_entities"] == {"entities": 1, "with_vector": 1, "dim": 3, "words": 2}


@pytest.mark.parametrize(
    "column, message",
    [
        ("[{", "not valid JSON"),
        ('{"WikidataId": "Q1"}', "expected a JSON list"),
        ('[{"Label": "x"}]', "entity 0 has no WikidataId"),
        ('[{"WikidataId": "Q1", "OccurrenceOffsets": [0, 4], "SurfaceForms": ["a"]}]', "lists of one length"),
        ('[{"WikidataId": "Q1", "OccurrenceOffsets": [-1], "SurfaceForms": ["a"]}]', "bad occurrence"),
    ],
)
def test_bad_title_entities_name_the_line(tmp_path: Path, column: str, message: str):
    news = [*NEWS_TRAIN]
    cols = news[1].split("\t")
    news[1] = "\t".join([*cols[:6], column, cols[7]])
    root = write_mind(tmp_path / "mind", train_news=news)
    with pytest.raises(DataError, match=rf"train/news.tsv:2 \(field title_entities\): .*{message}"):
        prepare(root, DataConfig.model_validate({}), tmp_path / "ds", **QUIET)
    assert parse_entities("[]", root, 1) == () and parse_entities("", root, 1) == ()


@pytest.mark.parametrize(
    "rows, line, message",
    [
        (["Q207185\t1\t2", "Q1\t1"], 2, "expected 2 numbers after the entity id, got 1"),
        (["Q207185\t1\tx"], 1, "'x' is not a number"),
        (["Q207185\t1\t2", "Q207185\t1\t2"], 2, "appears twice"),
        (["Q207185"], 1, "expected an entity id and its vector"),
    ],
)
def test_bad_entity_vectors_name_the_line(tmp_path: Path, rows: list[str], line: int, message: str):
    root = write_mind(tmp_path / "mind")
    (root / "train" / "entity_embedding.vec").write_text(_vec(*rows))
    with pytest.raises(DataError, match=rf"entity_embedding.vec:{line}\b.*{message}"):
        prepare(root, DataConfig.model_validate({}), tmp_path / "ds", **QUIET)


def test_dkn_needs_entity_vectors(tmp_path: Path):
    root = write_mind(tmp_path / "mind", dev_news=NEWS_DEV)  # title entities, no entity_embedding.vec
    prepare(root, DataConfig.model_validate({}), tmp_path / "ds", **QUIET)
    cfg = build_config(["model=dkn", *SMALL])
    with pytest.raises(ConfigError, match="needs entity vectors"):
        build_recommender(cfg.model, cfg.embed, Dataset(tmp_path / "ds"))


def test_demo_entities_name_the_concepts_and_related_ones_lie_close(tiny: Dataset):
    from oncerec.data.dataset import demo_raw_folder

    raw = demo_raw_folder("tiny", 0, progress=False)
    first = (raw / "train" / "news.tsv").read_text(encoding="utf-8").splitlines()[0].split("\t")
    for e in json.loads(first[6]):
        for start, form in zip(e["OccurrenceOffsets"], e["SurfaceForms"], strict=True):
            assert first[3][start : start + len(form)] == form
    assert first[7] == "[]"
    from oncerec.data.demo.entities import entity_vectors
    from oncerec.data.demo.vocabulary import SUB_CAT, SUB_N_CONCEPTS

    v = entity_vectors(np.random.default_rng(0))
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    sub = np.repeat(np.arange(len(SUB_N_CONCEPTS)), SUB_N_CONCEPTS)
    cos = v @ v.T
    same_sub = (sub[:, None] == sub[None]) & ~np.eye(len(v), dtype=bool)
    same_cat = (SUB_CAT[sub][:, None] == SUB_CAT[sub][None]) & ~(sub[:, None] == sub[None])
    other = SUB_CAT[sub][:, None] != SUB_CAT[sub][None]
    assert cos[same_sub].mean() > cos[same_cat].mean() + 0.1 > cos[other].mean() + 0.2
