from moa_features.cli import main

raise SystemExit(main())
