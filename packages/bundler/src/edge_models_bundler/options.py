"""What goes into a bundle's metadata, and how a registered model's spec fills in the defaults."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from edge_models.spec import PromptTemplate
from edge_models.task_format import NORMALIZATION_BYTES_TO_UNICODE, LlmParams


@dataclass(frozen=True)
class BundleOptions:
    """Tokens and chat format; the same knobs as MediaPipe's `BundleConfig`."""

    start_token: str
    stop_tokens: tuple[str, ...]
    template: PromptTemplate = field(default_factory=PromptTemplate)
    # Text fed once at the start of each session (MediaPipe's `system_prompt`); it cannot be
    # combined with the system prefix/suffix of `template`.
    system_prompt: str = ""
    user_role_token: str | None = None
    system_role_token: str | None = None
    model_role_token: str | None = None
    end_role_token: str | None = None
    # GPT-2 style byte-to-unicode mapping of the tokenizer's pieces.
    bytes_to_unicode: bool = False

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


def resolve_options(
    model: str | None = None,
    *,
    start_token: str | None = None,
    stop_tokens: tuple[str, ...] | list[str] | None = None,
    template: PromptTemplate | None = None,
    template_overrides: dict[str, str] | None = None,
    system_prompt: str | None = None,
    **extra,
) -> BundleOptions:
    """Options from explicit values, falling back to the registered model `model`'s tokenizer defaults.

    `template_overrides` sets single fields of the template (e.g. {"user_prefix": "..."}) on top
    of the model's template, which is how the CLI's --prompt-* flags combine with --model.
    """
    defaults = None
    if model is not None:
        from edge_models.plugins import registry

        defaults = registry().get(model).tokenizer
    if start_token is None:
        start_token = defaults.start_token if defaults else None
    if not stop_tokens:
        stop_tokens = defaults.stop_tokens if defaults else ()
    if template is None:
        template = defaults.template if defaults else PromptTemplate()
    overrides = template_overrides or {}
    user_system_affixes = {"system_prefix", "system_suffix"} & {k for k, v in overrides.items() if v}
    if system_prompt and not user_system_affixes and (template.system_prefix or template.system_suffix):
        # A fixed system prompt and the model's own system affixes cannot both go into the bundle
        # (MediaPipe rejects the pair); render the prompt in the model's system format instead.
        system_prompt = f"{template.system_prefix}{system_prompt}{template.system_suffix}"
        template = replace(template, system_prefix="", system_suffix="")
    if overrides:
        template = replace(template, **overrides)
    if start_token is None:
        raise ValueError("no start token: give --start-token, or --model NAME for the model's defaults")
    return BundleOptions(
        start_token=start_token,
        stop_tokens=tuple(stop_tokens),
        template=template,
        system_prompt=system_prompt or "",
        **extra,
    )
