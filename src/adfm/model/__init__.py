"""Model stages (workflow/rules/models.smk): fetch or build a model, warm start, GRPO training."""
