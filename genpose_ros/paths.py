"""Where the package's shared files (models/, config/, launch/) are, in a checkout or an install."""
from __future__ import annotations

import glob
import os
from pathlib import Path

PACKAGE = "genpose_ros"


def package_share() -> Path:
    """The package's share directory: the source checkout, else the ament install share."""
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "package.xml").is_file() and (checkout / "launch").is_dir():
        return checkout
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory(PACKAGE))
    except (ImportError, LookupError) as exc:
        raise FileNotFoundError(f"cannot find the {PACKAGE} share directory: {exc}") from None


def resolve(path: str) -> Path:
    """``path`` as given if it exists, else relative to the package share directory."""
    p = Path(os.path.expanduser(path))
    if p.is_absolute() or p.exists():
        return p
    return package_share() / p


def find_model(pattern: str) -> Path | None:
    """The newest file of the package's ``models/`` matching ``pattern``, or None."""
    hits = glob.glob(str(package_share() / "models" / pattern))
    return Path(max(hits, key=os.path.getmtime)) if hits else None


def pose_checkpoint(path: str | None = None) -> Path:
    """The pose checkpoint to load: ``path`` (as given, else relative to the package share
    directory), or with no path ("" / "auto" / None) the newest ``models/genpose_*.pt``.
    FileNotFoundError with what was looked for when there is none."""
    if path and path != "auto":
        found = resolve(path)
        if not found.is_file():
            raise FileNotFoundError(f"pose checkpoint {path} not found")
        return found
    found = find_model("genpose_*.pt")
    if found is None:
        raise FileNotFoundError(f"no pose checkpoint given and none in {package_share() / 'models'} "
                                "(genpose_*.pt); train one with `genpose train` or pass one")
    return found
