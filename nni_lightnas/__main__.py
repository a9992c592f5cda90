import sys

from nni_lightnas.cli import main

sys.exit(main())
