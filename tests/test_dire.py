"""DIRE: language-model item encoders, the frozen-layer cache, LoRA, trainable-only checkpoints."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor
from transformers import AutoTokenizer, LlamaConfig, LlamaModel

import oncerec.dire.cache as dire
from oncerec.config.loader import build_config
from oncerec.data.dataset import Dataset, resolve_dataset
from oncerec.errors import ConfigError, OncerecError
from oncerec.inference import encode_items
from oncerec.lm.backbone import blocks, bottom_states, keep_top, load_lm, run_top
from oncerec.lm.packaged import resolve_model_path
from oncerec.training.build import build_recommender, language_model
from oncerec.training.pipeline import dire_cache, train

TEXTS = ["news article: title: Stocks fall as rates rise", "Everything we know so far about the NBA playoffs"]
# short prompts keep the language models cheap on CPU
DATA = ["data=demo-tiny", "data.prompt=title: {title} category: {category}", "data.max_lengths.prompt=24"]
SMALL = ["model.hidden_size=32", "model.attention_hidden=16", "exp.batch_size=8", "exp.eval_batch_size=64"]


@pytest.mark.integration
@pytest.mark.parametrize("name", ["minilm", "smollm2-135m"])
def test_top_layers_from_cached_states_equal_the_full_forward(name: str):
    """For every k: layers k..L-1 run on the states entering layer k give the full model's output."""
    full = load_lm(name)
    tok = AutoTokenizer.from_pretrained(str(resolve_model_path(name)))
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    ids, mask = enc.input_ids, enc.attention_mask.bool()
    with torch.no_grad():
        reference = run_top(full, ids, mask, from_states=False)
    n = len(blocks(full))
    states = bottom_states(full, ids, mask, list(range(n)))
    assert sorted(states) == list(range(n))
    for k in range(n):
        top = keep_top(copy.deepcopy(full), k)
        assert len(blocks(top)) == n - k
        with torch.no_grad():
            out = run_top(top, states[k] if k else ids, mask, from_states=k > 0)
        torch.testing.assert_close(out[mask], reference[mask], atol=1e-5, rtol=1e-5, msg=f"layer {k}")


TINY = dict(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4)
OPT = dict(vocab_size=100, hidden_size=32, ffn_dim=64, num_hidden_layers=3, num_attention_heads=4)


def _tiny_config(kind: str):
    """Configs of random tiny models of several architectures (no download)."""
    import transformers as tf

    return {
        "llama": lambda: tf.LlamaConfig(**TINY),
        "bert": lambda: tf.BertConfig(**TINY),
        # transformers 5 scales Gemma's embeddings inside its embedding module: the top gets the scaled states
        "gemma": lambda: tf.GemmaConfig(**TINY, num_key_value_heads=2, head_dim=8),
        "granite": lambda: tf.GraniteConfig(
            **TINY, embedding_multiplier=12.0
        ),  # multiplies every inputs_embeds
        "electra": lambda: tf.ElectraConfig(**TINY, embedding_size=16),  # projects the embeddings 16 -> 32
        # OPT adds learned positions in its decoder's forward; pre-norm, a final norm (OPT-125m, 1.3b, ...)
        "opt": lambda: tf.OPTConfig(**OPT),
        # OPT-350m: 16-wide embeddings projected in to 32 and out again, post-norm layers, no final norm
        "opt-350m": lambda: tf.OPTConfig(**OPT, word_embed_proj_dim=16, do_layer_norm_before=False),
        # partial rotary (half of each head by default); embd_pdrop drops out inputs_embeds when training
        "phi": lambda: tf.PhiConfig(**TINY, embd_pdrop=0.5),
        "glm": lambda: tf.GlmConfig(**TINY, num_key_value_heads=2, head_dim=8, pad_token_id=0),
        "qwen2": lambda: tf.Qwen2Config(**TINY, num_key_value_heads=2),
        "mistral": lambda: tf.MistralConfig(**TINY, num_key_value_heads=2),
    }[kind]()


def _tiny_model(kind: str) -> torch.nn.Module:
    """A random tiny model of one of `_tiny_config`'s architectures, in eval mode."""
    import transformers as tf

    torch.manual_seed(0)
    return tf.AutoModel.from_config(_tiny_config(kind)).eval()


@pytest.mark.parametrize(
    "kind, refused",
    [
        ("llama", None),
        ("bert", None),
        ("gemma", None),
        ("granite", "GraniteModel"),
        ("electra", "ElectraModel"),
    ],
)
def test_parity_check_refuses_a_top_that_differs_from_the_full_forward(kind: str, refused: str | None):
    from oncerec.lm.backbone import check_parity, family

    model = _tiny_model(kind)
    family(model)  # every one of them has an accepted module layout
    ids = torch.randint(1, 100, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, 4:] = False
    states = bottom_states(model, ids, mask, [1, 2])
    for k in (1, 2):
        if refused:
            with pytest.raises(ConfigError, match=refused):
                check_parity(model, ids, mask, k, states[k], tol=1e-4)
        else:
            check_parity(model, ids, mask, k, states[k], tol=1e-4)
    assert len(blocks(model)) == 3 and model.get_input_embeddings() is not None  # the model is left whole


# every architecture the loader is meant to run, with the row of LAYOUTS that must hold it
SUPPORTED = [
    ("bert", "bert"),
    ("llama", "llama"),
    ("opt", "opt"),
    ("opt-350m", "opt"),
    ("phi", "phi"),
    ("glm", "llama"),
    ("gemma", "llama"),
    ("qwen2", "llama"),
    ("mistral", "llama"),
]


def _inputs_of(block: torch.nn.Module) -> list[Tensor]:
    """The hidden states each call of `block` gets, in a list that grows as it runs."""
    seen: list[Tensor] = []
    block.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(args[0] if args else kwargs["hidden_states"]), with_kwargs=True
    )
    return seen


@pytest.mark.integration
@pytest.mark.parametrize("kind, row", SUPPORTED)
def test_every_supported_layout_runs_its_top_from_cached_states(kind: str, row: str):
    """For every k, layers k..L-1 of the model fed the cached states entering layer k give its full forward
    (check_parity agrees); the top's first layer gets those states as they are, in training too (no position,
    projection, scale or dropout applied a second time); the output width is `output_size`; the default LoRA
    targets exist in every top layer and fresh adapters leave the output as it was."""
    from oncerec.lm.backbone import DEFAULT_LORA_TARGETS, add_lora, check_parity, layout, output_size

    model = _tiny_model(kind)
    assert layout(model).name == row
    torch.manual_seed(1)
    ids = torch.randint(1, 100, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, 4:] = False
    with torch.no_grad():
        reference = run_top(model, ids, mask, from_states=False)
    n = len(blocks(model))
    states = bottom_states(model, ids, mask, list(range(n + 1)))
    assert reference.shape[-1] == output_size(model) == states[n].shape[-1]
    check_parity(model, ids, mask, n, states[n], tol=1e-5)
    for k in range(1, n):
        check_parity(model, ids, mask, k, states[k], tol=1e-5)
        top = keep_top(copy.deepcopy(model), k)
        assert len(blocks(top)) == n - k and layout(top).name == row
        entering = _inputs_of(blocks(top)[0])
        with torch.no_grad():
            out = run_top(top, states[k], mask, from_states=True)
            run_top(top.train(), states[k], mask, from_states=True)
        top.eval()
        torch.testing.assert_close(out[mask], reference[mask], atol=1e-5, rtol=1e-5, msg=f"layer {k}")
        for seen in entering:
            assert torch.equal(seen, states[k]), f"layer {k}: the top changed the cached states"
    targets = DEFAULT_LORA_TARGETS[row]
    add_lora(top, r=2, alpha=4.0, dropout=0.0, targets=[])
    for block in blocks(top):
        names = {name.rsplit(".", 1)[-1] for name, m in block.named_modules() if hasattr(m, "lora_A")}
        assert set(targets) <= names, (targets, names)
    with torch.no_grad():
        adapted = run_top(top, states[n - 1], mask, from_states=True)
    torch.testing.assert_close(adapted[mask], reference[mask], atol=1e-5, rtol=1e-5)
    assert len(blocks(model)) == n and model.get_input_embeddings() is not None  # the model is left whole


def test_gemma_scales_its_embeddings_once():
    """Gemma's states entering layer 0 are its token embeddings times sqrt(hidden_size), once; the top fed
    states does not scale them again (held for every k by the parity test above)."""
    model = _tiny_model("gemma")
    ids = torch.tensor([[3, 14, 15, 92]])
    states = bottom_states(model, ids, torch.ones_like(ids, dtype=torch.bool), [0])
    scale = model.config.hidden_size**0.5
    torch.testing.assert_close(states[0], model.get_input_embeddings().weight[ids] * scale)


def test_an_unsupported_layout_is_refused_naming_every_supported_one():
    import transformers as tf

    from oncerec.lm.backbone import LAYOUTS, family

    model = tf.GPT2Model(tf.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4))
    with pytest.raises(ConfigError, match="unsupported language model GPT2Model") as e:
        family(model)
    for row in LAYOUTS:
        assert row.describe() in str(e.value)
    assert "decoder.final_layer_norm" in str(e.value) and "final_layernorm" in str(e.value)


def _local_model(folder: Path, model_class: type, config) -> Path:
    """A random model of `config` (seed 0; its vocabulary that of SmolLM2's tokenizer) saved with that
    tokenizer: a local model folder that loads offline."""
    tok = AutoTokenizer.from_pretrained(str(resolve_model_path("smollm2-135m")))
    config.vocab_size = len(tok)
    torch.manual_seed(0)
    model_class(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.mark.integration
def test_a_model_failing_the_parity_check_is_refused_at_cache_build_and_open(tmp_path: Path, monkeypatch):
    """Granite (embedding_multiplier) is refused before its cache is built, and a cache of it that exists
    anyway (say, built by an older oncerec) is refused before training reads it."""
    from transformers import GraniteConfig, GraniteModel

    folder = _local_model(
        tmp_path / "granite", GraniteModel, GraniteConfig(**TINY, embedding_multiplier=12.0)
    )
    base = [
        "model=llm-naml",
        f"model.item.lm={folder}",
        "model.item.layer=2",
        f"model.item.dire_cache={tmp_path / 'c'}",
    ]
    ds, cfg = _dataset(*base, "model.item.cache_dtype=float32", *SMALL)
    with pytest.raises(ConfigError, match=r"GraniteModel: its layers 2\.\. run on the cached states"):
        dire.build_cache(ds, cfg.model, progress=False)
    assert not (tmp_path / "c" / "manifest.json").exists()
    with monkeypatch.context() as m:
        m.setattr(dire, "check_parity", lambda *a, **k: None)
        dire.build_cache(ds, cfg.model, progress=False)
    with pytest.raises(ConfigError, match="GraniteModel"):
        _model(cfg, ds)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    """A small random LLaMA-architecture model in a local folder, with SmolLM2's tokenizer."""
    config = LlamaConfig(
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    return _local_model(tmp_path_factory.mktemp("tiny-llama"), LlamaModel, config)


def _tiny_llama_folder(folder: Path, seed: int) -> Path:
    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2
    )
    torch.manual_seed(seed)
    LlamaModel(config).save_pretrained(folder)
    return folder


@pytest.mark.integration
def test_fingerprint_hashes_weight_content_and_keys_the_cache_folder(tmp_path: Path, monkeypatch):
    """Two model folders of the same name and file sizes but other weights: other fingerprints and other
    cache folders. The content hash is memoised across processes by path, size and mtime."""
    import os
    import subprocess
    import sys
    from types import SimpleNamespace

    import oncerec.lm.backbone as backbone
    from oncerec.config.schema import ModelConfig

    a, b = (_tiny_llama_folder(tmp_path / side / "model", seed) for side, seed in (("a", 0), ("b", 1)))
    weights = [f / "model.safetensors" for f in (a, b)]
    assert weights[0].stat().st_size == weights[1].stat().st_size
    # first hashed in another process: its memo (under $ONCEREC_CACHE) serves this one
    code = "import sys; from oncerec.lm.backbone import fingerprint; print(fingerprint(sys.argv[1]))"
    done = subprocess.run(
        [sys.executable, "-c", code, str(a)], capture_output=True, text=True, env=os.environ
    )
    assert done.returncode == 0, done.stderr[-2000:]
    reads = []
    real = backbone.sha256_file
    monkeypatch.setattr(backbone, "sha256_file", lambda p: (reads.append(p), real(p))[1])
    fa, fb = backbone.fingerprint(str(a)), backbone.fingerprint(str(b))
    assert fa == done.stdout.strip() and fa != fb
    assert reads == [weights[1].resolve()]  # a: a memo hit; b: hashed once
    assert backbone.fingerprint(str(b)) == fb and len(reads) == 1  # unchanged: not read again
    dataset = SimpleNamespace(root=tmp_path / "demo-tiny")
    dirs = [
        dire.cache_dir(dataset, ModelConfig(item={"name": "lm", "lm": str(f)}, item_fields=["prompt"]))
        for f in (a, b)
    ]
    assert dirs[0] != dirs[1] and dirs[0].name.startswith("model-") and dirs[0].name.endswith("-prompt")
    # two experiments' datasets both called `data`: two caches, not one refused for the other's data
    other = SimpleNamespace(root=tmp_path / "elsewhere" / "demo-tiny")
    same_name = dire.cache_dir(other, ModelConfig(item={"name": "lm", "lm": str(a)}, item_fields=["prompt"]))
    assert same_name != dirs[0] and same_name.parent.name.startswith("demo-tiny-")
    # rewritten in place (same size, new mtime): hashed again
    data = bytearray(weights[1].read_bytes())
    data[-1] ^= 1
    weights[1].write_bytes(bytes(data))
    os.utime(weights[1], ns=(weights[1].stat().st_atime_ns, weights[1].stat().st_mtime_ns + 10**9))
    assert backbone.fingerprint(str(b)) != fb and len(reads) == 2


def _dataset(*overrides: str) -> Dataset:
    cfg = build_config([*DATA, *overrides])
    return Dataset(resolve_dataset(cfg.data, progress=False)), cfg


def _model(cfg, ds: Dataset):
    """The model as training builds it: the language model and its cache (built if absent), then the model."""
    lm = language_model(cfg.model, ds, progress=False)
    return build_recommender(cfg.model, cfg.embed, ds, lm=lm)


@pytest.mark.integration
def test_the_model_is_built_from_a_cache_built_before_it(tmp_path: Path):
    """Building the model reads the DIRE cache and never builds it: that is the step before (`language_model`,
    which `oncerec train` runs, or `oncerec dire cache`)."""
    ds, cfg = _dataset(
        "model=bert-naml", "model.item.layer=4", f"model.item.dire_cache={tmp_path / 'c'}", *SMALL
    )
    with pytest.raises(OncerecError, match=r"model.item.layer=4: no DIRE cache in .*oncerec dire cache"):
        build_recommender(cfg.model, cfg.embed, ds)
    assert not (tmp_path / "c").exists()
    lm = language_model(cfg.model, ds, progress=False)
    assert json.loads((tmp_path / "c" / "manifest.json").read_text())["layers"] == [4]
    model = build_recommender(cfg.model, cfg.embed, ds, lm=lm)
    assert model.item_encoder.lm is lm  # loaded once, for the cache and the model


@pytest.mark.integration
@pytest.mark.parametrize("lm", ["minilm", "llama"])
def test_item_vectors_from_the_cache_equal_the_whole_model(lm: str, tiny_llama: Path, tmp_path: Path):
    """The cache file path (float32 here) and the whole model give the same item vectors, for k = 1, k = L-1
    and k = L (every layer frozen: the cache holds the final states, no layer runs); float16 and bfloat16
    caches stay within half-precision tolerance."""
    name = "minilm" if lm == "minilm" else str(tiny_llama)
    base = ["model.item=lm", f"model.item.lm={name}", "model.item_fields=[prompt]", *SMALL]
    ds, cfg0 = _dataset(*base, "model.item.layer=0")
    torch.manual_seed(0)
    whole = _model(cfg0, ds).eval()
    with torch.no_grad():
        reference = encode_items(whole, 64, "cpu")
    n = len(blocks(whole.item_encoder.lm))
    cases = [
        (1, "float32", 1e-5),
        (n - 1, "float32", 1e-5),
        (n - 1, "float16", 2e-2),
        (n - 1, "bfloat16", 1e-1),
        (n, "float32", 1e-5),
    ]
    for k, dtype, tol in cases:
        folder = tmp_path / f"cache-{k}-{dtype}"
        _, cfg = _dataset(
            *base,
            f"model.item.layer={k}",
            f"model.item.cache_dtype={dtype}",
            f"model.item.dire_cache={folder}",
        )
        cached = _model(cfg, ds).eval()
        if k == n:  # frozen-LLM features: no language-model parameter is left in the recommender
            assert cached.item_encoder.lm is None
            assert not any(name.startswith("item_encoder.lm.") for name in cached.state_dict())
        # same pooling/projection weights; the language model's are the pretrained ones in both
        own = {k: v for k, v in whole.state_dict().items() if not k.startswith("item_encoder.lm.")}
        cached.load_state_dict(own, strict=False)
        with torch.no_grad():
            vectors = encode_items(cached, 64, "cpu")
        # row 0 is the padding item (no text)
        torch.testing.assert_close(vectors[1:], reference[1:], atol=tol, rtol=tol, msg=f"layer {k} {dtype}")
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["layers"] == [k] and manifest["shape"][0] == ds.num_items


@pytest.mark.integration
def test_a_projected_output_width_reaches_the_item_encoder_and_the_cache(tmp_path: Path):
    """An OPT-350m-like model (hidden 32, output projected to 16 after its last layer): the item vectors
    through a float32 cache at k = 1 and at k = L (its 16-wide final states) equal the whole model's; one
    cache of both widths is refused before it is started, naming them."""
    from transformers import OPTModel

    folder = _local_model(tmp_path / "opt", OPTModel, _tiny_config("opt-350m"))
    base = [
        "model.item=lm",
        f"model.item.lm={folder}",
        "model.item_fields=[prompt]",
        "model.item.lora=false",
        *SMALL,
    ]
    ds, cfg0 = _dataset(*base, "model.item.layer=0")
    torch.manual_seed(0)
    whole = _model(cfg0, ds).eval()
    assert whole.item_encoder.proj.in_features == 16
    with torch.no_grad():
        reference = encode_items(whole, 64, "cpu")
    own = {k: v for k, v in whole.state_dict().items() if not k.startswith("item_encoder.lm.")}
    for k in (1, 3):
        _, cfg = _dataset(
            *base,
            f"model.item.layer={k}",
            "model.item.cache_dtype=float32",
            f"model.item.dire_cache={tmp_path / str(k)}",
        )
        cached = _model(cfg, ds).eval()
        cached.load_state_dict(own, strict=False)
        with torch.no_grad():
            vectors = encode_items(cached, 64, "cpu")
        torch.testing.assert_close(vectors[1:], reference[1:], atol=1e-5, rtol=1e-5, msg=f"layer {k}")
    _, cfg = _dataset(
        *base,
        "model.item.layer=1",
        "model.item.cache_layers=[1,3]",
        f"model.item.dire_cache={tmp_path / 'both'}",
    )
    with pytest.raises(ConfigError, match=r"differ in width .*layer 1: 32, layer 3: 16"):
        dire.build_cache(ds, cfg.model, progress=False)
    assert not (tmp_path / "both").exists()


@pytest.mark.integration
def test_cache_for_other_inputs_is_refused_and_uncached_layers_listed(tmp_path: Path):
    folder = tmp_path / "cache"
    base = [
        "model=bert-naml",
        "model.item.layer=4",
        f"model.item.dire_cache={folder}",
        "model.item.cache_layers=[2,4]",
        *SMALL,
    ]
    ds, cfg = _dataset(*base)
    cache = dire.build_cache(ds, cfg.model, progress=False)
    assert cache.layers == [2, 4]
    assert cache.gather(2, np.array([3, 1]))[0].shape[:1] == (2,)
    with pytest.raises(ConfigError, match=r"cached layers: 2, 4"):
        cache.states(3)
    _, cfg3 = _dataset(*base, "model.item.layer=3", "model.item.cache_layers=[]")
    with pytest.raises(ConfigError, match=r"model.item.layer=3 was not cached .* cached layers: 2, 4"):
        _model(cfg3, ds)
    # the same folder with another max length and another prompt: refused, naming what differs
    other, cfg_other = _dataset(*base, "data.max_lengths.prompt=16")
    with pytest.raises(OncerecError, match=r"max_len: cache has 24, config wants 16") as e:
        dire.open_cache(other, cfg_other.model)
    assert "token_ids" in str(e.value) and "model:" not in str(e.value)


@pytest.mark.integration
def test_a_killed_cache_build_resumes_with_its_finished_shards(tmp_path: Path, monkeypatch):
    base = ["model=bert-naml", "model.item.layer=2", *SMALL]
    ds, cfg = _dataset(*base, f"model.item.dire_cache={tmp_path / 'a'}")
    real, calls = dire._encode, []

    def crash_after_three(*args, **kw):
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if killed
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(dire, "_encode", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        dire.build_cache(ds, cfg.model, batch_size=32, progress=False, shard_size=64)
    assert not (tmp_path / "a" / "manifest.json").exists()
    assert len(list((tmp_path / "a" / "done").iterdir())) == 1  # shard 0 (two batches) finished
    monkeypatch.setattr(dire, "_encode", lambda *a, **k: (calls.append(1), real(*a, **k)))
    calls.clear()
    resumed = dire.build_cache(ds, cfg.model, batch_size=32, progress=False, shard_size=64)
    sizes = [min(64, ds.num_items - lo) for lo in range(64, ds.num_items, 64)]
    assert len(calls) == sum(-(-s // 32) for s in sizes)  # shards 1.. only
    _, cfg_b = _dataset(*base, f"model.item.dire_cache={tmp_path / 'b'}")
    # the same plan uninterrupted (batches are grouped by length within a shard: another shard size groups
    # other items, and padding to another width moves the last bits of the states)
    fresh = dire.build_cache(ds, cfg_b.model, batch_size=32, progress=False, shard_size=64)
    np.testing.assert_array_equal(np.asarray(resumed.states(2)), np.asarray(fresh.states(2)))


@pytest.mark.integration
def test_lora_training_saves_only_the_trained_weights(tiny_llama: Path, tmp_path: Path):
    """A LLaMA-architecture item encoder with LoRA on its top layer trains from the cache; the checkpoint
    holds the adapters and the recommender, not the frozen language model; the saved run reloads."""
    out = tmp_path / "run"
    cfg = build_config(
        [
            *DATA,
            "model=llm-naml",
            f"model.item.lm={tiny_llama}",
            "model.item.layer=3",
            "model.item.lora_r=4",
            *SMALL,
            "exp.epochs=1",
            "exp.max_steps=3",
            "exp.item_lr=1e-3",
            f"exp.out_dir={out}",
        ]
    )
    before = LlamaModel.from_pretrained(tiny_llama).layers[3].self_attn.q_proj.weight.detach().clone()
    run, metrics = train(cfg, progress=False)
    run_dir = run.run_dir
    assert 0 <= metrics["test"]["auc"] <= 1
    from safetensors.torch import load_file

    saved = load_file(run_dir / "best" / "model.safetensors")
    lm_keys = [k for k in saved if k.startswith("item_encoder.lm.")]
    assert lm_keys and all("lora_" in k for k in lm_keys)
    assert any("layers.0.self_attn.q_proj.lora_A" in k for k in lm_keys)  # layer 3 is the top's layer 0
    assert not any("v_proj" not in k and "q_proj" not in k for k in lm_keys)
    from oncerec.training.session import load_run

    run = load_run(run_dir)
    assert run.evaluate("test")["auc"] == pytest.approx(metrics["test"]["auc"], abs=1e-6)
    after = run.model.item_encoder.lm.layers[0].self_attn.q_proj.base_layer.weight
    torch.testing.assert_close(after, before)  # the pretrained weight itself is untouched


@pytest.mark.integration
def test_frozen_llm_features_train_without_any_language_model_layer(tiny_llama: Path, tmp_path: Path):
    """model.item.layer=L: the cache holds the final states, the checkpoint holds no language-model weight, the saved
    run reloads and evaluates the same; LoRA is refused there (nothing to adapt)."""
    base = [*DATA, "model=llm-naml", f"model.item.lm={tiny_llama}", "model.item.layer=4", *SMALL]
    ds, cfg = _dataset(*base, f"model.item.dire_cache={tmp_path / 'c0'}")
    with pytest.raises(ConfigError, match="freezes every layer.*model.item.lora=false"):
        _model(cfg, ds)
    with pytest.raises(ConfigError, match="freezes every layer.*model.item.lora=false"):
        dire_cache(cfg, progress=False)  # `oncerec dire cache`
    assert not (tmp_path / "c0").exists()  # refused before any cache work
    out = tmp_path / "run"
    cfg = build_config(
        [
            *base,
            "model.item.lora=false",
            "exp.max_steps=3",
            f"exp.out_dir={out}",
            f"model.item.dire_cache={tmp_path / 'c'}",
        ]
    )
    run, metrics = train(cfg, progress=False)
    run_dir = run.run_dir
    from safetensors.torch import load_file

    saved = load_file(run_dir / "best" / "model.safetensors")
    assert saved and not any(k.startswith("item_encoder.lm.") for k in saved)
    from oncerec.training.session import load_run

    run = load_run(run_dir)
    assert run.model.item_encoder.lm is None
    assert run.evaluate("test")["auc"] == pytest.approx(metrics["test"]["auc"], abs=1e-6)


@pytest.mark.integration
def test_a_decoders_items_are_told_apart_from_the_first_step(tmp_path: Path):
    """SmolLM2's pooled final states of different items are nearly parallel, so a fresh projection gave every
    item nearly the same vector (constant scores: the training loss of llm-naml stayed at ln 5). lm_norm=auto
    standardises them for a decoder (BatchNorm) and leaves an encoder's (MiniLM) as they are."""
    mean_cosine = {}
    for norm in ("none", "auto"):
        ds, cfg = _dataset(
            "model=llm-naml", "model.item.layer=30", "model.item.lora=false", f"model.item.norm={norm}",
            f"model.item.dire_cache={tmp_path}", *SMALL,
        )  # fmt: skip
        torch.manual_seed(0)
        model = _model(cfg, ds).train()
        with torch.no_grad():
            v = torch.nn.functional.normalize(model.encode_items(torch.arange(1, 65)), dim=-1)
        mean_cosine[norm] = (v @ v.T)[~torch.eye(64, dtype=torch.bool)].mean().item()
    assert mean_cosine["none"] > 0.9 and mean_cosine["auto"] < 0.3, mean_cosine
    ds, cfg = _dataset(
        "model=bert-naml",
        "model.item.layer=6",
        "model.item.lora=false",
        f"model.item.dire_cache={tmp_path}/m",
    )
    assert isinstance(_model(cfg, ds).item_encoder.norm, torch.nn.Identity)


@pytest.mark.integration
def test_full_fine_tuning_of_the_top_layers_and_item_lr(tmp_path: Path):
    ds, cfg = _dataset(
        "model=bert-nrms",
        "model.item.lora=false",
        "model.item.layer=5",
        f"model.item.dire_cache={tmp_path}",
        *SMALL,
    )
    model = _model(cfg, ds)
    lm = model.item_encoder.lm
    assert len(blocks(lm)) == 1 and all(p.requires_grad for p in lm.parameters())
    groups = model.param_groups(lr=1e-3, item_lr=1e-5, embed_lr=0.0, weight_decay=0.0)
    item = [g for g in groups if g["lr"] == 1e-5][0]
    assert sum(p.numel() for p in item["params"]) == sum(p.numel() for p in lm.parameters())
    state = model.checkpoint_state()
    assert any(k.startswith("item_encoder.lm.encoder.layer.0.") for k in state)


def test_prompt_field_is_prepared_with_the_model_tokenizer():
    ds, cfg = _dataset("model=bert-naml", *SMALL)
    assert "minilm" in cfg.data.tokenizers and "prompt" in cfg.data.text_fields
    table = ds.items_table
    i = 5
    title, category = table.column("title")[i].as_py(), table.column("category")[i].as_py()
    assert table.column("prompt")[i].as_py() == f"title: {title} category: {category}"
    ids, lengths = ds.tokens("minilm", "prompt")
    tok = AutoTokenizer.from_pretrained(str(resolve_model_path("minilm")))
    expected = tok(f"title: {title} category: {category}")["input_ids"][:24]
    assert ids[i, : lengths[i]].tolist() == expected
    assert ds.stats["token_lengths"]["minilm"]["prompt"]["max_len"] == 24


def test_missing_language_model_says_how_to_provide_one(tmp_path: Path):
    with pytest.raises(OncerecError, match="never downloads"):
        resolve_model_path("meta-llama/Llama-3-8B")
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.integration
def test_two_processes_split_the_cache_build(tmp_path: Path):
    import os
    import subprocess
    import sys

    overrides = [*DATA, "model=bert-naml", "model.item.layer=2"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29521"]
    cmd += ["-m", "oncerec.cli", "dire", "cache", *overrides, f"model.item.dire_cache={tmp_path / 'two'}"]
    cmd += ["--quiet", "--shard-size", "64"]  # five shards: both processes get some
    done = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ds, cfg = _dataset(*overrides, f"model.item.dire_cache={tmp_path / 'one'}")
    # the same shard plan in one process (batches are grouped by length within a shard: another plan pads other
    # items together, which moves the float16 states by a rounding step)
    one = dire.build_cache(ds, cfg.model, progress=False, shard_size=64)
    _, cfg_two = _dataset(*overrides, f"model.item.dire_cache={tmp_path / 'two'}")
    two = dire.open_cache(ds, cfg_two.model)
    np.testing.assert_allclose(
        np.asarray(two.states(2), np.float32), np.asarray(one.states(2), np.float32), atol=1e-3
    )


@pytest.mark.integration
@pytest.mark.parametrize("pooling", ["attention", "mean", "last"])
def test_pooling_choices_give_one_vector_per_item(pooling: str, tmp_path: Path):
    ds, cfg = _dataset(
        "model=bert-naml", f"model.item.pooling={pooling}", f"model.item.dire_cache={tmp_path}", *SMALL
    )
    model = _model(cfg, ds).eval()
    with torch.no_grad():
        v = model.encode_items(torch.tensor([1, 2, 3]))
    assert v.shape == (3, 32) and torch.isfinite(v).all()
    assert (model.item_encoder.pool is not None) == (pooling == "attention")


@pytest.mark.integration
def test_a_first_training_run_loads_the_language_model_once(tiny_llama: Path, tmp_path: Path, monkeypatch):
    """The cache build reuses the encoder's model before its bottom is dropped: one load, not two."""
    import transformers

    real, loads = transformers.AutoModel.from_pretrained, []
    monkeypatch.setattr(
        transformers.AutoModel, "from_pretrained", lambda *a, **k: (loads.append(a), real(*a, **k))[1]
    )
    cfg = build_config(
        [
            *DATA,
            "model=llm-naml",
            f"model.item.lm={tiny_llama}",
            "model.item.layer=2",
            f"model.item.dire_cache={tmp_path / 'cache'}",
            *SMALL,
            "exp.epochs=1",
            "exp.max_steps=1",
            f"exp.out_dir={tmp_path / 'run'}",
        ]
    )
    train(cfg, progress=False)
    assert (tmp_path / "cache" / "manifest.json").is_file()  # this run built the cache
    assert len(loads) == 1


@pytest.mark.integration
def test_lm_dtype_loads_the_model_in_that_type_and_auto_follows_the_device(
    tiny_llama: Path, tmp_path: Path, monkeypatch
):
    from oncerec.lm.backbone import lm_dtype

    assert lm_dtype("auto") == torch.float32  # no GPU here
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert lm_dtype("auto") == torch.bfloat16 and lm_dtype("float16") == torch.float16
    monkeypatch.undo()
    ds, cfg = _dataset(
        "model=llm-naml",
        f"model.item.lm={tiny_llama}",
        "model.item.layer=3",
        "model.item.dtype=bfloat16",
        f"model.item.dire_cache={tmp_path}",
        *SMALL,
    )
    model = _model(cfg, ds)
    lm = model.item_encoder.lm
    assert {p.dtype for n, p in lm.named_parameters() if "lora_" not in n} == {torch.bfloat16}
    assert {p.dtype for n, p in lm.named_parameters() if "lora_" in n} == {
        torch.float32
    }  # trained in float32


@pytest.mark.integration
def test_the_top_runs_without_a_kv_cache(tiny_llama: Path):
    seen = {}
    model = load_lm(str(tiny_llama))
    model.register_forward_pre_hook(lambda m, args, kwargs: seen.update(kwargs), with_kwargs=True)
    ids = torch.tensor([[5, 6, 7]])
    run_top(model, ids, torch.ones(1, 3, dtype=torch.bool), from_states=False)
    assert seen["use_cache"] is False


@pytest.mark.integration
@pytest.mark.parametrize("layer", [0, 3])
def test_the_padding_item_is_finite_in_every_type_and_pooling(layer: int, tiny_llama: Path, tmp_path: Path):
    """Item 0 has no tokens; its vector must be finite (never NaN) however the model runs and pools."""
    for dtype in ("float32", "bfloat16", "float16"):
        for pooling in ("attention", "mean", "last"):
            ds, cfg = _dataset(
                "model=llm-naml",
                f"model.item.lm={tiny_llama}",
                f"model.item.layer={layer}",
                f"model.item.dtype={dtype}",
                f"model.item.pooling={pooling}",
                f"model.item.dire_cache={tmp_path}",
                *SMALL,
            )
            torch.manual_seed(0)
            model = _model(cfg, ds).eval()
            with torch.no_grad():
                v = model.encode_items(torch.tensor([0, 1, 0, 2]))
            assert v.dtype == torch.float32 and torch.isfinite(v).all(), (dtype, pooling)
