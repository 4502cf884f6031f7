"""Format modules; importing this package registers every built-in reader."""

from vemkit.io.formats import (
    hdf5,  # noqa: F401
    mrc,  # noqa: F401
    n5,  # noqa: F401
    ome_zarr,  # noqa: F401
    slices,  # noqa: F401
    tiff,  # noqa: F401
    zipped,  # noqa: F401
)
