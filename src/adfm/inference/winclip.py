"""WinCLIP (Jeong et al. 2023; written after anomalib's WinClipModel):
- compositional prompt ensemble: 7 normal and 4 anomalous state words around the category name,
  each in 21 templates; the embeddings of each class are averaged into one text embedding;
- zero-shot: softmax(cos(image, text) / 0.07) of the anomalous class for the whole image and for
  every sliding window of k x k patches (k in `scales`; the window's patch tokens and the class token
  go through the transformer again), window scores spread to their patches by harmonic mean, and the
  scales (whole image included) combined by harmonic mean;
- few-shot (`shots: 1`, WinCLIP+): the row's single normal reference image is the memory; each
  patch token and window embedding of the query scores min over the memory of (1 - cos) / 2, the
  maps are averaged over scales, and the image score is the mean of the zero-shot image score and
  the maximum of the few-shot map.
Window masks index the patch tokens after the class token, as anomalib's do (its masks are offset
by one for the class token).
"""

from __future__ import annotations

import dataclasses

from adfm.inference.clip_model import ClipImages, class_scores, normalize
from adfm.io import InputError
from adfm.settings.inference import WinClipOptions

# WinCLIP's compositional prompt ensemble (state words x templates), as in the WinCLIP paper / anomalib.
NORMAL_STATES = [
    "{}",
    "flawless {}",
    "perfect {}",
    "unblemished {}",
    "{} without flaw",
    "{} without defect",
    "{} without damage",
]
ANOMALOUS_STATES = ["damaged {}", "{} with flaw", "{} with defect", "{} with damage"]
TEMPLATES = [
    "a cropped photo of the {}.",
    "a close-up photo of a {}.",
    "a close-up photo of the {}.",
    "a bright photo of a {}.",
    "a bright photo of the {}.",
    "a dark photo of the {}.",
    "a dark photo of a {}.",
    "a jpeg corrupted photo of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a blurry photo of the {}.",
    "a blurry photo of a {}.",
    "a photo of a {}.",
    "a photo of the {}.",
    "a photo of a small {}.",
    "a photo of the small {}.",
    "a photo of a large {}.",
    "a photo of the large {}.",
    "a photo of the {} for visual inspection.",
    "a photo of a {} for visual inspection.",
    "a photo of the {} for anomaly detection.",
    "a photo of a {} for anomaly detection.",
]


def prompt_ensemble(object_name: str) -> tuple[list[str], list[str]]:
    normal = [t.format(s.format(object_name)) for s in NORMAL_STATES for t in TEMPLATES]
    anomalous = [t.format(s.format(object_name)) for s in ANOMALOUS_STATES for t in TEMPLATES]
    return normal, anomalous


def object_name(category: str) -> str:
    """The object word of a category folder name (`metal_nut` -> `metal nut`)."""
    return category.replace("_", " ").strip() or "object"


def window_masks(grid: tuple[int, int], k: int):
    """Patch indices (0-based, row-major) of every k x k window with stride 1: (n_windows, k*k)."""
    import torch

    height, width = grid
    if k > min(height, width):
        raise InputError(f"WinCLIP window scale {k} is larger than the patch grid {grid}")
    index = torch.arange(height * width, dtype=torch.float32).reshape(1, 1, height, width)
    return torch.nn.functional.unfold(index, kernel_size=k, stride=1)[0].T.long()


def harmonic_aggregation(window_scores, masks, n_patches: int):
    """Per patch: harmonic mean of the scores of the windows covering it: (B, n_patches)."""
    import torch

    cover = torch.zeros(n_patches, masks.shape[0], device=window_scores.device)
    cover[masks.T.reshape(-1), torch.arange(masks.shape[0]).repeat(masks.shape[1])] = 1.0
    inverse = (1.0 / window_scores) @ cover.T  # (B, n_patches)
    return (cover.sum(dim=1) / inverse).nan_to_num(posinf=0.0)


def association(embeddings, memory):
    """WinCLIP's visual association score: min over the memory of (1 - cos) / 2: (B, N)."""
    similarity = normalize(embeddings) @ normalize(memory).transpose(-1, -2)
    return ((1.0 - similarity) / 2.0).min(dim=-1).values


class WinCLIP:
    """WinCLIP(+)'s image score on an OpenCLIP model; `options` (defaults: WinClipOptions), any option
    also given by keyword."""

    def __init__(self, model, tokenizer, options: WinClipOptions | None = None, **overrides):
        options = dataclasses.replace(options or WinClipOptions(), **overrides)
        self.images = ClipImages(model, options.image_size)
        self.model, self.tokenizer = model, tokenizer
        self.scales = [int(k) for k in options.scales]
        self.shots = int(options.shots)
        if self.shots not in (0, 1):
            raise InputError("WinCLIP shots: 0 (zero-shot) or 1 (the row's normal reference)")
        self.masks = [window_masks(self.images.grid, k).to(self.images.device) for k in self.scales]
        self._text: dict[str, object] = {}

    def text_embeddings(self, name: str):
        import torch

        if name not in self._text:
            normal, anomalous = prompt_ensemble(name)
            with torch.no_grad():
                embeddings = [
                    self.model.encode_text(self.tokenizer(prompts).to(self.images.device)).mean(dim=0)
                    for prompts in (normal, anomalous)
                ]
            self._text[name] = torch.stack(embeddings)
        return self._text[name]

    def encode(self, images):
        """Global embedding, patch tokens and the window embeddings of every scale."""
        import torch

        tokens = self.images.embed(images)
        pooled, patch_tokens = self.images.pool(self.images.transform(tokens))
        windows = []
        batch = tokens.shape[0]
        for masks in self.masks:
            index = (masks + 1).to(tokens.device)  # patch tokens follow the class token
            selected = tokens[:, index]  # (B, n_windows, k*k, width)
            cls = tokens[:, :1].unsqueeze(1).expand(-1, masks.shape[0], -1, -1)
            sequences = torch.cat([cls, selected], dim=2).reshape(batch * masks.shape[0], masks.shape[1] + 1, -1)
            embedded, _ = self.images.pool(self.images.transform(sequences))
            windows.append(embedded.reshape(batch, masks.shape[0], -1))
        return pooled, patch_tokens, windows

    def score(self, queries: list[str], references: list[str], names: list[str]) -> list[dict]:
        import torch

        n_patches = self.images.grid[0] * self.images.grid[1]
        with torch.no_grad():
            pooled, patches, windows = self.encode(self.images.load(queries))
            text = torch.stack([self.text_embeddings(n) for n in names])  # (B, 2, D)
            image_scores = torch.stack([class_scores(p, t) for p, t in zip(pooled, text, strict=False)])
            maps = [image_scores[:, None].expand(-1, n_patches)]
            for masks, window in zip(self.masks, windows, strict=False):
                scores = torch.stack([class_scores(w, t) for w, t in zip(window, text, strict=False)])
                maps.append(harmonic_aggregation(scores, masks, n_patches))
            zero_shot_map = len(maps) / (1.0 / torch.stack(maps)).sum(dim=0)
            results = []
            if self.shots:
                _, ref_patches, ref_windows = self.encode(self.images.load(references))
                few = [torch.stack([association(q, r) for q, r in zip(patches, ref_patches, strict=False)])]
                for masks, window, ref_window in zip(self.masks, windows, ref_windows, strict=False):
                    scores = torch.stack([association(q, r) for q, r in zip(window, ref_window, strict=False)])
                    few.append(harmonic_aggregation(scores, masks, n_patches))
                few_shot_map = torch.stack(few).mean(dim=0)
                final = (image_scores + few_shot_map.amax(dim=1)) / 2
            for i in range(len(queries)):
                record = {
                    "score": float(final[i] if self.shots else image_scores[i]),
                    "zero_shot_score": float(image_scores[i]),
                    "zero_shot_map_max": float(zero_shot_map[i].max()),
                }
                if self.shots:
                    record["few_shot_map_max"] = float(few_shot_map[i].max())
                results.append(record)
        return results
