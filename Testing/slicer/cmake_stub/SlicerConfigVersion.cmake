# Version of the stand-in SDK (find_package sets Slicer_VERSION_MAJOR/MINOR from it, as with Slicer's own
# SlicerConfigVersion.cmake). -DLDSEG_STUB_SLICER_VERSION=5.6 checks the extension's version guard.
if(DEFINED LDSEG_STUB_SLICER_VERSION)
  set(PACKAGE_VERSION ${LDSEG_STUB_SLICER_VERSION})
else()
  set(PACKAGE_VERSION 5.9.0)
endif()
set(PACKAGE_VERSION_COMPATIBLE TRUE)
