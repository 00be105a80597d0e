"""`python -m specbuild ...` runs the `specbuild` command (as torchrun's `-m specbuild` does)."""
from .cli.main import main

raise SystemExit(main())
