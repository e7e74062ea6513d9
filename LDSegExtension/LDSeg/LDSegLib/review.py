"""Review of a result: per-segment statistics, uncertain regions, the "uncertain" segment.

Works on the segmentation as it is now (after the user's edits), not on the
engine's files: each segment is exported on the SD volume's grid.
"""

import dataclasses

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from . import sceneio

UNCERTAIN_SEGMENT_NAME = "uncertain"
UNCERTAIN_SEGMENT_COLOR = (1.0, 0.9, 0.1)
TAG_UNCERTAIN = "LDSeg.Uncertain"


@dataclasses.dataclass
class SegmentStatistics:
    segmentId: str
    name: str
    voxels: int
    volumeMl: float
    meanSd: float
    maxSd: float
    fractionAboveThreshold: float

    def row(self):
        """Cells of the review table, as displayed."""
        return [
            self.name,
            f"{self.volumeMl:.3f}",
            f"{self.meanSd:.4f}",
            f"{self.maxSd:.4f}",
            f"{100.0 * self.fractionAboveThreshold:.1f} %",
        ]


TABLE_HEADER = ["Segment", "Volume (mL)", "Mean SD", "Max SD", "Voxels > SD threshold"]


def voxelVolumeMm3(volumeNode):
    return float(abs(np.linalg.det(sceneio.ijkToRasArray(volumeNode)[:3, :3])))


def segmentMask(segmentationNode, segmentId, referenceVolumeNode):
    """Boolean ``[k, j, i]`` mask of one segment on the reference volume's grid."""
    segmentation = segmentationNode.GetSegmentation()
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segmentId)
    labelmapNode = slicer.vtkMRMLLabelMapVolumeNode()
    scene = segmentationNode.GetScene()
    scene.AddNode(labelmapNode)
    try:
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentationNode, ids, labelmapNode, referenceVolumeNode, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY
        )
        if not ok:
            raise RuntimeError(f"Could not export segment {segmentation.GetSegment(segmentId).GetName()}.")
        return sceneio.arrayFromImage(labelmapNode) > 0
    finally:
        scene.RemoveNode(labelmapNode)


def segmentStatistics(segmentationNode, sdVolumeNode, threshold, includeUncertain=False):
    """One :class:`SegmentStatistics` per segment, in the segmentation's order."""
    sd = sceneio.arrayFromImage(sdVolumeNode).astype(np.float64)
    voxelMl = voxelVolumeMm3(sdVolumeNode) / 1000.0
    segmentation = segmentationNode.GetSegmentation()
    rows = []
    for n in range(segmentation.GetNumberOfSegments()):
        segmentId = segmentation.GetNthSegmentID(n)
        segment = segmentation.GetSegment(segmentId)
        if not includeUncertain and _isUncertainSegment(segment):
            continue
        mask = segmentMask(segmentationNode, segmentId, sdVolumeNode)
        count = int(mask.sum())
        values = sd[mask]
        rows.append(
            SegmentStatistics(
                segmentId=segmentId,
                name=segment.GetName(),
                voxels=count,
                volumeMl=count * voxelMl,
                meanSd=float(values.mean()) if count else 0.0,
                maxSd=float(values.max()) if count else 0.0,
                fractionAboveThreshold=float((values > threshold).mean()) if count else 0.0,
            )
        )
    return rows


def _isUncertainSegment(segment):
    return bool(segment.HasTag(TAG_UNCERTAIN))


# --------------------------------------------------------------------------- uncertain regions


@dataclasses.dataclass
class UncertainRegion:
    voxels: int
    meanSd: float
    maxSd: float
    sumSd: float
    centroidIjk: tuple
    centroidRas: tuple
    peakIjk: tuple
    peakRas: tuple


def uncertainRegions(sdVolumeNode, threshold, maxRegions=100):
    """Connected regions (26-connected) of SD > threshold, most uncertain first (by summed SD).

    Positions are voxel (i, j, k) and world RAS (the volume's parent transform applied) of the
    region's centroid and of its peak voxel. One labeling pass and one sort of the voxels above
    the threshold, whatever the number of regions: only the ``maxRegions`` first are described.
    """
    sd = sceneio.arrayFromImage(sdVolumeNode)
    mask = sd > threshold
    if not mask.any():
        return []
    connectivity = vtk.vtkImageConnectivityFilter()
    connectivity.SetInputData(sceneio.imageFromArray(mask.astype(np.uint8)))
    connectivity.SetScalarRange(1, 1)
    connectivity.SetExtractionModeToAllRegions()
    connectivity.SetLabelModeToSizeRank()
    connectivity.SetLabelScalarTypeToInt()
    connectivity.Update()
    labels = numpy_support.vtk_to_numpy(connectivity.GetOutput().GetPointData().GetScalars())
    count = int(labels.max())
    # only the voxels above the threshold from here on
    where = np.flatnonzero(mask.ravel())
    regionOf = labels[where].astype(np.int64)
    values = sd.ravel()[where].astype(np.float64)
    sums = np.bincount(regionOf, weights=values, minlength=count + 1)
    sizes = np.bincount(regionOf, minlength=count + 1)
    kk, jj, ii = np.unravel_index(where, sd.shape)
    ci = np.bincount(regionOf, weights=ii, minlength=count + 1)
    cj = np.bincount(regionOf, weights=jj, minlength=count + 1)
    ck = np.bincount(regionOf, weights=kk, minlength=count + 1)
    # peak voxel of every region: sort by (region, SD), the last of each region's run is its peak
    order = np.lexsort((values, regionOf))
    lastOfRegion = np.searchsorted(regionOf[order], np.arange(count + 1), side="right") - 1
    peakIndex = order[np.clip(lastOfRegion, 0, None)]
    maxima = np.where(sizes > 0, values[peakIndex], 0.0)
    ranked = [r for r in np.lexsort((-maxima, -sums)) if r != 0 and sizes[r] > 0][:maxRegions]
    matrix = sceneio.localToWorldMatrix(sdVolumeNode) @ sceneio.ijkToRasArray(sdVolumeNode)
    regions = []
    for label in ranked:
        size = int(sizes[label])
        peak = peakIndex[label]
        pi, pj, pk = int(ii[peak]), int(jj[peak]), int(kk[peak])
        centroid = (ci[label] / size, cj[label] / size, ck[label] / size)
        regions.append(
            UncertainRegion(
                voxels=size,
                meanSd=float(sums[label] / size),
                maxSd=float(values[peak]),
                sumSd=float(sums[label]),
                centroidIjk=centroid,
                centroidRas=tuple((matrix @ np.array([*centroid, 1.0]))[:3]),
                peakIjk=(pi, pj, pk),
                peakRas=tuple((matrix @ np.array([pi, pj, pk, 1.0]))[:3]),
            )
        )
    return regions


def jumpSlicesTo(scene, ras):
    """Center every slice view on ``ras`` (what "go to" does in Slicer's views)."""
    for sliceNode in sceneio.sliceNodes(scene):
        sliceNode.JumpSliceByCentering(float(ras[0]), float(ras[1]), float(ras[2]))


class UncertainRegionNavigator:
    """Next / previous most-uncertain region, wrapping around."""

    def __init__(self, regions=()):
        self.regions = list(regions)
        self.index = -1

    def current(self):
        return self.regions[self.index] if 0 <= self.index < len(self.regions) else None

    def next(self):
        if not self.regions:
            return None
        self.index = (self.index + 1) % len(self.regions)
        return self.regions[self.index]

    def previous(self):
        if not self.regions:
            return None
        self.index = (self.index - 1) % len(self.regions) if self.index >= 0 else len(self.regions) - 1
        return self.regions[self.index]

    def describe(self):
        region = self.current()
        if region is None:
            return "No region above the SD threshold." if not self.regions else ""
        return (
            f"Region {self.index + 1} of {len(self.regions)}: {region.voxels} voxels, "
            f"mean SD {region.meanSd:.3f}, max SD {region.maxSd:.3f}"
        )


def createUncertainSegment(
    segmentationNode, sdVolumeNode, threshold, name=UNCERTAIN_SEGMENT_NAME, color=UNCERTAIN_SEGMENT_COLOR
):
    """Add (or replace) an editable segment of the voxels with SD > ``threshold``; returns its ID."""
    scene = segmentationNode.GetScene()
    segmentation = segmentationNode.GetSegmentation()
    for n in reversed(range(segmentation.GetNumberOfSegments())):
        segment = segmentation.GetNthSegment(n)
        if _isUncertainSegment(segment):
            segmentation.RemoveSegment(segmentation.GetNthSegmentID(n))
    mask = (sceneio.arrayFromImage(sdVolumeNode) > threshold).astype(np.uint8)
    labelmapNode = slicer.vtkMRMLLabelMapVolumeNode()
    sceneio.setIjkToRasArray(labelmapNode, sceneio.ijkToRasArray(sdVolumeNode))
    labelmapNode.SetAndObserveImageData(sceneio.imageFromArray(mask))
    before = {segmentation.GetNthSegmentID(n) for n in range(segmentation.GetNumberOfSegments())}
    scene.AddNode(labelmapNode)
    try:
        if mask.any():
            ok = slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(
                labelmapNode, segmentationNode
            )
            if not ok:
                raise RuntimeError("Could not create the uncertain segment.")
    finally:
        scene.RemoveNode(labelmapNode)
    added = [
        segmentation.GetNthSegmentID(n)
        for n in range(segmentation.GetNumberOfSegments())
        if segmentation.GetNthSegmentID(n) not in before
    ]
    segmentId = added[0] if added else segmentation.AddEmptySegment("", name, color)
    segment = segmentation.GetSegment(segmentId)
    segment.SetName(name)
    segment.SetColor(*color)
    segment.SetTag(TAG_UNCERTAIN, "1")
    return segmentId
