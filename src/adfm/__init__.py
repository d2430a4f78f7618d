"""adfm: reproduction of AD-FM (GRPO + LoRA fine-tuning of Qwen2.5-VL for anomaly detection)."""

__version__ = "0.1.0"
