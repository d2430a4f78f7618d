"""Settings of the prediction backends (workflow/rules/evaluate.smk, baselines.smk)."""

from __future__ import annotations
