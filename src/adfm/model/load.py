"""Model weights: fetching them (`adfm fetch-model`) and the one code path that loads them.

Sources:
- `hf://<owner>/<name>` (e.g. `hf://Qwen/Qwen2.5-VL-7B-Instruct`): a snapshot of a Hugging Face Hub
  repository at `--revision`, downloaded with huggingface_hub.
- `demo:<name>`: a tiny, randomly initialised model built offline in seconds, one of
  `demo:tiny-qwen2.5-vl` (Qwen2.5-VL, `adfm.model.demo`), `demo:tiny-internvl` (InternVL3,
  `adfm.model.demo_internvl`) and `demo:tiny-llava-next` (LLaVA-NeXT, `adfm.model.demo_llava_next`).
- a model folder already on disk (`/data/Qwen2.5-VL-7B-Instruct`, `./models/qwen`, `~/qwen` or
  `file:/data/qwen`), e.g. from `hf download Qwen/Qwen2.5-VL-7B-Instruct --local-dir <folder>`: linked
  into place, not copied.

Each ends up as a Hugging Face model folder, and `load_model` loads any the same way
(AutoProcessor + AutoModelForImageTextToText), with an optional LoRA adapter on top.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from adfm.io import InputError, atomic_path
from adfm.model import demo as demo_model
from adfm.model import demo_internvl, demo_llava_next
from adfm.model.families import apply_image_budget

if TYPE_CHECKING:
    from adfm.settings.model import ModelSettings

log = logging.getLogger(__name__)

HF_SCHEME = "hf://"
DEMO_SCHEME = "demo:"
FILE_SCHEME = "file:"
LOCAL_PREFIXES = ("/", "~", "./", "../", FILE_SCHEME)  # config.schema.yaml's model.source pattern allows these
DTYPES = ("bfloat16", "float16", "float32", "auto")

# demo source -> the function that builds that tiny model into a folder
DEMO_MODELS = {module.DEMO_SOURCE: module.build_demo_model for module in (demo_model, demo_internvl, demo_llava_next)}


def fetch_model(source: str, revision: str | None, out_dir: str | os.PathLike) -> Path:
    """Put the model named by `source` into `out_dir` (atomically: a failed fetch leaves nothing)."""
    out = Path(out_dir)
    if source.startswith(HF_SCHEME):
        repo_id = source[len(HF_SCHEME) :].strip("/")
        if repo_id.count("/") != 1:
            raise InputError(f"model source {source!r}: expected hf://<owner>/<name>")
        from huggingface_hub import snapshot_download

        # A fixed staging folder beside the output (not a random temp name), so that an interrupted
        # download of the 15 GB of weights resumes where it stopped; renamed into place when complete.
        staging = out.parent / f".{out.name}.download"
        staging.parent.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s (revision %s) from the Hugging Face Hub into %s", repo_id, revision or "main", staging)
        try:
            snapshot_download(repo_id=repo_id, revision=revision or None, local_dir=staging)
        except Exception as error:
            reason = (str(error).splitlines() or [""])[0]
            raise InputError(
                f"model source {source}: cannot download from the Hugging Face Hub ({type(error).__name__}: "
                f"{reason}). Rerun where the Hub is reachable (the download resumes), or download it there "
                f"(`hf download {repo_id} --local-dir <folder>`) and set model.source to that folder."
            ) from None
        shutil.rmtree(staging / ".cache", ignore_errors=True)  # huggingface_hub's download bookkeeping
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
        log.info("model %s ready in %s", repo_id, out)
        return out
    if source.startswith(DEMO_SCHEME):
        build = DEMO_MODELS.get(source)
        if build is None:
            name = source[len(DEMO_SCHEME) :]
            raise InputError(f"unknown demo model {name!r} in source {source!r}; known: {', '.join(DEMO_MODELS)}")
        with atomic_path(out) as tmp:
            build(tmp)
        return out
    if source.startswith(LOCAL_PREFIXES):
        return link_local_model(source, out)
    raise InputError(
        f"unknown model source {source!r}: expected hf://<owner>/<name> (Hugging Face Hub), "
        f"{', '.join(DEMO_MODELS)} (the tiny demo models) or a model folder (/path, ./path, file:path)"
    )


def link_local_model(source: str, out: Path) -> Path:
    """A model folder already on disk as `out`: a link to it, so the 16 GB are neither copied nor fetched."""
    folder = Path(source.removeprefix(FILE_SCHEME)).expanduser()
    if not (folder / "config.json").is_file():
        raise InputError(f"model source {source}: {folder} is not a Hugging Face model folder (no config.json)")
    with atomic_path(out) as tmp:
        tmp.symlink_to(folder.resolve(), target_is_directory=True)
    log.info("model folder %s linked as %s", folder.resolve(), out)
    return out


def torch_dtype(name: str):
    import torch

    if name not in DTYPES:
        raise InputError(f"model dtype {name!r}: expected one of {', '.join(DTYPES)}")
    return "auto" if name == "auto" else getattr(torch, name)


def inference_device_map() -> str:
    """Where an inference model goes: every GPU the job holds ("auto": a 34B model split over its
    cards), this process's GPU under torchrun/accelerate, else the cpu."""
    import torch

    if torch.cuda.device_count() > 1 and "LOCAL_RANK" not in os.environ:
        return "auto"
    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return "cpu"


def load_processor(model_dir: str | os.PathLike, model: ModelSettings):
    """The model's own processor, padding on the left, with the entry's image budget
    (adfm.model.families)."""
    from transformers import AutoProcessor, ProcessorMixin

    processor = AutoProcessor.from_pretrained(str(model_dir), padding_side="left")
    if not isinstance(processor, ProcessorMixin) or getattr(processor, "image_processor", None) is None:
        # AutoProcessor falls back to the bare tokenizer when the processor class cannot be built
        # (e.g. torchvision missing); training would fail much later looking for pixel_values.
        raise InputError(
            f"{model_dir}: AutoProcessor returned {type(processor).__name__}, not a processor with an image "
            "processor (is torchvision installed and importable?)"
        )
    processor.tokenizer.padding_side = "left"
    apply_image_budget(processor, model)
    return processor


def load_model(
    model_dir: str | os.PathLike,
    model: ModelSettings,
    *,
    adapter_dir: str | os.PathLike | None = None,
    for_training: bool = False,
):
    """Load a vision-language model folder (7B or tiny, of any family) and its processor.

    `model` gives the dtype ("bfloat16", "float16", "float32" or "auto": the checkpoint's) and the
    image budget. Attention is SDPA. For inference the model goes to the job's GPUs if any (else
    the cpu) in eval mode; for training it stays on the cpu (the Trainer places it on the device of
    each process). A LoRA adapter folder, when given, is applied with PeftModel.from_pretrained
    (trainable only when `for_training`).
    """
    from transformers import AutoModelForImageTextToText

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise InputError(f"{model_dir}: not a model folder (no config.json); run `adfm fetch-model` first")
    processor = load_processor(model_dir, model)
    log.info("loading model %s (dtype %s)", model_dir, model.dtype)
    kwargs = {"dtype": torch_dtype(model.dtype), "attn_implementation": "sdpa"}
    if not for_training:
        kwargs["device_map"] = inference_device_map()
    loaded = AutoModelForImageTextToText.from_pretrained(str(model_dir), **kwargs)
    if adapter_dir is not None:
        loaded = apply_adapter(loaded, Path(adapter_dir), model_dir, trainable=for_training)
    if not for_training:
        loaded.eval()
    return loaded, processor


def check_adapter(adapter_dir: Path) -> None:
    if not (adapter_dir / "adapter_config.json").is_file():
        raise InputError(f"{adapter_dir}: not a LoRA adapter folder (no adapter_config.json)")


def apply_adapter(model, adapter: Path, model_dir: Path, *, trainable: bool = False):
    """The model with the LoRA adapter on it; an adapter that does not fit is one line, not PEFT's
    traceback (size mismatches, target modules that match nothing)."""
    from peft import PeftModel

    check_adapter(adapter)
    log.info("applying LoRA adapter %s", adapter)
    try:
        return PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)
    except (RuntimeError, ValueError, KeyError) as error:
        # PEFT lists every mismatched tensor after a generic first line: say how many, show one
        lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
        mismatches = [line for line in lines if line.startswith("size mismatch")]
        detail = f"{len(mismatches)} tensor(s) of other shapes, e.g. {mismatches[0]}" if mismatches else lines[0]
        raise InputError(
            f"{adapter}: does not fit the model {model_dir} (trained on another base model?): {detail}"
        ) from None


def _fetch_main(args: argparse.Namespace) -> None:
    fetch_model(args.source, args.revision, args.out)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "fetch-model",
        help="download model weights (hf://owner/name), link a model folder on disk, or build a tiny demo model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--source",
        required=True,
        help=f"hf://<owner>/<name>, a tiny demo model ({', '.join(DEMO_MODELS)}), "
        "or a model folder (/path, ./path, ~/path, file:path)",
    )
    parser.add_argument(
        "--revision", default=None, help="Hub revision (commit hash, tag or branch); ignored for demo: and folders"
    )
    parser.add_argument("--out", required=True, help="model folder to create")
    parser.set_defaults(func=_fetch_main)
