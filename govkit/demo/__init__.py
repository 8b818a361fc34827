"""The parts of `govkit demo`: the German credit data it decodes, the branch tablet's workload it
plays through `govkit proxy`, and the local model server and proxy it starts and always stops."""
