"""Tiny Diffusion Studio engine: the one Python API behind the UI, the CLI and the tests."""

from .errors import (AudioFileError, CheckpointError, DatasetError, InvalidRequestError, ModelNotFoundError,
                     StudioError)
from .request import GenerationRequest
from .studio import Progress, Result, Sound, Studio

__all__ = ["AudioFileError", "CheckpointError", "DatasetError", "GenerationRequest", "InvalidRequestError",
           "ModelNotFoundError", "Progress", "Result", "Sound", "Studio", "StudioError"]
