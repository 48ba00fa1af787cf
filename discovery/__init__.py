"""Where endpoints come from: sources that publish immutable ``EndpointSet`` snapshots."""
