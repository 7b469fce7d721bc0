from iovctl.cli.main import main

raise SystemExit(main())
