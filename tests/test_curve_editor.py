"""The loudness-curve and onset editor (ui/curve_editor.py): its preset shapes, and a person drawing on it.

The browser test serves a page holding only the editor (plus a length slider and a few buttons) on
127.0.0.1 from this process, and drives it with Debian's /usr/bin/chromium through Playwright, with
real mouse presses, moves and clicks. The screenshot goes to /tmp/curve_editor.png.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ui.curve_editor import CURVE_PRESETS, scale_preset

RMS_FORMAT = re.compile(r"^\d+:-?\d+(\.5)?(,\d+:-?\d+(\.5)?)*$")
ONSETS_FORMAT = re.compile(r"^\d+(,\d+)*$")
SHOT = Path("/tmp/curve_editor.png")


def _rms(text: str) -> list[tuple[int, float]]:
    """The points of an RMS text in the exact format, or an AssertionError saying what is wrong."""
    assert RMS_FORMAT.match(text), f"not in the ms:dB format: {text!r}"
    points = [(int(t), float(db)) for t, db in (p.split(":") for p in text.split(","))]
    assert all(-80 <= db <= 0 for _, db in points), text
    assert all(a[0] < b[0] for a, b in zip(points, points[1:])), f"times not increasing: {text!r}"
    return points


def _onsets(text: str) -> list[int]:
    if not text:
        return []
    assert ONSETS_FORMAT.match(text), f"not in the onsets format: {text!r}"
    times = [int(t) for t in text.split(",")]
    assert times == sorted(set(times)), text
    return times


def test_presets_are_in_the_exact_format_and_scale_with_the_length():
    assert {"tight", "long decay", "swell", "double hit", "roll"} <= set(CURVE_PRESETS)
    for name, (rms, onsets) in CURVE_PRESETS.items():
        points = _rms(rms)
        assert points[0][0] == 0 and points[-1][0] <= 1000 and len(points) <= 32, name
        assert all(t <= 1000 for t in _onsets(onsets)), name
        for seconds in (0.05, 0.5, 2.0):
            scaled_rms, scaled_onsets = scale_preset(name, seconds)
            assert _rms(scaled_rms)[-1][0] <= round(1000 * seconds), (name, seconds)
            assert all(t <= round(1000 * seconds) for t in _onsets(scaled_onsets)), (name, seconds)
    assert scale_preset("double hit", 0.5) == ("0:-6,30:-16,85:-34,90:-8,130:-18,250:-40,500:-60", "0,90")
    assert scale_preset("roll", 0.5) == ("0:-14,420:-14,480:-40", "0,50,100,150,200,250,300,350")  # the hat-roll preset's
    assert _rms(CURVE_PRESETS["tight"][0])[-1][1] <= -30  # tight decays fast...
    assert _rms(CURVE_PRESETS["swell"][0])[0][1] <= -30  # ...a swell starts quiet


# ---------------------------------------------------------------------------- a person in Chromium

@pytest.fixture(scope="module")
def page():
    from .test_ui_server import CHROMIUM, CHROMIUM_ARGS, _free_port  # the same browser and flags as the studio's tests

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (make browser) to run the browser tests")
    sync_api = pytest.importorskip("playwright.sync_api")
    import gradio as gr

    from ui.curve_editor import CURVE_EDITOR_HEAD, curve_editor

    with gr.Blocks(analytics_enabled=False) as demo:
        length = gr.Slider(0.05, 2.0, value=1.0, step=0.01, label="Length (s)", elem_id="length")
        editor = curve_editor(1.0)
        editor.follow(length)
        with gr.Row():
            take = gr.Button("take the curves from this sound", elem_id="take")
            echo = gr.Button("echo", elem_id="echo")
            one_second = gr.Button("1 s", elem_id="one-second")
        echoed = gr.Textbox(label="what the server got", elem_id="echoed")
        take.click(lambda: "0:-6,500:-30", outputs=editor.rms)
        one_second.click(lambda: 1.0, outputs=length)
        echo.click(lambda rms, onsets: f"{rms}|{onsets}", inputs=[editor.rms, editor.onsets], outputs=echoed)
    theme = gr.themes.Default(primary_hue="orange", secondary_hue="slate", neutral_hue="slate",  # ui.app.theme()
                              font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True,
                            ssr_mode=False, theme=theme, head=CURVE_EDITOR_HEAD)
    assert url.startswith("http://127.0.0.1:")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        tab = browser.new_page(viewport={"width": 900, "height": 640}, device_scale_factor=2)
        tab.route("**/*", lambda route: route.continue_() if route.request.url.startswith(
            ("http://127.0.0.1", "data:", "blob:")) else route.abort())
        tab.goto(url)
        tab.wait_for_function("() => window.tdsCurve && document.querySelector('#tds-curve-canvas').dataset.length")
        yield tab
        browser.close()
    demo.close()


def _box(page, element_id: str):
    return page.locator(f"#{element_id} textarea, #{element_id} input").first


def _at(page, ms: float, db: float) -> tuple[float, float]:
    """Page coordinates of (ms, dB) on the canvas."""
    box = page.locator("#tds-curve-canvas").bounding_box()
    x, y = page.evaluate("([ms, db]) => [tdsCurve.xOf(ms), tdsCurve.yOf(db)]", [ms, db])
    return box["x"] + x, box["y"] + y


def _wait_value(page, element_id: str, predicate: str) -> str:
    """The value of the box ``element_id`` once ``predicate`` (JS, over ``v``) holds; fails saying what it holds."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(f"""() => {{ const v = document.querySelector("#{element_id} textarea, #{element_id} input")
                                              .value; return {predicate}; }}""", timeout=15_000)
    except PlaywrightTimeout:
        pytest.fail(f"#{element_id} never met `{predicate}` in 15 s; it holds {_box(page, element_id).input_value()!r}")
    return _box(page, element_id).input_value()


@pytest.mark.browser
@pytest.mark.slow
def test_a_producer_draws_a_curve_places_onsets_and_uses_presets(page):
    # 1. Draw: press near 0 dB at the start, drag down a fast decay to the lower right
    page.mouse.move(*_at(page, 0, -1))
    page.mouse.down()
    for i in range(1, 13):
        t = 950 * i / 12
        page.mouse.move(*_at(page, t, max(-57.0, -60 * (1 - 0.6 ** (t / 40)))), steps=3)
    page.mouse.up()
    points = _rms(_wait_value(page, "tds-curve-rms", "v !== ''"))
    assert 2 <= len(points) <= 32, points
    assert points[0][0] <= 5 and points[0][1] >= -4, points  # where the press was
    assert points[-1][1] <= points[0][1] - 20 and points[-1][0] >= 900, points  # decays across the sound
    assert all(db >= -60 for _, db in points)
    assert page.evaluate("tdsCurve.points()") == [list(p) for p in points]

    # 2. Onsets: two clicks add two markers; a click on one removes it
    page.click("#tds-curve-mode-onsets")
    assert _box(page, "tds-curve-rms").input_value() != ""
    for ms in (0, 180):
        page.mouse.click(*_at(page, ms, -30))
    onsets = _onsets(_wait_value(page, "tds-curve-onsets", "v.split(',').length === 2"))
    assert abs(onsets[0] - 0) <= 15 and abs(onsets[1] - 180) <= 15, onsets
    page.mouse.click(*_at(page, onsets[1] + 3, -45))
    assert _onsets(_wait_value(page, "tds-curve-onsets", "!v.includes(',')")) == onsets[:1]
    # what the widget wrote reached the server like typed text
    drawn = f"{_box(page, 'tds-curve-rms').input_value()}|{onsets[0]}"
    page.click("#echo")
    assert _wait_value(page, "echoed", "v !== ''") == drawn

    # 3. Presets, scaled to the length; the length follows the app's slider
    page.click("button[data-preset='double hit']")
    assert _wait_value(page, "tds-curve-onsets", "v === '0,180'") == scale_preset("double hit", 1.0)[1]
    assert _box(page, "tds-curve-rms").input_value() == CURVE_PRESETS["double hit"][0]
    slider = page.locator("#length input[type=number]")
    slider.fill("0.5")
    slider.press("Enter")
    page.wait_for_function("document.querySelector('#tds-curve-canvas').dataset.length === '500'", timeout=5000)
    page.click("button[data-preset='tight']")
    tight = scale_preset("tight", 0.5)
    assert _wait_value(page, "tds-curve-onsets", "v === '0'") == tight[1]
    assert _box(page, "tds-curve-rms").input_value() == tight[0]
    assert _rms(tight[0])[-1][0] == 150

    # 4. A value set from Python (no DOM event) and one typed both redraw the canvas
    page.click("#take")
    page.wait_for_function("JSON.stringify(tdsCurve.points()) === '[[0,-6],[500,-30]]'", timeout=5000)
    assert page.locator("#tds-curve-canvas").get_attribute("data-points") == "[[0,-6],[500,-30]]"
    _box(page, "tds-curve-onsets").fill("0, 250")
    page.wait_for_function("JSON.stringify(tdsCurve.onsets()) === '[0,250]'", timeout=5000)

    # 5. Clear empties both; a picture of a double hit on a 1 s sound to look at
    page.click("#tds-curve-clear")
    _wait_value(page, "tds-curve-rms", "v === ''")
    assert _box(page, "tds-curve-onsets").input_value() == "" and page.evaluate("tdsCurve.points()") == []
    page.click("#one-second")  # the length set by a handler: the grid follows it too
    page.wait_for_function("document.querySelector('#tds-curve-canvas').dataset.length === '1000'", timeout=5000)
    page.click("button[data-preset='double hit']")
    _wait_value(page, "tds-curve-onsets", "v === '0,180'")
    page.wait_for_timeout(300)
    page.screenshot(path=str(SHOT), full_page=True)
