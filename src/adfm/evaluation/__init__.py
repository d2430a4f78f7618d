"""Evaluation stages (workflow/rules/evaluate.smk, tables.smk, figures.smk, report.smk)."""
