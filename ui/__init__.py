"""The Gradio studio: a thin shell over ``engine.Studio``.

``build_app`` and ``launch_kwargs`` are imported lazily so that ``ui.settings`` can be used
(and ``GRADIO_TEMP_DIR`` set) before gradio is imported.
"""


def build_app(studio, settings):
    from .app import build_app as build

    return build(studio, settings)


def launch_kwargs(settings):
    from .app import launch_kwargs as kwargs

    return kwargs(settings)
