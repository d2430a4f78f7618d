"""AnomalyCLIP (Zhou et al. 2024; written after the authors' repository zqhang/AnomalyCLIP):
- object-agnostic prompts "[V1..Vn] object." and "[W1..Wn] damaged object." whose n context
  embeddings are learned, plus learned tokens replacing positions 1..t of the text sequence in
  layers 1..depth-1 of the text encoder (deep compound prompts); all loaded from the authors'
  checkpoint (`prompts`: a torch file with a `prompt_learner` state dict: ctx_pos, ctx_neg,
  compound_prompts_text.<i>); without a file, random prompt vectors (std 0.02, seeded) stand in;
- the image score is softmax(cos(global image feature, [normal, anomalous]) / 0.07) of the anomalous
  prompt, the global feature being the class token of the last layer projected without ln_post, as
  in the authors' code; images resized to `image_size` (518 there), the positional embedding
  interpolated. Their DPAM (v-v attention) changes only the patch tokens of the pixel maps, which
  Table 2 does not use, so it is left out.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from adfm.inference.clip_model import ClipImages, class_scores
from adfm.io import InputError
from adfm.settings.inference import AnomalyClipOptions

log = logging.getLogger(__name__)


class AnomalyCLIP:
    """AnomalyCLIP's image score on an OpenCLIP model; `options` (defaults: AnomalyClipOptions), any
    option also given by keyword."""

    def __init__(self, model, tokenizer, options: AnomalyClipOptions | None = None, *, seed: int = 0, **overrides):
        import torch

        options = dataclasses.replace(options or AnomalyClipOptions(), **overrides)
        prompts, prompt_length = options.prompts, options.prompt_length
        deep_prompt_depth, deep_prompt_length = options.deep_prompt_depth, options.deep_prompt_length
        self.images = ClipImages(model, options.image_size)
        self.model, self.tokenizer = model, tokenizer
        width = model.ln_final.weight.shape[0]
        layers = len(model.transformer.resblocks)
        if deep_prompt_depth > layers:
            raise InputError(
                f"AnomalyCLIP deep_prompt_depth {deep_prompt_depth} exceeds the text encoder's {layers} layers"
            )
        if deep_prompt_length > prompt_length:
            raise InputError("AnomalyCLIP deep_prompt_length must not exceed prompt_length")
        self.n_ctx, self.depth, self.t_ctx = int(prompt_length), int(deep_prompt_depth), int(deep_prompt_length)
        if prompts:
            state = load_prompt_learner(prompts)
            ctx_pos = state["ctx_pos"].reshape(-1, width)
            ctx_neg = state["ctx_neg"].reshape(-1, width)
            compound = [state[f"compound_prompts_text.{i}"] for i in range(self.depth - 1)]
            if ctx_pos.shape[0] != self.n_ctx or any(c.shape != (self.t_ctx, width) for c in compound):
                raise InputError(
                    f"{prompts}: learned prompts do not match prompt_length {self.n_ctx}, "
                    f"deep_prompt_length {self.t_ctx}, width {width}"
                )
        else:
            log.warning("AnomalyCLIP: no learned prompt file, random prompt vectors (seed %d; demo only)", seed)
            generator = torch.Generator().manual_seed(seed)
            ctx_pos = torch.randn(self.n_ctx, width, generator=generator) * 0.02
            ctx_neg = torch.randn(self.n_ctx, width, generator=generator) * 0.02
            compound = [torch.randn(self.t_ctx, width, generator=generator) * 0.02 for _ in range(self.depth - 1)]
        device = self.images.device
        self.ctx = [ctx_pos.to(device), ctx_neg.to(device)]
        self.compound = [c.to(device) for c in compound]
        with torch.no_grad():
            self.text = self.text_features()

    def text_features(self):
        """Text features of the normal and the anomalous object-agnostic prompt: (2, D)."""
        import torch

        prefix = " ".join(["X"] * self.n_ctx)
        tokens = self.tokenizer([f"{prefix} object.", f"{prefix} damaged object."]).to(self.images.device)
        model = self.model
        x = model.token_embedding(tokens)
        x = torch.cat([x[:, :1], torch.stack(self.ctx).to(x.dtype), x[:, 1 + self.n_ctx :]], dim=1)
        x = x + model.positional_embedding.to(x.dtype)
        for i, block in enumerate(model.transformer.resblocks):
            if 1 <= i < self.depth:
                deep = self.compound[i - 1].to(x.dtype).expand(x.shape[0], -1, -1)
                x = torch.cat([x[:, :1], deep, x[:, 1 + self.t_ctx :]], dim=1)
            x = block(x, attn_mask=model.attn_mask)
        x = model.ln_final(x)
        x = x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)]
        return (
            x @ model.text_projection
            if not isinstance(model.text_projection, torch.nn.Linear)
            else model.text_projection(x)
        )

    def score(self, queries: list[str], references: list[str], names: list[str]) -> list[dict]:
        import torch

        with torch.no_grad():
            x = self.images.transform(self.images.embed(self.images.load(queries)))
            global_features = x[:, 0] @ self.images.visual.proj  # no ln_post, as in AnomalyCLIP's code
            scores = class_scores(global_features, self.text)
        return [{"score": float(s)} for s in scores]


def load_prompt_learner(path: str) -> dict:
    import torch

    if not Path(path).is_file():
        raise InputError(f"AnomalyCLIP prompt file {path!r} not found")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint.get("prompt_learner", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or "ctx_pos" not in state or "ctx_neg" not in state:
        raise InputError(
            f"{path}: expected AnomalyCLIP's checkpoint (a prompt_learner state dict with ctx_pos, "
            "ctx_neg, compound_prompts_text.<i>)"
        )
    return {k: v.float() for k, v in state.items()}
