"""Build real (unpacked) distributions with entry points on a folder for sys.path."""

from __future__ import annotations

from pathlib import Path


def make_distribution(
    root: Path,
    name: str,
    modules: dict[str, str],
    entry_points: dict[str, str],
    version: str = "1.2.3",
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for module, code in modules.items():
        (root / f"{module}.py").write_text(code)
    dist_info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    )
    lines = "\n".join(f"{key} = {value}" for key, value in entry_points.items())
    (dist_info / "entry_points.txt").write_text(f"[tradeloom]\n{lines}\n")
    (dist_info / "top_level.txt").write_text("\n".join(modules) + "\n")
    return root
