"""Procedural objects of the six NOCS categories in the NOCS canonical frame.

Canonical frame (as NOCS): y up, the object centred on the centre of its tight axis-aligned
box, metres. Bottle, bowl, can and mug are surfaces of revolution about y; the mug handle
points to +x; the camera lens points to +z; the laptop hinge is at -z with the screen facing
+z. ``ObjectModel.size`` is the tight box edge lengths (x, y, z).

Every random choice is drawn from ``PARAM_RANGES`` (metres, degrees), which the docs and the
dataset card quote.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import trimesh

from genpose_ros import CATEGORIES
from genpose_ros.data.textures import make_texture, random_colour

PARAM_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "bottle": {"height": (0.14, 0.32), "radius": (0.025, 0.05), "shoulder_frac": (0.5, 0.78),
               "neck_radius_frac": (0.28, 0.55), "cap_height": (0.012, 0.03)},
    "bowl": {"radius": (0.055, 0.11), "height_frac": (0.35, 0.7), "foot_frac": (0.35, 0.6),
             "wall": (0.003, 0.008), "roundness": (0.35, 0.9)},
    "camera": {"width": (0.09, 0.15), "height_frac": (0.55, 0.8), "depth_frac": (0.35, 0.6),
               "lens_radius_frac": (0.25, 0.42), "lens_length": (0.015, 0.08),
               "lens_offset_frac": (-0.2, 0.2)},
    "can": {"radius": (0.025, 0.045), "height": (0.065, 0.17), "bevel": (0.002, 0.006)},
    "laptop": {"width": (0.26, 0.40), "depth_frac": (0.62, 0.75), "base_thickness": (0.012, 0.025),
               "lid_thickness": (0.004, 0.01), "lid_angle_deg": (60.0, 135.0)},
    "mug": {"radius": (0.032, 0.055), "height": (0.07, 0.12), "taper": (0.8, 1.0),
            "wall": (0.003, 0.007), "handle_height_frac": (0.45, 0.8),
            "handle_reach": (0.018, 0.04), "handle_tube": (0.004, 0.009),
            "handle_squareness": (2.0, 5.0)},
}
"""Sampling range of every shape parameter, per category (uniform)."""

TEXTURE_SIZE = 64


@dataclass
class ObjectModel:
    """A textured triangle mesh in its canonical frame.

    Attributes:
        category: one of CATEGORIES, or "clutter".
        triangles: (F, 3, 3) float32 corner positions (metres).
        corner_normals: (F, 3, 3) float32 unit normals at the corners (smooth or flat parts).
        corner_uv: (F, 3, 2) float32 texture coordinates (wrap around).
        part: (F,) int16 part index into ``textures``.
        textures: (P, T, T, 3) uint8 one texture per part.
        shininess: (P,) float32 specular strength per part (0 = matte).
        handle_part: part index of the mug handle, -1 if none.
        size: (3,) tight box edge lengths (x, y, z), metres.
        params: the sampled shape parameters.
    """

    category: str
    triangles: np.ndarray
    corner_normals: np.ndarray
    corner_uv: np.ndarray
    part: np.ndarray
    textures: np.ndarray
    shininess: np.ndarray
    handle_part: int
    size: np.ndarray
    params: dict = field(default_factory=dict)

    @property
    def n_faces(self) -> int:
        return len(self.triangles)


@dataclass
class _Part:
    mesh: trimesh.Trimesh
    smooth: bool
    uv: str  # "cyl" or "box"
    texture: np.ndarray
    shininess: float = 0.0


def _y_up(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Turn a mesh built around +z (trimesh revolve/cylinder) into one around +y."""
    mesh.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0]))
    return mesh


def _revolve(profile, sections: int = 40) -> trimesh.Trimesh:
    """Surface of revolution about y of a (radius, height) polyline."""
    return _y_up(trimesh.creation.revolve(np.asarray(profile, dtype=float), sections=sections))


def _box(extents, centre) -> trimesh.Trimesh:
    return trimesh.creation.box(extents=extents,
                                transform=trimesh.transformations.translation_matrix(centre))


def _cylinder_z(radius, length, centre, sections=32) -> trimesh.Trimesh:
    return trimesh.creation.cylinder(radius=radius, height=length, sections=sections,
                                     transform=trimesh.transformations.translation_matrix(centre))


def _tube(path: np.ndarray, radius: float, sides: int = 12) -> trimesh.Trimesh:
    """Open tube of circular section swept along a (K, 3) polyline."""
    tangents = np.gradient(path, axis=0)
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    ref = np.array([0.0, 0.0, 1.0])
    n1 = np.cross(tangents, ref)
    n1 /= np.linalg.norm(n1, axis=1, keepdims=True)
    n2 = np.cross(tangents, n1)
    ang = np.linspace(0, 2 * np.pi, sides, endpoint=False)
    ring = (np.cos(ang)[None, :, None] * n1[:, None] + np.sin(ang)[None, :, None] * n2[:, None])
    verts = (path[:, None] + radius * ring).reshape(-1, 3)
    faces = []
    for k in range(len(path) - 1):
        for j in range(sides):
            a, b = k * sides + j, k * sides + (j + 1) % sides
            c, d = a + sides, b + sides
            faces += [[a, c, b], [b, c, d]]
    return trimesh.Trimesh(verts, np.array(faces), process=False)


def _corner_uv(tris: np.ndarray, normals: np.ndarray, mode: str, lo: np.ndarray,
               hi: np.ndarray) -> np.ndarray:
    """(F, 3, 2) texture coordinates: cylindrical about y, or box (tri-planar) mapping."""
    ext = np.maximum(hi - lo, 1e-6)
    rel = (tris - lo) / ext.max()
    if mode == "cyl":
        u = np.arctan2(tris[..., 0], tris[..., 2]) / (2 * np.pi) + 0.5
        # faces across the seam: unwrap so interpolation does not sweep the whole texture
        span = u.max(axis=1, keepdims=True) - u.min(axis=1, keepdims=True)
        u = np.where((span > 0.5) & (u < 0.5), u + 1.0, u)
        v = (tris[..., 1] - lo[1]) / ext[1]
        return np.stack([u, v], axis=-1)
    axis = np.abs(normals.mean(axis=1)).argmax(axis=1)  # dominant face axis
    pick = {0: (2, 1), 1: (0, 2), 2: (0, 1)}
    uv = np.empty(tris.shape[:2] + (2,))
    for ax, (i, j) in pick.items():
        sel = axis == ax
        uv[sel] = rel[sel][..., [i, j]]
    return uv


def _assemble(category: str, parts: list[_Part], handle_part: int = -1,
              params: dict | None = None) -> ObjectModel:
    """Concatenate parts, centre on the tight box, compute normals and texture coordinates."""
    allv = np.concatenate([p.mesh.vertices for p in parts])
    lo, hi = allv.min(axis=0), allv.max(axis=0)
    centre = 0.5 * (lo + hi)
    tris, normals, uvs, part_ids = [], [], [], []
    for k, p in enumerate(parts):
        m = p.mesh
        t = m.vertices[m.faces] - centre
        if p.smooth:
            n = m.vertex_normals[m.faces]
        else:
            n = np.repeat(m.face_normals[:, None], 3, axis=1)
        tris.append(t)
        normals.append(n)
        uvs.append(_corner_uv(t, n, p.uv, lo - centre, hi - centre))
        part_ids.append(np.full(len(t), k, dtype=np.int16))
    return ObjectModel(
        category=category,
        triangles=np.concatenate(tris).astype(np.float32),
        corner_normals=np.concatenate(normals).astype(np.float32),
        corner_uv=np.concatenate(uvs).astype(np.float32),
        part=np.concatenate(part_ids),
        textures=np.stack([p.texture for p in parts]),
        shininess=np.array([p.shininess for p in parts], dtype=np.float32),
        handle_part=handle_part,
        size=(hi - lo).astype(np.float64),
        params=params or {},
    )


def _draw(rng: np.random.Generator, category: str, ranges: dict | None = None) -> dict:
    """One uniform draw per parameter of ``ranges`` (default: the category's PARAM_RANGES)."""
    return {k: float(rng.uniform(*r)) for k, r in (ranges or PARAM_RANGES[category]).items()}


def _tex(rng, pattern=None, base=None):
    return make_texture(rng, pattern, TEXTURE_SIZE, base)


def make_bottle(rng: np.random.Generator, ranges: dict | None = None) -> ObjectModel:
    """A bottle; with a ``flatness`` range the body is squeezed along x (squeeze bottles)."""
    p = _draw(rng, "bottle", ranges)
    H, R = p["height"], min(p["radius"], 0.3 * p["height"])
    hs, rn, hc = p["shoulder_frac"] * H, max(p["neck_radius_frac"] * R, 0.009), p["cap_height"]
    hn = hs + 0.6 * (H - hc - hs)  # end of the shoulder curve
    s = np.linspace(0, 1, 10)
    shoulder = np.stack([rn + (R - rn) * 0.5 * (1 + np.cos(np.pi * s)), hs + (hn - hs) * s], 1)
    profile = np.concatenate([[[0, 0], [0.92 * R, 0], [R, 0.008]], shoulder,
                              [[rn, H - hc], [0, H - hc]]])
    cap_r = rn + rng.uniform(0.0005, 0.004)
    cap = _revolve([[0, H - hc], [cap_r, H - hc], [cap_r, H - 0.002], [cap_r - 0.002, H], [0, H]],
                   24)
    body_tex = _tex(rng, rng.choice(["label", "solid", "stripes", "noise"]))
    body = _revolve(profile)
    if "flatness" in p:
        body.apply_scale([p["flatness"], 1.0, 1.0])
    parts = [_Part(body, True, "cyl", body_tex, rng.uniform(0.0, 0.8)),
             _Part(cap, True, "cyl", _tex(rng, "solid"), rng.uniform(0.0, 0.5))]
    return _assemble("bottle", parts, params=p)


def make_bowl(rng: np.random.Generator, ranges: dict | None = None) -> ObjectModel:
    p = _draw(rng, "bowl", ranges)
    R, h, rf, w = p["radius"], p["height_frac"] * p["radius"], p["foot_frac"] * p["radius"], p["wall"]
    foot_h = 0.06 * h
    s = np.linspace(0, 1, 12)
    outer = np.stack([rf + (R - rf) * s ** p["roundness"], foot_h + (h - foot_h) * s], 1)
    inner = np.stack([np.maximum(rf + (R - rf) * s ** p["roundness"] - w, 0.0),
                      foot_h + w + (h - foot_h - w) * s], 1)[::-1]
    profile = np.concatenate([[[0, foot_h * 0.5], [rf * 0.9, 0], [rf, 0]], outer,
                              [[R - w, h]], inner[1:], [[0, foot_h + w]]])
    base = random_colour(rng)
    tex_out = _tex(rng, rng.choice(["solid", "stripes", "dots", "noise"]), base)
    parts = [_Part(_revolve(profile, 48), True, "cyl", tex_out, rng.uniform(0.1, 0.9))]
    return _assemble("bowl", parts, params=p)


def make_can(rng: np.random.Generator, ranges: dict | None = None, min_aspect: float = 1.3) -> ObjectModel:
    """A can at least ``min_aspect`` radii tall."""
    p = _draw(rng, "can", ranges)
    R, H, b = p["radius"], p["height"], p["bevel"]
    H = max(H, min_aspect * R)
    side = _revolve([[R - b, 0.0], [R, b], [R, H - 1.5 * b], [R - 0.8 * b, H]], 40)
    lid = _revolve([[0, H - 0.003], [R - 1.2 * b, H - 0.003], [R - 0.8 * b, H]], 40)
    bottom = _revolve([[R - b, 0.0], [0.0, 0.002]], 40)
    metal = np.full(3, rng.uniform(0.55, 0.85))
    parts = [_Part(side, True, "cyl", _tex(rng, rng.choice(["label", "stripes", "solid"])),
                   rng.uniform(0.2, 1.0)),
             _Part(lid, True, "box", _tex(rng, "solid", metal), 0.9),
             _Part(bottom, True, "box", _tex(rng, "solid", metal), 0.5)]
    return _assemble("can", parts, params=p)


def make_mug(rng: np.random.Generator, ranges: dict | None = None) -> ObjectModel:
    p = _draw(rng, "mug", ranges)
    R, H, w = p["radius"], p["height"], p["wall"]
    Rb = p["taper"] * R

    def radius_at(y):
        return Rb + (R - Rb) * y / H

    body = _revolve([[0, 0], [Rb - 0.002, 0], [Rb, 0.003], [R, H], [R - w, H],
                     [Rb - w, 2 * w], [0, 2 * w]], 40)
    # handle: right half of a superellipse in the x-y plane, tube ends flush with the wall
    hh = p["handle_height_frac"] * H / 2
    yc = H / 2 + rng.uniform(-0.1, 0.1) * H
    tube_r = p["handle_tube"]
    hh = max(min(hh, yc - tube_r - 0.004, H - yc - tube_r - 0.004), 0.004)  # below the rim
    a = np.linspace(-np.pi / 2, np.pi / 2, 24)
    e = 2.0 / p["handle_squareness"]
    ys = yc + hh * np.sign(np.sin(a)) * np.abs(np.sin(a)) ** e
    xs = radius_at(ys) + p["handle_reach"] * np.abs(np.cos(a)) ** e
    path = np.stack([xs, ys, np.zeros_like(xs)], 1)
    handle = _tube(path, tube_r)
    base = random_colour(rng)
    body_tex = _tex(rng, rng.choice(["solid", "solid", "stripes", "dots", "label"]), base)
    handle_tex = body_tex if rng.random() < 0.7 else _tex(rng, "solid")
    parts = [_Part(body, True, "cyl", body_tex, rng.uniform(0.2, 1.0)),
             _Part(handle, True, "box", handle_tex, rng.uniform(0.2, 1.0))]
    return _assemble("mug", parts, handle_part=1, params=p)


def make_laptop(rng: np.random.Generator, ranges: dict | None = None) -> ObjectModel:
    p = _draw(rng, "laptop", ranges)
    W, D = p["width"], p["depth_frac"] * p["width"]
    tb, tl, theta = p["base_thickness"], p["lid_thickness"], np.deg2rad(p["lid_angle_deg"])
    shell = random_colour(rng, grey_prob=0.7) * rng.uniform(0.3, 1.0)
    base = _box([W, tb, D], [0, tb / 2, 0])
    keys = _box([0.85 * W, 0.0008, 0.45 * D], [0, tb + 0.0004, -0.05 * D])
    # lid: closed it would lie on the base; open it turns about the hinge (x axis at the back)
    hinge = trimesh.transformations.translation_matrix([0, tb, -D / 2])
    turn = trimesh.transformations.rotation_matrix(-theta, [1, 0, 0])
    lid_tf = hinge @ turn
    lid = _box([W, tl, D], [0, tl / 2, D / 2])
    lid.apply_transform(lid_tf)
    screen = _box([0.9 * W, 0.0008, 0.85 * D], [0, -0.0004, D / 2])
    screen.apply_transform(lid_tf)
    key_tex = _tex(rng, "checker", random_colour(rng, 1.0) * 0.3)
    screen_tex = _tex(rng, rng.choice(["solid", "noise", "stripes"]), np.full(3, rng.uniform(0, 0.3)))
    parts = [_Part(base, False, "box", _tex(rng, "solid", shell), 0.6),
             _Part(keys, False, "box", key_tex, 0.1),
             _Part(lid, False, "box", _tex(rng, "solid", shell), 0.6),
             _Part(screen, False, "box", screen_tex, 1.0)]
    return _assemble("laptop", parts, params=p)


def make_camera(rng: np.random.Generator, ranges: dict | None = None, grip_prob: float = 0.8,
                hump_prob: float = 0.6) -> ObjectModel:
    """A camera body with a lens; a grip and a viewfinder hump with the given probabilities."""
    p = _draw(rng, "camera", ranges)
    W = p["width"]
    H, D = p["height_frac"] * W, p["depth_frac"] * W
    lens_r = p["lens_radius_frac"] * H
    L = p["lens_length"]
    lx = p["lens_offset_frac"] * W
    ly = H / 2 - rng.uniform(0.0, 0.1) * H
    body_col = random_colour(rng, grey_prob=0.7) * rng.uniform(0.2, 0.9)
    dark = np.full(3, rng.uniform(0.03, 0.2))
    parts = [_Part(_box([W, H, D], [0, H / 2, 0]), False, "box", _tex(rng, "solid", body_col), 0.4),
             _Part(_cylinder_z(lens_r, L, [lx, ly, D / 2 + L / 2]), True, "cyl",
                   _tex(rng, rng.choice(["solid", "stripes"]), dark), 0.5),
             _Part(_cylinder_z(0.8 * lens_r, 0.002, [lx, ly, D / 2 + L + 0.001]), False, "box",
                   _tex(rng, "solid", np.array([0.05, 0.07, 0.12])), 1.0)]
    if rng.random() < grip_prob:  # grip
        gw = rng.uniform(0.15, 0.3) * W
        gx = W / 2 - gw / 2 if lx < 0 else -W / 2 + gw / 2
        parts.append(_Part(_box([gw, 0.9 * H, D + rng.uniform(0.005, 0.02)], [gx, 0.45 * H, 0.01]),
                           False, "box", _tex(rng, "noise", dark), 0.1))
    if rng.random() < hump_prob:  # viewfinder hump / flash
        hw = rng.uniform(0.2, 0.4) * W
        hh = rng.uniform(0.1, 0.25) * H
        parts.append(_Part(_box([hw, hh, 0.7 * D], [lx, H + hh / 2, -0.05 * D]), False, "box",
                           _tex(rng, "solid", body_col), 0.4))
    return _assemble("camera", parts, params=p)


def make_clutter(rng: np.random.Generator) -> ObjectModel:
    """A distractor (box, cylinder, sphere or cone) that is none of the six categories."""
    kind = rng.choice(["box", "cylinder", "sphere", "cone"])
    if kind == "box":
        mesh = _box(rng.uniform(0.03, 0.2, 3), [0, 0, 0])
        smooth, uv = False, "box"
    elif kind == "cylinder":
        mesh = _y_up(trimesh.creation.cylinder(rng.uniform(0.02, 0.08), rng.uniform(0.02, 0.2),
                                               sections=24))
        smooth, uv = True, "cyl"
    elif kind == "sphere":
        mesh = trimesh.creation.icosphere(2, radius=rng.uniform(0.02, 0.07))
        smooth, uv = True, "cyl"
    else:
        mesh = _y_up(trimesh.creation.cone(rng.uniform(0.02, 0.07), rng.uniform(0.04, 0.15),
                                           sections=24))
        smooth, uv = True, "cyl"
    return _assemble("clutter", [_Part(mesh, smooth, uv, _tex(rng), rng.uniform(0, 0.8))],
                     params={"kind": str(kind)})


MAKERS = {"bottle": make_bottle, "bowl": make_bowl, "camera": make_camera, "can": make_can,
          "laptop": make_laptop, "mug": make_mug}
assert tuple(MAKERS) == CATEGORIES


def make_object(category: str, rng: np.random.Generator) -> ObjectModel:
    """A random instance of ``category`` (one of CATEGORIES) from the standard ranges
    (``PARAM_RANGES``; the wide distribution: ``genpose_ros.data.families.sample_object``)."""
    try:
        maker = MAKERS[category]
    except KeyError:
        raise ValueError(f"unknown category {category!r}; known: {', '.join(CATEGORIES)}") from None
    return maker(rng)
