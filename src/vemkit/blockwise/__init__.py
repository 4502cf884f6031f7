"""Run array functions over volumes larger than memory: blocks, halos, Dask, resume, stitching.

The one blockwise engine of vemkit. Algorithms stay functions on NumPy arrays; this package
lifts them to :class:`~vemkit.io.Layer` volumes:

- :func:`map_layer` — apply ``fn`` to every block (with halo) and write the cropped result;
- :func:`label_blockwise` — the same for instance-labelling functions, with labels made
  globally unique and merged across block faces so the result matches a single-block run;
- :func:`get_client` — a Dask client / cluster from one string ("threads", "processes",
  "local:4", "tcp://host:8786", "slurm:8", "kubernetes:4").

Finished blocks are recorded next to the output, so a re-run after a crash skips them
(``resume=True``); a re-run with other settings raises :class:`ResumeMismatchError`.

Examples
--------
>>> from vemkit.blockwise import map_layer, label_blockwise  # doctest: +SKIP
>>> out = create_ome_zarr("pred.zarr", shape=raw.shape, dtype="float32",
...                       voxel_size=raw.voxel_size, chunks=(64, 256, 256))  # doctest: +SKIP
>>> map_layer(predict, raw, out, block_shape=(64, 256, 256), halo_vox=16)  # doctest: +SKIP
"""

from vemkit.blockwise.cluster import get_client
from vemkit.blockwise.engine import map_layer
from vemkit.blockwise.state import ResumeMismatchError
from vemkit.blockwise.stitch import MergeMode, label_blockwise, same_partition
from vemkit.blockwise.tiling import Block, PadMode, Tiling

__all__ = [
    "Block",
    "MergeMode",
    "PadMode",
    "ResumeMismatchError",
    "Tiling",
    "get_client",
    "label_blockwise",
    "map_layer",
    "same_partition",
]
