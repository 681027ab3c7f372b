"""Ray-cast rendering of table-top scenes with Embree (via embreex, trimesh's ray backend).

One primary ray per pixel; the ray directions have z = 1 in the camera frame, so the hit
distance Embree returns is the depth z directly. All object and clutter triangles go into one
Embree scene per frame (per-triangle instance, part and texture indices); the table top and
the floor are analytic planes. Shading is vectorised numpy: textured albedo, smooth normals
from barycentric interpolation, Lambert + Blinn-Phong under one directional light plus ambient,
soft contact shadows on the table, then exposure, gamma, blur and pixel noise.
"""
from __future__ import annotations

import cv2
import numpy as np
from embreex import rtcore_scene as rtcs
from embreex.mesh_construction import TriangleMesh

from genpose_ros.data.camera import D435_640x480, Intrinsics
from genpose_ros.data.frame import Frame, InstanceGT
from genpose_ros.data.scenes import Scene
from genpose_ros.data.sensor import SensorModel

__all__ = ["Renderer", "Frame", "InstanceGT"]

_DEFAULT_SENSOR = object()


def _lookup(tex: np.ndarray, xy: np.ndarray, px_per_m: np.float32) -> np.ndarray:
    """(M, 3) float32 albedo in [0, 1] of a square power-of-two texture tiled over the plane,
    at world coordinates ``xy`` (M, 2) metres (nearest texel)."""
    S = tex.shape[0]
    if S & (S - 1) or tex.shape[:2] != (S, S):
        raise ValueError(f"plane textures must be square with a power-of-two side, got {tex.shape}")
    # shift to positive coordinates (an offset small enough for float32 to keep texel
    # precision over +-19 m at 850 px/m), truncate, wrap
    ij = (xy * px_per_m + np.float32(S * 64)).astype(np.int32) & (S - 1)
    flat = tex.reshape(-1, 3).take(ij[:, 1] * S + ij[:, 0], axis=0)
    return flat.astype(np.float32) * np.float32(1 / 255)


class Renderer:
    """Renders ``Frame``s of a ``Scene``.

    Args:
        intr: camera intrinsics (image size and focal lengths).
        sensor: depth degradation model, or None for clean depth (still rounded to mm).
        min_visible_pixels: instances with fewer mask pixels are removed from the mask and GT.
        handle_min_pixels: a mug handle counts as visible with at least this many pixels.
    """

    def __init__(self, intr: Intrinsics = D435_640x480, sensor: SensorModel | None = _DEFAULT_SENSOR,
                 min_visible_pixels: int = 32, handle_min_pixels: int = 12):
        self.intr = intr
        self.sensor = SensorModel() if sensor is _DEFAULT_SENSOR else sensor
        self.min_visible_pixels = min_visible_pixels
        self.handle_min_pixels = handle_min_pixels
        self._rays = intr.pixel_rays().reshape(-1, 3)  # (P, 3), z = 1
        self._inv_ray_norm = (1.0 / np.linalg.norm(self._rays, axis=1)).astype(np.float32)
        self._view = -self._rays * self._inv_ray_norm[:, None]  # unit vectors to the camera
        self._origins = np.zeros_like(self._rays)

    # ------------------------------------------------------------------ geometry
    def _cast(self, scene: Scene, T_cam_world: np.ndarray):
        """Embree pass. Returns per-pixel depth (inf = miss), face id, barycentric u, v and
        the concatenated per-face arrays."""
        items = scene.objects + scene.clutter
        P = len(self._rays)
        if not items:
            return np.full(P, np.inf, np.float32), np.full(P, -1), None, None, None
        tris, normals, uvs, tex_ids, inst, handle, tex_stack, shin = [], [], [], [], [], [], [], []
        tex_offset = 0
        for obj in items:
            m = obj.model
            T = T_cam_world @ obj.T_world_obj
            R, t = T[:3, :3].astype(np.float32), T[:3, 3].astype(np.float32)
            tris.append(np.einsum("fkj,ij->fki", m.triangles, R) + t)
            normals.append(np.einsum("fkj,ij->fki", m.corner_normals, R))
            uvs.append(m.corner_uv)
            tex_ids.append(m.part.astype(np.int32) + tex_offset)
            inst.append(np.full(m.n_faces, obj.instance_id, np.int32))
            handle.append(m.part == m.handle_part if m.handle_part >= 0
                          else np.zeros(m.n_faces, bool))
            tex_stack.append(m.textures)
            shin.append(m.shininess)
            tex_offset += len(m.textures)
        faces = {
            "normals": np.concatenate(normals), "uv": np.concatenate(uvs),
            "tex": np.concatenate(tex_ids), "inst": np.concatenate(inst),
            "handle": np.concatenate(handle), "textures": np.concatenate(tex_stack),
            "shininess": np.concatenate(shin),
        }
        embree = rtcs.EmbreeScene()
        TriangleMesh(embree, np.ascontiguousarray(np.concatenate(tris), dtype=np.float32))
        sel = self._candidate_pixels(items, T_cam_world)
        if sel is None:
            hit = embree.run(self._origins, self._rays, output=1)
            face, bu, bv, tfar = hit["primID"].astype(np.int64), hit["u"], hit["v"], hit["tfar"]
        else:  # only rays inside the objects' projected boxes can hit anything
            hit = embree.run(self._origins[:len(sel)], self._rays[sel], output=1)
            face = np.full(P, -1, np.int64)
            bu, bv, tfar = (np.zeros(P, np.float32) for _ in range(3))
            face[sel], bu[sel], bv[sel], tfar[sel] = hit["primID"], hit["u"], hit["v"], hit["tfar"]
        depth = np.where(face >= 0, tfar, np.inf).astype(np.float32)
        return depth, face, bu, bv, faces

    def _candidate_pixels(self, items, T_cam_world, near: float = 0.02) -> np.ndarray | None:
        """Flat indices of the pixels inside the union of the projected object boxes, or
        None (all pixels) when a box reaches behind the near plane."""
        H, W = self.intr.height, self.intr.width
        cover = np.zeros((H, W), bool)
        signs = np.array([[a, b, c] for a in (-.5, .5) for b in (-.5, .5) for c in (-.5, .5)])
        for obj in items:
            T = T_cam_world @ obj.T_world_obj
            corners = (signs * obj.model.size) @ T[:3, :3].T + T[:3, 3]
            if (corners[:, 2] < near).any():
                return None
            u = self.intr.fx * corners[:, 0] / corners[:, 2] + self.intr.cx
            v = self.intr.fy * corners[:, 1] / corners[:, 2] + self.intr.cy
            u0, u1 = max(int(np.floor(u.min())) - 1, 0), min(int(np.ceil(u.max())) + 2, W)
            v0, v1 = max(int(np.floor(v.min())) - 1, 0), min(int(np.ceil(v.max())) + 2, H)
            if u0 < u1 and v0 < v1:
                cover[v0:v1, u0:u1] = True
        return np.flatnonzero(cover)

    def _plane_depth(self, n_cam: np.ndarray, p_cam: np.ndarray) -> np.ndarray:
        """(P,) depth of the plane {x: n.(x - p) = 0} along each pixel ray (inf if behind)."""
        denom = self._rays @ n_cam
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.dot(n_cam, p_cam) / denom
        return np.where(np.isfinite(t) & (t > 0), t, np.inf).astype(np.float32)

    # ------------------------------------------------------------------ main entry
    def render(self, scene: Scene, T_world_cam: np.ndarray, rng: np.random.Generator) -> Frame:
        """Render ``scene`` from camera pose ``T_world_cam`` (4, 4): colour, depth, mask, GT."""
        T_world_cam = np.asarray(T_world_cam, dtype=np.float64)
        if T_world_cam.shape != (4, 4):
            raise ValueError(f"T_world_cam must be (4, 4), got {T_world_cam.shape}")
        H, W = self.intr.height, self.intr.width
        T_cam_world = np.linalg.inv(T_world_cam)
        R_cw, t_cw = T_cam_world[:3, :3].astype(np.float32), T_cam_world[:3, 3].astype(np.float32)

        d_obj, face, bu, bv, faces = self._cast(scene, T_cam_world)
        up_cam = R_cw[:, 2]
        denom = np.einsum("ij,j->i", self._rays, up_cam)  # ray . plane normal, both planes
        ray_xy = np.einsum("ij,jk->ik", self._rays, R_cw[:, :2])  # world x, y of ray directions
        origin_xy = -(R_cw.T @ t_cw)[:2]  # world x, y of the camera centre
        d_table, p_table = self._plane(denom, ray_xy, origin_xy, float(up_cam @ t_cw))
        half = scene.table_size / 2
        on_table = np.isfinite(d_table) & (np.abs(p_table[:, 0]) < half[0]) \
            & (np.abs(p_table[:, 1]) < half[1])
        d_table[~on_table] = np.inf
        d_floor, p_floor = self._plane(denom, ray_xy, origin_xy,
                                       float(up_cam @ t_cw) - scene.table_height)
        d_floor[on_table] = np.inf  # the opaque table top hides the floor below it

        # pick the nearest surface: 0 object, 1 table, 2 floor, 3 background
        which = np.where(d_obj <= d_table, 0, 1)
        depth = np.minimum(d_obj, d_table)
        which = np.where(d_floor < depth, 2, which)
        depth = np.minimum(depth, d_floor)
        hit = np.isfinite(depth)
        which[~hit] = 3
        is_obj = which == 0

        mask, instances = self._mask_and_gt(scene, T_cam_world, face, is_obj, faces)
        rgb, cos_inc = self._shade(scene, R_cw, which, face, bu, bv, faces, p_table, p_floor, denom)
        color = self._camera_effects(rgb.reshape(H, W, 3), rng)

        depth_m = np.where(hit, depth, 0.0).reshape(H, W).astype(np.float32)
        if self.sensor is not None:
            depth_m = self.sensor.apply(depth_m, cos_inc.reshape(H, W), rng)
        depth_mm = np.clip(np.round(depth_m * 1000.0), 0, 65535).astype(np.uint16)
        return Frame(color=color, depth=depth_mm, mask=mask.reshape(H, W), intrinsics=self.intr,
                     instances=instances, T_world_cam=T_world_cam)

    @staticmethod
    def _plane(denom, ray_xy, origin_xy, offset):
        """Depth (P,) along every pixel ray of the horizontal plane n.x = ``offset`` (camera
        frame, ``denom`` = ray . n; inf when parallel or behind) and the (P, 2) world x, y of
        the hit points."""
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.float32(offset) / denom
        bad = ~(t > 0)
        t[bad] = np.inf
        tf = np.where(bad, np.float32(0), t)
        return t, ray_xy * tf[:, None] + origin_xy.astype(np.float32)

    def _mask_and_gt(self, scene, T_cam_world, face, is_obj, faces):
        """(P,) uint16 instance mask and the InstanceGT list of the visible instances."""
        mask = np.zeros(len(self._rays), np.uint16)
        handle_px = {}
        if faces is not None:
            f_obj = face[is_obj]
            inst = faces["inst"][f_obj]
            mask[is_obj] = inst
            ids, counts = np.unique(inst[faces["handle"][f_obj]], return_counts=True)
            handle_px = dict(zip(ids.tolist(), counts.tolist()))
        counts = np.bincount(mask, minlength=len(scene.objects) + 1)
        instances = []
        for obj in scene.objects:
            k = obj.instance_id
            if counts[k] < self.min_visible_pixels:
                if counts[k]:
                    mask[mask == k] = 0
                continue
            T = T_cam_world @ obj.T_world_obj
            m = obj.model
            handle_visible = m.handle_part < 0 or handle_px.get(k, 0) >= self.handle_min_pixels
            instances.append(InstanceGT(instance_id=k, category=m.category, R=T[:3, :3].copy(),
                                        t=T[:3, 3].copy(), size=m.size.copy(),
                                        handle_visible=bool(handle_visible),
                                        model_name=f"{m.category}_{k:02d}"))
        return mask, instances

    def _shade(self, scene, R_cw, which, face, bu, bv, faces, p_table, p_floor, denom):
        """(P, 3) linear RGB in [0, 1+] and (P,) |cos| of the incidence angle.

        Lambert + Blinn-Phong with n.h = (n.v + n.l) / |v + l|; the table and floor have a
        constant normal, so only object pixels interpolate normals.
        """
        P = len(self._rays)
        light = scene.light
        L = (R_cw @ light.direction.astype(np.float32)).astype(np.float32)
        I, amb = np.float32(light.intensity), np.float32(light.ambient)
        tint = light.colour.astype(np.float32)
        view = self._view
        vl = np.einsum("ij,j->i", view, L)
        inv_h = 1.0 / np.sqrt(np.maximum(2.0 + 2.0 * vl, 1e-6))
        rgb = np.empty((P, 3), np.float32)
        cos_inc = np.zeros(P, np.float32)

        idx = np.flatnonzero(which == 0)
        if faces is not None and len(idx):
            f = face[idx]
            b = np.stack([1 - bu[idx] - bv[idx], bu[idx], bv[idx]], axis=1)
            n = np.einsum("fkc,fk->fc", faces["normals"][f], b)
            n /= np.maximum(np.sqrt(np.einsum("ij,ij->i", n, n)), 1e-9)[:, None]
            uv = np.einsum("fkc,fk->fc", faces["uv"][f], b)
            tex = faces["textures"]
            S = tex.shape[1]
            ui = np.floor(uv[:, 0] * S).astype(np.int64) % S
            vi = np.floor((1 - uv[:, 1]) * S).astype(np.int64) % S
            tid = faces["tex"][f]
            albedo = tex[tid, vi, ui].astype(np.float32) * np.float32(1 / 255)
            nv = np.einsum("ij,ij->i", n, view[idx])
            sign = np.where(nv < 0, np.float32(-1), np.float32(1))  # two-sided surfaces
            nv *= sign
            nl = np.einsum("ij,j->i", n, L) * sign
            nh = np.clip((nv + nl) * inv_h[idx], 0.0, 1.0)
            spec = faces["shininess"][tid] * (nh ** 8) ** 5
            shade = amb + I * np.clip(nl, 0.0, None)
            rgb[idx] = albedo * (shade[:, None] * tint) + (I * spec)[:, None]
            cos_inc[idx] = nv
        up_cam = R_cw[:, 2]
        nl = max(float(up_cam @ L), 0.0)
        for code, xy, tex, tile, shin in ((1, p_table, scene.table_texture, scene.texture_tile_m[0], 0.15),
                                          (2, p_floor, scene.floor_texture, scene.texture_tile_m[1], 0.0)):
            idx = np.flatnonzero(which == code)
            if not len(idx):
                continue
            albedo = _lookup(tex, xy[idx], np.float32(tex.shape[0] / tile))
            shade = np.full(len(idx), amb + I * nl, np.float32)
            if code == 1:
                shade *= self._shadow_lookup(scene, xy[idx])
            albedo *= shade[:, None]
            albedo *= tint
            if shin > 0:
                nv = np.abs(denom[idx]) * self._inv_ray_norm[idx]
                nh = np.clip((nv + nl) * inv_h[idx], 0.0, 1.0)
                albedo += (I * shin * (nh ** 8) ** 5)[:, None]
            rgb[idx] = albedo
            cos_inc[idx] = np.abs(denom[idx]) * self._inv_ray_norm[idx]
        rgb[which == 3] = scene.wall_colour * (0.6 + 0.4 * light.ambient)
        return rgb, cos_inc

    @staticmethod
    def _camera_effects(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Exposure, optical blur, sensor noise and gamma: (H, W, 3) float -> uint8 RGB."""
        img = img * np.float32(255.0 * rng.uniform(0.75, 1.25))
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 0.9))
        noise = np.empty(img.shape, np.float32)
        cv2.setRNGSeed(int(rng.integers(2**31)))
        cv2.randn(noise, 0.0, float(rng.uniform(1.0, 4.0)))
        img += noise
        lin = np.clip(img, 0, 255).astype(np.uint8)
        gamma = 1.0 / rng.uniform(0.9, 1.2)
        lut = np.clip(255.0 * (np.arange(256) / 255.0) ** gamma, 0, 255).astype(np.uint8)
        return cv2.LUT(lin, lut)

    @staticmethod
    def _shadow_lookup(scene: Scene, xy: np.ndarray) -> np.ndarray:
        """(M,) shading factor of table points at world ``xy``: soft shadows cast by the objects
        along the light direction, drawn into a small table-space map and blurred."""
        half = scene.table_size / 2
        res = 200.0  # map pixels per metre
        Hm, Wm = int(2 * half[1] * res) + 1, int(2 * half[0] * res) + 1
        smap = np.zeros((Hm, Wm), np.float32)
        L = scene.light.direction
        lxy = L[:2] / max(L[2], 0.25)
        for obj in scene.objects + scene.clutter:
            verts = obj.model.triangles.reshape(-1, 3)[::5] @ obj.T_world_obj[:3, :3].T \
                + obj.T_world_obj[:3, 3]
            # project the object's points onto the table along the light
            foot = verts[:, :2] - lxy * verts[:, 2:3]
            px = np.round((foot + half) * res).astype(np.int32)
            hull = cv2.convexHull(px)
            cv2.fillConvexPoly(smap, hull, 1.0)
        smap = cv2.GaussianBlur(smap, (0, 0), 0.012 * res)
        smap = 1.0 - np.float32(0.5) * smap
        u = np.clip((xy[:, 0] + np.float32(half[0])) * np.float32(res), 0, Wm - 1).astype(np.int32)
        v = np.clip((xy[:, 1] + np.float32(half[1])) * np.float32(res), 0, Hm - 1).astype(np.int32)
        return smap.ravel().take(v * Wm + u)
