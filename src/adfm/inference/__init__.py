"""Prediction backends (workflow/rules/evaluate.smk, baselines.smk): Hugging Face, API, CLIP, MMAD."""
