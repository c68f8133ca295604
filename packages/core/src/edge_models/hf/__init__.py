"""The checkpoint's own conventions in the Hugging Face layout: tokens, generation settings, chat templates; and
checkpoints named by hub id, found in the local Hugging Face cache."""

from edge_models.hf.chat_template import ChatTemplate, ChatTemplateError
from edge_models.hf.hub_cache import HubCacheError, resolve_checkpoint
from edge_models.hf.tokens import (
    CheckpointConventionError,
    CheckpointTokens,
    Conventions,
    find_tokenizer,
    read_checkpoint_tokens,
    resolve_conventions,
)

__all__ = [
    "ChatTemplate",
    "ChatTemplateError",
    "CheckpointConventionError",
    "CheckpointTokens",
    "Conventions",
    "HubCacheError",
    "find_tokenizer",
    "read_checkpoint_tokens",
    "resolve_checkpoint",
    "resolve_conventions",
]
