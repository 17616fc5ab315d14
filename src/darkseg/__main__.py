from darkseg.cli import main

raise SystemExit(main())
