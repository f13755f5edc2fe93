"""Procedural scenes: what each simulated image shows, how it is drawn, and its five captions.

A scene is a place background (always), optionally a person (man / woman / child; standing, sitting or
waving; face visible or seen from behind; smiling or not), or instead of a person a close-up face, optionally a
sign with a written word, 0-3 coloured objects and optionally a distractor: a disc of coloured light that
changes the hue but not the luminance of what it falls on. :func:`sample_scenes` draws the parameters
(``knobs``: the config's ``synthetic.scenes`` section), :func:`draw` paints one image with numpy,
:func:`captions` writes five captions from a small grammar, and :func:`scene_table` gives the parameters as
arrays (what the simulated voxels respond to; the distractor is not among them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

PLACES = ("beach", "street", "kitchen", "forest", "mountain", "bedroom")
PEOPLE = ("man", "woman", "child")
POSES = ("standing", "sitting", "waving")
WORDS = ("stop", "open", "cafe", "exit", "sale")
OBJECTS = ("ball", "box", "kite")
COLOURS = {"red": (215, 35, 35), "blue": (35, 70, 215), "yellow": (240, 215, 35),
           "green": (40, 165, 60), "orange": (245, 135, 25), "purple": (135, 45, 165)}
COLOUR_NAMES = tuple(COLOURS)

P_FACE_VISIBLE = 0.8    # a person's face, else seen from behind
N_OBJECTS_P = (0.3, 0.35, 0.25, 0.1)
# The distractor's hues: the two ends of the isoluminant axis (1, -a, 1), a = (0.299 + 0.114) / 0.587, along
# which Rec. 601 luma 0.299 R + 0.587 G + 0.114 B does not change. Their names are used nowhere else in captions.
HUES = ("magenta", "lime")
ISOLUMINANT = np.array([1.0, -(0.299 + 0.114) / 0.587, 1.0], dtype=np.float32)
# Base sizes (fractions of the image side) that synthetic.scenes.figure_scale multiplies.
PERSON_HEIGHT = {"man": 0.55, "woman": 0.55, "child": 0.35}
CLOSEUP_RADIUS = {"man": 0.2, "woman": 0.2, "child": 0.14}
HEAD_RADIUS = 0.11      # of the person's height
# 3 x 5 glyphs, enough letters for WORDS
FONT = {
    "S": ("111", "100", "111", "001", "111"), "T": ("111", "010", "010", "010", "010"),
    "O": ("111", "101", "101", "101", "111"), "P": ("111", "101", "111", "100", "100"),
    "E": ("111", "100", "111", "100", "111"), "N": ("110", "101", "101", "101", "101"),
    "C": ("111", "100", "100", "100", "111"), "A": ("010", "101", "111", "101", "101"),
    "F": ("111", "100", "111", "100", "100"), "X": ("101", "101", "010", "101", "101"),
    "I": ("111", "010", "010", "010", "111"), "L": ("100", "100", "100", "100", "111"),
}
SKIN = ((235, 195, 160), (200, 150, 110), (140, 95, 60))
HAIR = ((40, 30, 20), (120, 80, 30), (220, 190, 110))
SHIRTS = ((230, 230, 230), (60, 60, 60), (90, 140, 200), (200, 90, 90), (110, 160, 110))


@dataclass
class Scene:
    """Parameters of one image (positions are fractions of the image side)."""

    place: int
    horizon: float
    mention: tuple[float, float, float, float]   # naming probability per caption: person, close-up, sign, distractor
    person: int = -1            # index into PEOPLE, -1 none
    pose: int = -1              # index into POSES
    person_x: float = 0.5
    face: int = 0               # 0 no face, 1 the person's face, 2 a close-up face
    face_type: int = -1         # PEOPLE index of the face's owner
    smiling: bool = False
    word: int = -1              # index into WORDS, -1 none
    sign_xy: tuple[float, float] = (0.5, 0.25)
    objects: list[tuple[int, int, float, float, float]] = field(default_factory=list)  # kind, colour, y, x, size
    style: int = 0              # seed of the texture details
    scale: float = 1.0          # size of the person, close-up face and sign relative to the base sizes
    distractor: int = -1        # index into HUES, -1 none
    distractor_yxr: tuple[float, float, float] = (0.5, 0.5, 0.2)   # centre and radius of the disc of light
    chroma: float = 0.0         # RGB levels along ISOLUMINANT at the disc


def sample_scenes(n: int, rng: np.random.Generator, knobs: dict,
                  distractor_rng: np.random.Generator) -> list[Scene]:
    """``n`` scenes drawn with ``rng``, their distractors with ``distractor_rng`` (so that switching the
    distractor on or off leaves every other part of every scene as it was). ``knobs``: the config's
    ``synthetic.scenes`` section, defaults filled (docs/simulator.md gives each knob's meaning)."""
    k = knobs
    person, closeup, sign, dis = k["person"], k["closeup"], k["sign"], k["distractor"]
    mention = (person["mention"], closeup["mention"], sign["mention"], dis["mention"])
    scenes = []
    for _ in range(n):
        s = Scene(place=int(rng.integers(len(PLACES))), horizon=float(rng.uniform(0.4, 0.6)),
                  style=int(rng.integers(2**31)), scale=float(k["figure_scale"]), mention=mention)
        if rng.random() < person["p"]:
            s.person = int(rng.integers(len(PEOPLE)))
            s.pose = int(rng.integers(len(POSES)))
            s.person_x = float(rng.uniform(0.3, 0.7))
            if rng.random() < P_FACE_VISIBLE:
                s.face, s.face_type = 1, s.person
        elif rng.random() < closeup["p"]:
            s.face, s.face_type = 2, int(rng.integers(len(PEOPLE)))
        s.smiling = bool(s.face and rng.random() < 0.5)
        if rng.random() < sign["p"]:
            s.word = int(rng.integers(len(WORDS)))
            s.sign_xy = (float(rng.uniform(0.12, 0.3)), float(rng.uniform(0.3, 0.7)))
        for _ in range(rng.choice(len(N_OBJECTS_P), p=N_OBJECTS_P)):
            kind = int(rng.integers(len(OBJECTS)))
            y = rng.uniform(0.08, 0.3) if OBJECTS[kind] == "kite" else rng.uniform(0.72, 0.9)
            x = rng.choice([rng.uniform(0.08, 0.3), rng.uniform(0.7, 0.92)])
            s.objects.append((kind, int(rng.integers(len(COLOURS))), float(y), float(x),
                              float(rng.uniform(0.07, 0.12))))
        if dis["p"] > 0 and distractor_rng.random() < dis["p"]:
            r = float(dis["radius"])
            s.distractor = int(distractor_rng.integers(len(HUES)))
            s.distractor_yxr = (float(distractor_rng.uniform(r, 1 - r)), float(distractor_rng.uniform(r, 1 - r)), r)
            s.chroma = float(dis["chroma"])
        scenes.append(s)
    return scenes


# ---------------------------------------------------------------------------------------------- drawing

@lru_cache(maxsize=8)
def _grid(size: int) -> np.ndarray:
    """Pixel-centre coordinates as fractions of the side, (size,) float32."""
    return (np.arange(size, dtype=np.float32) + 0.5) / size


@lru_cache(maxsize=64)
def _glyph(letter: str, k: int) -> np.ndarray:
    glyph = np.array([[c == "1" for c in row] for row in FONT[letter]])
    return np.kron(glyph, np.ones((k, k), dtype=bool))


class Canvas:
    """An (H, W, 3) float image with shape primitives in fractional coordinates.

    Each primitive only touches its bounding box, so drawing thousands of images stays fast.
    """

    def __init__(self, size: int):
        self.size = size
        self.img = np.zeros((size, size, 3), dtype=np.float32)
        self.grid = _grid(size)

    def _px(self, v: float) -> int:
        return int(round(min(max(float(v), 0.0), 1.0) * self.size))

    def _box(self, y0, y1, x0, x1):
        """Pixel slices covering [y0, y1] x [x0, x1] and the coordinates of their pixel centres."""
        rows = slice(self._px(y0), self._px(y1) + 1)
        cols = slice(self._px(x0), self._px(x1) + 1)
        return rows, cols, self.grid[rows, None], self.grid[None, cols]

    def rect(self, y0, y1, x0, x1, colour):
        top, left = self._px(y0), self._px(x0)
        self.img[top:max(self._px(y1), top + 1), left:max(self._px(x1), left + 1)] = colour

    def ellipse(self, cy, cx, ry, rx, colour):
        rows, cols, y, x = self._box(cy - ry, cy + ry, cx - rx, cx + rx)
        self.img[rows, cols][((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1] = colour

    def triangle(self, apex_y, base_y, cx, half_width, colour):
        """Apex at the top, base below it."""
        rows, cols, y, x = self._box(apex_y, base_y, cx - half_width, cx + half_width)
        t = (y - apex_y) / max(base_y - apex_y, 1e-6)
        self.img[rows, cols][(t >= 0) & (t <= 1) & (np.abs(x - cx) <= t * half_width)] = colour

    def diamond(self, cy, cx, half_height, half_width, colour):
        rows, cols, y, x = self._box(cy - half_height, cy + half_height, cx - half_width, cx + half_width)
        self.img[rows, cols][np.abs(y - cy) / half_height + np.abs(x - cx) / half_width <= 1] = colour

    def tint(self, cy, cx, r, rgb):
        """Add ``rgb`` to the pixels of the disc at (cy, cx) of radius ``r``."""
        rows, cols, y, x = self._box(cy - r, cy + r, cx - r, cx + r)
        self.img[rows, cols][((y - cy) / r) ** 2 + ((x - cx) / r) ** 2 <= 1] += rgb

    def vgradient(self, y0, y1, top, bottom):
        rows = slice(self._px(y0), self._px(y1))
        t = (self.grid[rows, None, None] - y0) / max(y1 - y0, 1e-6)
        self.img[rows] = (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32)

    def text(self, word: str, cy: float, cx: float, colour, background, scale: float = 1.0):
        """``word`` in 3 x 5 glyphs on a board centred at (cy, cx): strokes ``scale * size / 32`` px wide,
        at least 1 px and at most what lets a 4-letter board fit the image."""
        k = int(min(max(1, scale * self.size // 32), max(1, self.size // 17)))
        width, height = (4 * len(word) - 1) * k, 5 * k
        top = int(round(cy * self.size)) - height // 2
        left = int(np.clip(round(cx * self.size) - width // 2, k, self.size - width - k))
        self.img[max(top - k, 0):top + height + k, left - k:left + width + k] = background
        for i, letter in enumerate(word.upper()):
            block = _glyph(letter, k)
            y, x = top, left + 4 * k * i
            region = self.img[y:y + height, x:x + 3 * k]
            region[block[:region.shape[0], :region.shape[1]]] = colour


def _background(c: Canvas, s: Scene, rng: np.random.Generator) -> None:
    h = s.horizon
    place = PLACES[s.place]
    if place == "beach":
        c.vgradient(0, h - 0.12, (110, 170, 235), (190, 225, 250))
        c.rect(h - 0.12, h, 0, 1, (20, 95, 160))
        c.rect(h, 1, 0, 1, (235, 210, 165))
        if rng.random() < 0.5:
            c.ellipse(0.12, rng.uniform(0.1, 0.9), 0.07, 0.07, (250, 235, 120))
    elif place == "street":
        c.rect(0, h, 0, 1, (185, 190, 200))
        x = 0.0
        while x < 1:
            w = rng.uniform(0.12, 0.25)
            top = rng.uniform(0.05, h - 0.15)
            tone = rng.uniform(0.6, 1.0)
            c.rect(top, h, x, x + w - 0.02, tuple(tone * np.array((150, 110, 90))))
            for wy in np.arange(top + 0.04, h - 0.06, 0.08):
                c.rect(wy, wy + 0.03, x + 0.03, x + w - 0.05, (250, 240, 170))
            x += w
        c.rect(h, 1, 0, 1, (80, 80, 85))
        for dx in np.arange(0.05, 1, 0.2):
            c.rect(h + (1 - h) / 2 - 0.01, h + (1 - h) / 2 + 0.02, dx, dx + 0.1, (240, 240, 240))
    elif place == "kitchen":
        c.rect(0, 1, 0, 1, (245, 235, 200))
        c.rect(0.08, 0.32, 0.6, 0.85, (175, 215, 240))
        c.rect(h - 0.05, h + 0.12, 0, 1, (155, 105, 60))
        for dx in np.arange(0.1, 1, 0.2):
            c.rect(h - 0.02, h + 0.09, dx, dx + 0.015, (60, 40, 20))
        c.rect(h + 0.12, 1, 0, 1, (215, 215, 220))
    elif place == "forest":
        c.rect(0, 1, 0, 1, (30, 95, 35))
        for _ in range(8):
            c.ellipse(rng.uniform(0, h), rng.uniform(0, 1), 0.12, 0.12, (45, 125, 45))
        for x in rng.uniform(0, 1, 5):
            c.rect(h - 0.2, 1, x, x + 0.05, (90, 60, 30))
        c.rect(h + 0.15, 1, 0, 1, (80, 70, 35))
    elif place == "mountain":
        c.vgradient(0, h, (150, 190, 250), (215, 230, 250))
        for cx in (rng.uniform(0.15, 0.4), rng.uniform(0.6, 0.85)):
            peak = rng.uniform(0.1, h - 0.2)
            c.triangle(peak, h, cx, 0.4, (125, 120, 130))
            c.triangle(peak, peak + 0.08, cx, 0.4 * 0.08 / (h - peak), (250, 250, 250))
        c.rect(h, 1, 0, 1, (85, 150, 70))
    elif place == "bedroom":
        c.rect(0, 1, 0, 1, (230, 190, 200))
        c.rect(h + 0.15, 1, 0, 1, (150, 100, 60))
        c.rect(h - 0.05, h + 0.3, 0.05, 0.95, (245, 245, 245))
        c.rect(h + 0.05, h + 0.3, 0.05, 0.95, (70, 90, 170))
        c.rect(0.1, 0.25, 0.1, 0.3, (150, 120, 90))


def _objects(c: Canvas, s: Scene) -> None:
    for kind, colour, y, x, size in s.objects:
        rgb = COLOURS[COLOUR_NAMES[colour]]
        name = OBJECTS[kind]
        if name == "ball":
            c.ellipse(y, x, size, size, rgb)
        elif name == "box":
            c.rect(y - size, y + size, x - size, x + size, rgb)
        else:
            c.diamond(y, x, size, size * 0.7, rgb)
            c.rect(y + size, y + 2.5 * size, x, x + 0.01, (60, 60, 60))


def _head(c: Canvas, cy, cx, r, s: Scene, skin, hair, face: bool) -> None:
    if PEOPLE[s.face_type if face else max(s.person, 0)] == "woman":
        c.rect(cy - r, cy + 1.6 * r, cx - 1.15 * r, cx + 1.15 * r, hair)
    c.ellipse(cy, cx, r, r * 0.85, skin)
    c.rect(cy - 1.1 * r, cy - 0.5 * r, cx - 0.9 * r, cx + 0.9 * r, hair)
    if not face:
        c.ellipse(cy, cx, r * 0.95, r * 0.8, hair)     # seen from behind
        return
    for dx in (-0.35, 0.35):
        c.ellipse(cy - 0.1 * r, cx + dx * r, 0.14 * r, 0.12 * r, (25, 25, 25))
    if s.smiling:
        c.ellipse(cy + 0.45 * r, cx, 0.18 * r, 0.45 * r, (160, 40, 50))
        c.rect(cy + 0.27 * r, cy + 0.45 * r, cx - 0.5 * r, cx + 0.5 * r, skin)
    else:
        c.rect(cy + 0.4 * r, cy + 0.48 * r, cx - 0.3 * r, cx + 0.3 * r, (120, 40, 50))


def _person(c: Canvas, s: Scene, rng: np.random.Generator) -> None:
    height = PERSON_HEIGHT[PEOPLE[s.person]] * s.scale
    feet = 0.93
    x = s.person_x
    skin, hair = SKIN[rng.integers(len(SKIN))], HAIR[rng.integers(len(HAIR))]
    shirt, trousers = SHIRTS[rng.integers(len(SHIRTS))], (40, 50, 90)
    w = height * 0.18
    pose = POSES[s.pose]
    if pose == "sitting":
        hip = feet - height * 0.28
        c.rect(hip - 0.02, hip + 0.03, x - w, x + 2.2 * w, trousers)          # thighs forward
        c.rect(hip, feet, x + 1.9 * w, x + 2.3 * w, trousers)                 # shins down
        top = hip - height * 0.38
    else:
        hip = feet - height * 0.45
        c.rect(hip, feet, x - w, x - 0.15 * w, trousers)
        c.rect(hip, feet, x + 0.15 * w, x + w, trousers)
        top = hip - height * 0.38
    c.rect(top, hip + 0.01, x - w, x + w, shirt)
    arm = 0.3 * w
    c.rect(top + 0.01, top + height * 0.32, x - w - arm, x - w, shirt)
    if pose == "waving":
        c.rect(top - height * 0.25, top + 0.02, x + w, x + w + arm, shirt)
        c.ellipse(top - height * 0.27, x + w + arm / 2, arm, arm, skin)
    else:
        c.rect(top + 0.01, top + height * 0.32, x + w, x + w + arm, shirt)
    r = height * HEAD_RADIUS
    _head(c, top - r * 1.05, x, r, s, skin, hair, face=s.face == 1)


def draw(scene: Scene, size: int) -> np.ndarray:
    """Paint one scene: (size, size, 3) uint8 RGB."""
    return draw_views(scene, size)[0]


def draw_views(scene: Scene, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One scene as shown and without its distractor: two (size, size, 3) uint8 RGB images.

    The distractor adds ``chroma * ISOLUMINANT`` (hue sign by ``scene.distractor``) to a disc: luma is
    unchanged before rounding and clipping to 0-255. The second image is what the simulated early visual
    cortex sees (:func:`contrast_grid`), so no voxel responds to the distractor even where clipping changes
    the luminance; both images share the brightness and pixel noise.
    """
    rng = np.random.default_rng(scene.style)
    c = Canvas(size)
    _background(c, scene, rng)
    _objects(c, scene)
    if scene.word >= 0:
        cy, cx = scene.sign_xy
        stop = WORDS[scene.word] == "stop"       # a red stop sign, the others black on white
        ink, board = ((250, 250, 250), (200, 30, 30)) if stop else ((20, 20, 20), (250, 250, 240))
        c.text(WORDS[scene.word], cy, cx, ink, board, scene.scale)
    if scene.person >= 0:
        _person(c, scene, rng)
    elif scene.face == 2:
        skin, hair = SKIN[rng.integers(len(SKIN))], HAIR[rng.integers(len(HAIR))]
        r = CLOSEUP_RADIUS[PEOPLE[scene.face_type]] * scene.scale
        c.rect(0.5 + r, 1, 0.5 - 1.3 * r, 0.5 + 1.3 * r, SHIRTS[rng.integers(len(SHIRTS))])
        _head(c, 0.5, 0.5, r, scene, skin, hair, face=True)
    plain = c.img.copy() if scene.distractor >= 0 else c.img
    if scene.distractor >= 0:
        sign = 1.0 if scene.distractor == 0 else -1.0
        c.tint(*scene.distractor_yxr, sign * scene.chroma * ISOLUMINANT)
    brightness = np.float32(rng.uniform(0.9, 1.1))
    noise = rng.standard_normal(c.img.shape, dtype=np.float32) * 5
    return tuple(np.clip(np.round(img * brightness + noise), 0, 255).astype(np.uint8) for img in (c.img, plain))


def contrast_grid(images: np.ndarray, grid: int) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, grid * grid) mean local luminance contrast per grid cell (row-major).

    Local contrast = |L - 3x3 box mean of L| + gradient magnitude of L, L = Rec. 601 luma in [0, 1];
    what a population receptive field pools in the simulated early visual cortex.
    """
    lum = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255
    pad = np.pad(lum, ((0, 0), (1, 1), (1, 1)), mode="edge")
    h, w = lum.shape[1:]
    box = sum(pad[:, i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9
    gy, gx = np.gradient(lum, axis=(1, 2))
    contrast = np.abs(lum - box) + np.hypot(gy, gx)
    n = images.shape[0]
    return contrast.reshape(n, grid, h // grid, grid, w // grid).mean(axis=(2, 4)).reshape(n, grid * grid)


# ---------------------------------------------------------------------------------------------- captions

PLACE_PP = {
    "beach": ("on a beach", "on the beach", "on a sandy beach", "at the beach"),
    "street": ("on a city street", "on the street", "in the street", "on a busy street"),
    "kitchen": ("in a kitchen", "in the kitchen", "in a small kitchen", "inside a kitchen"),
    "forest": ("in a forest", "in the forest", "in a green forest", "in a dense forest"),
    "mountain": ("near a mountain", "in front of a snowy mountain", "on a mountain", "below a mountain"),
    "bedroom": ("in a bedroom", "in the bedroom", "in a cozy bedroom", "inside a bedroom"),
}
PLACE_NP = {
    "beach": ("a beach", "a sandy beach", "a sunny beach"),
    "street": ("a city street", "a street", "a busy street"),
    "kitchen": ("a kitchen", "a small kitchen", "a clean kitchen"),
    "forest": ("a forest", "a green forest", "a dense forest"),
    "mountain": ("a mountain", "a snowy mountain", "a mountain range"),
    "bedroom": ("a bedroom", "a cozy bedroom", "a tidy bedroom"),
}
POSE_VERB = {"standing": ("standing", "standing up"), "sitting": ("sitting", "sitting down"),
             "waving": ("waving", "waving a hand")}
WHO = {"man": ("a man", "a young man", "an older man"), "woman": ("a woman", "a young woman", "an older woman"),
       "child": ("a child", "a little child", "a young child")}


def _pick(rng: np.random.Generator, options):
    return options[rng.integers(len(options))]


def _who(s: Scene, rng: np.random.Generator, smiling: bool) -> str:
    owner = PEOPLE[s.person if s.person >= 0 else s.face_type]
    if rng.random() < 0.15:
        phrase = "a person"
    else:
        phrase = _pick(rng, WHO[owner])
    if smiling:
        phrase = "a smiling " + phrase.split(" ", 1)[1]
    return phrase


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _caption(s: Scene, rng: np.random.Generator) -> str:
    place = PLACES[s.place]
    p_person, p_closeup, p_sign, p_distractor = s.mention
    extras = []
    if s.word >= 0 and rng.random() < p_sign:
        w = WORDS[s.word]
        extras.append(_pick(rng, (f"a sign that says {w}", f"a {w} sign", f"a sign reading {w}",
                                  f"a sign with the word {w}")))
    for kind, colour, *_ in s.objects:
        if rng.random() < 0.5:
            extras.append(f"a {COLOUR_NAMES[colour]} {OBJECTS[kind]}")
    if s.distractor >= 0 and rng.random() < p_distractor:
        hue = HUES[s.distractor]
        extras.append(_pick(rng, (f"a {hue} glow", f"a patch of {hue} light", f"a {hue} light spot")))
    rng.shuffle(extras)
    subject = None
    if s.person >= 0 and rng.random() < p_person:
        smiling = s.smiling and rng.random() < 0.6
        subject = _who(s, rng, smiling)
        if rng.random() < 0.8:
            subject += " " + _pick(rng, POSE_VERB[POSES[s.pose]])
    elif s.face == 2 and rng.random() < p_closeup:
        owner = _who(s, rng, False)
        smile = "smiling " if s.smiling and rng.random() < 0.7 else ""
        options = [f"a close up of the {smile}face of {owner}", f"the {smile}face of {owner}"]
        if smile:
            options.append(f"a close up of {owner} with a smiling face")
        subject = _pick(rng, options)
    with_clause = f" with {_join(extras)}" if extras else ""
    template = rng.integers(4)
    if subject and template <= 1:
        text = f"{subject} {_pick(rng, PLACE_PP[place])}{with_clause}"
    elif subject and template == 2:
        text = f"there is {subject} {_pick(rng, PLACE_PP[place])}{with_clause}"
    elif subject:
        text = f"{_pick(rng, PLACE_NP[place])} with {_join([subject] + extras)}"
    elif extras and template <= 1:
        text = f"{_join(extras)} {_pick(rng, PLACE_PP[place])}"
    elif template == 2:
        text = f"a photo of {_pick(rng, PLACE_NP[place])}{with_clause}"
    else:
        if extras:
            text = f"{_pick(rng, PLACE_NP[place])}{with_clause}"
        elif rng.random() < 0.5:
            text = f"a view of {_pick(rng, PLACE_NP[place])}"
        else:
            text = f"a picture taken {_pick(rng, PLACE_PP[place])}"
    text = text[0].upper() + text[1:]
    return text + "." if rng.random() < 0.5 else text


def captions(scene: Scene, rng: np.random.Generator, n: int = 5) -> list[str]:
    """``n`` captions of one scene; every caption names the place, the other elements vary (COCO-like)."""
    out: list[str] = []
    for _ in range(20 * n):
        text = _caption(scene, rng)
        if text not in out:
            out.append(text)
        if len(out) == n:
            return out
    while len(out) < n:   # a bare scene has few distinct phrasings: repeat as COCO sometimes does
        out.append(_caption(scene, rng))
    return out


# ---------------------------------------------------------------------------------------------- features

@dataclass(frozen=True)
class SceneTable:
    """The scene parameters as arrays, one row per image: what the simulated voxels are tuned to."""

    place: np.ndarray        # (N,) int, index into PLACES
    face: np.ndarray         # (N,) 0/1 a face is visible
    face_size: np.ndarray    # (N,) radius of the face, 0 without one
    smiling: np.ndarray      # (N,) 0/1
    face_type: np.ndarray    # (N,) PEOPLE index, -1 without a face
    body: np.ndarray         # (N,) 0/1 a person's body is visible
    pose: np.ndarray         # (N,) POSES index, -1 without a body
    body_type: np.ndarray    # (N,) PEOPLE index, -1 without a body
    word: np.ndarray         # (N,) WORDS index, -1 without a sign
    colours: np.ndarray      # (N, len(COLOURS)) object counts by colour
    kinds: np.ndarray        # (N, len(OBJECTS)) object counts by kind
    distractor: np.ndarray   # (N,) HUES index, -1 without one (shown and named, encoded by no voxel)


def scene_table(scenes: list[Scene]) -> SceneTable:
    n = len(scenes)
    colours = np.zeros((n, len(COLOURS)))
    kinds = np.zeros((n, len(OBJECTS)))
    for i, s in enumerate(scenes):
        for kind, colour, *_ in s.objects:
            colours[i, colour] += 1
            kinds[i, kind] += 1

    def col(fn, dtype=np.int64):
        return np.array([fn(s) for s in scenes], dtype=dtype)

    def face_size(s):
        if s.face == 0:
            return 0.0
        if s.face == 2:
            return CLOSEUP_RADIUS[PEOPLE[s.face_type]] * s.scale
        return PERSON_HEIGHT[PEOPLE[s.person]] * s.scale * HEAD_RADIUS

    return SceneTable(
        place=col(lambda s: s.place), face=col(lambda s: int(s.face > 0)), face_size=col(face_size, float),
        smiling=col(lambda s: int(s.smiling)), face_type=col(lambda s: s.face_type),
        body=col(lambda s: int(s.person >= 0)), pose=col(lambda s: s.pose), body_type=col(lambda s: s.person),
        word=col(lambda s: s.word), colours=colours, kinds=kinds, distractor=col(lambda s: s.distractor))
