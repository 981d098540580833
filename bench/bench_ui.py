"""Where a click's time goes: a real studio server, headless Chromium, and the engine alone.

    .venv/bin/python bench/bench_ui.py [--clicks 5] [--model kick] [--steps N (default: the model's)]

Run it with nothing else on the CPU (training included). It starts ``python app.py`` on a free
port of 127.0.0.1 with its own folders, waits for the server's warm-up, and then in Debian's
Chromium (Playwright, ``executable_path``):

- ``first_click_s``: the first Generate after the page loads, click -> the sound playable;
- for 1 and for 8 sounds, ``--clicks`` warm clicks each: click -> every card playable
  (``page_s``, from the browser's own input event to the moment the last card's WAV link changed,
  both stamped inside the page, so the driver's checks and polling are not counted), and from
  the server's log line for that click (``ui.handlers``: "timings: ...")
  the stages: ``sampling_s`` (the engine's render), ``preview_plots_s`` (preview plots drawn while
  it samples), ``wav_writes_s`` (the WAVs and their float masters), ``plots_s`` (the final
  waveform + spectrogram figures, drawn after the sounds are playable) and ``rest_s`` (page
  updates, payloads, queueing: page minus the server's stages before the sounds play), split
  into ``in_s`` (click -> the handler starts: the request, Gradio's queue and its reading of the
  inputs) and ``out_s`` (the handler's sounds update -> every player playable: Gradio's output
  processing, the message, the page drawing the players), by the server's wall-clock stamps;
- ``scrub_s``: with "Audition on change" ticked, the morph slider released -> a new sound playable;
- ``engine_s``: the same request through ``Studio.render`` in this process (median), timed right
  after each click so that both are measured in the same minutes: the figure the page should add
  little to.

Figures are medians, printed as ``name: value`` lines, then a per-stage table with each stage's
share of the page time.
"""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CHROMIUM = "/usr/bin/chromium"
TIMINGS = re.compile(r"timings: sounds (\d+), engine ([\d.]+) s \(sampling ([\d.]+) s, preview plots ([\d.]+) s\), "
                     r"wav writes ([\d.]+) s, plots ([\d.]+) s, entered ([\d.]+), sounds out ([\d.]+)")


def start_server(base: Path) -> tuple[subprocess.Popen, str, Path]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = base / "server.log"
    process = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--no-browser", "--device", "cpu", "--port",
                                str(port), "--export-dir", str(base / "exports"), "--cache-dir", str(base / "cache")],
                               cwd=base, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while time.time() < deadline:
        if "warmed up" in log.read_text() or "warming up" in log.read_text():
            try:
                urllib.request.urlopen(url, timeout=2)
                return process, url, log
            except OSError:
                pass
        if process.poll() is not None:
            raise SystemExit(f"the server exited:\n{log.read_text()}")
        time.sleep(0.3)
    process.kill()
    raise SystemExit(f"the server did not start:\n{log.read_text()}")


# In-page stamps: the click's own event time and the moment the last card's WAV link changed, both
# on the wall clock (performance.timeOrigin + ...), so neither Playwright's actionability checks
# before a click nor its polling after it are counted as the page's time.
WATCH = """([n, sel]) => {
    const links = () => [...Array(n).keys()].map(i =>
        document.querySelector('#slot' + i + ' ' + sel)?.getAttribute('href') || '');
    const before = links();
    const stamps = window.__tds = {clicked: null, playable: null};
    const now = () => performance.timeOrigin + performance.now();
    for (const type of ['click', 'keydown', 'pointerup'])  // a button, Enter in a box, a slider released
        document.addEventListener(type, e => { stamps.clicked ??= performance.timeOrigin + e.timeStamp; },
                                  {capture: true, once: true});
    const observer = new MutationObserver(() => {
        if (links().every((h, i) => h && h !== before[i])) { stamps.playable = now(); observer.disconnect(); }
    });
    observer.observe(document.body, {subtree: true, childList: true, attributes: true, attributeFilter: ['href']});
}"""


def until_playable(page, count: int, action) -> tuple[float, float, float]:
    """Do ``action`` (a click, a key, a slider release); seconds from the browser's input event to
    every one of ``count`` cards holding a new playable WAV, and both wall-clock stamps (to place
    the server's own stamps between them)."""
    page.evaluate(WATCH, [count, ".tds-player a[download$='.wav']"])
    action()
    page.wait_for_function("() => window.__tds.playable !== null", timeout=180_000)
    clicked, playable = page.evaluate("() => [window.__tds.clicked, window.__tds.playable]")
    page.wait_for_selector("#status .tds-status.done", timeout=180_000)
    return (playable - clicked) / 1000.0, clicked / 1000.0, playable / 1000.0


def click_until_playable(page, count: int) -> tuple[float, float, float]:
    """Click Generate: :func:`until_playable`."""
    return until_playable(page, count, lambda: page.click("#generate"))


def last_timings(log: Path) -> dict[str, float]:
    found = TIMINGS.findall(log.read_text())
    if not found:
        raise SystemExit("no timings line in the server log")
    sounds, engine, sampling, previews, writes, plots, entered, sounds_out = found[-1]
    return {"engine_handler_s": float(engine), "sampling_s": float(sampling), "preview_plots_s": float(previews),
            "wav_writes_s": float(writes), "plots_s": float(plots), "entered": float(entered),
            "sounds_out": float(sounds_out)}


def set_number(page, element_id: str, value) -> None:
    box = page.locator(f"#{element_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def engine_timer(model: str, steps: int | None):
    """``time(count)``: seconds of one ``Studio.render`` of ``count`` sounds in this process, warmed up.
    The bench calls it right after each click (server and page idle by then), so the engine and the
    page are timed in the same minutes: this machine's speed drifts by 20 % over a few minutes."""
    from engine import GenerationRequest, Studio
    studio = Studio(device="cpu")
    studio.render(GenerationRequest(model=model, steps=steps, count=1, seed=5))

    def time_one(count: int) -> float:
        request = GenerationRequest(model=model, steps=steps, count=count, seed=5)
        started = time.perf_counter()
        studio.render(request)
        return time.perf_counter() - started
    return time_one


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--model", default="kick", help="the page's default model is kick; others are picked")
    parser.add_argument("--steps", type=int, default=None, help="default: the model's")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    results: dict[str, float] = {}
    engine = engine_timer(args.model, args.steps)
    with tempfile.TemporaryDirectory() as folder:
        process, url, log = start_server(Path(folder))
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                     args=["--no-sandbox", "--disable-gpu"])
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(url)
                page.wait_for_selector("#history table")
                page.check("#lock-seed input")
                if args.steps:
                    set_number(page, "steps", args.steps)
                results["first_click_s"] = click_until_playable(page, 1)[0]
                for count in (1, 8):
                    set_number(page, "count", count)
                    rows, engine_times = [], []
                    for _ in range(args.clicks):
                        page_s, clicked, playable = click_until_playable(page, count)
                        engine_times.append(engine(count))
                        stages = last_timings(log)
                        stages["page_s"] = page_s
                        stages["rest_s"] = page_s - stages["engine_handler_s"] - stages["wav_writes_s"]
                        # the rest, split: click -> the handler runs (the page's request, Gradio's queue
                        # and its reading of the inputs), and the sounds' update -> playable (Gradio's
                        # processing of the outputs, the message, the page drawing the players)
                        stages["in_s"] = stages.pop("entered") - clicked
                        stages["out_s"] = playable - stages.pop("sounds_out")
                        rows.append(stages)
                    for key in rows[0]:
                        results[f"sounds_{count}.{key}"] = statistics.median(r[key] for r in rows)
                    results[f"sounds_{count}.engine_s"] = statistics.median(engine_times)
                set_number(page, "count", 1)
                page.check("#audition input")

                def audition(action) -> float:
                    return until_playable(page, 1, action)[0]

                seed_b = page.locator("#seed-b textarea, #seed-b input").first
                seed_b.fill("77")
                audition(lambda: seed_b.press("Enter"))
                box = page.locator("#morph input[type=range]").bounding_box()
                scrubs = [audition(lambda k=k: page.mouse.click(box["x"] + box["width"] * (0.2 + 0.15 * (k % 5)),
                                                                 box["y"] + box["height"] / 2))
                          for k in range(args.clicks)]
                results["scrub_s"] = statistics.median(scrubs)
                browser.close()
        finally:
            process.terminate()
            process.wait(timeout=30)
    for key, value in results.items():
        print(f"{key}: {value:.3f}")
    print("\nstage            1 sound        8 sounds")
    for stage in ("sampling_s", "preview_plots_s", "wav_writes_s", "plots_s", "rest_s", "in_s", "out_s", "page_s"):
        cells = []
        for count in (1, 8):
            value, page_s = results[f"sounds_{count}.{stage}"], results[f"sounds_{count}.page_s"]
            cells.append(f"{value:6.3f} s {100 * value / page_s:4.0f} %")
        print(f"{stage:<16} " + "   ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
