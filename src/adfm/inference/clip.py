"""CLIP-based anomaly scorers of Table 2: WinCLIP and AnomalyCLIP, on OpenCLIP (open_clip).

    adfm predict-clip --split SPLIT.csv --dataset NAME --run-name NAME --settings JSON --out PRED.jsonl

Both give every test image of the split a continuous anomaly score in [0, 1] (one JSON line per
image: model, dataset, category, image_path, reference_path, label, sample 0, score and its parts);
`adfm score` turns the scores into accuracy at tau = 0.5 and at the threshold maximising Youden's J.

WinCLIP (Jeong et al. 2023; written after anomalib's WinClipModel):
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

AnomalyCLIP (Zhou et al. 2024; written after the authors' repository zqhang/AnomalyCLIP):
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

Weights: `clip.model` names an open_clip architecture and `clip.pretrained` a checkpoint file (or
an open_clip pretrained tag, which open_clip downloads); with `pretrained: null` the model is
randomly initialised from the seed, which is what the demo does with the tiny architecture
`adfm-tiny-clip` (src/adfm/inference/clip_configs/), running this very code in seconds.
"""

from __future__ import annotations

import argparse
import logging
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from adfm.io import InputError, settings_json

log = logging.getLogger(__name__)

TEMPERATURE = 0.07
TINY_CLIP = "adfm-tiny-clip"
METHODS = ("winclip", "anomalyclip")

# WinCLIP's compositional prompt ensemble (state words x templates), as in the WinCLIP paper / anomalib.
NORMAL_STATES = ["{}", "flawless {}", "perfect {}", "unblemished {}", "{} without flaw", "{} without defect",
                 "{} without damage"]
ANOMALOUS_STATES = ["damaged {}", "{} with flaw", "{} with defect", "{} with damage"]
TEMPLATES = [
    "a cropped photo of the {}.", "a close-up photo of a {}.", "a close-up photo of the {}.", "a bright photo of a {}.",
    "a bright photo of the {}.", "a dark photo of the {}.", "a dark photo of a {}.", "a jpeg corrupted photo of the {}.",
    "a jpeg corrupted photo of the {}.", "a blurry photo of the {}.", "a blurry photo of a {}.", "a photo of a {}.",
    "a photo of the {}.", "a photo of a small {}.", "a photo of the small {}.", "a photo of a large {}.",
    "a photo of the large {}.", "a photo of the {} for visual inspection.", "a photo of a {} for visual inspection.",
    "a photo of the {} for anomaly detection.", "a photo of a {} for anomaly detection.",
]

WINCLIP_DEFAULTS = {"scales": [2, 3], "shots": 1, "image_size": None}
ANOMALYCLIP_DEFAULTS = {"prompt_length": 12, "deep_prompt_depth": 9, "deep_prompt_length": 4, "image_size": 518,
                        "prompts": None}


def prompt_ensemble(object_name: str) -> tuple[list[str], list[str]]:
    normal = [t.format(s.format(object_name)) for s in NORMAL_STATES for t in TEMPLATES]
    anomalous = [t.format(s.format(object_name)) for s in ANOMALOUS_STATES for t in TEMPLATES]
    return normal, anomalous


def object_name(category: str) -> str:
    """The object word of a category folder name (`metal_nut` -> `metal nut`)."""
    return category.replace("_", " ").strip() or "object"


# ------------------------------------------------------------------------------------ open_clip


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


def _normalize(x):
    import torch

    return torch.nn.functional.normalize(x, dim=-1)


class ClipImages:
    """Image side of an OpenCLIP ViT: preprocessing, token embeddings, (re)running the transformer."""

    def __init__(self, model, image_size: int | None = None):
        visual = model.visual
        if getattr(visual, "attn_pool", None) is not None or not hasattr(visual, "conv1"):
            raise InputError("only plain OpenCLIP ViT image towers are supported")
        self.model, self.visual = model, visual
        self.native = tuple(visual.image_size) if isinstance(visual.image_size, (tuple, list)) else (visual.image_size,) * 2
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
        side = int(round((pos.shape[0] - 1) ** 0.5))
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
    logits = _normalize(embeddings) @ _normalize(text_embeddings).T / temperature
    return logits.softmax(dim=-1)[..., 1]


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
    similarity = _normalize(embeddings) @ _normalize(memory).transpose(-1, -2)
    return ((1.0 - similarity) / 2.0).min(dim=-1).values


class WinCLIP:
    def __init__(self, model, tokenizer, *, scales=(2, 3), shots: int = 1, image_size: int | None = None):
        self.images = ClipImages(model, image_size)
        self.model, self.tokenizer = model, tokenizer
        self.scales = [int(k) for k in scales]
        self.shots = int(shots)
        if self.shots not in (0, 1):
            raise InputError("WinCLIP shots: 0 (zero-shot) or 1 (the row's normal reference)")
        self.masks = [window_masks(self.images.grid, k).to(self.images.device) for k in self.scales]
        self._text: dict[str, object] = {}

    def text_embeddings(self, name: str):
        import torch

        if name not in self._text:
            normal, anomalous = prompt_ensemble(name)
            with torch.no_grad():
                embeddings = [self.model.encode_text(self.tokenizer(prompts).to(self.images.device)).mean(dim=0)
                              for prompts in (normal, anomalous)]
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
            image_scores = torch.stack([class_scores(p, t) for p, t in zip(pooled, text)])
            maps = [image_scores[:, None].expand(-1, n_patches)]
            for masks, window in zip(self.masks, windows):
                scores = torch.stack([class_scores(w, t) for w, t in zip(window, text)])
                maps.append(harmonic_aggregation(scores, masks, n_patches))
            zero_shot_map = len(maps) / (1.0 / torch.stack(maps)).sum(dim=0)
            results = []
            if self.shots:
                _, ref_patches, ref_windows = self.encode(self.images.load(references))
                few = [torch.stack([association(q, r) for q, r in zip(patches, ref_patches)])]
                for masks, window, ref_window in zip(self.masks, windows, ref_windows):
                    scores = torch.stack([association(q, r) for q, r in zip(window, ref_window)])
                    few.append(harmonic_aggregation(scores, masks, n_patches))
                few_shot_map = torch.stack(few).mean(dim=0)
                final = (image_scores + few_shot_map.amax(dim=1)) / 2
            for i in range(len(queries)):
                record = {"score": float(final[i] if self.shots else image_scores[i]),
                          "zero_shot_score": float(image_scores[i]), "zero_shot_map_max": float(zero_shot_map[i].max())}
                if self.shots:
                    record["few_shot_map_max"] = float(few_shot_map[i].max())
                results.append(record)
        return results


class AnomalyCLIP:
    def __init__(self, model, tokenizer, *, prompts: str | None = None, prompt_length: int = 12,
                 deep_prompt_depth: int = 9, deep_prompt_length: int = 4, image_size: int | None = 518, seed: int = 0):
        import torch

        self.images = ClipImages(model, image_size)
        self.model, self.tokenizer = model, tokenizer
        width = model.ln_final.weight.shape[0]
        layers = len(model.transformer.resblocks)
        if deep_prompt_depth > layers:
            raise InputError(f"AnomalyCLIP deep_prompt_depth {deep_prompt_depth} exceeds the text encoder's {layers} "
                             "layers")
        if deep_prompt_length > prompt_length:
            raise InputError("AnomalyCLIP deep_prompt_length must not exceed prompt_length")
        self.n_ctx, self.depth, self.t_ctx = int(prompt_length), int(deep_prompt_depth), int(deep_prompt_length)
        if prompts:
            state = load_prompt_learner(prompts)
            ctx_pos = state["ctx_pos"].reshape(-1, width)
            ctx_neg = state["ctx_neg"].reshape(-1, width)
            compound = [state[f"compound_prompts_text.{i}"] for i in range(self.depth - 1)]
            if ctx_pos.shape[0] != self.n_ctx or any(c.shape != (self.t_ctx, width) for c in compound):
                raise InputError(f"{prompts}: learned prompts do not match prompt_length {self.n_ctx}, "
                                 f"deep_prompt_length {self.t_ctx}, width {width}")
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
        return x @ model.text_projection if not isinstance(model.text_projection, torch.nn.Linear) \
            else model.text_projection(x)

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
        raise InputError(f"{path}: expected AnomalyCLIP's checkpoint (a prompt_learner state dict with ctx_pos, "
                         "ctx_neg, compound_prompts_text.<i>)")
    return {k: v.float() for k, v in state.items()}


def build_scorer(method: str, settings: dict):
    clip = settings.get("clip") or {}
    if "model" not in clip:
        raise InputError("predict-clip settings: clip.model is required")
    seed = int(settings.get("seed", 0))
    model, tokenizer = load_clip(clip["model"], clip.get("pretrained"), seed=seed, device=settings.get("device"))
    if method == "winclip":
        options = {**WINCLIP_DEFAULTS, **{k: settings[k] for k in WINCLIP_DEFAULTS if k in settings}}
        return WinCLIP(model, tokenizer, **options)
    if method == "anomalyclip":
        options = {**ANOMALYCLIP_DEFAULTS, **{k: settings[k] for k in ANOMALYCLIP_DEFAULTS if k in settings}}
        return AnomalyCLIP(model, tokenizer, seed=seed, **options)
    raise InputError(f"unknown CLIP method {method!r}: expected one of {METHODS}")


def predict_clip(split_csv, dataset: str, run_name: str, settings: dict, out):
    """Scores of every selected split row (test rows of `dataset` by default), resumable."""
    from tqdm.auto import tqdm

    from adfm.inference.hf import PredictionWriter, base_record, select_rows

    method = settings.get("method")
    rows = select_rows(split_csv, dataset, settings)
    writer = PredictionWriter(out)
    todo = [row for row in rows.itertuples(index=False) if (run_name, dataset, str(row.image_path), 0) not in writer.done]
    log.info("%s (%s) on %s: %d images, %d to go", run_name, method, dataset, len(rows), len(todo))
    if todo:
        scorer = build_scorer(method, settings)
        batch_size = int(settings.get("batch_size", 16))
        with writer, tqdm(total=len(todo), desc=f"{method} on {dataset}", unit="img") as bar:
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                results = scorer.score([str(r.image_path) for r in batch], [str(r.reference_path) for r in batch],
                                       [object_name(str(r.category)) for r in batch])
                writer.write([{**base_record(row, run_name, dataset, 0), "method": method, **result}
                              for row, result in zip(batch, results)])
                bar.update(len(batch))
    return writer.finish()


def _main(args: argparse.Namespace) -> None:
    predict_clip(args.split, args.dataset, args.run_name, args.settings, args.out)


def register(subparsers) -> None:
    parser = subparsers.add_parser("predict-clip", help="WinCLIP / AnomalyCLIP anomaly scores of a split's test images",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", required=True, help="split CSV")
    parser.add_argument("--dataset", required=True, help="dataset name (its test rows are scored)")
    parser.add_argument("--run-name", required=True, help="name written in each record's `model` field")
    parser.add_argument("--settings", required=True, type=settings_json,
                        help='JSON: {"method": winclip|anomalyclip, "clip": {model, pretrained}, "batch_size", '
                        '"seed", and the method\'s options}')
    parser.add_argument("--out", required=True, help="predictions JSONL")
    parser.set_defaults(func=_main)
