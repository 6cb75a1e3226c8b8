"""``python -m mvt list | download | probe | predict | explain | evaluate``: forwards to :func:`lens.cli.main`.

The command line sits above every package (it runs the analysis service, ``lens``); this entry point is
the one module of ``mvt`` allowed to import ``lens`` (the layering test names it).
"""

import sys

from lens.cli import main

if __name__ == "__main__":
    sys.exit(main())
