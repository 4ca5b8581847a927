"""Random perturbations of network inputs for training: how scans of the same page differ.

:class:`Augmentation` draws, per item of a batch, what a scanner or a camera changes: a small
rotation, an isotropic scale, a shift and the darkness of the ink. Images follow the ink-is-1
convention of :mod:`features.tensors`, so what moves in from outside the frame is paper (0.0).
Signal batches (n, L, 12) from the ``signals`` view get only what makes sense for a trace in
mV: a time shift (the ends held) and an amplitude gain, the same for all 12 leads of an item.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
from scipy import ndimage

__all__ = ["Augmentation"]

# Largest values that still describe the same page; beyond them an option is almost surely a typo
# (degrees for a fraction, a percentage for a share).
_LIMITS = {"rotation_deg": 45.0, "scale": 0.5, "shift": 0.5, "contrast": 0.9}


@dataclass(frozen=True)
class Augmentation:
    """Random rotation, scale, shift and contrast; every option 0 is the identity.

    Parameters
    ----------
    rotation_deg : float, default=3.0
        Images rotate about their centre by an angle drawn from [-rotation_deg, rotation_deg].
    scale : float, default=0.05
        Images zoom about their centre by a factor drawn from [1 - scale, 1 + scale]; signals
        are multiplied by such a factor (amplitude gain).
    shift : float, default=0.05
        Images move by up to this share of their height and, independently, of their width;
        signals by up to this share of their length (their first or last value held).
    contrast : float, default=0.2
        Image ink is multiplied by a gain drawn from [1 - contrast, 1 + contrast] (paper stays
        0); signals are left alone by it.
    """

    rotation_deg: float = 3.0
    scale: float = 0.05
    shift: float = 0.05
    contrast: float = 0.2

    def __post_init__(self):
        for option in fields(self):
            value = getattr(self, option.name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise TypeError(f"Augmentation {option.name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"Augmentation {option.name} must be 0 or more (0 turns it off), got {value!r}")
            if value > _LIMITS[option.name]:
                raise ValueError(f"Augmentation {option.name}={value!r} is more than {_LIMITS[option.name]}; "
                                 f"{option.name} is {'in degrees' if option.name == 'rotation_deg' else 'a share, 0.05 for 5%'}")

    @property
    def is_identity(self) -> bool:
        return not any(getattr(self, option.name) for option in fields(self))

    def apply(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A perturbed float32 copy of ``batch``: (n, H, W, 1) images or (n, L, 12) signals.

        Images come out clipped to [0, 1]. The same ``rng`` state gives the same output.
        """
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim == 4 and batch.shape[-1] == 1:
            return self._images(batch, rng)
        if batch.ndim == 3:
            return self._signals(batch, rng)
        raise ValueError(f"expected images (n, H, W, 1) or signals (n, L, channels), got shape {batch.shape}")

    def _images(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n, height, width = batch.shape[:3]
        if self.is_identity:
            return np.clip(batch, 0.0, 1.0)
        angle = np.deg2rad(rng.uniform(-self.rotation_deg, self.rotation_deg, n))
        zoom = rng.uniform(1 - self.scale, 1 + self.scale, n)
        shifts = rng.uniform(-self.shift, self.shift, (n, 2)) * (height, width)
        gain = rng.uniform(1 - self.contrast, 1 + self.contrast, n)
        # affine_transform reads output pixel o from input pixel M o + offset. M is the inverse of
        # a rotation and zoom about the centre c, and the offset makes output c + shift show input c.
        cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
        matrices = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], 1)  # (n, 2, 2)
        centre = np.array([(height - 1) / 2, (width - 1) / 2])
        offsets = centre - np.einsum("nij,nj->ni", matrices, centre + shifts)
        out = np.empty_like(batch)
        for i in range(n):
            ndimage.affine_transform(batch[i, :, :, 0], matrices[i], offsets[i], output=out[i, :, :, 0],
                                     order=1, mode="constant", cval=0.0)
        out *= gain[:, None, None, None].astype(np.float32)
        return np.clip(out, 0.0, 1.0, out=out)

    def _signals(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n, length = batch.shape[:2]
        if self.is_identity:
            return batch.copy()
        gain = rng.uniform(1 - self.scale, 1 + self.scale, n).astype(np.float32)
        lag = np.rint(rng.uniform(-self.shift, self.shift, n) * length).astype(np.intp)
        # Sample t of the output is input sample t - lag, held at the first or last sample.
        source = np.clip(np.arange(length)[None, :] - lag[:, None], 0, length - 1)
        shifted = np.take_along_axis(batch, source[:, :, None], axis=1)
        return shifted * gain[:, None, None]
