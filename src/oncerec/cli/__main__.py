"""`python -m oncerec.cli` (what `accelerate launch` and the experiment runner run)."""

import sys

from oncerec.cli import main

sys.exit(main())
