"""The recommender: item encoder + user encoder + predictor, composed from the registry.

Training (`forward`): every distinct item of the batch (histories and candidates share many) is encoded once,
then gathered. Evaluation uses `encode_items` / `encode_users` / `score` separately, so that each item and each
user is encoded once per evaluation (see `inference.py`). A component with `reads_categories` (MINER's
category bias) also gets the categories of the clicked items or candidates, looked up by their indices.

Each component is built from its own config and the model-wide keys (`model.item`, `cfg`); the config was
validated as a whole by the schema (`models/config.py`), so that what is left to check here needs the data.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from oncerec.errors import CheckpointError
from oncerec.models.attributes import UserAttributes
from oncerec.models.config import ModelConfig
from oncerec.models.embedding import WordEmbedding
from oncerec.models.interfaces import Batch, ItemEncoder, ItemTable, ModelSpec, Predictor, UserEncoder


class Recommender(nn.Module):
    def __init__(
        self,
        cfg: ModelConfig,
        spec: ModelSpec,
        content: ItemTable,
        words: WordEmbedding | None = None,
        item_encoder: bool = True,
    ):
        """`content`: every item's content, gathered by index for the item encoder (and for MINER's category
        bias); `words`: the word table of an encoder without `own_inputs`. `item_encoder=False` leaves the
        item encoder out (`None`): a served export ranks stored item vectors. `training/build.py` makes all of
        these from a dataset."""
        super().__init__()
        self.cfg = cfg
        self.content = content
        # built in this order (item, user, predictor, plugin): the order their weights are drawn under a seed
        item_cls = cfg.component("item")
        self.item_encoder = item_cls(cfg.item, cfg, words, spec) if item_encoder else None
        self.user_encoder = cfg.component("user")(cfg.user, cfg, spec)
        self.predictor = cfg.component("predictor")(cfg.predictor, cfg, spec)
        # GENRE user profiles (model.user_attributes): fused into the user vector, see models/attributes.py
        self.user_attributes = UserAttributes(cfg, spec) if cfg.user_attributes else None

    def encode_items(self, items: Tensor) -> Tensor:
        """Item indices [N] -> item vectors [N, d]."""
        return self.item_encoder(self.content.gather(items))

    def user_inputs(self, item_vectors: Tensor) -> Tensor:
        """Item vectors [..., d] -> what the user encoder reads of each clicked item [..., f] (its `per_item`:
        NRMS's attention projections). Inference computes it once for every item and gathers it by index."""
        return self.user_encoder.per_item(item_vectors)

    def encode_users(
        self, clicked: Tensor, mask: Tensor, user: Tensor, history: Tensor | None = None
    ) -> Tensor:
        """The clicked items' `user_inputs` [B, H, f] with their mask, user indices [B] and, for a user encoder
        that reads the clicks' categories, their item indices [B, H] -> user representations."""
        vectors = self.user_encoder(clicked, mask, user, **self._categories(self.user_encoder, history))
        return vectors if self.user_attributes is None else self.user_attributes(vectors, user)

    def score(self, user: Tensor, candidates: Tensor, items: Tensor | None = None) -> Tensor:
        """User representations, candidate vectors [B, K, d] and, for a predictor that reads the candidates'
        categories, their item indices [B, K] -> scores [B, K]."""
        return self.predictor(user, candidates, **self._categories(self.predictor, items))

    def _categories(self, component: UserEncoder | Predictor, items: Tensor | None) -> dict[str, Tensor]:
        if not component.reads_categories:
            return {}
        if items is None:
            raise ValueError(f"{type(component).__name__} reads item categories: pass the item indices")
        return {"categories": self.content.lookup("category", items)}

    def regularization(self) -> Tensor:
        """The weighted regularisation term of the last training forward, to add to the training loss: MINER's
        disagreement of the interest vectors the predictor scored with (0 for other models)."""
        return self.predictor.regularization()

    def forward(self, batch: Batch) -> Tensor:
        """Scores [B, K] for the batch's candidates."""
        every = torch.cat([batch.history.flatten(), batch.candidates.flatten()])
        unique, inverse = torch.unique(every, return_inverse=True)
        vectors = self.encode_items(unique)
        n_hist = batch.history.numel()
        clicked = self.user_inputs(vectors[inverse[:n_hist]].view(*batch.history.shape, -1))
        cands = vectors[inverse[n_hist:]].view(*batch.candidates.shape, -1)
        user = self.encode_users(clicked, batch.history_mask, batch.user, batch.history)
        return self.score(user, cands, batch.candidates)

    def _frozen_keys(self) -> set[str]:
        """State entries a checkpoint leaves out: frozen parameters (reloaded from their source at build time)
        and the buffers of a language model (derived from its config)."""
        params = dict(self.named_parameters())
        return {
            k
            for k in self.state_dict()
            if not (k in params and params[k].requires_grad)
            and (k in params or k.startswith("item_encoder.lm."))
        }

    def checkpoint_state(self) -> dict[str, Tensor]:
        """What a checkpoint saves: the trained weights only (LoRA adapters, top layers, the recommender)."""
        frozen = self._frozen_keys()
        return {k: v for k, v in self.state_dict().items() if k not in frozen}

    def load_checkpoint_state(self, state: dict[str, Tensor], source: str = "the checkpoint") -> None:
        """Loads a checkpoint's weights. Weights of another model or config (other parts, other sizes) are a
        CheckpointError naming `source` and what differs, raised before anything is loaded."""
        own, frozen = self.state_dict(), self._frozen_keys()
        differ = {
            "missing": sorted(set(own) - set(state) - frozen),
            "unexpected": sorted(set(state) - set(own)),
            "of another shape": sorted(k for k in set(state) & set(own) if state[k].shape != own[k].shape),
        }
        if any(differ.values()):
            raise CheckpointError(
                f"the weights in {source} are of another model or config ("
                + "; ".join(
                    f"{what}: {', '.join(keys[:3])}" + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
                    for what, keys in differ.items()
                    if keys
                )
                + ")"
            )
        self.load_state_dict(state, strict=False)

    def param_groups(self, lr: float, item_lr: float, embed_lr: float, weight_decay: float) -> list[dict]:
        """Pretrained language-model weights learn at item_lr, a word-embedding table of our own at embed_lr
        (0: lr), everything else at lr. Rare words get few updates, so their table often wants a larger rate."""
        rates = {"item": item_lr, "embed": embed_lr or lr, "rest": lr}
        declared = {  # the parts that declare parameters of a rate of their own
            id(p): group
            for module in self.modules()
            if isinstance(module, ItemEncoder | WordEmbedding)
            for group, params in module.rate_groups().items()
            for p in params
        }
        groups: dict[str, list] = {k: [] for k in rates}
        for p in self.parameters():
            if p.requires_grad:
                groups[declared.get(id(p), "rest")].append(p)
        return [
            {"params": ps, "lr": rates[k], "weight_decay": weight_decay} for k, ps in groups.items() if ps
        ]
