"""Start Tiny Diffusion Studio: ``python app.py`` (or ``make run``), then open the printed address.

The server listens on 127.0.0.1 unless told otherwise and serves files only from its export and
cache folders. Everything it does goes through ``engine.Studio``; the page lives in ``ui/``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ui.settings import Settings, prepare_environment


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Tiny Diffusion Studio: generate drum one-shots in your browser")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: only this computer; "
                             "0.0.0.0 opens it to your network)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--half", action="store_true", help="fp16 on CUDA (ignored on a CPU)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads per render (default 1 on a CPU: faster on small CPUs; try more on big ones)")
    parser.add_argument("--no-browser", action="store_true", help="don't open a browser tab")
    parser.add_argument("--share", action="store_true", help="make a public gradio.live link (off by default)")
    parser.add_argument("--export-dir", default="exports", help="default folder for exported WAVs (default ./exports)")
    parser.add_argument("--cache-dir", default="cache", help="folder for this session's sounds (default ./cache)")
    parser.add_argument("--presets-dir", default=None, help="folder of preset .json files (default: presets/)")
    parser.add_argument("--models-root", action="append", default=[], metavar="FOLDER",
                        help="extra folder with model folders (repeatable); checkpoints/ is always searched")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings(host=args.host, port=args.port, share=args.share, open_browser=not args.no_browser,
                        export_dir=args.export_dir, cache_dir=args.cache_dir,
                        **({"presets_dir": args.presets_dir} if args.presets_dir else {}))
    prepare_environment(settings)  # before gradio is imported: its temp folder goes inside our cache

    from engine import Studio, StudioError
    from ui import build_app, launch_kwargs

    try:
        studio = Studio(device=args.device, half=args.half, threads=args.threads)
        for folder in args.models_root:
            studio.add_root(folder)
    except StudioError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    settings.device = f"{studio.device}{' (fp16)' if studio.half else ''}"
    models = ", ".join(sorted(studio.models())) or "none"
    print(f"Tiny Diffusion Studio: generating on {settings.device}; models: {models}")
    print(f"exports -> {settings.export_dir}   cache -> {settings.cache_dir}")
    if settings.remote:
        print(f"warning: listening on {settings.host}{' with a public share link' if settings.share else ''}: "
              "other people can use this studio", file=sys.stderr)
    demo = build_app(studio, settings)
    demo.launch(**launch_kwargs(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
