"""The ``quantbeat`` command line (L3): one module per command group, ``main`` assembles them."""
