"""Settings of the prediction backends (workflow/rules/evaluate.smk, baselines.smk, figures.smk).

`PredictSettings` (adfm predict: a Hugging Face model on a split, greedy or sampled), `ApiSettings`
(adfm predict-api), `ClipSettings` (adfm predict-clip: WinCLIP / AnomalyCLIP) and `MmadSettings`
(adfm predict-mmad, either backend). The API key is never part of them: only its variable's name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, get_args

from adfm.protocol import prompt_answer_format, prompt_template
from adfm.settings import Settings, SettingsError, option
from adfm.settings.model import ModelSettings

Reasoning = Literal["multi_stage", "one_stage"]
AnswerFormat = Literal["yes_no", "letter"]
# "all": every row of a tested dataset (under the holdout protocol, its whole test split)
Role = Literal["test", "train", "all"]
ClipMethod = Literal["winclip", "anomalyclip"]
CLIP_METHODS: tuple[str, ...] = get_args(ClipMethod)


def _eval_rows(config: dict, name: str) -> str:
    """The split rows a run or baseline is evaluated on (config `eval_rows`, "test" unless set)."""
    return {**config.get("baselines", {}), **config["runs"]}[name].get("eval_rows", "test")


@dataclass(frozen=True)
class PredictSettings(Settings):
    """`adfm predict`: one response per image (greedy), or `num_samples` sampled ones (Figures 4, 5)."""

    STAGE = "adfm predict --settings"

    prompt: str = option(help="prompt template (config prompts.<answer_format>.<reasoning>)")
    reasoning: Reasoning = option("multi_stage", "response structure the parser expects")
    answer_format: AnswerFormat = option("yes_no", "answer words the parser expects (adfm.protocol)")
    model: ModelSettings = option(factory=ModelSettings, help="dtype, family and image budget of the run's model")
    batch_size: int = option(8, "prompts per generate() call (config predict.batch_size)")
    max_new_tokens: int = option(512, "response length limit (config predict.max_new_tokens)")
    repetition_penalty: float = option(1.0, "generate()'s repetition penalty (1.0: plain greedy)")
    num_samples: int = option(1, "responses per image; > 1 samples")
    temperature: float | None = option(None, "sampling temperature; null: greedy unless num_samples > 1 (then 1.0)")
    top_k: int = option(0, "sampling truncation as GRPO's (0: off)")
    top_p: float = option(1.0, "sampling truncation as GRPO's (1.0: off)")
    seed: int = option(0, "seed of sampling and of the max_images subsample")
    role: Role = option("test", "split rows predicted")
    max_images: int | None = option(None, "a uniform, seeded subsample of that many rows; null: all")
    label: int | None = option(None, "only rows with this label")
    image: str | None = option(None, "only this image")

    def __post_init__(self):
        for name in ("batch_size", "num_samples"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{self.STAGE}: {name} {getattr(self, name)} < 1")

    @property
    def sampling(self) -> bool:
        return self.temperature is not None or self.num_samples > 1

    @classmethod
    def from_config(cls, config: dict, run: str) -> PredictSettings:
        """Greedy evaluation of a run on its test rows."""
        return cls(
            **cls._prompted(config, run),
            role=_eval_rows(config, run),
            batch_size=config["predict"]["batch_size"],
            max_new_tokens=config["predict"]["max_new_tokens"],
        )

    @classmethod
    def for_figure(cls, config: dict, figure: str) -> PredictSettings:
        """Responses of Figure 4 or 5, sampled as GRPO samples them (train.grpo's length, top_k, top_p)."""
        spec = config["figures"][figure]
        grpo = config["train"]["grpo"]
        # Figure 4 (reward_schemes) shows "the same training sample"; Figure 5 draws from its `rows`
        one_image = spec["kind"] == "reward_schemes"
        rows = (
            ({"label": 1, "max_images": 1} if not spec.get("image") else {"image": spec["image"]})
            if one_image
            else {"max_images": spec["images"]}
        )
        return cls(
            **cls._prompted(config, spec["run"]),
            batch_size=config["predict"]["batch_size"],
            max_new_tokens=grpo["max_completion_length"],
            num_samples=spec["num_generations"],
            temperature=spec["temperature"],
            seed=config["seed"],
            **{key: grpo[key] for key in ("top_k", "top_p") if key in grpo},
            role="train" if one_image else spec["rows"],
            **rows,
        )

    @staticmethod
    def _prompted(config: dict, run: str) -> dict:
        reasoning = config["runs"][run]["reasoning"]
        return {
            "prompt": prompt_template(config["prompts"], reasoning),
            "reasoning": reasoning,
            "answer_format": prompt_answer_format(config["prompts"]),
            "model": ModelSettings.from_config(config, run),
        }


@dataclass(frozen=True)
class ApiOptions(Settings):
    """The chat API of a model (config `api`, with the baseline's overrides and its model name)."""

    STAGE = "api"

    base_url: str = option(help="endpoint base; requests go to <base_url>/chat/completions")
    model: str = option(help="the model name sent to the endpoint")
    key_env: str = option(help="name of the environment variable holding the API key")
    concurrency: int = option(4, "requests under way at once")
    max_retries: int = option(5, "retries of a failed request (connection error, timeout, HTTP 408/409/429/5xx)")
    backoff_s: float = option(1.0, "delay before the first retry, doubled at each further retry (at most 60 s)")
    timeout_s: float = option(120.0, "timeout of one request in seconds")
    max_image_side: int = option(512, "images are downscaled to this longer side (pixels) before sending")
    max_tokens: int = option(1024, "max tokens of a response to the reasoning prompt")
    temperature: float = option(0.0, "sampling temperature of the reasoning prompt's responses")

    @classmethod
    def from_config(cls, config: dict, name: str) -> ApiOptions:
        spec = config["baselines"][name]
        api = {k: v for k, v in config["api"].items() if k != "enabled"}
        api.update({k: spec[k] for k in API_OPTIONS if k in spec})
        return cls(**api, model=spec["model"])


# config `api` keys a baseline may override
API_OPTIONS = tuple(f.name for f in dataclasses.fields(ApiOptions) if f.name not in ("model", "temperature"))


@dataclass(frozen=True)
class ApiSettings(Settings):
    """`adfm predict-api`: the reasoning prompt through a chat API."""

    STAGE = "adfm predict-api --settings"

    prompt: str = option(help="prompt template (config prompts.<answer_format>.<reasoning>)")
    api: ApiOptions = option(help="the chat API")
    reasoning: Reasoning = option("multi_stage", "response structure the parser expects")
    answer_format: AnswerFormat = option("yes_no", "answer words the parser expects (adfm.protocol)")
    role: Role = option("test", "split rows predicted")

    @classmethod
    def from_config(cls, config: dict, name: str) -> ApiSettings:
        reasoning = config["baselines"][name].get("reasoning", "multi_stage")
        return cls(
            prompt=prompt_template(config["prompts"], reasoning),
            reasoning=reasoning,
            answer_format=prompt_answer_format(config["prompts"]),
            role=_eval_rows(config, name),
            api=ApiOptions.from_config(config, name),
        )


@dataclass(frozen=True)
class ClipModel(Settings):
    STAGE = "clip"

    model: str = option(help="open_clip architecture (adfm-tiny-clip: the demo's)")
    pretrained: str | None = option(None, "weights file or open_clip tag; null: random initialisation from the seed")


@dataclass(frozen=True)
class WinClipOptions(Settings):
    """WinCLIP's options (config baselines.<name>, backend winclip)."""

    STAGE = "winclip"

    scales: list[int] = option(factory=lambda: [2, 3], help="sliding window sizes in patches")
    shots: int = option(1, "1: the row's normal reference as few-shot memory (WinCLIP+); 0: zero-shot")
    image_size: int | None = option(None, "input side in pixels; null: the model's own")


@dataclass(frozen=True)
class AnomalyClipOptions(Settings):
    """AnomalyCLIP's options (config baselines.<name>, backend anomalyclip)."""

    STAGE = "anomalyclip"

    prompts: str | None = option(None, "the authors' learned prompt checkpoint; null: random prompt vectors (demo)")
    prompt_length: int = option(12, "learned context tokens per prompt (n_ctx)")
    deep_prompt_depth: int = option(9, "text layers carrying learned tokens (depth)")
    deep_prompt_length: int = option(4, "learned tokens per deeper text layer (t_n_ctx)")
    image_size: int | None = option(518, "input side in pixels (AnomalyCLIP tests at 518)")


CLIP_METHOD_OPTIONS = {"winclip": WinClipOptions, "anomalyclip": AnomalyClipOptions}


@dataclass(frozen=True)
class ClipSettings(Settings):
    """`adfm predict-clip`: continuous anomaly scores of WinCLIP or AnomalyCLIP."""

    STAGE = "adfm predict-clip --settings"

    method: ClipMethod = option(help="the scorer")
    clip: ClipModel = option(help="the OpenCLIP model")
    winclip: WinClipOptions = option(factory=WinClipOptions, help="WinCLIP's options (method winclip)")
    anomalyclip: AnomalyClipOptions = option(factory=AnomalyClipOptions, help="AnomalyCLIP's (method anomalyclip)")
    batch_size: int = option(16, "images per batch")
    seed: int = option(0, "seed of random weights and prompts (demo)")
    role: Role = option("test", "split rows scored")

    @property
    def options(self) -> WinClipOptions | AnomalyClipOptions:
        return getattr(self, self.method)

    @classmethod
    def from_config(cls, config: dict, name: str) -> ClipSettings:
        spec = config["baselines"][name]
        method = spec["backend"]
        options = CLIP_METHOD_OPTIONS[method].from_dict(
            {
                f.name: spec[f.name]
                for f in dataclasses.fields(CLIP_METHOD_OPTIONS[method])
                if spec.get(f.name) is not None
            },
            f"baselines.{name}",
        )
        return cls(
            method=method,
            clip=ClipModel.from_dict(spec["clip"], f"baselines.{name}.clip"),
            seed=config["seed"],
            role=_eval_rows(config, name),
            **{method: options},
            **({"batch_size": spec["batch_size"]} if spec.get("batch_size") is not None else {}),
        )


@dataclass(frozen=True)
class MmadSettings(Settings):
    """`adfm predict-mmad`: MMAD's questions, to a Hugging Face model or (with `api`) a chat API."""

    STAGE = "adfm predict-mmad --settings"

    model: ModelSettings = option(
        factory=ModelSettings, help="dtype, family and image budget (a pixels budget: MMAD's, mmad.min/max_pixels)"
    )
    templates: int = option(1, "normal templates shown before the query (MMAD's random_templates[:N])")
    generation: Literal["model", "greedy"] = option(
        "model", "model: generate() with the model's own config (MMAD's); greedy: plain greedy"
    )
    instruction: Literal["letter", "reasoning"] = option(
        "letter", "MMAD's letter instructions, or reasoning_instruction"
    )
    reasoning_instruction: str | None = option(None, "the instruction of `instruction: reasoning`")
    max_new_tokens: int = option(128, "response length limit (MMAD: 128)")
    parse: Literal["letter", "answer_tag"] = option("letter", "letter: MMAD's parse_answer; answer_tag: <answer> first")
    filter: bool = option(True, "leave out the questions the leakage filter marks")
    batch_size: int = option(8, "questions per generate() call")
    sources: list[str] | None = option(None, "only these MMAD source datasets")
    max_images: int | None = option(None, "only the first N images' questions")
    api: ApiOptions | None = option(None, "the chat API; null: the Hugging Face model (--model)")

    @classmethod
    def from_config(cls, config: dict, name: str) -> MmadSettings:
        """A trained run is decoded as `mmad.decoding.trained` says, every other model as
        `mmad.decoding.untrained`; the runs are held to the leakage filter, an API baseline is not
        (the paper's numbers for it are MMAD's, over MMAD's whole question set)."""
        mmad = config["mmad"]
        run = config["runs"].get(name)
        decoding = mmad["decoding"]["trained" if run is not None and run["trained"] else "untrained"]
        model = dataclasses.replace(
            ModelSettings.from_config(config, name), min_pixels=mmad["min_pixels"], max_pixels=mmad["max_pixels"]
        )
        reasoning = {**config.get("baselines", {}), **config["runs"]}[name].get("reasoning", "multi_stage")
        spec = config.get("baselines", {}).get(name)
        return cls(
            model=model,
            templates=mmad["templates"],
            generation=mmad["generation"],
            instruction=decoding["instruction"],
            max_new_tokens=decoding["max_new_tokens"],
            parse=decoding["parse"],
            filter=run is not None,
            batch_size=mmad.get("batch_size") or config["predict"]["batch_size"],
            reasoning_instruction=mmad["reasoning_instructions"][reasoning]
            if decoding["instruction"] == "reasoning"
            else None,
            max_images=mmad.get("max_images") or None,
            api=ApiOptions.from_config(config, name) if spec is not None and spec["backend"] == "api" else None,
        )
