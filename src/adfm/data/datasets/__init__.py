"""Dataset layouts: one module per on-disk layout, each with a parser and a demo generator.

A layout module exposes
- `parse(root: Path, dataset: str, categories: list[str] | None) -> list[ManifestRow]`: the images of
  an extracted dataset, in the manifest's common columns;
- `make_demo(out_dir: Path, spec: DemoSpec) -> None`: a miniature copy of the dataset in the exact
  on-disk layout of the real one (names, extensions, nesting, metadata files, line endings), with
  synthetic defects and masks;
- `ARCHIVE_NAME`: the name of the original archive (its suffix is the format the demo is packed in);
- `DOCUMENTED_COUNTS`: {category: {"train"|"test"|"train_defective"|"test_defective": n}} where the
  dataset's documentation gives them (keys optional), and optionally `DOCUMENTED_TOTALS` (same
  keys, over all of `CATEGORIES`): `adfm index` warns when a parsed dataset differs.
"""

from adfm.data.datasets import dagm, dtd_synthetic, goodsad, mmad, mpdd, mvtec_ad, mvtec_loco, visa

LAYOUTS = {
    "mvtec_ad": mvtec_ad,
    "visa": visa,
    "mvtec_loco": mvtec_loco,
    "goodsad": goodsad,
    "mpdd": mpdd,
    "dtd_synthetic": dtd_synthetic,
    "dagm": dagm,
    "mmad": mmad,
}
