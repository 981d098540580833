"""A loudness-curve and onset editor: a canvas a producer draws on, whose value is two text boxes.

Gradio has no curve widget, so this is a ``gr.HTML`` holding a toolbar and a ``<canvas>``, whose
``js_on_load`` script draws the grid and writes what is drawn into two ordinary text boxes:

- ``rms``: the loudness curve, ``"0:-3,40:-10,250:-40"`` (ms:dB, times increasing, dB in [-80, 0]);
- ``onsets``: the hits, ``"0,180"`` (ms, increasing); an empty box means "no curve" / "no onsets".

A person may type into the boxes too. The script re-reads them (and the length) every 200 ms, so
values set by a Python handler, which fire no DOM event, redraw the canvas as well. Drawing never
leaves the browser; only the boxes' values reach the server, as any textbox's do.

Wiring, inside the app's ``gr.Blocks``: ``editor = curve_editor(seconds)``, then
``editor.follow(length_slider)`` (the grid's length follows the slider, also when a handler sets it),
and ``CURVE_EDITOR_HEAD`` added to ``launch(head=...)``. One editor per page (the element ids are fixed).
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass

import gradio as gr

# name -> (rms points, onsets) for a 1000 ms sound; the widget scales the times to the sound's length
CURVE_PRESETS: dict[str, tuple[str, str]] = {  # levels as real one-shots have them: a kick's RMS peaks near -4
    "tight": ("0:-6,15:-9,60:-21,150:-41,300:-60", "0"),          # dBFS, a snare's near -11 (held-out kits)
    "long decay": ("0:-6,60:-9,250:-16,600:-28,1000:-46", "0"),
    "swell": ("0:-60,300:-44,650:-22,880:-10,1000:-16", ""),
    "double hit": ("0:-6,60:-16,170:-34,180:-8,260:-18,500:-40,1000:-60", "0,180"),
    # eight strikes at one level (50 ms apart on a 0.5 s sound): the line is each hit's level, the
    # sound falls between them (engine.steering.roll_segments)
    "roll": ("0:-14,840:-14,960:-40", "0,100,200,300,400,500,600,700"),
}


def _round_ms(value: float) -> int:
    return int(math.floor(value + 0.5))  # half up, as the page's Math.round


def scale_preset(name: str, length_seconds: float) -> tuple[str, str]:
    """``CURVE_PRESETS[name]`` with its times scaled to a sound of ``length_seconds``: the text the page's
    shape buttons write (the page, too, takes the length in whole ms)."""
    rms, onsets = CURVE_PRESETS[name]
    length_seconds = max(1, _round_ms(length_seconds * 1000)) / 1000
    points: list[str] = []
    last = -1
    for point in filter(None, rms.split(",")):
        ms, db = point.split(":")
        t = _round_ms(float(ms) * length_seconds)
        if t > last:
            points.append(f"{t}:{db}")
            last = t
    times = sorted({_round_ms(float(ms) * length_seconds) for ms in filter(None, onsets.split(","))})
    return ",".join(points), ",".join(map(str, times))


@dataclass
class CurveEditor:
    """The widget's components; ``rms`` and ``onsets`` are its value, ``length`` (seconds) sets the grid."""

    canvas: gr.HTML
    rms: gr.Textbox
    onsets: gr.Textbox
    length: gr.Number

    def follow(self, seconds: gr.components.Component) -> None:
        """Keep the grid's length equal to ``seconds`` (e.g. the length slider), in the browser alone."""
        seconds.change(None, inputs=seconds, outputs=self.length, js="(s) => s", queue=False,
                       show_progress="hidden", api_visibility="private")


# Page CSS for the boxes under the canvas (the canvas and its toolbar carry their own, scoped CSS).
CURVE_EDITOR_HEAD = """
<style>
.tds-curve-boxes textarea, .tds-curve-boxes input { font-family: var(--font-mono, monospace); font-size: .8rem !important; }
</style>
"""

_CSS = """
.tds-curve-bar { display: flex; flex-wrap: wrap; align-items: center; gap: .3rem; margin-bottom: .35rem; font-size: .8rem; }
.tds-curve-bar button { padding: .15rem .55rem; border: 1px solid var(--border-color-primary); border-radius: var(--radius-sm);
  background: var(--background-fill-primary); color: var(--body-text-color); cursor: pointer; font-size: .8rem;
  box-shadow: var(--button-secondary-shadow); }
.tds-curve-bar button:hover { border-color: var(--color-accent); }
.tds-curve-bar button[aria-pressed=true] { background: var(--color-accent); border-color: var(--color-accent); color: white; }
.tds-curve-shapes { display: flex; flex-wrap: wrap; align-items: center; gap: .3rem; }
.tds-curve-gap { margin-left: .4rem; opacity: .7; }
.tds-curve-hint { margin-top: .25rem; font-size: .75rem; opacity: .65; }
canvas { display: block; width: 100%; height: 210px; touch-action: none; cursor: crosshair;
  border: 1px solid var(--border-color-primary); border-radius: var(--radius-md); background: var(--background-fill-primary); }
"""

# Runs once per page load with ``element`` = the gr.HTML root; __PRESETS__ is filled in below.
_JS = r"""
const canvas = element.querySelector("canvas"), ctx = canvas.getContext("2d");
const HINTS = {draw: "drag to draw the loudness", onsets: "click: add a hit · click a hit: remove it"};
const PRESETS = __PRESETS__, M = {l: 46, r: 14, t: 10, b: 24}, LOW = -60;
const box = (id) => document.querySelector(`#${id} textarea, #${id} input`);
const S = {mode: "draw", points: [], onsets: [], len: 1000, stroke: null, seen: ""};
const plotW = () => canvas.clientWidth - M.l - M.r, plotH = () => canvas.clientHeight - M.t - M.b;
const xOf = (ms) => M.l + ms / S.len * plotW(), yOf = (db) => M.t + Math.min(-db, -LOW) / -LOW * plotH();
const msAt = (x) => Math.max(0, Math.min(S.len, (x - M.l) / plotW() * S.len));
const dbAt = (y) => Math.max(LOW, Math.min(0, -(y - M.t) / plotH() * -LOW));
const fmtDb = (db) => String(Math.round(db * 2) / 2 || 0);  // "|| 0": never "-0"
const num = (s) => (s.trim() === "" ? NaN : Number(s));
function parse(rms, onsets) {  // lenient, for drawing only: what is typed stays as typed
  const points = rms.split(",").map((p) => p.split(":").map(num))
    .filter((p) => p.length === 2 && p.every(Number.isFinite)).sort((a, b) => a[0] - b[0]);
  return [points, onsets.split(",").map(num).filter(Number.isFinite).sort((a, b) => a - b)];
}
function write(id, text) {  // as if typed: Gradio's binding listens to "input"
  const b = box(id); if (!b || b.value === text) return;
  b.value = text; b.dispatchEvent(new Event("input", {bubbles: true}));
}
function emit(rms, onsets) {
  if (rms !== null) write("tds-curve-rms", rms);
  if (onsets !== null) write("tds-curve-onsets", onsets);
  sync(true);
}
const onsetText = (times) => [...new Set(times.map(Math.round))].sort((a, b) => a - b).join(",");
function rmsText(points) {  // [[ms, dB], ...] sorted by time -> "ms:dB,...": whole ms, strictly increasing
  let last = -1; const out = [];
  for (const [t, db] of points) {
    const ms = Math.round(t);
    if (ms > last) { out.push(`${ms}:${fmtDb(Math.max(-80, Math.min(0, db)))}`); last = ms; }
  }
  return out;
}
function simplify(pts, eps) {  // Ramer-Douglas-Peucker over [x px, y px, ms, db]
  if (pts.length < 3) return pts;
  const [a, b] = [pts[0], pts[pts.length - 1]]; let worst = 0, at = 0;
  for (let i = 1; i < pts.length - 1; i++) {
    const p = pts[i], dx = b[0] - a[0], dy = b[1] - a[1];
    const d = Math.abs(dy * p[0] - dx * p[1] + b[0] * a[1] - b[1] * a[0]) / (Math.hypot(dx, dy) || 1);
    if (d > worst) { worst = d; at = i; }
  }
  if (worst <= eps) return [a, b];
  return simplify(pts.slice(0, at + 1), eps).slice(0, -1).concat(simplify(pts.slice(at), eps));
}
function finishStroke() {  // one value per pixel column drawn (the last drawn wins), then <= 32 points
  const cols = S.stroke; S.stroke = null;
  const xs = Object.keys(cols).map(Number).sort((a, b) => a - b);
  let pts = xs.map((c) => [c, yOf(cols[c]), msAt(c), cols[c]]), eps = 0.75;
  do { pts = simplify(pts, eps); eps *= 1.5; } while (pts.length > 32);
  const out = rmsText(pts.map((p) => [p[2], p[3]]));
  if (out.length >= 2) emit(out.join(","), null); else draw();  // a click in Draw mode keeps the curve
}
function strokeTo(x, y) {  // fill every column between the last position and this one
  const c = Math.round(Math.max(M.l, Math.min(M.l + plotW(), x))), db = dbAt(y), prev = S.last || [c, db];
  const n = Math.abs(c - prev[0]);
  for (let i = 0; i <= n; i++) S.stroke[prev[0] + Math.sign(c - prev[0]) * i] = n ? prev[1] + (db - prev[1]) * i / n : db;
  S.last = [c, db];
}
function draw() {
  const dpr = window.devicePixelRatio || 1, w = canvas.clientWidth, h = canvas.clientHeight;
  if (!w || !h) return;  // hidden (a closed accordion): drawn when it shows
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
  }
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0); ctx.clearRect(0, 0, w, h);
  const style = getComputedStyle(element), text = style.color || "#555";
  ctx.font = "11px system-ui, sans-serif"; ctx.lineWidth = 1;
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  for (let db = 0; db >= LOW; db -= 10) {
    const y = Math.round(yOf(db)) + 0.5;
    ctx.strokeStyle = "rgba(128,128,128,.28)"; ctx.beginPath(); ctx.moveTo(M.l, y); ctx.lineTo(M.l + plotW(), y); ctx.stroke();
    ctx.fillStyle = text; ctx.fillText(db === 0 ? "0 dB" : String(db), M.l - 6, y);
  }
  const step = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000].find((s) => S.len / s * 48 <= plotW()) || 10000;
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  for (let t = 0; t <= S.len + 1e-9; t += step) {
    const x = Math.round(xOf(t)) + 0.5;
    ctx.strokeStyle = "rgba(128,128,128,.28)"; ctx.beginPath(); ctx.moveTo(x, M.t); ctx.lineTo(x, M.t + plotH()); ctx.stroke();
    if (S.len - t < step * 0.6 && t > 0 && t < S.len) continue;  // too close to the end label
    ctx.fillStyle = text; ctx.fillText(t === 0 ? "0 ms" : String(t), Math.min(x, M.l + plotW() - 12), M.t + plotH() + 5);
  }
  if (S.len % step) { ctx.fillText(String(S.len), M.l + plotW() - 12, M.t + plotH() + 5); }
  ctx.strokeStyle = "#0ea5e9"; ctx.lineWidth = 2; ctx.setLineDash([5, 3]);
  for (const t of S.onsets) {
    const x = xOf(t); ctx.beginPath(); ctx.moveTo(x, M.t); ctx.lineTo(x, M.t + plotH()); ctx.stroke();
  }
  ctx.setLineDash([]);
  const pts = S.stroke ? Object.keys(S.stroke).map(Number).sort((a, b) => a - b).map((c) => [c, yOf(S.stroke[c])])
    : S.points.map(([t, db]) => [xOf(t), yOf(db)]);
  if (pts.length) {
    ctx.fillStyle = "rgba(249,115,22,.14)"; ctx.beginPath(); ctx.moveTo(pts[0][0], M.t + plotH());
    pts.forEach(([x, y]) => ctx.lineTo(x, y)); ctx.lineTo(pts[pts.length - 1][0], M.t + plotH()); ctx.fill();
    ctx.strokeStyle = "#f97316"; ctx.lineWidth = 2.5; ctx.lineJoin = "round"; ctx.beginPath();
    pts.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y))); ctx.stroke();
    ctx.fillStyle = "#f97316";
    if (!S.stroke) pts.forEach(([x, y]) => { ctx.beginPath(); ctx.arc(x, y, 3, 0, 7); ctx.fill(); });
  }
  canvas.dataset.points = JSON.stringify(S.points); canvas.dataset.onsets = JSON.stringify(S.onsets);
  canvas.dataset.length = String(S.len);
}
function sync(force) {  // re-read the boxes and the length; redraw when anything changed
  const r = box("tds-curve-rms"), o = box("tds-curve-onsets"), l = box("tds-curve-length");
  const seconds = l ? Number(l.value) : NaN, state = [r ? r.value : "", o ? o.value : "", l ? l.value : ""].join("|");
  if (!force && state === S.seen) return;
  S.seen = state; S.len = Number.isFinite(seconds) && seconds > 0 ? Math.max(1, Math.round(seconds * 1000)) : S.len;
  [S.points, S.onsets] = parse(r ? r.value : "", o ? o.value : ""); draw();
}
function setMode(mode) {
  S.mode = mode;
  element.querySelectorAll("[data-mode]").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.mode === mode)));
  element.querySelector(".tds-curve-hint").textContent = HINTS[mode];
  canvas.style.cursor = mode === "draw" ? "crosshair" : "pointer";
}
element.addEventListener("click", (event) => {
  const b = event.target.closest("button"); if (!b) return;
  if (b.dataset.mode) setMode(b.dataset.mode);
  else if (b.dataset.preset) {  // shapes are for 1000 ms: scale the times to this sound
    const [points, onsets] = parse(...PRESETS[b.dataset.preset]), k = S.len / 1000;
    emit(rmsText(points.map(([t, db]) => [t * k, db])).join(","), onsetText(onsets.map((t) => t * k)));
  }
  else if (b.classList.contains("tds-curve-clear")) emit("", "");
});
canvas.addEventListener("pointerdown", (event) => {
  const r = canvas.getBoundingClientRect(), x = event.clientX - r.left, y = event.clientY - r.top;
  if (S.mode === "onsets") {
    const near = S.onsets.filter((t) => Math.abs(xOf(t) - x) <= 8).sort((a, b) => Math.abs(xOf(a) - x) - Math.abs(xOf(b) - x));
    emit(null, onsetText(near.length ? S.onsets.filter((t) => t !== near[0]) : [...S.onsets, msAt(x)]));
    return;
  }
  canvas.setPointerCapture(event.pointerId); S.stroke = {}; S.last = null; strokeTo(x, y); draw();
});
canvas.addEventListener("pointermove", (event) => {
  if (!S.stroke) return;
  const r = canvas.getBoundingClientRect(); strokeTo(event.clientX - r.left, event.clientY - r.top); draw();
});
canvas.addEventListener("pointerup", () => S.stroke && finishStroke());
canvas.addEventListener("pointercancel", () => { S.stroke = null; draw(); });
new ResizeObserver(() => draw()).observe(canvas);
const timer = setInterval(() => (canvas.isConnected ? sync(false) : clearInterval(timer)), 200);
window.tdsCurve = {points: () => S.points, onsets: () => S.onsets, length: () => S.len, mode: () => S.mode,
  xOf, yOf, canvas, redraw: () => sync(true)};
sync(true);
"""


def _template() -> str:
    presets = "".join(f'<button type="button" class="tds-curve-preset" data-preset="{html.escape(name)}">'
                      f"{html.escape(name)}</button>" for name in CURVE_PRESETS)
    return ('<div class="tds-curve-bar">'
            '<button type="button" id="tds-curve-mode-draw" data-mode="draw" aria-pressed="true">✎ Draw</button>'
            '<button type="button" id="tds-curve-mode-onsets" data-mode="onsets" aria-pressed="false">┆ Onsets</button>'
            '<button type="button" id="tds-curve-clear" class="tds-curve-clear">Clear</button>'
            f'<span class="tds-curve-shapes"><span class="tds-curve-gap">shapes:</span>{presets}</span></div>'
            '<canvas id="tds-curve-canvas" aria-label="loudness curve (drag to draw) and onsets (click)"></canvas>'
            '<div class="tds-curve-hint">drag to draw the loudness</div>')


def curve_editor(length_seconds: float = 1.0) -> CurveEditor:
    """Build the editor in the current ``gr.Blocks`` context (page CSS: :data:`CURVE_EDITOR_HEAD`)."""
    with gr.Group(elem_id="tds-curve-editor"):
        canvas = gr.HTML(html_template=_template(), css_template=_CSS, padding=True, elem_id="tds-curve",
                         js_on_load=_JS.replace("__PRESETS__", json.dumps(CURVE_PRESETS)))
        with gr.Row(elem_classes="tds-curve-boxes"):
            rms = gr.Textbox("", label="Loudness curve (ms:dB)", placeholder="0:-3,40:-10,250:-40", max_lines=1,
                             scale=4, min_width=160, elem_id="tds-curve-rms")
            onsets = gr.Textbox("", label="Onsets (ms)", placeholder="0,180", max_lines=1, scale=2, min_width=100,
                                elem_id="tds-curve-onsets")
        length = gr.Number(length_seconds, label="Curve length (s)", visible="hidden", elem_id="tds-curve-length")
    return CurveEditor(canvas=canvas, rms=rms, onsets=onsets, length=length)
