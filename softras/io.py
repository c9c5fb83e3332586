"""Reading meshes from Wavefront OBJ files."""

from __future__ import annotations

from pathlib import Path

import torch


def load_obj_geometry(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertices [V, 3] (float32) and triangle faces [F, 3] (int64, 0-based) of an OBJ file.

    Polygons are fan-triangulated; negative (relative) indices are resolved. A malformed
    line raises ValueError naming the file and the line number.
    """
    path = Path(path)
    vertices: list[list[float]] = []
    faces: list[list[int]] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            try:
                if parts[0] == "v":
                    vertices.append([float(x) for x in parts[1:4]])
                    if len(vertices[-1]) != 3:
                        raise ValueError("a vertex needs 3 coordinates")
                elif parts[0] == "f":
                    idx = []
                    for token in parts[1:]:
                        i = int(token.split("/")[0])
                        idx.append(i - 1 if i > 0 else len(vertices) + i)
                    if len(idx) < 3:
                        raise ValueError("a face needs at least 3 vertices")
                    if any(not 0 <= i < len(vertices) for i in idx):
                        raise ValueError("vertex index out of range")
                    faces.extend([idx[0], idx[k], idx[k + 1]] for k in range(1, len(idx) - 1))
            except ValueError as err:
                raise ValueError(f"{path}:{lineno}: {err}: {line.strip()!r}") from None
    return torch.tensor(vertices, dtype=torch.float32).reshape(-1, 3), torch.tensor(
        faces, dtype=torch.int64
    ).reshape(-1, 3)
