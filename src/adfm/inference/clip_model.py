"""OpenCLIP plumbing of the CLIP baselines (adfm.inference.winclip, adfm.inference.anomalyclip):
loading a model (or the demo's tiny random one), the image side of a ViT, and the two-class score."""

from __future__ import annotations

import logging
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from adfm.io import InputError

log = logging.getLogger(__name__)

TEMPERATURE = 0.07
TINY_CLIP = "adfm-tiny-clip"


@lru_cache(maxsize=1)
def _register_tiny() -> None:
    import open_clip

    with resources.as_file(resources.files("adfm.inference").joinpath("clip_configs", f"{TINY_CLIP}.json")) as path:
        open_clip.add_model_config(str(path))


def load_clip(model_name: str, pretrained: str | None, *, seed: int = 0, device: str | None = None):
    """An OpenCLIP model (eval mode) and its tokenizer; randomly initialised when pretrained is None."""
    import open_clip
    import torch

    _register_tiny()
    if model_name not in open_clip.list_models():
        raise InputError(f"unknown open_clip model {model_name!r} (e.g. ViT-B-16-plus-240, ViT-L-14-336, {TINY_CLIP})")
    if pretrained and Path(pretrained).suffix and not Path(pretrained).is_file():
        raise InputError(f"CLIP weights {pretrained!r} not found (download them and point clip.pretrained at them)")
    torch.manual_seed(seed)
    if not pretrained:
        log.warning("%s: no pretrained weights given, randomly initialised from seed %d (demo only)", model_name, seed)
    model = open_clip.create_model(model_name, pretrained=pretrained or None, device="cpu")
    model.eval()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device), open_clip.get_tokenizer(model_name)


def normalize(x):
    import torch

    return torch.nn.functional.normalize(x, dim=-1)


class ClipImages:
    """Image side of an OpenCLIP ViT: preprocessing, token embeddings, (re)running the transformer."""

    def __init__(self, model, image_size: int | None = None):
        visual = model.visual
        if getattr(visual, "attn_pool", None) is not None or not hasattr(visual, "conv1"):
            raise InputError("only plain OpenCLIP ViT image towers are supported")
        self.model, self.visual = model, visual
        self.native = (
            tuple(visual.image_size) if isinstance(visual.image_size, (tuple, list)) else (visual.image_size,) * 2
        )
        self.size = int(image_size) if image_size else int(self.native[0])
        patch = visual.patch_size[0] if isinstance(visual.patch_size, (tuple, list)) else visual.patch_size
        self.grid = (self.size // patch, self.size // patch)
        from open_clip.model import get_model_preprocess_cfg

        cfg = get_model_preprocess_cfg(model)
        self.mean = cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))
        self.std = cfg.get("std", (0.26862954, 0.26130258, 0.27577711))
        self._pos = self._positional_embedding()

    @property
    def device(self):
        return self.visual.conv1.weight.device

    def _positional_embedding(self):
        """The positional embedding, interpolated (bilinear) when the grid differs from the native one."""
        import torch

        pos = self.visual.positional_embedding.detach()
        side = round((pos.shape[0] - 1) ** 0.5)
        if (side, side) == self.grid:
            return pos
        grid = pos[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        grid = torch.nn.functional.interpolate(grid, size=self.grid, mode="bilinear", align_corners=False)
        return torch.cat([pos[:1], grid.permute(0, 2, 3, 1).reshape(self.grid[0] * self.grid[1], -1)])

    def load(self, paths: list[str]):
        import torch
        from PIL import Image

        arrays = []
        for path in paths:
            with Image.open(path) as image:
                image = image.convert("RGB").resize((self.size, self.size), Image.Resampling.BICUBIC)
                arrays.append(np.asarray(image, dtype=np.float32) / 255.0)
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return ((batch - mean) / std).to(self.device)

    def embed(self, images):
        """Token sequence (class token first) after the positional embedding: (B, 1 + L, width)."""
        import torch

        x = self.visual.conv1(images)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = self.visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        return torch.cat([cls, x], dim=1) + self._pos.to(x.dtype)

    def transform(self, tokens):
        """Run (a selection of) embedded tokens through the transformer: (N, T, width)."""
        x = self.visual.patch_dropout(tokens)
        x = self.visual.ln_pre(x)
        return self.visual.transformer(x)

    def pool(self, x):
        """Projected global embedding and the ln_post'd patch tokens (open_clip's own pooling)."""
        pooled, patch_tokens = self.visual._pool(x)
        if self.visual.proj is not None:
            pooled = pooled @ self.visual.proj
        return pooled, patch_tokens


def class_scores(embeddings, text_embeddings, temperature: float = TEMPERATURE):
    """softmax(cos / T) over [normal, anomalous]; the anomalous probability: (...,)."""
    logits = normalize(embeddings) @ normalize(text_embeddings).T / temperature
    return logits.softmax(dim=-1)[..., 1]
