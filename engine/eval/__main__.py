"""``python -m engine.eval --model NAME [--count N] [--steps S] [--models-root DIR]``."""

import sys

from .run import main

sys.exit(main())
