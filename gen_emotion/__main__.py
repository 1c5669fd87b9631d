"""``python -m gen_emotion``: the ``gen-emotion`` command."""

import sys

from gen_emotion.cli.console import main

sys.exit(main())
