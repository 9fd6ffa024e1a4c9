"""The example plug-in image, built here from this machine's Debian packages (no registry):
Debian's Python 3.11 in a minimal root file system, the HU histogram plug-in's program at
``/plugin/hu_histogram.py``, ``deployments/example-image/plugin.json`` at ``/plugin.json``, and
an entrypoint that runs the program on ``/circus/in`` and ``/circus/out``.

``python -m circus_tasks.testing.example_image`` builds it (``docker`` must reach an engine)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from circus_tasks.plugins.runners.docker import docker, image_id
from circus_tasks.settings import PROJECT_DIR

IMAGE = "circus/hu-histogram:1.0.0"
"""The example image's name."""

PLUGIN_ID = "hu-histogram-image@1.0.0"
"""The plug-in it registers as (the folder plug-in it equals is ``hu-histogram@1.0.0``)."""

PACKAGES = (
    "python3.11-minimal",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "libc6",
    "zlib1g",
    "libexpat1",
)
"""Debian packages whose files make the root file system."""

SKIPPED = ("/usr/share/doc", "/usr/share/man", "/usr/share/locale", "/usr/share/lintian")

ENTRYPOINT = ["/usr/bin/python3.11", "/plugin/hu_histogram.py", "/circus/in", "/circus/out"]


def package_files(package: str, scratch: Path) -> tuple[Path, list[str]]:
    """Where a package's files are and which: the installed package's (``dpkg -L``), or
    else its ``.deb`` fetched from Debian's archive and unpacked in ``scratch``."""
    listed = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=False)
    if listed.returncode == 0:
        return Path("/"), listed.stdout.splitlines()
    subprocess.run(["apt-get", "download", package], cwd=scratch, check=True, capture_output=True)
    (deb,) = scratch.glob(f"{package}_*.deb")
    root = scratch / package
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    names = [f"/{p.relative_to(root)}" for p in root.rglob("*")]
    return root, names


def root_file_system(target: Path, files: dict[str, Path]) -> Path:
    """Write the image's files into ``target``: the packages', then ``files`` (path in the
    image -> file here). Returns ``target``."""
    scratch = target.parent / "debs"
    scratch.mkdir(exist_ok=True)
    for usr in ("bin", "lib", "lib64", "sbin"):  # Debian 12's merged /usr
        (target / "usr" / usr).mkdir(parents=True)
        (target / usr).symlink_to(f"usr/{usr}")
    for package in PACKAGES:
        root, names = package_files(package, scratch)
        for name in names:
            if name.startswith(SKIPPED) or name in ("/", "/."):
                continue
            _copy(root / name.lstrip("/"), target / name.lstrip("/"))
    for folder in ("tmp", "circus/in", "circus/out"):
        (target / folder).mkdir(parents=True, exist_ok=True)
    (target / "tmp").chmod(0o1777)
    for inside, source in files.items():
        _copy(source, target / inside.lstrip("/"))
    return target


def _copy(source: Path, dest: Path) -> None:
    """A file or a link to a file (folders are made as their files need them)."""
    if source.is_dir():
        return
    if source.is_symlink():
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.unlink(missing_ok=True)
        dest.symlink_to(source.readlink())
    elif source.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest)


def example_files() -> dict[str, Path]:
    """The example image's own files: path in the image -> file here."""
    return {
        "/plugin/hu_histogram.py": PROJECT_DIR / "plugins" / "hu-histogram" / "hu_histogram.py",
        "/plugin.json": PROJECT_DIR / "deployments" / "example-image" / "plugin.json",
    }


def build(
    image: str = IMAGE,
    files: dict[str, Path] | None = None,
    entrypoint: list[str] | None = None,
) -> str:
    """Build a Python plug-in image into the engine ``docker`` reaches (by default the
    example: the HU histogram program and its manifest); returns the image's id."""
    files = example_files() if files is None else files
    with tempfile.TemporaryDirectory(prefix="circus-image-") as work:
        root = root_file_system(Path(work) / "root", files)
        archive = Path(work) / "root.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(root, arcname=".")
        change = f"ENTRYPOINT {json.dumps(entrypoint or ENTRYPOINT)}"
        done = docker("import", "--change", change, str(archive), image, timeout=300)
    ident = image_id(image) if done.returncode == 0 else None
    if ident is None:
        raise RuntimeError(f"docker import failed: {done.stderr.strip()}")
    return ident


if __name__ == "__main__":
    print(build(sys.argv[1] if len(sys.argv) > 1 else IMAGE))
