"""Data stages (workflow/rules/data.smk): download, index, mask-to-box, splits; layouts in datasets/."""
