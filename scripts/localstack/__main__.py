"""``python -m scripts.localstack up|down|status|logs|env``."""

import sys

from .cli import main

sys.exit(main())
