"""Table-top scenes, camera poses on a hemisphere, and smooth sequences for tracking.

World frame: z up, the table top is the plane z = 0 centred on the origin. Objects stand
upright (object y axis = world z), are tilted, or lie on their side, always touching the table.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy.spatial.transform import Rotation

from genpose_ros import CATEGORIES
from genpose_ros.data.camera import look_at
from genpose_ros.data.families import check_distribution, sample_object
from genpose_ros.data.objects import ObjectModel, make_clutter
from genpose_ros.data.textures import random_colour, surface_texture

SCENE_RANGES = {
    "n_objects": (3, 8),
    "n_clutter": (0, 6),
    "pose_probs": {"upright": 0.72, "tilted": 0.14, "lying": 0.14},
    "tilt_deg": (8.0, 35.0),
    "placement_area_m": (0.70, 0.50),
    "table_size_m": ((0.9, 2.0), (0.7, 1.4)),
    "table_height_m": (0.65, 0.8),
    "camera_distance_m": (0.35, 1.2),
    "camera_elevation_deg": (20.0, 80.0),
    "camera_roll_deg": (-10.0, 10.0),
    "look_at_jitter_m": 0.08,
    "light_elevation_deg": (25.0, 90.0),
    "light_intensity": (0.55, 1.0),
    "ambient": (0.15, 0.45),
}
"""Sampling ranges of the scene generator (uniform unless stated)."""

WIDE_SCENE_RANGES = {
    **SCENE_RANGES,
    "n_objects": (3, 10),
    "n_clutter": (3, 12),
    "pose_probs": {"upright": 0.6, "tilted": 0.2, "lying": 0.2},
    "tilt_deg": (5.0, 50.0),
    "placement_area_m": (0.60, 0.45),
    "camera_distance_m": (0.25, 1.6),
    "camera_elevation_deg": (8.0, 88.0),
    "camera_roll_deg": (-40.0, 40.0),
    "look_at_jitter_m": 0.15,
    "light_elevation_deg": (10.0, 90.0),
    "light_intensity": (0.35, 1.1),
    "ambient": (0.08, 0.55),
}
"""Ranges of the ``wide`` distribution: nearer and farther, steeper and more rolled cameras,
more tilted and lying objects, denser clutter on a smaller area, harsher light."""

TILTED_SCENE_RANGES = {**SCENE_RANGES, "pose_probs": {"upright": 0.2, "tilted": 0.35, "lying": 0.45}}
"""Ranges of the ``tilted`` distribution: the standard scenes with most objects tilted or lying
(training data against the upright bias: a lying camera or mug is rare in the standard scenes)."""

CLOSE_SCENE_RANGES = {**SCENE_RANGES, "camera_distance_m": (0.25, 0.55), "look_at_jitter_m": 0.15}
"""Ranges of the ``close`` distribution: the standard scenes seen from 0.25-0.55 m with the view
off centre, so that many objects are large and cut by the image border (training data for the
segmenter's weakest case)."""


def scene_ranges(distribution: str = "standard") -> dict:
    """The scene ranges of ``distribution`` ("standard", "wide", "tilted" or "close")."""
    check_distribution(distribution)
    return {"wide": WIDE_SCENE_RANGES, "tilted": TILTED_SCENE_RANGES,
            "close": CLOSE_SCENE_RANGES}.get(distribution, SCENE_RANGES)

_UPRIGHT = Rotation.from_euler("x", 90, degrees=True)  # object y -> world z


@dataclass
class SceneObject:
    """An object placed in the world: ``instance_id`` >= 1 for category objects, 0 for clutter."""

    instance_id: int
    model: ObjectModel
    T_world_obj: np.ndarray


@dataclass
class Light:
    direction: np.ndarray  # (3,) unit vector towards the light, world frame
    intensity: float
    ambient: float
    colour: np.ndarray  # (3,) RGB gain


@dataclass
class Scene:
    """A table-top scene.

    Attributes:
        objects: the category objects (instance ids 1..N).
        clutter: distractor objects (instance id 0, not annotated).
        table_size: (2,) table extent along world x and y (m); top at z = 0.
        table_height: table top height above the floor (m).
        table_texture, floor_texture: (S, S, 3) uint8 textures.
        texture_tile_m: metres covered by one texture tile on table and floor.
        wall_colour: (3,) RGB in [0, 1] of everything beyond the floor.
        light: the scene's directional light.
    """

    objects: list[SceneObject]
    clutter: list[SceneObject]
    table_size: np.ndarray
    table_height: float
    table_texture: np.ndarray
    floor_texture: np.ndarray
    texture_tile_m: tuple[float, float]
    wall_colour: np.ndarray
    light: Light

    def with_poses(self, T_world_objs: np.ndarray) -> "Scene":
        """A copy with the category objects moved to (N, 4, 4) poses."""
        objs = [replace(o, T_world_obj=np.asarray(T)) for o, T in zip(self.objects, T_world_objs)]
        return replace(self, objects=objs)


@dataclass
class Sequence:
    """A scene seen along a smooth trajectory.

    Attributes:
        scene: the scene at frame 0.
        T_world_cam: (F, 4, 4) camera poses.
        T_world_obj: (F, N, 4, 4) poses of the N category objects.
    """

    scene: Scene
    T_world_cam: np.ndarray
    T_world_obj: np.ndarray
    moving: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.T_world_cam)

    def frame(self, i: int) -> tuple[Scene, np.ndarray]:
        """(scene with frame i's object poses, T_world_cam of frame i)."""
        return self.scene.with_poses(self.T_world_obj[i]), self.T_world_cam[i]


def _pose(R: Rotation, xyz) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R.as_matrix()
    T[:3, 3] = xyz
    return T


def _rest_orientation(rng: np.random.Generator, category: str, ranges: dict = SCENE_RANGES) -> Rotation:
    """Random resting orientation (object -> world) of an object of ``category``."""
    kinds = list(ranges["pose_probs"])
    probs = np.array(list(ranges["pose_probs"].values()))
    kind = kinds[rng.choice(len(kinds), p=probs)]
    if category == "laptop" and kind == "lying":
        kind = "upright"
    spin = Rotation.from_euler("y", rng.uniform(0, 360), degrees=True)  # about the object's y
    yaw = Rotation.from_euler("z", rng.uniform(0, 360), degrees=True)
    if kind == "upright":
        tilt = Rotation.identity()
    elif kind == "tilted":
        tilt = Rotation.from_euler("x", rng.uniform(*ranges["tilt_deg"]), degrees=True)
    elif category == "bowl":  # a lying bowl is upside down
        tilt = Rotation.from_euler("x", 180, degrees=True)
    else:
        tilt = Rotation.from_euler("x", 90, degrees=True)
    return yaw * tilt * _UPRIGHT * spin


def _place(rng, model: ObjectModel, R: Rotation, placed: list[tuple[np.ndarray, float]],
           area: np.ndarray, tries: int = 40) -> np.ndarray | None:
    """Pose (4, 4) of ``model`` resting on the table without overlapping ``placed`` footprints."""
    verts = R.apply(model.triangles.reshape(-1, 3))
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    centre_xy = 0.5 * (lo[:2] + hi[:2])
    radius = 0.5 * np.linalg.norm(hi[:2] - lo[:2])
    for _ in range(tries):
        xy = rng.uniform(-area / 2, area / 2)
        if all(np.linalg.norm(xy - c) > radius + r + 0.005 for c, r in placed):
            placed.append((xy, radius))
            return _pose(R, [xy[0] - centre_xy[0], xy[1] - centre_xy[1], -lo[2]])
    return None


def sample_scene(rng: np.random.Generator, n_objects: int | None = None,
                 categories: list[str] | None = None, distribution: str = "standard") -> Scene:
    """A random table-top scene with ``n_objects`` (default 3-8; wide: 3-10) category objects.

    ``categories`` optionally fixes the category of each object (its length sets n_objects).
    ``distribution`` "wide" draws objects, poses, clutter and light from the wider ranges
    (``WIDE_SCENE_RANGES``, ``genpose_ros.data.families``). Objects that do not fit on the
    table after several tries are left out.
    """
    ranges = scene_ranges(distribution)
    if categories is not None:
        unknown = [c for c in categories if c not in CATEGORIES]
        if unknown:
            raise ValueError(f"unknown categories {unknown}; known: {', '.join(CATEGORIES)}")
        n_objects = len(categories)
    if n_objects is None:
        n_objects = int(rng.integers(ranges["n_objects"][0], ranges["n_objects"][1] + 1))
    if n_objects < 1:
        raise ValueError(f"n_objects must be >= 1, got {n_objects}")
    if categories is None:
        categories = [CATEGORIES[i] for i in rng.integers(len(CATEGORIES), size=n_objects)]
    area = np.array(ranges["placement_area_m"]) * (0.8 + 0.05 * n_objects)
    placed: list[tuple[np.ndarray, float]] = []
    objects = []
    for cat in categories:
        model = sample_object(cat, rng, distribution)
        T = _place(rng, model, _rest_orientation(rng, cat, ranges), placed, area)
        if T is not None:
            objects.append(SceneObject(len(objects) + 1, model, T))
    clutter = []
    for _ in range(rng.integers(ranges["n_clutter"][0], ranges["n_clutter"][1] + 1)):
        model = make_clutter(rng)
        R = Rotation.from_euler("z", rng.uniform(0, 360), degrees=True) * _UPRIGHT
        T = _place(rng, model, R, placed, area * 1.5)
        if T is not None:
            clutter.append(SceneObject(0, model, T))
    (wx, wy) = ranges["table_size_m"]
    el = np.radians(rng.uniform(*ranges["light_elevation_deg"]))
    az = rng.uniform(0, 2 * np.pi)
    light = Light(direction=np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)]),
                  intensity=float(rng.uniform(*ranges["light_intensity"])),
                  ambient=float(rng.uniform(*ranges["ambient"])),
                  colour=1.0 + rng.uniform(-0.12, 0.12, 3))
    return Scene(objects=objects, clutter=clutter,
                 table_size=np.array([rng.uniform(*wx), rng.uniform(*wy)]),
                 table_height=float(rng.uniform(*ranges["table_height_m"])),
                 table_texture=surface_texture(rng), floor_texture=surface_texture(rng),
                 texture_tile_m=(float(rng.uniform(0.3, 1.2)), float(rng.uniform(0.5, 2.0))),
                 wall_colour=random_colour(rng, 0.5), light=light)


def _scene_centre(scene: Scene) -> np.ndarray:
    if not scene.objects:
        return np.zeros(3)
    return np.mean([o.T_world_obj[:3, 3] for o in scene.objects], axis=0)


def camera_on_hemisphere(target: np.ndarray, distance: float, elevation_deg: float,
                         azimuth_deg: float, roll_deg: float = 0.0) -> np.ndarray:
    """(4, 4) T_world_cam at ``distance`` from ``target``, looking at it."""
    el, az = np.radians(elevation_deg), np.radians(azimuth_deg)
    eye = target + distance * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    return look_at(eye, target, roll=np.radians(roll_deg))


def sample_camera_pose(rng: np.random.Generator, scene: Scene, distribution: str = "standard") -> np.ndarray:
    """(4, 4) T_world_cam on a hemisphere around the objects, looking at them (standard:
    0.35-1.2 m, elevation 20-80 deg, roll +-10 deg; wide: ``WIDE_SCENE_RANGES``)."""
    ranges = scene_ranges(distribution)
    target = _scene_centre(scene)
    target[2] = rng.uniform(0.0, 0.06)
    target[:2] += rng.uniform(-1, 1, 2) * ranges["look_at_jitter_m"]
    return camera_on_hemisphere(target, rng.uniform(*ranges["camera_distance_m"]),
                                rng.uniform(*ranges["camera_elevation_deg"]),
                                rng.uniform(0, 360), rng.uniform(*ranges["camera_roll_deg"]))


def _ease(n: int) -> np.ndarray:
    """(n,) smooth 0 -> 1 profile (zero velocity at both ends)."""
    s = np.linspace(0.0, 1.0, n)
    return 0.5 - 0.5 * np.cos(np.pi * s)


SEQUENCE_RANGES = {
    "camera_distance_m": (0.45, 1.0),
    "camera_elevation_deg": (30.0, 65.0),
    "azimuth_rate_deg_per_frame": (0.5, 2.0),
    "oscillation_period_frames": (40.0, 90.0),
    "distance_amplitude_m": 0.08,
    "elevation_amplitude_deg": 6.0,
    "moving_objects": (1, 2),
    "object_speed_m_per_frame": (0.001, 0.004),
    "object_turn_deg_per_frame": (-2.0, 2.0),
}
"""Sampling ranges of tracking sequences (rates are averages per frame)."""


def sample_sequence(rng: np.random.Generator, n_frames: int, n_objects: int | None = None,
                    distribution: str = "standard") -> Sequence:
    """A scene with a smooth camera trajectory and 1-2 objects pushed over the table.

    The camera circles the objects at 0.5-2 deg of azimuth per frame while its distance and
    elevation oscillate gently; the moving objects slide 1-4 mm and turn up to 2 deg per
    frame on average, starting and stopping smoothly (``SEQUENCE_RANGES``). Collisions
    between moving objects are not modelled. ``distribution`` applies to the scene.
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    R_ = SEQUENCE_RANGES
    scene = sample_scene(rng, n_objects, distribution=distribution)
    i = np.arange(n_frames, dtype=float)
    target = _scene_centre(scene)
    target[2] = 0.03
    d0 = rng.uniform(*R_["camera_distance_m"])
    el0 = rng.uniform(*R_["camera_elevation_deg"])
    az0 = rng.uniform(0, 360)
    rate = rng.uniform(*R_["azimuth_rate_deg_per_frame"]) * rng.choice([-1, 1])
    period = rng.uniform(*R_["oscillation_period_frames"])
    phase = rng.uniform(0, 2 * np.pi, 3)
    wave = [np.sin(2 * np.pi * i / period + p) for p in phase]
    cams = np.stack([
        camera_on_hemisphere(target, d0 + R_["distance_amplitude_m"] * wave[0][k],
                             el0 + R_["elevation_amplitude_deg"] * wave[1][k],
                             az0 + rate * k, 3.0 * wave[2][k])
        for k in range(n_frames)])
    n = len(scene.objects)
    poses = np.repeat(np.stack([o.T_world_obj for o in scene.objects])[None], n_frames, axis=0)
    n_moving = min(n, int(rng.integers(R_["moving_objects"][0], R_["moving_objects"][1] + 1)))
    moving = sorted(rng.choice(n, size=n_moving, replace=False).tolist())
    e = _ease(n_frames)
    for k in moving:
        step = rng.uniform(*R_["object_speed_m_per_frame"]) * (n_frames - 1) \
            * np.array([*_unit2(rng), 0.0])
        turn = rng.uniform(*R_["object_turn_deg_per_frame"]) * (n_frames - 1)
        for f in range(n_frames):
            Rz = Rotation.from_euler("z", turn * e[f], degrees=True).as_matrix()
            T = poses[0, k].copy()
            T[:3, :3] = Rz @ T[:3, :3]
            T[:3, 3] = T[:3, 3] + step * e[f]
            poses[f, k] = T
    return Sequence(scene=scene, T_world_cam=cams, T_world_obj=poses, moving=moving)


def _unit2(rng) -> np.ndarray:
    a = rng.uniform(0, 2 * np.pi)
    return np.array([np.cos(a), np.sin(a)])
