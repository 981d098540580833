"""Number fields that refuse a bad entry with a message naming the field, instead of fixing it.

Gradio's slider clamps what a person types into its box when the box loses focus (0 steps
becomes 1, 5000 becomes 200, an emptied box becomes the minimum), and its server-side check
says "Value 2 is greater than maximum value 1.997" without naming the control. A producer who
typed 0 steps then hears a 1-step sound and never learns why. :class:`FieldSlider` is the same
slider on the page (``is_template``: Gradio's own front end) whose server-side check raises
``gr.Error`` with the words the API path uses ("steps must be between 1 and 200, got 0"), and
:data:`KEEP_TYPED_VALUES` is the page script that stops the front end's clamp for these sliders,
so what was typed reaches that check. :func:`FieldNumber` passes plain number boxes (seeds) on as typed, where Gradio
rounded them to their precision ("1.5" became seed 2).
"""

from __future__ import annotations

import math
from typing import Any

import gradio as gr

FIELD_CLASS = "tds-field"  # marks the sliders whose typed values the page script leaves alone


def check_number(value: Any, field: str, low: float | None = None, high: float | None = None,
                 integer: bool = False) -> float | int:
    """``value`` as a number within [low, high], or ``gr.Error`` saying what is wrong with ``field``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise gr.Error(f"{field} is empty; enter a number", print_exception=False)
    if isinstance(value, bool):
        raise gr.Error(f"{field} must be a number, got {value!r}", print_exception=False)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{field} must be a number, got {value!r}", print_exception=False) from None
    if not math.isfinite(number):
        raise gr.Error(f"{field} must be a finite number, got {value!r}", print_exception=False)
    if integer and not number.is_integer():
        raise gr.Error(f"{field} must be a whole number, got {value!r}", print_exception=False)
    if (low is not None and number < low) or (high is not None and number > high):
        shown = int(number) if number.is_integer() else number
        raise gr.Error(f"{field} must be between {low:g} and {high:g}, got {shown:g}", print_exception=False)
    return int(number) if integer else number


class _CheckedSlider(gr.Slider):
    """A ``gr.Slider`` whose typed values are checked, not clamped (``field`` names it in messages).
    Built by :func:`FieldSlider`: Gradio reads a component's settings off its ``__init__``
    signature, so the subclass keeps the slider's own."""

    is_template = True  # rendered by Gradio's own slider

    @property
    def field(self) -> str:
        return FIELD_NAMES.get(getattr(self, "elem_id", None), "value")

    def preprocess(self, payload: Any) -> float | int:
        integer = float(self.step).is_integer() and float(self.minimum).is_integer()
        return check_number(payload, self.field, self.minimum, self.maximum, integer=integer)


# elem_id -> the name a slider's messages use. Not an attribute of the instance: Gradio rebuilds a
# component from its constructor arguments when an update changes it (the Steps slider fixed for
# a step-distilled model, the guidance maximum per model), and an attribute set afterwards was
# lost there ("value must be between ..."); the elem_id is a constructor argument and survives.
FIELD_NAMES: dict[str | None, str] = {}


class _RawNumber(gr.Number):
    """A ``gr.Number`` passed on as typed (no rounding, no clamping): the handler checks it."""

    is_template = True

    def preprocess(self, payload: Any) -> Any:
        return payload


def FieldSlider(*args, field: str, elem_classes: list[str] | str | None = None, **kwargs) -> gr.Slider:  # noqa: N802
    """A slider on the page that refuses a typed value out of its range, naming ``field``."""
    if not kwargs.get("elem_id"):
        raise ValueError(f"FieldSlider {field!r} needs an elem_id (its messages are found by it)")
    classes = [elem_classes] if isinstance(elem_classes, str) else list(elem_classes or [])
    FIELD_NAMES[kwargs["elem_id"]] = field
    return _CheckedSlider(*args, elem_classes=[*classes, FIELD_CLASS], **kwargs)


def FieldNumber(*args, **kwargs) -> gr.Number:  # noqa: N802
    """A number box whose value reaches the handler as typed (seeds: 1.5 is refused, not rounded)."""
    return _RawNumber(*args, **kwargs)


# The slider's number box calls its clamp on blur; a blur listener on the document in the capture
# phase runs first and stops the event for the sliders marked FIELD_CLASS, so the box keeps what
# was typed and the server-side check above names the field and the allowed range.
KEEP_TYPED_VALUES = """
<script>
document.addEventListener("blur", (event) => {
  const box = event.target;
  if (box instanceof HTMLInputElement && box.type === "number" && box.closest(".%s")) {
    event.stopImmediatePropagation();
  }
}, true);
</script>
""" % FIELD_CLASS
