"""Controllers: level-triggered reconcilers between the sources and the nodes."""
