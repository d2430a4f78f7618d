"""Settings of the evaluation stages: scores, tables, figures, report."""

from __future__ import annotations
