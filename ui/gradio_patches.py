"""One speed-up of Gradio's output processing, installed by :func:`install` (``ui.app.build_app``).

Why: a handler that changes a few of its event's outputs leaves the others as the empty update
(``gr.skip()``, ``{"__type__": "update"}``). Gradio 6 (``Blocks.postprocess_data``) treats an
empty update like any other: it builds a new component from the old one's constructor
arguments and computes that component's page config twice, three JSON schemas each time, only
to send ``{"__type__": "update"}``, which changes nothing. About 2.5 ms an output on the 2-core
CPU; Generate has ~50 outputs and a quick render changes ~10, so every one of its page updates
spent ~0.12 s building components, on the cores that also sample and draw the page
(issue 18, docs/design-notes.md "What the page did besides sampling").

The patch gives Gradio only the outputs that change and puts the empty update back in the
others' places: the same message, value for value (tests/test_gradio_patches.py). Where
Gradio's method no longer looks as this was written for, it is left alone (and logged).
"""

from __future__ import annotations

import copy
import functools
import inspect
import logging

log = logging.getLogger(__name__)

EMPTY_UPDATE = {"__type__": "update"}
EXPECTED_PARAMETERS = ["self", "block_fn", "predictions", "state"]


def is_empty_update(value) -> bool:
    """``gr.skip()`` / ``gr.update()`` with nothing in it. (A State whose value is such a dict is
    still handed to Gradio: ``postprocess_data`` below keeps every stateful output.)"""
    return isinstance(value, dict) and value == EMPTY_UPDATE


def install() -> bool:
    """Wrap ``Blocks.postprocess_data`` once; False (and nothing changed) when Gradio's differs."""
    from gradio import blocks

    original = blocks.Blocks.postprocess_data
    if getattr(original, "tds_skips_empty_updates", False):
        return True
    convert = getattr(blocks, "convert_component_dict_to_list", None)
    if convert is None or list(inspect.signature(original).parameters) != EXPECTED_PARAMETERS:
        log.info("Gradio's postprocess_data changed; empty updates are processed the slow way")
        return False

    @functools.wraps(original)
    async def postprocess_data(self, block_fn, predictions, state):
        outputs = list(block_fn.outputs)
        if isinstance(predictions, dict) and predictions and all(isinstance(k, blocks.Block) for k in predictions):
            predictions = convert(outputs, predictions)
        if (getattr(block_fn, "batch", True) or getattr(block_fn, "is_validator_function", True)
                or not isinstance(predictions, (list, tuple)) or len(predictions) != len(outputs) or len(outputs) < 2):
            return await original(self, block_fn, predictions, state)
        keep = [i for i, value in enumerate(predictions) if not is_empty_update(value)
                or getattr(outputs[i], "stateful", False)]
        if len(keep) == len(outputs):
            return await original(self, block_fn, predictions, state)
        result = [dict(EMPTY_UPDATE) for _ in outputs]
        if keep:
            narrowed = copy.copy(block_fn)
            narrowed.outputs = [outputs[i] for i in keep]
            kept = [predictions[i] for i in keep]
            # one output: Gradio wraps the bare value in a list itself
            done = await original(self, narrowed, kept[0] if len(keep) == 1 else kept, state)
            for i, value in zip(keep, done):
                result[i] = value
        return result

    postprocess_data.tds_skips_empty_updates = True
    blocks.Blocks.postprocess_data = postprocess_data
    return True
