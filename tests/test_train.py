from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SMALL

from oncerec.config.loader import build_config
from oncerec.data.batching import TrainSampler
from oncerec.data.dataset import Dataset, resolve_dataset
from oncerec.errors import CheckpointError, ConfigError, OncerecError
from oncerec.eval.leaderboard import score_files, write_truth
from oncerec.eval.slices import split_metrics
from oncerec.models.layers import SelfAttention, attendable
from oncerec.models.miner import disagreement
from oncerec.training.baselines import popularity_scores
from oncerec.training.build import build_recommender
from oncerec.training.checkpoint import load_latest, load_weights
from oncerec.training.evaluate import predict_fast, predict_slow
from oncerec.training.losses import training_loss
from oncerec.training.pipeline import train
from oncerec.training.trainer import Trainer

PRESETS = ["naml", "nrms", "lstur", "fastformer", "miner", "din"]


@pytest.fixture(scope="session")
def tiny() -> Dataset:
    return Dataset(resolve_dataset(build_config(["data=demo-tiny"]).data, progress=False))


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "oncerec.cli", *args], capture_output=True, text=True, **kw)


@pytest.mark.parametrize("preset", PRESETS)
def test_fast_evaluation_equals_slow_path(tiny: Dataset, preset: str):
    cfg = build_config(
        [f"model={preset}", *SMALL, *(["model.user.gru_mode=con"] if preset == "lstur" else [])]
    )
    torch.manual_seed(0)
    model = build_recommender(cfg.model, cfg.embed, tiny)
    split = tiny.split("valid")
    fast = predict_fast(model, tiny, split, 37, "cpu")
    slow = predict_slow(model, tiny, split, 11, "cpu")
    assert fast.shape == (len(split.item),)
    np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-5)
    assert np.std(fast) > 0


def test_miner_category_bias_follows_the_candidates_category(tiny: Dataset):
    """MINER's category-aware attention weighting: for candidate x, code i attends over click j with
    softmax_j(c_i . tanh(W n_j) + cos(e_j, e_x)) (e: category embeddings); the interest scores v_i . x are
    averaged with softmax_i(x . GELU(W' v_i)). (Fast evaluation is exact: test_fast_evaluation_equals_slow_path.)"""
    cfg = build_config(["model=miner", *SMALL])
    assert cfg.model.miner_category_bias and cfg.model.user.num_interests == 32
    torch.manual_seed(0)
    model = build_recommender(cfg.model, cfg.embed, tiny).eval()
    category = model.content.lookup("category", torch.arange(tiny.num_items))
    first = [int(torch.nonzero(category == c)[0]) for c in (1, 2)]
    hist = torch.tensor([[first[0], first[1], int(torch.nonzero(category == 1)[1])]])
    with torch.no_grad():
        # sharp attention: distinct interest vectors, so that their weighting matters
        model.user_encoder.codes.mul_(20)
        items = model.encode_items(torch.arange(tiny.num_items))
        user = model.encode_users(
            items[hist], torch.ones_like(hist, dtype=torch.bool), torch.tensor([0]), hist
        )
        x = items[first[1]]
        as_1, as_2 = (model.predictor(user, x.view(1, 1, -1), torch.tensor([[c]])) for c in (1, 2))
        # the same candidate vector scores differently with another category
        assert not torch.allclose(as_1, as_2)
        n, poly, pred = items[hist[0]], model.user_encoder, model.predictor
        e = torch.nn.functional.normalize(pred.category.weight, dim=-1)
        logits = poly.codes @ torch.tanh(poly.proj(n)).T + e[category[hist[0]]] @ e[1]  # [C, H]
        v = torch.softmax(logits, dim=-1) @ n  # [C, d]

        def by_hand(act):
            return (torch.softmax(act(pred.proj(v)) @ x, dim=0) * (v @ x)).sum()

        torch.testing.assert_close(as_1[0, 0], by_hand(torch.nn.functional.gelu))
        assert not torch.allclose(as_1[0, 0], by_hand(torch.tanh))  # GELU, not tanh
    with pytest.raises(ConfigError, match="needs model.user=poly with model.predictor=target_aware"):
        build_config(["model=miner", *SMALL, "model.predictor=dot"])


def test_miner_disagreement_regularisation_reaches_the_training_loss(tiny: Dataset, tmp_path: Path):
    # cosines: (v1, v2) = (v2, v3) = 1 / sqrt 2, (v1, v3) = 0; the mean over all 3 x 3 pairs, i = j included
    v = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]]])
    assert disagreement(v).item() == pytest.approx((3 + 4 / 2**0.5) / 9)
    args = [
        "data=demo-tiny",
        "model=miner",
        *SMALL,
        "model.dropout=0",
        "model.predictor.disagreement_weight=0.5",
    ]
    cfg = build_config(args)
    torch.manual_seed(cfg.exp.seed)
    model = build_recommender(cfg.model, cfg.embed, tiny, seed=cfg.exp.seed)
    trainer = Trainer(cfg, tiny, model, tmp_path, progress=False)  # reads and writes nothing
    order = trainer.sampler.order(0)
    batch = trainer.sampler.batch(0, 0, order)
    model = trainer.model.train()
    with torch.no_grad():
        ranking = training_loss(model(batch), batch, "softmax").item()
        interests = model.predictor.interests  # per candidate: the category bias makes them candidate-aware
    assert interests.shape == (16, 5, 32, 32)  # samples, candidates, interests, hidden
    term = disagreement(interests).item()
    assert 0 < term < 1
    assert trainer._step(0, 0, order) == pytest.approx(ranking + 0.5 * term, rel=1e-5)


@pytest.fixture(scope="session")
def tiny_minilm() -> Dataset:
    pytest.importorskip("transformers")
    cfg = build_config(["data=demo-tiny", "data.tokenizers=[word,minilm]"])
    return Dataset(resolve_dataset(cfg.data, progress=False))


@pytest.mark.parametrize("preset", ["naml", "nrms", "fastformer", "dnn"])
def test_fast_evaluation_equals_slow_path_with_minilm_embeddings(tiny_minilm: Dataset, preset: str):
    """MiniLM's padding row is not zero and its 384-wide vectors are projected, so padded positions carry
    non-zero vectors; the text width is trimmed per batch, so an encoder that read them would score an item
    differently in the two paths (cnn: naml, attention: nrms, fastformer, pool: dnn)."""
    cfg = build_config([f"model={preset}", "embed=minilm", *SMALL])
    torch.manual_seed(0)
    model = build_recommender(cfg.model, cfg.embed, tiny_minilm)
    split = tiny_minilm.split("valid")
    fast = predict_fast(model, tiny_minilm, split, 37, "cpu")
    slow = predict_slow(model, tiny_minilm, split, 11, "cpu")
    np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("item", ["cnn", "attention", "fastformer", "pool"])
def test_an_item_vector_does_not_depend_on_its_batch(tiny_minilm: Dataset, item: str):
    """An item encoded alone (its text trimmed to its own length) or beside a longer one (padded)."""
    cfg = build_config(
        ["model=naml", f"model.item={item}", "model.item_fields=[title]", "embed=minilm", *SMALL]
    )
    torch.manual_seed(0)
    model = build_recommender(cfg.model, cfg.embed, tiny_minilm).eval()
    lengths = model.content.tensors["title_len"]
    short = int(torch.where(lengths > 0, lengths, lengths.max() + 1).argmin())
    long = int(lengths.argmax())
    assert 0 < lengths[short] < lengths[long]
    with torch.no_grad():
        alone = model.encode_items(torch.tensor([short]))
        beside = model.encode_items(torch.tensor([short, long]))
    torch.testing.assert_close(alone[0], beside[0])


@pytest.mark.parametrize("mode", ["ini", "con"])
def test_lstur_users_unseen_in_training_are_the_unknown_user(tiny: Dataset, mode: str):
    """The user index spans every split, so a user without a training impression has an embedding that never
    trained: LSTUR treats such a user as the unknown user 0 (zero embedding), in both evaluation paths."""
    seen = tiny.train_users
    assert seen[np.asarray(tiny.split("train").user)].all() and not seen[0]
    unseen, known = int(np.flatnonzero(~seen[1:])[0]) + 1, int(np.flatnonzero(seen)[0])
    cfg = build_config(["model=lstur", *SMALL, f"model.user.gru_mode={mode}"])
    torch.manual_seed(0)
    model = build_recommender(cfg.model, cfg.embed, tiny).eval()
    clicked = torch.randn(1, 4, cfg.model.hidden_size).expand(3, -1, -1)  # the same clicks for three users
    mask = torch.ones(3, 4, dtype=torch.bool)
    with torch.no_grad():
        out = model.encode_users(clicked, mask, torch.tensor([0, unseen, known]))
    assert torch.equal(out[1], out[0]) and not torch.equal(out[2], out[0])
    # every impression scores as it would with its user replaced by 0 wherever that user is unseen
    anonymous = Dataset(tiny.root)
    items, lengths, users = tiny.histories
    anonymous.__dict__["histories"] = (items, lengths, np.where(seen[users], users, 0))
    split = tiny.split("valid")
    assert not seen[np.asarray(split.user)].all()
    for predict in (predict_fast, predict_slow):
        np.testing.assert_array_equal(
            predict(model, tiny, split, 37, "cpu"), predict(model, anonymous, split, 37, "cpu")
        )


def test_attention_residual_adds_the_layer_input(tiny: Dataset):
    torch.manual_seed(0)
    plain, residual = SelfAttention(8, 2, 0.0), SelfAttention(8, 2, 0.0, residual=True)
    residual.load_state_dict(plain.state_dict())
    x, mask = torch.randn(3, 5, 8), torch.tensor([[True] * 5, [True, True, False, False, False], [False] * 5])
    torch.testing.assert_close(residual(x, mask), x + plain(x, mask))
    # NRMS with it: every self-attention layer has it, and fast evaluation still equals the slow path
    on = ["model.item.attention_residual=true", "model.user.attention_residual=true"]
    cfg = build_config(["model=nrms", *SMALL, *on])
    model = build_recommender(cfg.model, cfg.embed, tiny)
    layers = [m for m in model.modules() if isinstance(m, SelfAttention)]
    assert len(layers) == 2 and all(m.residual for m in layers)
    split = tiny.split("valid")
    np.testing.assert_allclose(
        predict_fast(model, tiny, split, 37, "cpu"),
        predict_slow(model, tiny, split, 11, "cpu"),
        rtol=1e-4,
        atol=1e-5,
    )


@pytest.mark.parametrize("residual", [False, True])
def test_self_attention_is_multihead_attention_bit_for_bit_in_training(residual: bool):
    """`project` + `attend` are nn.MultiheadAttention's arithmetic (so NRMS trains as it did before the
    split): the same outputs and gradients to the bit, dropout included; projecting each item alone (as
    inference does, once per item) gives the same outputs to rounding."""
    torch.manual_seed(0)
    layer = SelfAttention(16, 4, 0.2, residual).train()
    x = torch.randn(3, 7, 16, requires_grad=True)
    mask = torch.tensor([[True] * 7, [True, True, True, False, False, False, False], [False] * 7])
    torch.manual_seed(1)
    ours = layer(x, mask)
    (grad_ours,) = torch.autograd.grad(ours.sum(), x)
    torch.manual_seed(1)
    theirs, _ = layer.attn(x, x, x, key_padding_mask=~attendable(mask), need_weights=False)
    theirs = x + theirs if residual else theirs
    (grad_theirs,) = torch.autograd.grad(theirs.sum(), x)
    assert torch.equal(ours, theirs) and torch.equal(grad_ours, grad_theirs)
    layer.eval()
    with torch.no_grad():
        table = layer.project(x.reshape(-1, 16)).view(3, 7, -1)
        torch.testing.assert_close(layer.attend(table, mask), layer(x, mask))


def test_sampler_is_deterministic_and_uses_the_impression(tiny: Dataset):
    split = tiny.split("train")
    a = TrainSampler(tiny, split, 8, 4, seed=3)
    b1, b2 = a.batch(1, 5), TrainSampler(tiny, split, 8, 4, seed=3).batch(1, 5)
    assert torch.equal(b1.candidates, b2.candidates) and torch.equal(b1.history, b2.history)
    assert not torch.equal(b1.candidates, a.batch(2, 5).candidates)
    # positives are clicked candidates; negatives come from the same impression when it has enough
    order = a.order(1)
    for r, s in enumerate(order[5 * 8 : 6 * 8]):
        j = a.pos_imp[s]
        rows = slice(split.offsets[j], split.offsets[j + 1])
        items, labels = np.asarray(split.item[rows]), np.asarray(split.label[rows])
        assert b1.candidates[r, 0].item() in set(items[labels == 1])
        negs = set(items[labels == 0])
        if len(negs) >= 4:
            assert set(b1.candidates[r, 1:].tolist()) <= negs


@pytest.mark.integration
def test_train_writes_the_run_directory_contract(tiny: Dataset, tmp_path: Path):
    out = tmp_path / "run"
    cfg = build_config(
        ["data=demo-tiny", "model=nrms", "exp=quick", *SMALL, f"exp.out_dir={out}", "exp.epoch_batch=-2"]
    )
    run, metrics = train(cfg, progress=False)
    run_dir = run.run_dir
    assert run_dir == out
    for name in (
        "config.yaml",
        "log.jsonl",
        "curves.png",
        "metrics.json",
        "valid.prediction.txt",
        "test.prediction.txt",
        "best/model.safetensors",
        "report.md",
    ):
        assert (out / name).is_file(), name
    report = (out / "report.md").read_text()
    assert "| test |" in report and "Top recommendations for" in report and "curves.png" in report
    saved = json.loads((out / "metrics.json").read_text())
    assert set(saved) == {"valid", "test"}
    assert list(saved["test"]) == [
        *("auc", "mrr", "ndcg@5", "ndcg@10", "global_auc", "logloss", "groups", "skipped", "rows"),
        *("impressions", "cold_items", "cold_users"),
    ]
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["type"] for r in log].count("eval") == 2  # epoch_batch=-2: twice per epoch
    # the official scorer on the written predictions reproduces the reported numbers
    split = tiny.split("test")
    write_truth(
        tmp_path / "truth.txt", np.asarray(split.imp_id), np.asarray(split.offsets), np.asarray(split.label)
    )
    scored = score_files(out / "test.prediction.txt", tmp_path / "truth.txt")
    for k in ("auc", "mrr", "ndcg@5", "ndcg@10"):
        assert scored[k] == pytest.approx(saved["test"][k], abs=1e-12)
    # `oncerec evaluate` on the saved run gives the same numbers
    evaluated = json.loads(_cli("evaluate", str(out), "--split", "test").stdout)
    assert evaluated["test"]["auc"] == pytest.approx(saved["test"]["auc"], abs=1e-9)
    rec = _cli(
        "recommend",
        str(out),
        "--history",
        ",".join(tiny.items_table.column("id").to_pylist()[1:4]),
        "--top-k",
        "3",
    )
    assert rec.returncode == 0 and len(rec.stdout.strip().splitlines()) == 3


@pytest.mark.integration
def test_a_short_training_learns(tmp_path: Path):
    """120 steps of a compact NAML on the small demo data clearly beat the untrained model and popularity."""
    args = [
        "data=demo-small",
        "model=naml",
        "exp.batch_size=64",
        "exp.max_steps=120",
        f"exp.out_dir={tmp_path / 'r'}",
    ]
    cfg = build_config([*SMALL, *args])
    small = Dataset(resolve_dataset(cfg.data, progress=False))
    torch.manual_seed(cfg.exp.seed)
    untrained = build_recommender(cfg.model, cfg.embed, small, seed=cfg.exp.seed)
    test = small.split("test")
    before = split_metrics(test, predict_fast(untrained, small, test, 512, "cpu"))["auc"]
    popularity = split_metrics(test, popularity_scores(small, test))["auc"]
    _, metrics = train(cfg, progress=False)
    assert metrics["test"]["auc"] > max(before, popularity) + 0.03


def _checkpoints(run: Path) -> list[Path]:
    return sorted((run / "checkpoints").glob("step-*"))


@pytest.mark.integration
def test_resume_after_sigkill_reaches_the_same_metrics(tiny: Dataset, tmp_path: Path):
    args = [
        "train",
        "data=demo-tiny",
        "model=lstur",
        *SMALL,
        "exp.batch_size=4",
        "exp.epochs=2",
        "exp.epoch_batch=-2",
        "exp.save_every=3",
        "exp.patience=0",
        "--quiet",
    ]
    straight = _cli(*args, f"exp.out_dir={tmp_path / 'a'}")
    assert straight.returncode == 0, straight.stderr

    killed = tmp_path / "b"
    proc = subprocess.Popen(
        [sys.executable, "-m", "oncerec.cli", *args, f"exp.out_dir={killed}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not _checkpoints(killed) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "metrics.json").exists(), "the run finished before it could be killed"
    assert _checkpoints(killed)

    resumed = _cli(*args, f"exp.out_dir={killed}", "exp.resume=true")
    assert resumed.returncode == 0, resumed.stderr
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    b = json.loads((killed / "metrics.json").read_text())
    assert a == b


def test_resume_refuses_a_different_config(tiny: Dataset, tmp_path: Path):
    out = tmp_path / "run"
    base = ["data=demo-tiny", "model=nrms", "exp=quick", *SMALL, f"exp.out_dir={out}", "exp.max_steps=2"]
    train(build_config(base), progress=False)
    with pytest.raises(ConfigError, match=r"model.hidden_size: 32 -> 64(.|\n)*exp.lr"):
        train(build_config([*base, "model.hidden_size=64", "exp.lr=0.5", "exp.resume=true"]), progress=False)
    with pytest.raises(OncerecError, match="already holds a run"):
        train(build_config(base), progress=False)


def test_corrupt_checkpoint_is_reported_and_the_previous_one_used(tiny: Dataset, tmp_path: Path, caplog):
    out = tmp_path / "run"
    cfg = build_config(
        [
            "data=demo-tiny",
            "model=nrms",
            *SMALL,
            "exp.epochs=1",
            "exp.save_every=2",
            "exp.max_steps=6",
            f"exp.out_dir={out}",
        ]
    )
    train(cfg, progress=False)
    newest, previous = _checkpoints(out)[-1], _checkpoints(out)[-2]
    data = (newest / "model.safetensors").read_bytes()
    (newest / "model.safetensors").write_bytes(data[: len(data) // 2])
    caplog.clear()
    _, state, folder = load_latest(out)
    [skipped] = caplog.records
    assert (
        folder == previous and skipped.levelno == logging.WARNING and "checksum mismatch" in skipped.message
    )
    with pytest.raises(CheckpointError):
        (out / "best" / "model.safetensors").write_bytes(b"garbage")
        load_weights(out / "best")


def test_config_errors_name_the_key_and_the_valid_choices():
    with pytest.raises(ConfigError, match=r"unknown key `exp.learning_rate`; valid keys: seed, epochs, .*lr"):
        build_config(["exp.learning_rate=1"])
    with pytest.raises(ConfigError, match=r"`exp.batch_size`: .*integer"):
        build_config(["exp.batch_size=many"])
    with pytest.raises(ConfigError, match="Valid presets: .*nrms"):
        build_config(["model=nrmss"])
    with pytest.raises(ConfigError, match="unknown config group"):
        build_config(["optim.lr=1"])
    cfg = build_config(["model=nrms", "model.item_fields=[title,abstract]", "exp.lr=1e-4"])
    assert cfg.model.item_fields == ["title", "abstract"] and cfg.exp.lr == 1e-4 and cfg.model.name == "nrms"


def test_unknown_component_lists_valid_names():
    with pytest.raises(
        ConfigError, match="valid: attention, fastformer, gru, npa, poly, pool, self_attention, sequence"
    ):
        build_config(["model.user=lstm"])


def test_yaml_config_file_and_cli_override(tmp_path: Path):
    (tmp_path / "m.yaml").write_text(
        "item: cnn\nuser: gru\nitem_fields: [title, category]\nhidden_size: 64\n"
    )
    cfg = build_config([f"model={tmp_path / 'm.yaml'}", "model.hidden_size=32"])
    assert (cfg.model.item.name, cfg.model.user.name, cfg.model.hidden_size) == ("cnn", "gru", 32)
    (tmp_path / "bad.yaml").write_text("item: cnn\nwidth: 3\n")
    with pytest.raises(ConfigError, match="unknown key `model.width`"):
        build_config([f"model={tmp_path / 'bad.yaml'}"])


def test_glove_and_hf_embeddings(tiny: Dataset, tmp_path: Path, caplog):
    vocab = tiny.vocab("word")
    glove = tmp_path / "glove.txt"
    glove.write_text(
        "".join(f"{w} {i}.5 1 2 3 4\n" for i, w in enumerate(vocab[2:12])) + "notaword 9 9 9 9 9\n"
    )
    cfg = build_config(["model=nrms", "embed=glove", *SMALL, f"embed.path={glove}", "embed.freeze=true"])
    caplog.set_level(logging.INFO, logger="oncerec")
    model = build_recommender(cfg.model, cfg.embed, tiny)
    words = model.item_encoder.words
    assert "10 of" in caplog.messages[0]
    assert words.table.weight[2, 0].item() == 0.5 and not words.table.weight.requires_grad
    assert (
        isinstance(words.proj, torch.nn.Linear) and words.dim == 24
    )  # 5-wide vectors projected to embed.dim

    pytest.importorskip("transformers")
    minilm = Dataset(
        resolve_dataset(
            build_config(["data=demo-tiny", "data.tokenizers=[word,minilm]"]).data,
            progress=False,
        )
    )
    cfg = build_config(["model=nrms", "embed=minilm", *SMALL])
    model = build_recommender(cfg.model, cfg.embed, minilm)
    assert model.item_encoder.words.table.weight.shape == (30522, 384)
    groups = model.param_groups(1e-3, 1e-5, 0.0, 0.0)
    assert groups[0]["lr"] == 1e-5 and groups[0]["params"] == [model.item_encoder.words.table.weight]
    random = build_recommender(cfg.model, build_config(["embed=random"]).embed, tiny)
    groups = random.param_groups(1e-3, 1e-5, 5e-2, 0.0)
    assert [g["lr"] for g in groups] == [5e-2, 1e-3]
    assert groups[0]["params"] == [random.item_encoder.words.table.weight]
    assert predict_fast(model, minilm, minilm.split("valid"), 64, "cpu").shape == (
        len(minilm.split("valid").item),
    )


def _ddp_train(out: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517"]
    cmd += ["-m", "oncerec.cli", "train", "data=demo-tiny", "model=nrms", "exp=quick", *SMALL]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*cmd, f"exp.out_dir={out}", *args, "--quiet"], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _eval_at(run: Path, step: int) -> dict:
    return next(
        r
        for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())
        if r["type"] == "eval" and r["step"] == step
    )


@pytest.mark.integration
def test_two_process_data_parallel_training_on_cpu(tiny: Dataset, tmp_path: Path):
    straight = tmp_path / "straight"
    done = _ddp_train(straight, "exp.max_steps=6")
    assert "2 processes" in done.stdout + done.stderr
    assert done.stdout.count("run dir ") == 1  # the main process alone speaks
    metrics = json.loads((straight / "metrics.json").read_text())
    assert metrics["test"]["impressions"] == tiny.split("test").num_impressions
    # each process scored half of the impressions; gathered, they are the single-process evaluation
    alone = json.loads(_cli("evaluate", str(straight), "--split", "valid", "test").stdout)
    for split in ("valid", "test"):
        for k in ("auc", "mrr", "ndcg@10"):
            assert alone[split][k] == pytest.approx(metrics[split][k], abs=1e-6), (split, k)
    # stopped at step 3 and resumed to step 6: each process gets its own generators back (dropout differs
    # between them), so step 6 is where the uninterrupted run was
    part = tmp_path / "part"
    _ddp_train(part, "exp.max_steps=3")
    resume = _ddp_train(part, "exp.max_steps=6", "exp.resume=true")
    assert resume.stdout.count("resumed from ") == 1
    resumed, reference = _eval_at(part, 6), _eval_at(straight, 6)
    for k in ("auc", "mrr", "ndcg@5", "ndcg@10"):
        assert resumed[k] == pytest.approx(reference[k], abs=1e-6), k


@pytest.mark.integration
def test_bf16_mixed_precision_trains_on_cpu(tiny: Dataset, tmp_path: Path):
    # A process of its own: accelerate fixes the precision once per process.
    out = tmp_path / "bf16"
    done = _cli(
        "train",
        "data=demo-tiny",
        "model=nrms",
        "exp=quick",
        *SMALL,
        "exp.mixed_precision=bf16",
        "exp.max_steps=3",
        f"exp.out_dir={out}",
        "--quiet",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert 0 <= json.loads((out / "metrics.json").read_text())["test"]["auc"] <= 1


def test_a_recommender_is_built_from_sizes_and_tensors_alone():
    """`models/` knows no dataset or file: NRMS from a ModelSpec, a word table and item content as tensors
    (what `training/build.py` reads from a dataset), trained a step and scored."""
    from oncerec.data.batching import ItemContent
    from oncerec.models.embedding import WordEmbedding
    from oncerec.models.interfaces import Batch, ModelSpec
    from oncerec.models.recommender import Recommender

    cfg = build_config(["model=nrms", *SMALL])
    items, words, width = 12, 30, 5
    spec = ModelSpec(
        num_items=items,
        train_users=np.array([False, True, True, True]),
        history_len=3,
        vocab_sizes={"category": 3, "subcategory": 3},
    )
    g = torch.Generator().manual_seed(0)
    title = torch.randint(1, words, (items, width), generator=g)
    content = ItemContent.of(["title"], {"title": title, "title_len": torch.full((items,), width)})
    table = WordEmbedding(torch.randn(words, cfg.embed.dim, generator=g), False, cfg.embed.dim, False)
    model = Recommender(cfg.model, spec, content, table)
    hist = torch.tensor([[1, 2, 0], [3, 4, 5]])
    cands = torch.tensor([[6, 7, 8], [9, 10, 11]])
    batch = Batch(hist, hist > 0, torch.tensor([1, 2]), cands, torch.ones_like(cands, dtype=torch.bool), None)
    scores = model(batch)
    assert scores.shape == (2, 3) and torch.isfinite(scores).all()
    scores.sum().backward()
    groups = model.param_groups(1e-3, 1e-5, 5e-2, 0.0)  # the table declares its own rate (embed_lr)
    assert groups[0]["lr"] == 5e-2 and groups[0]["params"] == [table.table.weight]
