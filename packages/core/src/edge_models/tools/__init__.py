"""Tools around a converted model: `bench` (speed, load time, memory), `debug` (per-block error against PyTorch)
and `demo` (the README's main job, end to end)."""
