"""What goes into a bundle's metadata, and how a registered model's spec fills in the defaults."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from edge_models.formats.task import NORMALIZATION_BYTES_TO_UNICODE, LlmParams
from edge_models.hf import ChatTemplate, CheckpointTokens, resolve_conventions
from edge_models.spec import PromptTemplate


@dataclass(frozen=True)
class BundleOptions:
    """Tokens and chat format; the same knobs as MediaPipe's `BundleConfig`, plus the checkpoint's Jinja chat
    template (carried by `.litertlm`; `.task` gets `template`, the affixes derived from it) and the self-test
    record. `start_token` None: the model has no start token (ChatML models); only `.litertlm` allows that."""

    start_token: str | None
    stop_tokens: tuple[str, ...]
    template: PromptTemplate = field(default_factory=PromptTemplate)
    chat_template: ChatTemplate | None = None
    # {"prompt": ..., "tokens": [...]}: greedy tokens the converted model produced, replayed by `bundle check --run`.
    self_test: dict | None = None
    # Notes on the conversion, e.g. {"recipe": "int8-gptq", "merged LoRA": "..."}: shown by `bundle inspect`.
    notes: dict[str, str] = field(default_factory=dict)
    # Text fed once at the start of each session (MediaPipe's `system_prompt`); it cannot be
    # combined with the system prefix/suffix of `template`.
    system_prompt: str = ""
    user_role_token: str | None = None
    system_role_token: str | None = None
    model_role_token: str | None = None
    end_role_token: str | None = None
    # GPT-2 style byte-to-unicode mapping of the tokenizer's pieces.
    bytes_to_unicode: bool = False
    # LiteRT-LM's model type (`LlmModelType` field: generic_model, gemma3, gemma4, ...): selects its per-family
    # handling (tool-call parsing, constraints). `.task` has no such field.
    litertlm_model_type: str = "generic_model"
    # LiteRT-LM's `supports_function_calling`: None decides by the model type and the chat template (a type that
    # parses calls, and a template with a place for tools).
    function_calling: bool | None = None

    def replace(self, **changes) -> BundleOptions:
        return replace(self, **changes)

    def to_llm_params(self) -> LlmParams:
        # MediaPipe's C options turn empty strings into "unset"; do the same for role tokens.
        return LlmParams(
            start_token=self.start_token,
            stop_tokens=tuple(self.stop_tokens),
            input_output_normalizations=(NORMALIZATION_BYTES_TO_UNICODE,) if self.bytes_to_unicode else (),
            prompt_template=self.template,
            system_prompt=self.system_prompt,
            user_role_token=self.user_role_token or None,
            system_role_token=self.system_role_token or None,
            model_role_token=self.model_role_token or None,
            end_role_token=self.end_role_token or None,
        )

    @classmethod
    def from_llm_params(cls, params: LlmParams) -> BundleOptions:
        return cls(
            start_token=params.start_token or "",
            stop_tokens=params.stop_tokens,
            template=params.prompt_template,
            system_prompt=params.system_prompt,
            user_role_token=params.user_role_token,
            system_role_token=params.system_role_token,
            model_role_token=params.model_role_token,
            end_role_token=params.end_role_token,
            bytes_to_unicode=params.bytes_to_unicode,
        )


# Model families whose LiteRT-LM model type is not the generic one (LiteRT-LM 0.18.1's `LlmModelType`): its
# per-family handling of the prompt and, for the types with a call syntax, of tool calls. It has no Qwen3.5 type.
LITERTLM_MODEL_TYPES = {"gemma4": "gemma4", "qwen2": "qwen2p5", "qwen3": "qwen3", "lfm2": "lfm2"}
# Registered names within a family whose type is their own (the gemma family spans Gemma 1 to 3).
LITERTLM_NAME_TYPES = {"gemma3": "gemma3"}
# The types whose LiteRT-LM data processor parses tool calls (they have code fences for them).
FUNCTION_CALLING_TYPES = frozenset({"function_gemma", "gemma4", "qwen2p5", "qwen3"})
# Types for which LiteRT-LM 0.18.1 has no built-in prompt template: without a Jinja one in the bundle it refuses to
# create an engine ("Unsupported model type for template", measured), so such a bundle stays generic.
LITERTLM_TYPES_NEEDING_A_TEMPLATE = frozenset({"lfm2"})


def litertlm_model_type(name: str | None, family: str | None, chat_template: ChatTemplate | None) -> str:
    """LiteRT-LM's model type for a registered model (by family, or by name where a family spans several types),
    or FunctionGemma's when the chat template declares functions its way; else the generic type."""
    if chat_template is not None and "start_function_declaration" in chat_template.text:
        return "function_gemma"
    for prefix, kind in LITERTLM_NAME_TYPES.items():
        if name and name.startswith(prefix):
            return kind
    kind = LITERTLM_MODEL_TYPES.get(family or "", "generic_model")
    if kind in LITERTLM_TYPES_NEEDING_A_TEMPLATE and chat_template is None:
        return "generic_model"
    return kind


def resolve_options(
    model: str | None = None,
    *,
    checkpoint: CheckpointTokens | None = None,
    start_token: str | None = None,
    no_start_token: bool = False,
    stop_tokens: tuple[str, ...] | list[str] | None = None,
    template: PromptTemplate | None = None,
    template_overrides: dict[str, str] | None = None,
    chat_template: ChatTemplate | None = None,
    system_prompt: str | None = None,
    **extra,
) -> BundleOptions:
    """Options from explicit values, then what the `checkpoint`'s own files say, then the registered model
    `model`'s tokenizer defaults.

    `template_overrides` sets single fields of the template (e.g. {"user_prefix": "..."}) on top of the resolved
    one, which is how the CLI's --prompt-* flags combine with --model and --checkpoint.
    """
    defaults = spec = None
    if model is not None:
        from edge_models.plugins import registry

        spec = registry().get(model)
        defaults = spec.tokenizer
    if chat_template is not None:
        checkpoint = replace(checkpoint or CheckpointTokens(Path()), chat_template=chat_template)
    conventions = resolve_conventions(
        checkpoint,
        defaults,
        start_token=start_token,
        no_start_token=no_start_token,
        stop_tokens=tuple(stop_tokens or ()),
        affixes=template,
    )
    template = conventions.affixes
    jinja = chat_template or conventions.chat_template
    if jinja is None and extra.get("litertlm_model_type") in LITERTLM_TYPES_NEEDING_A_TEMPLATE:
        extra["litertlm_model_type"] = "generic_model"
    overrides = template_overrides or {}
    user_system_affixes = {"system_prefix", "system_suffix"} & {k for k, v in overrides.items() if v}
    if system_prompt and not user_system_affixes and (template.system_prefix or template.system_suffix):
        # A fixed system prompt and the model's own system affixes cannot both go into the bundle
        # (MediaPipe rejects the pair); render the prompt in the model's system format instead.
        system_prompt = f"{template.system_prefix}{system_prompt}{template.system_suffix}"
        template = replace(template, system_prefix="", system_suffix="")
    if overrides:
        template = replace(template, **overrides)
    kind = litertlm_model_type(spec.name if spec else None, spec.family if spec else None, jinja)
    if kind != "generic_model":
        extra.setdefault("litertlm_model_type", kind)
    return BundleOptions(
        start_token=conventions.start_token,
        stop_tokens=conventions.stop_tokens,
        template=template,
        chat_template=jinja,
        system_prompt=system_prompt or "",
        **extra,
    )
