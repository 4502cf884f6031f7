"""The real EM datasets with ground truth in ``../shared/data`` (or ``$VEMKIT_DATA``), by name.

Each dataset is a folder with compressed TIFFs (one 3D array each, z, y, x) and a
``dataset.json`` that gives the voxel size, each file's role and the label meanings.

Examples
--------
>>> from vemkit import datasets
>>> datasets.list_datasets()  # doctest: +SKIP
['drosophila_vnc_sstem', 'gala_medulla_fibsem', ...]
>>> raw = datasets.load_layer("gala_medulla_fibsem", "test_raw")  # doctest: +SKIP
"""

from vemkit.datasets.catalog import (
    DatasetInfo,
    FileInfo,
    data_root,
    dataset_info,
    list_datasets,
    load_layer,
)

__all__ = [
    "DatasetInfo",
    "FileInfo",
    "data_root",
    "dataset_info",
    "list_datasets",
    "load_layer",
]
