from ocrgraft.converter.cli import main

raise SystemExit(main())
