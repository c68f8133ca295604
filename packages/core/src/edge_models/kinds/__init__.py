"""The three kinds of model: `decoder`, `encoder`, `seq2seq` (encoder-decoder). Each module finds a spec (a
registered name, or `auto` with a checkpoint's architectures), loads a checkpoint into our model, builds a random
one for tests, and verifies ours against `transformers`."""
