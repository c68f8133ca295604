"""A process's peak resident memory, as every measured figure of this project reports it."""

from __future__ import annotations


def peak_rss_bytes() -> int:
    """This process's peak resident memory since it started its program. Linux's `ru_maxrss` survives `exec`, so a
    spawned child would report the memory of the parent it was forked from; VmHWM is reset by `exec`."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
