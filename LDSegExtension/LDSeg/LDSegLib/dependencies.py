"""What the engine needs in Slicer's Python, checked without importing it; installed only when the user agrees.

- torch comes through the PyTorch extension's installer (``PyTorchUtils``), which picks
  the CUDA build that fits the driver; plain pip only when that extension is absent.
- Slicer's own SimpleITK, numpy and VTK are never installed, upgraded or replaced:
  installs run with a pip constraints file that pins their current versions.
- The engine (``ldseg``) ships inside the extension; its version must agree with the
  module's on major.minor, or the user is told which side to update.
"""

import dataclasses
import importlib.metadata
import importlib.util
import os
import re
import tempfile

from . import MODULE_VERSION

#: Slicer's own packages: never installed or upgraded by this module.
PROTECTED = ("numpy", "SimpleITK", "vtk")


@dataclasses.dataclass(frozen=True)
class Requirement:
    distribution: str  # pip name
    module: str  # import name
    specifier: str = ""

    @property
    def pip(self):
        return f"{self.distribution}{self.specifier}"


#: The engine's needs beyond Slicer's own packages (mirrors pyproject.toml's dependencies).
TORCH = Requirement("torch", "torch", ">=2.1")
ENGINE_REQUIREMENTS = (
    TORCH,
    Requirement("nibabel", "nibabel", ">=5.0"),
    Requirement("scikit-image", "skimage", ">=0.21"),
    Requirement("scipy", "scipy", ">=1.10"),
    Requirement("matplotlib", "matplotlib", ">=3.7"),
)


def _versionTuple(text):
    return tuple(int(x) for x in re.findall(r"\d+", text.split("+")[0])[:3])


def satisfies(version, specifier):
    """Whether ``version`` meets a PEP 440 ``specifier`` (">=2.1", "<3,>=2.1", "==2.*", "~=1.4", ...).

    Uses ``packaging`` (Slicer ships it). Local labels such as "+cpu" are accepted, pre-releases too
    (a nightly torch is what a user may have on purpose). A version or specifier that cannot be
    parsed does not satisfy: the user is asked to install rather than left with a broken engine.
    """
    if not specifier:
        return True
    try:
        from packaging.specifiers import InvalidSpecifier, SpecifierSet
        from packaging.version import InvalidVersion, Version
    except ImportError:  # pragma: no cover -- Slicer and the test environment have packaging
        return _satisfiesWithoutPackaging(version, specifier)
    try:
        return SpecifierSet(specifier).contains(Version(version), prereleases=True)
    except (InvalidSpecifier, InvalidVersion):
        return False


def _satisfiesWithoutPackaging(version, specifier):
    """Only ">=X.Y" clauses can be checked without packaging; anything else counts as not met."""
    for clause in specifier.split(","):
        match = re.fullmatch(r">=\s*([\d.]+)", clause.strip())
        if not match or _versionTuple(version) < _versionTuple(match.group(1)):
            return False
    return True


def installedVersion(distribution):
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def engineVersion(findSpec=importlib.util.find_spec):
    """``ldseg.__version__`` read from the package's source (no import: no torch in the GUI process)."""
    spec = findSpec("ldseg")
    if spec is None or not spec.submodule_search_locations:
        return None
    init = os.path.join(list(spec.submodule_search_locations)[0], "__init__.py")
    try:
        with open(init, encoding="utf-8") as f:
            match = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", f.read(), re.M)
    except OSError:
        return None
    return match.group(1) if match else None


def versionMismatch(moduleVersion, engineVersionText):
    """A user-facing sentence when module and engine disagree on major.minor, else None."""
    if engineVersionText is None:
        return (
            "The LDSeg engine (ldseg) is not installed with this module. Reinstall the LDSeg extension "
            "from the Extensions Manager."
        )
    if _versionTuple(moduleVersion)[:2] != _versionTuple(engineVersionText)[:2]:
        newer = "module" if _versionTuple(moduleVersion) > _versionTuple(engineVersionText) else "engine"
        return (
            f"Version mismatch: the LDSeg module is {moduleVersion} but its engine (ldseg) is "
            f"{engineVersionText}. The {'engine' if newer == 'module' else 'module'} is older: update the "
            "LDSeg extension in the Extensions Manager (and restart Slicer) so both come from the same release."
        )
    return None


@dataclasses.dataclass
class DependencyReport:
    missing: list  # Requirement not installed
    outdated: list  # (Requirement, installed version)
    engineVersion: str
    mismatch: str  # sentence or None
    torchVersion: str

    @property
    def ok(self):
        return not self.missing and not self.outdated and not self.mismatch

    @property
    def engineMissing(self):
        return self.engineVersion is None

    @property
    def torchMissing(self):
        return any(r.distribution == "torch" for r in self.missing)

    @property
    def blocking(self):
        """A sentence when no engine run can start (engine absent or a package missing), else None."""
        if self.engineMissing:
            return self.mismatch
        if self.missing:
            return "Missing: " + ", ".join(r.pip for r in self.missing)
        return None

    @property
    def toInstall(self):
        return list(self.missing) + [r for r, _ in self.outdated]

    def describe(self):
        lines = []
        if self.mismatch:
            lines.append(self.mismatch)
        if self.missing:
            lines.append("Missing: " + ", ".join(r.pip for r in self.missing))
        if self.outdated:
            lines.append(
                "Too old: " + ", ".join(f"{r.distribution} {v} (needs {r.specifier})" for r, v in self.outdated)
            )
        if not lines:
            lines.append(f"Ready: engine {self.engineVersion}, torch {self.torchVersion}.")
        return "\n".join(lines)


def checkDependencies(
    requirements=ENGINE_REQUIREMENTS,
    findSpec=importlib.util.find_spec,
    versionOf=installedVersion,
    moduleVersion=MODULE_VERSION,
):
    missing, outdated = [], []
    for requirement in requirements:
        if findSpec(requirement.module) is None:
            missing.append(requirement)
            continue
        version = versionOf(requirement.distribution)
        if version and not satisfies(version, requirement.specifier):
            outdated.append((requirement, version))
    engine = engineVersion(findSpec)
    return DependencyReport(
        missing,
        outdated,
        engine,
        versionMismatch(moduleVersion, engine),
        versionOf("torch") if findSpec("torch") is not None else None,
    )


def protectedConstraints(versionOf=installedVersion):
    """pip constraint lines pinning Slicer's own packages to what is installed now."""
    lines = []
    for name in PROTECTED:
        version = versionOf(name)
        if version:
            lines.append(f"{name}=={version}")
    return lines


def installPlan(report):
    """(torch requirement or None, other pip requirements) the user is asked about."""
    torch = next((r for r in report.toInstall if r.distribution == "torch"), None)
    others = [r.pip for r in report.toInstall if r.distribution != "torch" and r.distribution not in PROTECTED]
    return torch, others


def confirmationText(report):
    torch, others = installPlan(report)
    parts = []
    if torch:
        parts.append(f"PyTorch ({torch.pip}), through the PyTorch extension: a large download (1-3 GB with CUDA)")
    if others:
        parts.append("Python packages: " + ", ".join(others))
    return (
        "LDSeg needs to install:\n- "
        + "\n- ".join(parts)
        + "\n\nSlicer's own SimpleITK, numpy and VTK stay as they are. Install now?"
    )


def installMissing(report, confirm, pipInstall, installTorch=None, versionOf=installedVersion):
    """Install what the report lists after ``confirm(text)`` says yes. Returns the pip requirements installed.

    ``pipInstall(args)`` gets a pip argument list (``slicer.util.pip_install`` in Slicer);
    ``installTorch(specifier)`` is the PyTorch extension's installer when available.
    """
    torch, others = installPlan(report)
    if not torch and not others:
        return []
    if not confirm(confirmationText(report)):
        return []
    installed = []
    if torch:
        if installTorch is not None:
            if installTorch(torch.specifier) is None:
                raise RuntimeError("PyTorch was not installed.")
        else:
            others = [torch.pip] + others
    if others:
        with tempfile.TemporaryDirectory(prefix="LDSeg-pip-") as folder:
            constraints = os.path.join(folder, "slicer-constraints.txt")
            with open(constraints, "w", encoding="utf-8") as f:
                f.write("\n".join(protectedConstraints(versionOf)) + "\n")
            pipInstall(["-c", constraints] + others)
        installed += others
    if torch and installTorch is not None:
        installed.insert(0, torch.pip)
    return installed
