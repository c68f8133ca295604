"""Tool calling (issue 30): tool definitions from Python functions as `transformers.utils.get_json_schema` writes
them, tools rendered through chat templates exactly as `apply_chat_template(tools=...)` renders them, each family's
call syntax parsed (and malformed calls refused), and `--tool-choice` grammars: `required` makes even a tiny model
with random weights write a valid call, `auto` leaves free text free.

The chat templates below are written for these tests, in the tool syntax of the published templates (Qwen 2.5's
<tools>/<tool_call>, Llama 3.2's JSON calls in the first user turn, Phi-4-mini's <|tool|>/<|tool_call|>,
FunctionGemma's declarations and calls): the published files are not available offline here.
"""

# ruff: noqa: E501  (the chat templates are kept on the lines their Jinja tags read best on)
from __future__ import annotations

import enum
import json
import re
from pathlib import Path
from typing import Literal

import pytest

from edge_models.hf.chat_template import ChatTemplate
from edge_models.runtime.tools import (
    FORMATS,
    ToolCall,
    ToolError,
    check_calls,
    function_schema,
    normalize_tools,
    read_tools,
    tool_constraint,
    tool_format,
)
from edge_models.testing import corpus
from helpers import fails_cleanly

QWEN25 = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}{%- else %}{{- 'You are a helpful assistant.' }}{%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions.\n\nFunction signatures within <tools></tools>:\n<tools>" }}
    {%- for tool in tools %}{{- "\n" }}{{- tool | tojson }}{%- endfor %}
    {{- "\n</tools>\n\nFor each call, return a JSON object within <tool_call></tool_call> tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- elif messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == "user" or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}{{- '\n' + message.content }}{%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}{{- tool_call.name }}{{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}{{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.index0 == 0 or messages[loop.index0 - 1].role != "tool" %}{{- '<|im_start|>user' }}{%- endif %}
        {{- '\n<tool_response>\n' + message.content + '\n</tool_response>' }}
        {%- if loop.last or messages[loop.index0 + 1].role != "tool" %}{{- '<|im_end|>\n' }}{%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"""

LLAMA32 = r"""{{- bos_token }}
{%- if messages[0].role == 'system' %}
    {%- set system_message = messages[0].content | trim %}{%- set messages = messages[1:] %}
{%- else %}{%- set system_message = "" %}{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if tools is not none %}{{- "Environment: ipython\n" }}{%- endif %}
{{- system_message + "<|eot_id|>" }}
{%- if tools is not none %}
    {%- set first_user_message = messages[0].content | trim %}{%- set messages = messages[1:] %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' }}
    {{- "Given the following functions, respond with a JSON for a function call.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.\n\n' }}
    {%- for t in tools %}{{- t | tojson(indent=4) }}{{- "\n\n" }}{%- endfor %}
    {{- first_user_message + "<|eot_id|>" }}
{%- endif %}
{%- for message in messages %}
    {%- if not (message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message.role + '<|end_header_id|>\n\n' + message.content | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
        {{- '{"name": "' + tool_call.name + '", "parameters": ' }}{{- tool_call.arguments | tojson }}{{- "}<|eot_id|>" }}
    {%- else %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" + message.content + "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}"""

PHI4_MINI = r"""{%- for message in messages %}
{%- if message.role == 'system' %}{{- '<|system|>' + message.content }}
{%- if tools %}{{- '<|tool|>' + (tools | map(attribute='function') | list | tojson) + '<|/tool|>' }}{%- endif %}
{{- '<|end|>' }}
{%- elif message.role == 'tool' %}{{- '<|tool_response|>' + message.content + '<|end|>' }}
{%- else %}{{- '<|' + message.role + '|>' }}{%- if message.content %}{{- message.content }}{%- endif %}
{%- for call in message.tool_calls or [] %}{{- '<|tool_call|>' + (call.function | tojson) + '<|/tool_call|>' }}{%- endfor %}
{{- '<|end|>' }}
{%- endif %}{%- endfor %}
{%- if add_generation_prompt %}{{- '<|assistant|>' }}{%- else %}{{- eos_token }}{%- endif %}"""

FUNCTIONGEMMA = r"""{{- bos_token }}
{%- if tools %}{{- '<start_of_turn>developer\n' }}
{%- for tool in tools %}{{- '<start_function_declaration>declaration:' + tool.function.name + '{description:<escape>' + tool.function.description + '<escape>,parameters:' + (tool.function.parameters | tojson) + '}<end_function_declaration>' }}{%- endfor %}
{{- '<end_of_turn>\n' }}{%- endif %}
{%- for message in messages %}
{%- if message.role == 'tool' %}
{{- '<start_function_response>response:' + message.name + '{value:<escape>' + message.content + '<escape>}<end_function_response>' }}
{%- else %}
{{- '<start_of_turn>' + ('model' if message.role == 'assistant' else message.role) + '\n' }}
{%- if message.content %}{{- message.content | trim }}{%- endif %}
{%- for call in message.tool_calls or [] %}
{{- '<start_function_call>call:' + call.function.name + '{' }}
{%- for key, value in call.function.arguments.items() %}{{- key + ':' }}
{%- if value is string %}{{- '<escape>' + value + '<escape>' }}{%- else %}{{- value | tojson }}{%- endif %}
{%- if not loop.last %}{{- ',' }}{%- endif %}{%- endfor %}
{{- '}<end_function_call>' }}
{%- endfor %}
{%- if not message.tool_calls %}{{- '<end_of_turn>\n' }}{%- endif %}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<start_of_turn>model\n' }}{%- endif %}"""

TEMPLATES = {"hermes": QWEN25, "llama3": LLAMA32, "phi4": PHI4_MINI, "functiongemma": FUNCTIONGEMMA}
# Special tokens the tests' tokenizer has, as in the families' own tokenizers (Qwen's <tool_call> is an ordinary
# added token, not special: it is text).
SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|end|>",
    "<|tool|>",
    "<|/tool|>",
    "<|tool_call|>",
    "<|/tool_call|>",
    "<|tool_response|>",
    "<bos>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_function_declaration>",
    "<end_function_declaration>",
    "<start_function_call>",
    "<end_function_call>",
    "<start_function_response>",
    "<end_function_response>",
    "<escape>",
]
STOPS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<end_function_call>")
SPECIAL_TOKENS = {"bos_token": "<|begin_of_text|>", "eos_token": "<|endoftext|>"}


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


def get_weather(city: str, unit: Unit = Unit.CELSIUS, days: int | None = None) -> dict[str, float]:
    """Get the weather forecast for a city.

    Args:
        city: The city, for example
            Paris or Oslo.
        unit (str): Temperature unit.
        days: How many days ahead (none: today).

    Returns:
        Temperatures by hour.
    """
    return {"12:00": 21.0}


def book_table(
    restaurant: str,
    people: int,
    time: Literal["lunch", "dinner"],
    dishes: list[str],
    seat: tuple[int, int],
    notes: str | int = "",
    vip: bool = False,
    budget: float = 0.0,
    mood: str = "calm",
) -> None:
    """Book a table.

    Args:
        restaurant: Where.
        people: How many people.
        time: When.
        dishes: What to pre-order.
        seat: Row and column.
        notes: Anything else.
        vip: Whether a VIP table is wanted.
        budget: Most to spend.
        mood: Atmosphere (choices: ["calm", "lively"])
    """


WEATHER_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {
                    # Bounded: a model with random weights would write a string for ever.
                    "city": {"type": "string", "description": "The city", "maxLength": 12},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                    "days": {"type": "integer"},
                },
                "required": ["city", "unit"],
            },
        },
    },
    # A bare function dict, as many apps write them.
    {
        "name": "get_time",
        "description": "Get the local time in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 12}},
            "required": ["city"],
        },
    },
]
CONVERSATION = [
    {"role": "system", "content": "You are a weather assistant."},
    {"role": "user", "content": "What is the weather in Paris?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [ToolCall("get_weather", {"city": "Paris", "unit": "celsius"}).for_template()],
    },
    {"role": "tool", "name": "get_weather", "content": '{"temperature": 21}'},
    {"role": "assistant", "content": "It is 21 degrees in Paris."},
    {"role": "user", "content": "And the time?"},
]


# --- definitions ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("func", [get_weather, book_table])
def test_function_schema_is_transformers(func):
    from transformers.utils import get_json_schema

    assert function_schema(func) == get_json_schema(func)


def test_bad_definitions_say_what_is_wrong(tmp_path):
    def no_doc(city: str):
        pass

    def undocumented(city: str, days: int):
        """Weather.

        Args:
            city: The city.
        """

    def no_hint(city):
        """Weather.

        Args:
            city: The city.
        """

    cases = [
        (lambda: normalize_tools([no_doc]), "tool no_doc: no docstring"),
        (lambda: normalize_tools([undocumented]), "does not describe argument 'days'"),
        (lambda: normalize_tools([no_hint]), "argument 'city' has no type hint"),
        (lambda: normalize_tools([WEATHER_TOOLS[0], WEATHER_TOOLS[0]]), "two tools are named 'get_weather'"),
        (lambda: normalize_tools([{"description": "x"}]), "tool 0 has no usable name"),
        (lambda: normalize_tools([{"name": "f", "parameters": {"type": "string"}}]), "parameters must be"),
        (lambda: normalize_tools({"name": "f"}), "a list of tool definitions"),
    ]
    for call, message in cases:
        with pytest.raises(ToolError, match=re.escape(message)):
            call()
    broken = tmp_path / "tools.json"
    broken.write_text('[{"name": "f",\n "parameters": }]')
    with pytest.raises(ToolError, match=re.escape(f"{broken}: not JSON: Expecting value (line 2")):
        read_tools(broken)
    bare = normalize_tools(WEATHER_TOOLS)[1]
    assert bare == {"type": "function", "function": WEATHER_TOOLS[1]}


# --- rendering --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_tokenizer():
    """A transformers tokenizer (the reference renderer) over the tests' byte-level BPE."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=_train_tokenizer(), **SPECIAL_TOKENS)


def _train_tokenizer():
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    lines = corpus()[:800] + [json.dumps(t) for t in normalize_tools(WEATHER_TOOLS)] * 20
    trainer = trainers.BpeTrainer(
        vocab_size=420, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(lines, trainer)
    tok.add_tokens([AddedToken("<tool_call>", special=False), AddedToken("</tool_call>", special=False)])
    return tok


@pytest.mark.parametrize("family", sorted(TEMPLATES))
@pytest.mark.parametrize("as_functions", [False, True])
def test_tools_render_as_in_transformers(hf_tokenizer, family, as_functions):
    tools = [get_weather, book_table] if as_functions else WEATHER_TOOLS
    template = ChatTemplate(TEMPLATES[family], family, SPECIAL_TOKENS)
    for messages in (CONVERSATION[:2], CONVERSATION):
        expected = hf_tokenizer.apply_chat_template(
            messages,
            tools=normalize_tools(WEATHER_TOOLS) if not as_functions else tools,
            chat_template=TEMPLATES[family],
            add_generation_prompt=True,
            tokenize=False,
        )
        assert template.render(messages, tools=normalize_tools(tools)) == expected
    # Without tools the template renders what it renders for transformers without them.
    expected = hf_tokenizer.apply_chat_template(
        CONVERSATION[:2], chat_template=TEMPLATES[family], add_generation_prompt=True, tokenize=False
    )
    assert template.render(CONVERSATION[:2]) == expected
    assert "get_weather" in template.render(CONVERSATION[:2], tools=normalize_tools(tools))
    assert tool_format(TEMPLATES[family]).name == family


def test_template_without_tools_gets_instructions():
    from edge_models.runtime.generator import Generator

    gemma = "{% for m in messages %}<start_of_turn>{{ m.role }}\n{{ m.content }}<end_of_turn>\n{% endfor %}"
    stub = Generator.__new__(Generator)
    stub.chat_template, stub.family = ChatTemplate(gemma), None
    text = stub.render_chat([{"role": "user", "content": "Hi"}], tools=normalize_tools(WEATHER_TOOLS))
    assert text.startswith("<start_of_turn>system\nYou can call these functions. To call one, reply with nothing")
    assert "```tool_code\n" in text and '{"name": "get_time"' in text and text.endswith("user\nHi<end_of_turn>\n")


# --- parsing ----------------------------------------------------------------------------------------------------

PARIS = ToolCall("get_weather", {"city": "Paris", "unit": "celsius"})
PARSED = [
    (
        "hermes",
        'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}'
        "\n</tool_call>",
        "Let me check.",
        [PARIS],
    ),
    (
        "hermes",
        '<tool_call>\n{"name": "get_time", "arguments": {"city": "Oslo"}}\n</tool_call>\n<tool_call>\n'
        '{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\", \\"unit\\": \\"celsius\\"}"}\n</tool_call>',
        "",
        [ToolCall("get_time", {"city": "Oslo"}), PARIS],
    ),
    ("hermes", "It is sunny.", "It is sunny.", []),
    ("llama3", '{"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius"}}', "", [PARIS]),
    (
        "llama3",
        '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius"}}',
        "",
        [PARIS],
    ),
    ("llama3", '{"city": "Paris"} is what you asked.', '{"city": "Paris"} is what you asked.', []),
    ("gemma", '```tool_code\nget_weather(city="Paris", unit="celsius")\n```', "", [PARIS]),
    (
        "gemma",
        'Sure.\n```tool_code\n{"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius"}}\n```',
        "Sure.",
        [PARIS],
    ),
    (
        "functiongemma",
        "<start_function_call>call:get_weather{city:<escape>Paris<escape>,unit:<escape>celsius<escape>}"
        "<end_function_call>",
        "",
        [PARIS],
    ),
    (
        "functiongemma",
        "<start_function_call>call:plan{days:3,hourly:true,cities:[<escape>A, B<escape>,<escape>C"
        "<escape>],at:{h:12}}<end_function_call>",
        "",
        [ToolCall("plan", {"days": 3, "hourly": True, "cities": ["A, B", "C"], "at": {"h": 12}})],
    ),
    (
        "phi4",
        '<|tool_call|>{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}<|/tool_call|>',
        "",
        [PARIS],
    ),
    (
        "phi4",
        '<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}]<|/tool_call|>',
        "",
        [PARIS],
    ),
    ("phi4", 'functools[{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}]', "", [PARIS]),
    (
        "generic",
        'I will call {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}} now.',
        "I will call  now.",
        [PARIS],
    ),
    ("generic", "No {json here} at all.", "No {json here} at all.", []),
]
MALFORMED = [
    (
        "hermes",
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": }\n</tool_call>',
        "<tool_call> call: not JSON",
    ),
    ("hermes", '<tool_call>\n{"arguments": {}}\n</tool_call>', 'a call is a JSON object with a "name"'),
    ("hermes", '<tool_call>{"name": "f", "arguments": [1]}</tool_call>', "the arguments of f are not an object"),
    ("llama3", '<|python_tag|>{"name": "get_weather", "parameters": {', "<|python_tag|> call"),
    ("gemma", "```tool_code\nget_weather(city=)\n```", "neither JSON nor a Python call"),
    ("gemma", "```tool_code\nget_weather(city=open('x'))\n```", "are not literals"),
    (
        "functiongemma",
        "<start_function_call>call:get_weather{city:<escape>Paris}<end_function_call>",
        "a string opened with <escape> is never closed",
    ),
    ("functiongemma", "<start_function_call>get_weather(city)<end_function_call>", "expected call:NAME{...}"),
    ("phi4", "<|tool_call|>[{'name': 'f'}]<|/tool_call|>", "<|tool_call|> call: not JSON"),
]


@pytest.mark.parametrize(("fmt", "reply", "text", "calls"), PARSED)
def test_calls_are_parsed(fmt, reply, text, calls):
    assert FORMATS[fmt].parse(reply) == (text, calls)


@pytest.mark.parametrize(("fmt", "reply", "message"), MALFORMED)
def test_malformed_calls_are_clear_errors(fmt, reply, message):
    with pytest.raises(ToolError, match=re.escape(message)):
        FORMATS[fmt].parse(reply)


def test_a_call_of_an_unknown_tool_is_refused():
    tools = normalize_tools(WEATHER_TOOLS)
    check_calls([PARIS], tools)
    with pytest.raises(ToolError, match=re.escape("the model called 'send_mail', which is not one of the tools")):
        check_calls([ToolCall("send_mail", {})], tools)


# --- grammars ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine():
    """(tokenizer, llguidance tokenizer, Lark spelling of markers) over the tests' tokenizer.json."""
    pytest.importorskip("llguidance")
    from edge_models.runtime.constraints import engine_tokenizer
    from edge_models.runtime.tokenizer import HFTokenizer

    tok = HFTokenizer("test", json_text=_train_tokenizer().to_str())
    stops = {tok.piece_to_id(s) for s in STOPS}
    llg_tok = engine_tokenizer(tok, tok.vocab_size, stops)

    def literal(text: str) -> str:
        i = tok.piece_to_id(text)
        if i in stops:
            return ""
        return f"<[{i}]>" if i is not None and llg_tok.is_special_token(i) else json.dumps(text)

    return tok, llg_tok, literal


def _matches(engine, constraint, text: str) -> tuple[bool, bool]:
    """(the grammar accepts `text` token by token, it is complete there)."""
    from edge_models.runtime.constraints import Guide

    tok, llg_tok, _ = engine
    guide = Guide(constraint, llg_tok, tok.vocab_size)
    stops = {tok.piece_to_id(s) for s in STOPS}
    for i in tok.encode(text):
        if i in stops:  # generation ends at a stop token where the grammar is complete
            return guide.complete, guide.complete
        if not guide.allows(i):
            return False, False
        guide.consume(i)
    return True, guide.complete


CALL_TEXT = {
    "hermes": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n</tool_call>',
    "llama3": '{"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius"}}',
    "gemma": '```tool_code\n{"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius"}}\n```',
    "phi4": '<|tool_call|>{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}<|/tool_call|>',
    "functiongemma": "<start_function_call>call:get_weather{city:<escape>Paris<escape>,unit:<escape>celsius<escape>}"
    "<end_function_call>",
    "generic": '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}',
}


@pytest.mark.parametrize("fmt", sorted(CALL_TEXT))
def test_grammars_take_valid_calls_and_refuse_invalid_ones(engine, fmt):
    tools = normalize_tools(WEATHER_TOOLS)
    literal = engine[2]
    required = tool_constraint(tools, FORMATS[fmt], "required", literal)
    auto = tool_constraint(tools, FORMATS[fmt], "auto", literal)
    call = CALL_TEXT[fmt]
    assert FORMATS[fmt].parse(call)[1] == [PARIS]
    assert _matches(engine, required, call) == (True, True)
    assert _matches(engine, auto, call) == (True, True)
    assert _matches(engine, auto, "It is sunny, I think.") == (True, True)
    assert _matches(engine, required, "It is sunny")[0] is False
    for wrong in (call.replace("get_weather", "get_wether"), call.replace("celsius", "kelvin")):
        assert _matches(engine, required, wrong)[0] is False, wrong
        assert _matches(engine, auto, wrong)[0] is False, wrong
    if FORMATS[fmt].open:
        # Text, then a call: valid once the call is; an opened call that goes wrong is refused.
        assert _matches(engine, auto, f"Let me look that up. {call}") == (True, True)
        assert _matches(engine, auto, f"Let me look. {call.replace('Paris', '')[:-3]}")[1] is False
    assert tool_constraint(tools, FORMATS[fmt], "none", literal) is None


def test_mask_never_allows_a_token_it_would_refuse(engine):
    """A regex that spells out `<tool_call>`, which the engine tokenizer treats as special: llguidance's mask allows
    only that token and consuming it fails. The guide's mask leaves it out, so the regex is refused up front, naming
    the token, instead of failing mid-reply."""
    from edge_models.runtime import Constraint, ConstraintError
    from edge_models.runtime.constraints import Guide

    tok, llg_tok, _ = engine
    marker = tok.piece_to_id("<tool_call>")
    assert llg_tok.is_special_token(marker), "the case needs <tool_call> special to the engine"
    message = "--regex: no token of this tokenizer can continue the text here (the grammar spells out '<tool_call>'"
    with pytest.raises(ConstraintError, match=re.escape(message)):
        Guide(Constraint.regex("<tool_call>a"), llg_tok, tok.vocab_size)
    # Tool grammars name such markers by token id instead, and the mask allows them.
    guide = Guide(
        tool_constraint(normalize_tools(WEATHER_TOOLS), FORMATS["hermes"], "required", engine[2]),
        llg_tok,
        tok.vocab_size,
    )
    assert guide.allowed()[marker] and guide.allows(marker)


# --- generation with a tiny model (random weights) -------------------------------------------------------------

KV = 2048


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A converted tiny Llama whose directory holds the tests' tokenizer.json and a Qwen-style chat template, as a
    .tflite beside its checkpoint's tokenizer files."""
    from edge_models import registry
    from edge_models.convert import ExportSettings, convert
    from edge_models.kinds.decoder import random_model

    root = tmp_path_factory.mktemp("tools")
    tok = _train_tokenizer()
    tok.save(str(root / "tokenizer.json"))
    (root / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|im_end|>", "bos_token": None}))
    (root / "chat_template.jinja").write_text(QWEN25)
    config = registry().get("llama").tiny_config.replace(vocab_size=tok.get_vocab_size())
    settings = ExportSettings(prefill_lengths=(64,), kv_cache_len=KV, verify_lengths=(8,))
    path = convert(random_model(config, seed=5, std=0.08), root / "tiny.tflite", settings, "fp32", progress=None).path
    (root / "tools.json").write_text(json.dumps(WEATHER_TOOLS))
    return path


def _generator(path: Path, template: str):
    from edge_models.runtime import Generator

    gen = Generator.open(path, extra_stop_tokens=STOPS)
    gen.chat_template = ChatTemplate(template, "test", SPECIAL_TOKENS)
    return gen


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(TEMPLATES))
def test_required_gives_a_valid_call_from_random_weights(tiny, family):
    from edge_models.runtime import ChatSession, SamplerConfig

    gen = _generator(tiny, TEMPLATES[family])
    tools = normalize_tools(WEATHER_TOOLS)
    names = {"get_weather", "get_time"}
    for sampler, speculate in ((None, True), (None, False), (SamplerConfig(temperature=1.0, seed=3), True)):
        gen.speculate = speculate
        session = ChatSession(gen, max_tokens=200, sampler=sampler, tools=tools, tool_choice="required")
        reply = "".join(session.send("What is the weather in Paris?"))
        assert gen.last_stats.constraint_met, (family, reply, gen.last_stats.stop_reason)
        (call,) = session.last_calls
        assert call.name in names
        params = tools[0 if call.name == "get_weather" else 1]["function"]["parameters"]
        assert set(params["required"]) <= set(call.arguments) <= set(params["properties"]), call
        if call.name == "get_weather":
            assert call.arguments["unit"] in ("celsius", "fahrenheit")
        assert session.messages[-1]["tool_calls"] == [call.for_template()]


@pytest.fixture(scope="module")
def tiny_sentencepiece(tmp_path_factory):
    """A converted tiny Llama over a SentencePiece tokenizer without byte pieces: every token is whole text, so the
    free greedy reply of random weights is valid UTF-8 (llguidance's grammars only ever allow valid UTF-8, which a
    byte-level vocabulary's random reply is not)."""
    from edge_models import registry
    from edge_models.convert import ExportSettings, convert
    from edge_models.kinds.decoder import random_model
    from edge_models.runtime import Generator, LiteRTModel, SentencePieceTokenizer
    from edge_models.testing import train_sentencepiece

    root = tmp_path_factory.mktemp("tools-sp")
    tok = SentencePieceTokenizer.from_file(train_sentencepiece(root / "tokenizer.model"))
    config = registry().get("llama").tiny_config
    settings = ExportSettings(prefill_lengths=(64,), kv_cache_len=KV, verify_lengths=(8,))
    path = convert(random_model(config, seed=2, std=0.08), root / "sp.tflite", settings, "fp32", progress=None).path
    return Generator(LiteRTModel(path), tok, ("</s>",), chat_template=ChatTemplate(QWEN25, "test", SPECIAL_TOKENS))


@pytest.mark.slow
@pytest.mark.parametrize("speculate", [True, False])
def test_greedy_under_auto_is_the_free_text(tiny_sentencepiece, speculate):
    """Random weights never open a call here: under `auto` the reply is the unconstrained greedy reply."""
    from edge_models.runtime import ChatSession

    gen = tiny_sentencepiece
    gen.speculate = speculate
    tools = normalize_tools(WEATHER_TOOLS)
    for prompt in ("kalo mine ruta", "ba xe du"):
        free = ChatSession(gen, max_tokens=48, tools=tools, tool_choice="auto")
        free.constraint = None  # the same prompt, no grammar
        expected = "".join(free.send(prompt))
        assert len(expected) > 20 and "<tool_call>" not in expected, expected
        auto = ChatSession(gen, max_tokens=48, tools=tools, tool_choice="auto")
        assert "".join(auto.send(prompt)) == expected and auto.last_calls == []
        assert gen.last_stats.constraint_met
    # "none" offers no tools: the prompt is the template's without them.
    none = ChatSession(gen, tools=tools, tool_choice="none")
    assert none.constraint is None and none.tools is None
    assert "get_weather" in gen.render_chat([{"role": "user", "content": "x"}], tools=tools)


@pytest.mark.slow
def test_cli_chat_with_tools_scripted(run, tiny, tmp_path):
    from click.testing import CliRunner

    from edge_models import cli as cli_module

    tools = tiny.parent / "tools.json"
    args = ["chat", str(tiny), "--tools", str(tools), "--tool-choice", "required", "--max-tokens", "200"]
    script = 'What is the weather in Paris?\n{"temperature": 21}\n'
    result = CliRunner().invoke(cli_module.cli, args, input=script, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{"tool_call"')]
    assert lines and lines[0]["tool_call"]["name"] in ("get_weather", "get_time"), result.stdout
    assert "[turn 2]" in result.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('[{"name": "f", "parameters": {"type": "string"}}]')
    fails_cleanly(run("chat", tiny, "--tools", bad), f"{bad}: tool 'f': parameters must be a JSON schema")
    fails_cleanly(run("chat", tiny, "--tools", tools, "--json"), "give --tools or a constraint")


# --- bundles ----------------------------------------------------------------------------------------------------


def _described(litert_lm, definition: dict):
    """A tool for LiteRT-LM's conversation API given by its definition (what `get_tool_description` returns)."""

    class Described(litert_lm.Tool):
        def get_tool_description(self) -> dict:
            return definition

        def execute(self, param):
            return {"temperature": 21}

    return Described()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gemma3", "qwen2p5", "qwen3", "function_gemma"])
def test_litertlm_model_types_run_in_litert_lm_like_our_chat(tiny_sentencepiece, tmp_path, kind):
    """A .litertlm of each LiteRT-LM model type this project now writes: LiteRT-LM 0.18.1 loads it and its
    conversation API answers with our greedy reply; for the Qwen types, which parse tool calls, also with the tools
    offered: the same prompt (token count) as our chat renders, the same greedy reply."""
    litert_lm = pytest.importorskip("litert_lm")
    from litert_lm_builder.runtime.proto import llm_metadata_pb2

    from edge_models.runtime import ChatSession, Generator
    from edge_models_bundler import BundleOptions, write_bundle
    from edge_models_bundler.litertlm import _metadata, supports_function_calling

    gen = tiny_sentencepiece
    tflite = next(Path(gen.tokenizer.source).parent.glob("*.tflite"))
    template = ChatTemplate(QWEN25, "qwen", {})
    options = BundleOptions(start_token="<s>", stop_tokens=("</s>",), chat_template=template, litertlm_model_type=kind)
    bundle = tmp_path / f"{kind}.litertlm"
    write_bundle(bundle, tflite, gen.tokenizer.source, options)
    meta = llm_metadata_pb2.LlmMetadata.FromString(_metadata(options, gen.tokenizer, KV))
    assert meta.llm_model_type.WhichOneof("model_type") == kind
    calls_tools = kind in ("qwen2p5", "qwen3", "function_gemma")
    assert meta.supports_function_calling is calls_tools and supports_function_calling(options) is calls_tools

    ours = Generator.open(bundle)
    tools = normalize_tools(WEATHER_TOOLS)
    for offered in [None, tools] if kind in ("qwen2p5", "qwen3") else [None]:
        session = ChatSession(ours, max_tokens=24, tools=offered, tool_choice="auto")
        session.constraint = None  # LiteRT-LM's conversation decodes freely: compare with the free greedy reply
        expected = "".join(session.send("kalo mine ruta"))
        prompt_tokens = ours.last_stats.prompt_tokens
        engine = litert_lm.Engine(str(bundle), enable_benchmark=True)
        try:
            described = [_described(litert_lm, t) for t in offered] if offered else None
            conversation = engine.create_conversation(
                sampler_config=litert_lm.SamplerConfig(top_k=1),
                tools=described,
                automatic_tool_calling=False,
            )
            reply = conversation.send_message("kalo mine ruta")
            prefilled = conversation.get_benchmark_info().last_prefill_token_count
        finally:
            engine.close()
        text = "".join(part.text for part in reply.contents)
        assert expected and text.startswith(expected), (kind, offered is not None, text, expected)
        assert prefilled == prompt_tokens, (kind, offered is not None)
