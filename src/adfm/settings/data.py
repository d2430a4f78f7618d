"""Settings of the data stages (workflow/rules/data.smk)."""

from __future__ import annotations
