"""The parameter node's annotations under the rules Slicer's parameterNodeWrapper and qMRMLNodeComboBox apply.

Slicer's ``connectGui`` overwrites a node combo box's ``nodeTypes`` with the class names of the
field's annotation (``parameterNodeWrapper/util.py``: ``getNodeTypes``, ``isNodeOrUnionOfNodes``;
the same in Slicer 5.8 to 5.12 and main), and the combo box, with ``showChildNodeTypes`` false,
lists a node only when its exact class is among those names (``qMRMLSortFilterProxyModel::
filterAcceptsNode``). The rules are restated below and applied to our annotations with real MRML
nodes, so an RGB volume (vtkMRMLVectorVolumeNode, a subclass of the scalar volume) must be named.
"""

import typing
import xml.etree.ElementTree as ET

import pytest
from slicertesting import MODULE_DIR, slicer

from LDSegLib import parameters

UI = MODULE_DIR / "Resources" / "UI" / "LDSeg.ui"


def unannotated(hint):
    return typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint


def isNodeClass(t):
    return isinstance(t, type) and issubclass(t, slicer.vtkMRMLNode)


def wrapperNodeTypes(hint):
    """The class names connectGui writes into the combo box's nodeTypes for a field's annotation."""
    t = unannotated(hint)
    if isNodeClass(t):
        return (t().GetClassName(),)
    if typing.get_origin(t) is typing.Union:
        args = [unannotated(a) for a in typing.get_args(t)]
        assert all(a is type(None) or isNodeClass(a) for a in args), f"{hint}: not a union of nodes"
        return tuple(a().GetClassName() for a in args if isNodeClass(a))
    raise TypeError(f"{hint} is not a node annotation")


def wrapperCanStoreNone(hint):
    """A single node type stores None itself; a union needs None as a member (its None serializer)."""
    t = unannotated(hint)
    return isNodeClass(t) or type(None) in typing.get_args(t)


def comboBoxShows(node, nodeTypes, showChildNodeTypes, hideChildNodeTypes=()):
    """Whether a qMRMLNodeComboBox with these properties lists ``node`` (hidden-node rules aside)."""
    for nodeType in nodeTypes:
        if not node.IsA(nodeType):
            continue
        if not showChildNodeTypes and node.GetClassName() != nodeType:
            continue
        if showChildNodeTypes and any(node.IsA(h) for h in hideChildNodeTypes):
            return False
        return True
    return False


def uiComboProperties(parameterName):
    for w in ET.parse(UI).getroot().iter("widget"):
        prop = w.find("property[@name='SlicerParameterName']")
        if prop is not None and prop.findtext("string") == parameterName:
            show = w.find("property[@name='showChildNodeTypes']/bool")
            hide = [s.text for s in w.findall("property[@name='hideChildNodeTypes']/stringlist/string")]
            return (show is None or show.text == "true"), hide
    raise KeyError(parameterName)


HINTS = typing.get_type_hints(parameters.LDSegParameterNode, include_extras=True)
NODE_FIELDS = [name for name, hint in HINTS.items() if name in ("inputVolume", "roi", "segmentation", "uncertainty")]


def test_input_volume_accepts_scalar_and_rgb_volumes_not_label_maps(scene):
    nodeTypes = wrapperNodeTypes(HINTS["inputVolume"])
    assert nodeTypes == ("vtkMRMLScalarVolumeNode", "vtkMRMLVectorVolumeNode")
    show, hide = uiComboProperties("inputVolume")
    scalar = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "ct")
    rgb = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "histology")
    labels = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    assert comboBoxShows(scalar, nodeTypes, show, hide)
    assert comboBoxShows(rgb, nodeTypes, show, hide)  # the glas model's input
    assert not comboBoxShows(labels, nodeTypes, show, hide)
    # what the old annotation did: the RGB volume disappeared
    assert not comboBoxShows(rgb, ("vtkMRMLScalarVolumeNode",), show, hide)


@pytest.mark.parametrize("field", NODE_FIELDS)
def test_every_node_field_is_servable_and_can_be_empty(field):
    nodeTypes = wrapperNodeTypes(HINTS[field])
    assert nodeTypes and all(hasattr(slicer, name) for name in nodeTypes)
    assert wrapperCanStoreNone(HINTS[field])  # "no volume selected" must be storable


def test_unset_folder_reads_as_empty():
    assert parameters.folderText(None) == "" and parameters.folderText(".") == ""
    import pathlib

    assert parameters.folderText(pathlib.Path()) == ""  # the wrapper's default path
    assert parameters.folderText(pathlib.Path("/data/cases")) == "/data/cases"
