import sys

from riveg_cli import main

sys.exit(main())
