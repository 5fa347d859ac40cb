"""Published values read off a figure: pixels → data values through the figure's own axis calibration.

A *spec* (YAML, e.g. ``docs/digitize/fig1.yaml``) names, per panel, the axes' background colour, the
tick values (read off the tick labels by a person) and, per series, the marker colour, the x values
where its markers sit and, for two curves of one colour, which one it is (``pick``: upper / lower). :func:`digitize` then

1. finds the panel's axes (the largest regions of the background colour, left to right),
2. finds the tick labels (text beside the axes; matplotlib centres them on their ticks) and fits
   pixel → value maps through them (least squares; the fit residual is reported), cross-checked
   against the visible gridlines,
3. per series and x, finds the marker centre (rows whose run of marker-coloured pixels is at least
   ``min_width`` wide within ``window`` pixels of the x position) and, where the series has a shaded band
   (mean ± std), the band's extent along that column,
4. returns one row per point: the value, its read-off uncertainty (pixel quantisation, fit residual, and
   for markers partly hidden by another series' marker, their radius) and how it was read.

Nothing of the figure is kept: only the numbers, with the calibration that produced them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from fastadv.errors import FastAdvError


@dataclass(frozen=True)
class Axis:
    """value = a + b·pixel, fitted through (pixel, value) pairs; ``residual``: the largest misfit, in values."""

    a: float
    b: float
    residual: float

    @classmethod
    def fit(cls, pixels, values) -> "Axis":
        pixels, values = np.asarray(pixels, float), np.asarray(values, float)
        if len(pixels) < 2 or len(pixels) != len(values):
            raise FastAdvError(f"axis calibration needs ≥ 2 (pixel, value) pairs of equal number; got "
                               f"{len(pixels)} pixels for {len(values)} values")
        b, a = np.polyfit(pixels, values, 1)
        return cls(float(a), float(b), float(np.abs(a + b * pixels - values).max()))

    def value(self, pixel):
        return self.a + self.b * np.asarray(pixel, float)

    def pixel(self, value):
        return (np.asarray(value, float) - self.a) / self.b


def load_image(path: str | Path) -> np.ndarray:
    from PIL import Image

    try:
        return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)
    except (OSError, ValueError) as e:
        raise FastAdvError(f"image {str(path)!r} unreadable ({type(e).__name__}: {e})") from None


def colour_mask(img: np.ndarray, rgb, tol: float) -> np.ndarray:
    """Pixels within ``tol`` (max abs difference per channel) of ``rgb``."""
    return (np.abs(img - np.asarray(rgb, np.int16)).max(axis=2) <= tol)


def _spans(flags: np.ndarray, max_gap: int = 12, min_len: int = 40) -> list[tuple[int, int]]:
    """(first, last) of the runs of True in ``flags``, runs closer than ``max_gap`` merged (gridlines)."""
    idx = np.nonzero(flags)[0]
    if not len(idx):
        return []
    runs = np.split(idx, np.nonzero(np.diff(idx) > max_gap)[0] + 1)
    return [(int(r[0]), int(r[-1])) for r in runs if r[-1] - r[0] >= min_len]


def find_axes(img: np.ndarray, background, count: int, min_share: float = 0.1) -> list[tuple[int, int, int, int]]:
    """Bounding boxes (top, bottom, left, right) of the ``count`` axes areas, left to right: the spans of
    columns, then of rows, in which at least ``min_share`` of the pixels have the ``background`` colour
    (gaps of a gridline's width bridged)."""
    mask = colour_mask(img, background, 2)
    columns = _spans(mask.mean(axis=0) >= min_share)
    if len(columns) != count:
        raise FastAdvError(f"found {len(columns)} axes of background colour {tuple(background)}, expected {count}")
    boxes = []
    for left, right in columns:
        rows = _spans(mask[:, left:right + 1].mean(axis=1) >= min_share)
        boxes.append((rows[0][0], rows[-1][1], left, right))
    return boxes


def gridlines(img: np.ndarray, box, colour, vertical: bool, min_share: float = 0.6) -> list[float]:
    """Centres of the gridlines inside ``box``: columns (``vertical``) or rows mostly of ``colour``."""
    top, bottom, left, right = box
    mask = colour_mask(img[top:bottom + 1, left:right + 1], colour, 2)
    share = mask.mean(axis=0 if vertical else 1)
    idx = np.nonzero(share >= min_share)[0]
    runs = np.split(idx, np.nonzero(np.diff(idx) > 1)[0] + 1) if len(idx) else []
    offset = left if vertical else top
    return [float(r.mean()) + offset for r in runs if len(r)]


def tick_label_centres(img: np.ndarray, box, text_rgb, vertical: bool, depth: int = 40, gap: int = 8,
                       tol: float = 60) -> list[float]:
    """Centres of the tick labels beside the axes: below them (``vertical``: x labels, column centres) or to
    their left (y labels, row centres). Labels are centred on their ticks (matplotlib's default)."""
    top, bottom, left, right = box
    if vertical:
        strip = colour_mask(img[bottom + 3:bottom + 3 + depth, left:right + 1], text_rgb, tol).any(axis=0)
        offset = left
    else:
        strip = colour_mask(img[top:bottom + 1, max(left - 3 - depth, 0):left - 3], text_rgb, tol).any(axis=1)
        offset = top
    idx = np.nonzero(strip)[0]
    runs = np.split(idx, np.nonzero(np.diff(idx) > gap)[0] + 1) if len(idx) else []
    return [(r[0] + r[-1]) / 2 + offset for r in runs if len(r)]


def marker_rows(img: np.ndarray, box, colour, tol: float, x_px: float, window: int, min_width: int,
                min_height: int = 3):
    """Runs of rows (start, end) near column ``x_px`` holding ≥ ``min_width`` pixels of the marker colour,
    at least ``min_height`` rows tall (a line crossing the column is thinner than a marker)."""
    top, bottom = box[0], box[1]
    lo, hi = int(round(x_px)) - window, int(round(x_px)) + window + 1
    counts = colour_mask(img[top:bottom + 1, lo:hi], colour, tol).sum(axis=1)
    idx = np.nonzero(counts >= min_width)[0]
    runs = np.split(idx, np.nonzero(np.diff(idx) > 1)[0] + 1) if len(idx) else []
    return [(int(r[0]) + top, int(r[-1]) + top) for r in runs if len(r) >= min_height]


def band_extent(img: np.ndarray, box, x_px: float, y_px: float, band_rgb, tol: float, start: int,
                line_rgb=None) -> tuple[int, int]:
    """Rows (upper, lower) of the shaded band around (x_px, y_px): from ``start`` pixels off the centre,
    walk up and down while pixels are within ``tol`` of ``band_rgb`` (or of the series' own line, or the
    gridline white)."""
    col = img[box[0]:box[1] + 1, int(round(x_px))][:, None, :]
    centre = int(round(y_px)) - box[0]
    ok = colour_mask(col, band_rgb, tol)[:, 0] | colour_mask(col, (255, 255, 255), 2)[:, 0]
    if line_rgb is not None:
        ok |= colour_mask(col, line_rgb, 60)[:, 0]
    up = centre - start
    while up > 0 and ok[up - 1]:
        up -= 1
    down = centre + start
    while down < len(ok) - 1 and ok[down + 1]:
        down += 1
    return up + box[0], down + box[0]


def blend(rgb, background, alpha: float) -> tuple[int, int, int]:
    return tuple(int(round(alpha * c + (1 - alpha) * b)) for c, b in zip(rgb, background))


def digitize(img: np.ndarray, spec: dict) -> pd.DataFrame:
    """Every point of every series of every panel in ``spec`` (see the module docstring)."""
    panels = spec["panels"]
    boxes = find_axes(img, spec["background"], len(panels))
    grid = spec.get("gridline", [255, 255, 255])
    rows = []
    text = spec.get("text", [38, 38, 38])
    for box, panel in zip(boxes, panels):
        xs = tick_label_centres(img, box, text, vertical=True)
        ys = tick_label_centres(img, box, text, vertical=False)
        if len(xs) != len(panel["x_ticks"]) or len(ys) != len(panel["y_ticks"]):
            raise FastAdvError(f"panel {panel['name']!r}: found {len(xs)} x / {len(ys)} y tick labels, "
                               f"the spec has {len(panel['x_ticks'])} x ticks / {len(panel['y_ticks'])} y ticks")
        x_axis = Axis.fit(xs, panel["x_ticks"])
        y_axis = Axis.fit(ys, sorted(panel["y_ticks"], reverse=True))  # rows grow downwards
        # Cross-check: the visible gridlines lie on the ticks.
        for axis, lines in ((x_axis, gridlines(img, box, grid, vertical=True)),
                            (y_axis, gridlines(img, box, grid, vertical=False))):
            ticks = panel["x_ticks"] if axis is x_axis else panel["y_ticks"]
            off = [min(abs(axis.value(p) - t) for t in ticks) for p in lines]
            if off and max(off) > 3 * abs(axis.b):
                raise FastAdvError(f"panel {panel['name']!r}: a gridline lies {max(off):.3g} away from every tick")
        panel_rows = []
        for series in panel["series"]:
            panel_rows += _read_series(img, box, x_axis, y_axis, panel, series, spec)
        rows += _disambiguate(pd.DataFrame(panel_rows), panel["series"])
    return pd.DataFrame(rows)


def _predict(values: dict, x: float) -> float:
    """A curve's value at ``x`` from the line through its two known points nearest to ``x`` (one: that one)."""
    near = sorted(values, key=lambda k: abs(k - x))[:2]
    if len(near) == 1:
        return values[near[0]]
    (x0, x1), (y0, y1) = near, (values[near[0]], values[near[1]])
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def _disambiguate(df: pd.DataFrame, series: list[dict]) -> list[dict]:
    """Two curves of one colour (``pick`` upper / lower) where only one marker is visible both read it.
    Walking outwards from where both curves were read, each such marker goes to the curve that, extended
    through its two nearest known points, passes closer (and then counts as known); the other gets none."""
    df = df.copy()
    by_colour: dict = {}
    for s in series:
        if s.get("pick") in ("upper", "lower"):
            by_colour.setdefault(tuple(s["colour"]), {})[s["pick"]] = s["name"]
    for pair in by_colour.values():
        if len(pair) != 2:
            continue
        up, low = (df[df["series"] == pair[k]].set_index("x")["value"] for k in ("upper", "lower"))
        known = {pair["upper"]: up[(up != low) & up.notna()].to_dict(),
                 pair["lower"]: low[(up != low) & low.notna()].to_dict()}
        todo = set(up.index[(up == low) & up.notna()])
        while todo:
            if not all(known.values()):  # one curve never seen alone: no way to tell
                losers = {x: list(pair.values()) for x in todo}
                todo = set()
            else:
                x = min(todo, key=lambda t: min(abs(t - k) for values in known.values() for k in values))
                todo.discard(x)
                near = {name: _predict(values, x) for name, values in known.items()}
                winner = min(near, key=lambda name: abs(near[name] - up[x]))
                known[winner][x] = up[x]
                losers = {x: [name for name in near if name != winner]}
            for x, names in losers.items():
                for name in names:
                    mask = (df["series"] == name) & (df["x"] == x)
                    df.loc[mask, ["value", "std", "uncertainty"]] = np.nan
                    df.loc[mask, "how"] = "one marker for two curves: the other's"
    return df.to_dict("records")


def _read_series(img, box, x_axis: Axis, y_axis: Axis, panel: dict, series: dict, spec: dict) -> list[dict]:
    m = spec["marker"]
    out = []
    for x in series["x"]:
        x_px = float(x_axis.pixel(x))
        runs = marker_rows(img, box, series["colour"], m["tol"], x_px, m["window"], m["min_width"])
        # Markers inside an excluded rectangle (the legend's own markers) are not data.
        runs = [r for r in runs if not _excluded(panel, x, float(y_axis.value((r[0] + r[1]) / 2)))]
        base = {"panel": panel["name"], "series": series["name"], "x": x, "calibration_residual": y_axis.residual}
        if not runs:
            out.append({**base, "value": np.nan, "std": np.nan, "uncertainty": np.nan, "how": "not visible"})
            continue
        pick = series.get("pick", "largest")  # upper / lower: two curves of one colour (clean above robust)
        start, end = (runs[0] if pick == "upper" else runs[-1] if pick == "lower" else
                      max(runs, key=lambda r: r[1] - r[0]))
        height = end - start + 1
        centre = (start + end) / 2
        partly_hidden = height < m["diameter"] - 2
        if partly_hidden:  # the visible part is the top or the bottom of the disc: its centre lies a radius in
            centre = end - m["diameter"] / 2 if start > box[0] and _hidden_above(img, box, x_px, start) else \
                start + m["diameter"] / 2
        px_unc = m["diameter"] / 2 if partly_hidden else 1.0
        value = float(y_axis.value(centre))
        unc = abs(y_axis.b) * px_unc + y_axis.residual
        std = np.nan
        if series.get("band_alpha"):
            band = blend(series["colour"], spec["background"], series["band_alpha"])
            up, down = band_extent(img, box, x_px, centre, band, spec["band_tol"], m["diameter"] // 2 + 2,
                                   series["colour"])
            reach_up, reach_down = centre - up, down - centre
            # mean ± std is symmetric: a band reaching unequally far was cut by another series' colours.
            if min(reach_up, reach_down) > m["diameter"] / 2 + 2 and abs(reach_up - reach_down) <= 3:
                std = abs(y_axis.b) * (reach_up + reach_down) / 2
        out.append({**base, "value": value, "std": std, "uncertainty": unc,
                    "how": "marker partly hidden" if partly_hidden else "marker centre"})
    return out


def _excluded(panel: dict, x: float, y: float) -> bool:
    return any(x0 <= x <= x1 and y0 <= y <= y1 for x0, x1, y0, y1 in panel.get("exclude", []))


def _hidden_above(img, box, x_px, start) -> bool:
    """Whether the pixel just above a partly visible marker belongs to another (saturated) series' marker."""
    above = img[start - 2, int(round(x_px))]
    return int(above.max()) - int(above.min()) > 60 or int(above.max()) < 80


def load_spec(path: str | Path) -> dict:
    try:
        spec = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise FastAdvError(f"digitizing spec {str(path)!r} unreadable ({type(e).__name__}: {e})") from None
    for key in ("background", "marker", "panels", "band_tol"):
        if key not in spec:
            raise FastAdvError(f"digitizing spec {str(path)!r} lacks {key!r}; needs background, marker, panels, band_tol")
    return spec


def to_published(df: pd.DataFrame, spec: dict) -> list[dict]:
    """The digitised points as ``published_values.yaml`` entries (visible markers only), with the source,
    the read-off uncertainty and how each was read."""
    out = []
    for _, r in df[df["value"].notna()].iterrows():
        panel = next(p for p in spec["panels"] if p["name"] == r["panel"])
        method, _, metric = r["series"].partition("/")
        value, how = round(float(r["value"]), 2), r["how"]
        if metric.endswith("_acc") or panel["metric"].endswith("_acc"):
            # a marker drawn at 0 % or 100 % reads a little beyond it (pixel quantisation): record the limit
            limit = min(max(value, 0.0), 100.0)
            if limit != value:
                value, how = limit, f"{how}; read {value:.2f}, beyond the axis limit, recorded at {limit:g}"
        out.append({
            "dataset": panel["dataset"], "method": method, "eps": float(r["x"]), "model": panel["model"],
            "metric": metric or panel["metric"], "mean": value,
            "std": None if pd.isna(r["std"]) else round(float(r["std"]), 2), "seeds": spec.get("seeds"),
            "origin": spec["origin"], "figure": spec["figure"], "source": spec["source"],
            "uncertainty": round(float(r["uncertainty"]), 2),
            "read_off": f"{how}; axis fit residual {r['calibration_residual']:.2f}",
        })
    return out


def write_digitized(image, spec_path, out, published=None) -> pd.DataFrame:
    """``fastadv digitize``: the points of ``image`` that ``spec_path`` describes as CSV at ``out`` and, with
    ``published``, the readable ones as published_values.yaml entries there."""
    from fastadv import atomic

    spec = load_spec(spec_path)
    df = digitize(load_image(image), spec)
    atomic.write_text(out, df.to_csv(index=False))
    if published:
        lines = [f"- {yaml.safe_dump(e, default_flow_style=True, sort_keys=False, allow_unicode=True, width=10_000).strip()}"
                 for e in to_published(df, spec)]
        atomic.write_text(published, "\n".join(lines) + "\n")
    return df
