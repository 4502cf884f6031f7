"""EM-like phantoms with exact ground truth.

A phantom is a miniature tissue drawn once from a seed as a list of objects in
physical coordinates (nm), then rasterised block by block. Every voxel value is a
pure function of its global position, so blocks from any grid assemble to exactly
the volume :func:`make_phantom` returns, and a phantom far larger than memory can be
streamed with :class:`PhantomGenerator`.

The model of each structure:

- **Cells** — a Voronoi tessellation of seeds kept at least 0.7 cell sizes apart,
  evaluated after warping space by a smooth random displacement (7 % of the cell
  size), which makes the cells irregular. A voxel is membrane when its warped
  position lies within half the membrane thickness of a bisector between its seed
  and another; where coarse sampling would let two cells touch, one of the two
  voxels becomes membrane too, so cells are always separated (6-connectivity).
  Membranes are dark; cytoplasm is mid grey with a fine granular and a coarser
  texture and a slight per-cell tone.
- **Nuclei** — one per cell in ``nucleus_fraction`` of the cells (always in the cell
  at the centre of the volume), centred in the cell: a randomly oriented ellipsoid
  (axis ratios 1 : 0.8–1 : 0.68–0.9) whose radius is modulated ±6 % by a smooth
  field, shrunk to fit its cell. Lighter nucleoplasm; dark heterochromatin clumps
  where a random field is high, much more often within ~14 % of the radius of the
  envelope; a dark double envelope (two ~9 nm membranes around a ~15 nm perinuclear
  space); an optional darker granular nucleolus.
- **Mitochondria** — tubes (capsules along a densely sampled smooth random walk,
  radius varying ±10 % along the length), grown from a random start inside one
  cell until they reach their drawn length or would touch a membrane, a nucleus or
  another mitochondrion; sometimes one Y branch. Darker matrix than the cytoplasm,
  a dark outer membrane band, and lighter cristae: wavy, partly interrupted plates
  across the long axis. Instances never overlap and never enter a nucleus.
- **Vesicles** — small dark spheres in the cytoplasm; distractors without a label.
- **Imaging** — Gaussian point spread function (sigma in nm), slow brightness drift
  along z plus a brightness offset per section (ssTEM-like), Poisson-like Gaussian
  noise whose variance grows with the signal, 8-bit quantisation.

Anatomy left automatic scales with the field of view (see :class:`PhantomConfig`);
imaging parameters are physical. Each z section is a point sample of the 3-D model
(no integration over the section thickness).
"""

from vemkit.synth.config import PRESETS, PhantomConfig
from vemkit.synth.nuclei import NucleiSceneConfig, make_nuclei_scene
from vemkit.synth.phantom import ARRAY_NAMES, Phantom, PhantomGenerator, make_phantom

__all__ = [
    "ARRAY_NAMES",
    "PRESETS",
    "NucleiSceneConfig",
    "Phantom",
    "PhantomConfig",
    "PhantomGenerator",
    "make_nuclei_scene",
    "make_phantom",
]
