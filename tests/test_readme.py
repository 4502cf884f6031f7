"""The README's promises: its first commands and its example recipe stay true."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from vemkit.pipelines.train import parse_train_config

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_starts_with_the_two_commands():
    text = README.read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]


def test_readme_recipe_parses():
    block = re.search(r"```yaml\n(.*?)```", README.read_text(), re.S).group(1)
    config = parse_train_config(yaml.safe_load(block), where="README")
    assert config.sparse is not None
    assert config.sparse.every_n_planes == 10
    assert config.init_from == "mito-em"


def test_readme_pseudo_labels_block_parses():
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S)
    (block,) = [b for b in blocks if b.startswith("pseudo_labels:")]
    first = re.search(r"```yaml\n(.*?)```", README.read_text(), re.S).group(1)
    config = parse_train_config({**yaml.safe_load(first), **yaml.safe_load(block)}, where="README")
    assert config.pseudo_labels.teacher == "mito-em"
    assert config.pseudo_labels.sources[0].image == "stack2_raw"
