import sys

from fastadv.cli import main

sys.exit(main())
