"""Everything that reads or rewrites a .tflite flatbuffer: reading a model, packing it with its buffers after the
flatbuffer, operator codes, the tensors a subgraph reads, merging and pruning signatures, the weights written into an
exported graph, LoRA adapter files and the checks a model must pass.

Needs only ai-edge-litert, flatbuffers and numpy (never torch or litert-torch), so the runtime may import it.
"""
