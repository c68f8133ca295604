"""File formats core reads and the bundler writes: the MediaPipe `.task` bundle (entries, METADATA codec, a safe
reader). The `.tflite` flatbuffer has its own package, `edge_models.tflite`."""
