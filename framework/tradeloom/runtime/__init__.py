"""The runtime: stages, transports, clocks and the pipeline that wires them together."""
