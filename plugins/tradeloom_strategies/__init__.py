"""Stock example strategies (the SMA crossover behind ``tradeloom demo``)."""
