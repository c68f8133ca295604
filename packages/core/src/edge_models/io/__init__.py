"""What every part of edge-models uses to talk to the user and the disk: terminal output (stages, progress bars,
the log file) and files written atomically."""
