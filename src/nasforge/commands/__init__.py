"""The ``nasforge`` subcommands, one module per area, each with ``register(subparsers)``:
``tools`` (data check, train-net, space, presets), ``search``, ``results`` (trials, best)
and ``train``; ``common`` holds the budget flags. ``nasforge.cli`` builds the parser from
them and from the report, dashboard, study and benchmark areas' own ``commands`` modules."""
