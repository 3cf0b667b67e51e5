from phizer.cli import main

raise SystemExit(main())
