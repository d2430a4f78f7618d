"""Dataset layouts: one module per on-disk layout, each with a parser and a demo generator.

A layout module exposes
- `parse(root: Path, dataset: str, categories: list[str] | None) -> list[ManifestRow]`: the images of
  an extracted dataset, in the manifest's common columns;
- `make_demo(out_dir: Path, spec: DemoSpec) -> None`: a miniature copy of the dataset in the exact
  on-disk layout of the real one (names, extensions, nesting), with synthetic defects and masks.
"""

from adfm.datasets import mvtec_ad

LAYOUTS = {
    "mvtec_ad": mvtec_ad,
}
