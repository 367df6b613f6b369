# SPDX-License-Identifier: MIT
"""svgplot: the few plots scripts/bench draws, written as SVG by hand.

Line plots (several series, optional horizontal reference lines, linear or
log axes) and stacked bars; nothing else.  A small module instead of
matplotlib: the bench would otherwise pull in numpy and a font stack for
three pictures.  Pure: takes numbers, returns or writes SVG text.
"""
import math
from xml.sax.saxutils import escape

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
W, H = 720, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 190, 40, 50


def _nice_ticks(lo, hi, n=6):
    """About n round tick values covering lo..hi (linear)."""
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks, t = [], first
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    return ticks


def _log_ticks(lo, hi):
    ticks = []
    for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            v = m * 10 ** e
            if lo <= v <= hi:
                ticks.append(v)
    return ticks or [lo, hi]


def _fmt(v):
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.0f}"
    return f"{v:.3g}"


class _Axes:
    def __init__(self, xlo, xhi, ylo, yhi, logx, logy):
        self.logx, self.logy = logx, logy
        self.x0, self.x1 = (math.log10(xlo), math.log10(xhi)) if logx else (xlo, xhi)
        self.y0, self.y1 = (math.log10(ylo), math.log10(yhi)) if logy else (ylo, yhi)
        if self.x1 <= self.x0:
            self.x1 = self.x0 + 1
        if self.y1 <= self.y0:
            self.y1 = self.y0 + 1

    def x(self, v):
        v = math.log10(v) if self.logx else v
        return LEFT + (v - self.x0) / (self.x1 - self.x0) * (W - LEFT - RIGHT)

    def y(self, v):
        v = math.log10(v) if self.logy else v
        return H - BOTTOM - (v - self.y0) / (self.y1 - self.y0) * (H - TOP - BOTTOM)


def _frame(out, ax, title, xlabel, ylabel, xticks, yticks, xlabels=None):
    out.append(f'<text x="{W / 2 - RIGHT / 2 + LEFT / 2:.0f}" y="22" text-anchor="middle" font-size="15">'
               f'{escape(title)}</text>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{H - TOP - BOTTOM}" '
               'fill="none" stroke="#444"/>')
    for i, t in enumerate(xticks):
        px = ax.x(t)
        out.append(f'<line x1="{px:.1f}" y1="{TOP}" x2="{px:.1f}" y2="{H - BOTTOM}" stroke="#ddd"/>')
        label = xlabels[i] if xlabels else _fmt(t)
        # A label of several words (a bar's): one word a line.
        for j, word in enumerate(label.split(" ") if xlabels else [label]):
            out.append(f'<text x="{px:.1f}" y="{H - BOTTOM + 16 + 13 * j}" text-anchor="middle" '
                       f'font-size="{9 if xlabels else 11}">{escape(word)}</text>')
    for t in yticks:
        py = ax.y(t)
        out.append(f'<line x1="{LEFT}" y1="{py:.1f}" x2="{W - RIGHT}" y2="{py:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 6}" y="{py + 4:.1f}" text-anchor="end" font-size="11">{_fmt(t)}</text>')
    if xlabel:
        out.append(f'<text x="{(LEFT + W - RIGHT) / 2:.0f}" y="{H - 12}" text-anchor="middle" font-size="12">'
                   f'{escape(xlabel)}</text>')
    out.append(f'<text x="16" y="{(TOP + H - BOTTOM) / 2:.0f}" text-anchor="middle" font-size="12" '
               f'transform="rotate(-90 16 {(TOP + H - BOTTOM) / 2:.0f})">{escape(ylabel)}</text>')


def _legend(out, entries):
    """entries: (name, color, dashed)."""
    for i, (name, color, dashed) in enumerate(entries):
        y = TOP + 10 + i * 18
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        out.append(f'<line x1="{W - RIGHT + 10}" y1="{y}" x2="{W - RIGHT + 34}" y2="{y}" stroke="{color}" '
                   f'stroke-width="2"{dash}/>')
        out.append(f'<text x="{W - RIGHT + 40}" y="{y + 4}" font-size="11">{escape(name)}</text>')


def _svg(out):
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
            f'font-family="sans-serif">\n<rect width="{W}" height="{H}" fill="white"/>\n' + "\n".join(out) + "\n</svg>\n")


def line_plot(title, xlabel, ylabel, series, hlines=(), logx=False, logy=False, ymin=None, step=False):
    """series: [(name, [(x, y), ...])]; hlines: [(name, y)] or [(name, y,
    the index of the series whose colour it takes)], drawn dashed.
    step: draw each series as a staircase (a CDF).  Returns SVG text."""
    xs = [x for _, pts in series for x, _ in pts]
    ys = [y for _, pts in series for _, y in pts] + [h[1] for h in hlines]
    if not xs:
        xs, ys = [1, 2], [0, 1]
    xlo, xhi = min(xs), max(xs)
    ylo = min(ys) if ymin is None else ymin
    yhi = max(ys) * (1.0 if logy else 1.05)
    if logy:
        ylo = max(ylo, yhi / 1e4) if ylo > 0 else yhi / 1e4
    ax = _Axes(xlo, xhi, ylo, yhi, logx, logy)
    xticks = _log_ticks(xlo, xhi) if logx else [t for t in _nice_ticks(xlo, xhi) if xlo <= t <= xhi]
    yticks = _log_ticks(ylo, yhi) if logy else [t for t in _nice_ticks(ylo, yhi) if ylo <= t <= yhi]
    out, legend = [], []
    _frame(out, ax, title, xlabel, ylabel, xticks, yticks)
    for i, (name, pts) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        pts = sorted(pts)
        if step:
            path, prev = [], None
            for x, y in pts:
                if prev is not None:
                    path.append((x, prev))
                path.append((x, y))
                prev = y
            pts = path
        d = " ".join(f"{ax.x(x):.1f},{ax.y(max(y, ylo)):.1f}" for x, y in pts)
        out.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="2"/>')
        if not step:
            for x, y in pts:
                out.append(f'<circle cx="{ax.x(x):.1f}" cy="{ax.y(max(y, ylo)):.1f}" r="3" fill="{color}"/>')
        legend.append((name, color, False))
    for j, h in enumerate(hlines):
        name, y = h[0], h[1]
        color = COLORS[(h[2] if len(h) > 2 else len(series) + j) % len(COLORS)]
        out.append(f'<line x1="{LEFT}" y1="{ax.y(y):.1f}" x2="{W - RIGHT}" y2="{ax.y(y):.1f}" stroke="{color}" '
                   'stroke-width="1.5" stroke-dasharray="6 4"/>')
        legend.append((name, color, True))
    _legend(out, legend)
    return _svg(out)


def stacked_bars(title, ylabel, categories, stacks):
    """categories: bar names; stacks: [(owner, [value per category])],
    drawn bottom to top.  Returns SVG text."""
    totals = [sum(v[i] for _, v in stacks) for i in range(len(categories))]
    yhi = max(totals or [1]) * 1.08
    ax = _Axes(0, len(categories), 0, yhi, False, False)
    out = []
    yticks = [t for t in _nice_ticks(0, yhi) if t <= yhi]
    centers = [i + 0.5 for i in range(len(categories))]
    _frame(out, ax, title, "", ylabel, centers, yticks, xlabels=categories)
    width = (ax.x(1) - ax.x(0)) * 0.6
    for i in range(len(categories)):
        base = 0.0
        for j, (_, values) in enumerate(stacks):
            v = values[i]
            top = base + v
            out.append(f'<rect x="{ax.x(centers[i]) - width / 2:.1f}" y="{ax.y(top):.1f}" width="{width:.1f}" '
                       f'height="{ax.y(base) - ax.y(top):.1f}" fill="{COLORS[j % len(COLORS)]}"/>')
            if ax.y(base) - ax.y(top) > 14:
                out.append(f'<text x="{ax.x(centers[i]):.1f}" y="{(ax.y(base) + ax.y(top)) / 2 + 4:.1f}" '
                           f'text-anchor="middle" font-size="10" fill="white">{_fmt(v)}</text>')
            base = top
    entries = [(name, COLORS[j % len(COLORS)]) for j, (name, _) in enumerate(stacks)]
    for k, (name, color) in enumerate(reversed(entries)):
        y = TOP + 10 + k * 18
        out.append(f'<rect x="{W - RIGHT + 10}" y="{y - 6}" width="24" height="12" fill="{color}"/>')
        out.append(f'<text x="{W - RIGHT + 40}" y="{y + 4}" font-size="11">{escape(name)}</text>')
    return _svg(out)


def write(path, svg):
    with open(path, "w") as f:
        f.write(svg)
