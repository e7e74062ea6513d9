"""The model's anatomical axis order: arrays turned, exactly, before the model grid.

A 3D model with ``Preprocessing.orientation == "RAS"`` sees every image with its
axes in one anatomical order whatever order its file stored them in: image
axis 0 runs toward the patient's right, 1 toward anterior, 2 toward superior
(arrays are ``(z, y, x)``, so the last array axis is right-left). Turning is a
permutation and reversal of array axes, so no voxel is interpolated; results
are turned back onto the input's own index order before they are resampled
to its grid. A model trained without flips along the front-back axis (labels
that name the anterior part) then reads a DICOM-ordered (LPS) or sagittal
volume as it read its RAS-stored training crops.

``"none"`` (2D models, and every model file written before orientation
existed) takes arrays in their stored order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

__all__ = ["AxisTurn", "canonical_turn", "left_right_axis"]

#: Sign of the LPS direction each image axis of an "RAS" array points along:
#: axis 0 toward R (-L), axis 1 toward A (-P), axis 2 toward S.
_RAS_SIGNS = (-1.0, -1.0, 1.0)


@dataclass(frozen=True)
class AxisTurn:
    """Canonical array axis ``k`` is input array axis ``order[k]``, reversed
    where ``reverse[k]``; the spatial axes are the last ``len(order)`` ones."""

    order: tuple[int, ...]
    reverse: tuple[bool, ...]

    @classmethod
    def identity(cls, dims: int) -> "AxisTurn":
        return cls(tuple(range(dims)), (False,) * dims)

    @property
    def is_identity(self) -> bool:
        return self.order == tuple(range(len(self.order))) and not any(self.reverse)

    def shape(self, spatial_shape: Sequence[int]) -> tuple[int, ...]:
        """The canonical spatial shape of an input of ``spatial_shape``."""
        return tuple(int(spatial_shape[a]) for a in self.order)

    def apply(self, tensor: torch.Tensor) -> torch.Tensor:
        """``(..., *spatial)`` in the input's order -> canonical order."""
        if self.is_identity:
            return tensor
        lead = tensor.dim() - len(self.order)
        turned = tensor.permute(*range(lead), *(lead + a for a in self.order))
        flips = [lead + k for k, r in enumerate(self.reverse) if r]
        return turned.flip(flips) if flips else turned

    def undo(self, tensor: torch.Tensor) -> torch.Tensor:
        """``(..., *spatial)`` in canonical order -> the input's order."""
        if self.is_identity:
            return tensor
        lead = tensor.dim() - len(self.order)
        flips = [lead + k for k, r in enumerate(self.reverse) if r]
        tensor = tensor.flip(flips) if flips else tensor
        inverse = [self.order.index(a) for a in range(len(self.order))]
        return tensor.permute(*range(lead), *(lead + k for k in inverse))


def canonical_turn(direction: Sequence[float], dims: int, orientation: str) -> AxisTurn:
    """The turn that brings an array with this row-major ITK (LPS) ``direction``
    into ``orientation``: each image axis goes to the patient axis it points
    closest to (largest cosines first, as for an oblique scan), reversed where
    it points the other way."""
    if orientation == "none":
        return AxisTurn.identity(dims)
    if orientation != "RAS" or dims != 3:
        raise ValueError(f"orientation {orientation!r} is not defined for {dims}D images")
    if len(direction) != dims * dims:
        raise ValueError(f"a {dims}D direction has {dims * dims} values, not {len(direction)}")
    matrix = [[float(direction[r * dims + c]) for c in range(dims)] for r in range(dims)]
    entries = sorted(((abs(matrix[r][c]), r, c) for r in range(dims) for c in range(dims)), reverse=True)
    axis_of_patient: dict[int, int] = {}  # patient (LPS) row -> image axis
    for _, row, col in entries:
        if row not in axis_of_patient and col not in axis_of_patient.values():
            axis_of_patient[row] = col
    order, reverse = [], []
    for k in range(dims):  # canonical array axis k is canonical image axis dims - 1 - k
        row = dims - 1 - k
        col = axis_of_patient[row]
        order.append(dims - 1 - col)
        reverse.append(matrix[row][col] * _RAS_SIGNS[row] < 0)
    return AxisTurn(tuple(order), tuple(reverse))


def left_right_axis(direction: Sequence[float], dims: int) -> int:
    """The array axis (arrays are ``(z, y, x)``, SimpleITK order) whose image axis
    points closest to the patient's left-right axis.

    ``direction`` is the row-major ITK direction matrix (LPS rows, one column
    per image axis), as :class:`~ldseg.io.images.Geometry` keeps it.
    """
    if len(direction) != dims * dims:
        raise ValueError(f"a {dims}D direction has {dims * dims} values, not {len(direction)}")
    left_right_row = [abs(float(v)) for v in direction[:dims]]
    image_axis = max(range(dims), key=lambda c: left_right_row[c])
    return dims - 1 - image_axis
