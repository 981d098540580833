"""ui/gradio_patches.py: outputs a handler leaves out are sent as Gradio sends them, without building components."""

from __future__ import annotations

import asyncio

import gradio as gr
import pytest
from gradio import blocks
from gradio.state_holder import SessionState

from ui import gradio_patches


@pytest.fixture(scope="module")
def methods():
    gradio_patches.install()
    patched = blocks.Blocks.postprocess_data
    assert patched.tds_skips_empty_updates and gradio_patches.install()   # a second install changes nothing
    return patched.__wrapped__, patched


def _demo():
    with gr.Blocks() as demo:
        boxes = [gr.Textbox(f"b{i}") for i in range(4)]
        player = gr.Audio(type="filepath")
        state = gr.State(None)
        gr.Button().click(lambda: None, None, [*boxes, player, state])
    return demo, boxes, player, state


def _run(method, predictions_of, counter=None):
    demo, boxes, player, state = _demo()
    session = SessionState(demo)
    calls = []
    session._update_config = lambda key, original=session._update_config: (calls.append(key), original(key))
    out = asyncio.run(method(demo, list(demo.fns.values())[0], predictions_of(boxes, player, state), session))
    return out, len(calls), list(session.state_data.values())


@pytest.mark.parametrize("predictions_of", [
    lambda b, p, s: {b[1]: "new text", b[2]: gr.update(visible=False), s: {"takes": 1}},
    lambda b, p, s: {b[3]: gr.update(value="only one", visible=True)},
    lambda b, p, s: {b[0]: gr.skip()},
    lambda b, p, s: ["a", gr.skip(), gr.update(interactive=False), gr.skip(), None, {"__type__": "update"}],
])
def test_the_message_is_the_same_and_empty_updates_build_nothing(methods, predictions_of):
    original, patched = methods
    slow, slow_builds, slow_state = _run(original, predictions_of)
    fast, fast_builds, fast_state = _run(patched, predictions_of)
    assert fast == slow and fast_state == slow_state
    updates = sum(isinstance(v, dict) and v.get("__type__") == "update" and len(v) > 1 for v in fast)
    assert fast_builds == updates < slow_builds       # only the real updates built a component


def test_a_handler_that_updates_everything_goes_the_usual_way(methods):
    original, patched = methods
    full = lambda b, p, s: ["a", "b", "c", "d", None, 3]
    assert _run(patched, full)[0] == _run(original, full)[0]
