"""Plain-words constraints → markers, for the "fixed" mode (DESIGN.md §3, last paragraph).

`detect(prompt)` finds length limits ("using 50 words or less", "in 3 sentences", "in one paragraph"),
the answer language ("answer in Spanish", "en español", "フランス語で") and formats ("as a table",
"in JSON", "as a bulleted list"), turns them into markers and removes what stated them: the whole
sentence when nothing but the constraint is left in it, else just the phrase.

The rules are data: one `PhraseTable` per prompt language (English, Spanish, French, German,
Portuguese, Italian, Japanese). A new language is a new table, not new code.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from treasure.taxonomy import Taxonomy

UNIT_MARKERS = {"words": "length_tokens", "sentences": "length_sentences", "paragraphs": "length_paragraphs"}


@dataclass(frozen=True)
class PhraseTable:
    """The phrases of one prompt language. Regex fragments; matching ignores case."""

    code: str
    numbers: dict[str, int] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)  # regex → "words" | "sentences" | "paragraphs"
    before: tuple[str, ...] = ()  # relation phrases before the number ("no more than", "at least")
    after: tuple[str, ...] = ()  # relation phrases after the unit ("or less", "or more")
    between: tuple[str, ...] = ()  # range joiners ("to", "and")
    language_names: dict[str, str] = field(default_factory=dict)  # regex → taxonomy language
    language_cues: tuple[str, ...] = ()  # regexes with a "{lang}" slot; group "cut" = the text to remove
    formats: tuple[tuple[str, str], ...] = ()  # (regex, taxonomy format value)
    connectors: tuple[str, ...] = ()  # words left dangling before a removed phrase
    suffix_units: bool = False  # number + unit + relation with no spaces (Japanese)


def _alt(options: Any) -> str:
    return "|".join(sorted(options, key=len, reverse=True))


ENGLISH = PhraseTable(
    code="en",
    numbers={
        "one": 1,
        "a single": 1,
        "single": 1,
        "two": 2,
        "three": 3,
        "four": 4,
        "five": 5,
        "six": 6,
        "seven": 7,
        "eight": 8,
        "nine": 9,
        "ten": 10,
        "eleven": 11,
        "twelve": 12,
        "fifteen": 15,
        "twenty": 20,
    },
    units={r"words?": "words", r"sentences?": "sentences", r"paragraphs?": "paragraphs"},
    before=(
        r"no more than",
        r"not more than",
        r"at most",
        r"up to",
        r"less than",
        r"fewer than",
        r"under",
        r"below",
        r"(?:a )?maximum of",
        r"max(?:imum)?",
        r"not exceed(?:ing)?",
        r"within",
        r"at least",
        r"more than",
        r"over",
        r"(?:a )?minimum of",
        r"no less than",
        r"no fewer than",
        r"exactly",
        r"only",
        r"just",
    ),
    after=(
        r"or less",
        r"or fewer",
        r"or under",
        r"max(?:imum)?",
        r"at most",
        r"or more",
        r"at least",
        r"minimum",
        r"or longer",
        r"long",
    ),
    between=(r"to", r"and", r"-", r"–"),
    language_names={
        "english": "English",
        "french": "French",
        "spanish": "Spanish",
        "italian": "Italian",
        "german": "German",
        "portuguese": "Portuguese",
        "japanese": "Japanese",
        "korean": "Korean",
        "arabic": "Arabic",
        "chinese": "Chinese",
        "mandarin": "Chinese",
        "russian": "Russian",
        "polish": "Polish",
        "turkish": "Turkish",
        "vietnamese": "Vietnamese",
        "dutch": "Dutch",
        "czech": "Czech",
        "indonesian": "Indonesian",
        "ukrainian": "Ukrainian",
        "romanian": "Romanian",
        "greek": "Greek",
        "hindi": "Hindi",
        "hebrew": "Hebrew",
        "persian": "Persian",
        "farsi": "Persian",
    },
    language_cues=(
        r"\b(?:answer|respond|reply|write|written|rewrite|translate|translated|response|output|be|is|it's)\b"
        r"[^.?!\n]{0,40}?\b(?P<cut>(?:in|into)\s+(?:only\s+)?(?:the\s+)?{lang}(?:\s+language)?)\b",
        r"\b(?:entirely|only|exclusively|fully|wholly|solely)\s+in\s+(?:the\s+)?{lang}(?:\s+language)?\b",
        r"\busing\s+(?:only\s+)?(?:the\s+)?{lang}(?:\s+language)?\b",
        r"\bin\s+the\s+{lang}\s+language\b",
        r"\b(?:tell|explain|describe|say|summari[sz]e|list|give)\b[^.?!\n]{0,60}?\b(?P<cut>in\s+{lang})"
        r"(?=\s*(?:[.,;:!?)]|$|\s(?:and|in|with|please|only|using)\b))",
    ),
    formats=(
        (r"\b(?:as|in|into)\s+(?:a\s+)?(?:markdown\s+)?table\b|\btabular\s+form(?:at)?\b", "Tabular"),
        (r"\b(?:in|as)\s+(?:valid\s+)?json\b|\bjson\s+(?:format|object)\b", "JSON"),
        (
            r"\b(?:as|in)\s+(?:a\s+)?(?:bullet(?:ed)?|numbered)\s+list\b|\bbullet\s+points?\b"
            r"|\bmarkdown\s+bullet",
            "Enumeration",
        ),
        (r"\b(?:in|as)\s+xml\b", "XML"),
        (r"\b(?:in|using)\s+latex\b", "Latex"),
        (r"\bstep[- ]by[- ]step\b", "ChainOfThought"),
    ),
    connectors=(r"using", r"with", r"in", r"within", r"and", r"of", r"to", r"that is", r"that has"),
)

SPANISH = PhraseTable(
    code="es",
    numbers={
        "uno": 1,
        "una": 1,
        "un solo": 1,
        "un único": 1,
        "dos": 2,
        "tres": 3,
        "cuatro": 4,
        "cinco": 5,
        "seis": 6,
        "siete": 7,
        "ocho": 8,
        "nueve": 9,
        "diez": 10,
    },
    units={r"palabras?": "words", r"oraciones|oración|frases?": "sentences", r"párrafos?": "paragraphs"},
    before=(
        r"no más de",
        r"menos de",
        r"un máximo de",
        r"máximo",
        r"como máximo",
        r"hasta",
        r"no (?:debe )?(?:superar|exceder) (?:las |los )?",
        r"al menos",
        r"por lo menos",
        r"como mínimo",
        r"un mínimo de",
        r"más de",
        r"exactamente",
        r"solo",
        r"sólo",
    ),
    after=(r"como máximo", r"o menos", r"como mínimo", r"o más"),
    between=(r"a", r"y", r"-"),
    language_names={
        "español": "Spanish",
        "castellano": "Spanish",
        "inglés": "English",
        "francés": "French",
        "alemán": "German",
        "italiano": "Italian",
        "portugués": "Portuguese",
        "japonés": "Japanese",
        "coreano": "Korean",
        "árabe": "Arabic",
        "chino": "Chinese",
        "ruso": "Russian",
    },
    language_cues=(r"\ben\s+(?:idioma\s+|lengua\s+)?{lang}\b",),
    formats=(
        (r"\ben\s+(?:formato\s+)?json\b", "JSON"),
        (r"\ben\s+(?:una\s+)?tabla\b", "Tabular"),
        (r"\bviñetas\b|\blista\s+numerada\b", "Enumeration"),
    ),
    connectors=(r"en", r"con", r"de", r"y"),
)

FRENCH = PhraseTable(
    code="fr",
    numbers={
        "un": 1,
        "une": 1,
        "un seul": 1,
        "deux": 2,
        "trois": 3,
        "quatre": 4,
        "cinq": 5,
        "six": 6,
        "sept": 7,
        "huit": 8,
        "neuf": 9,
        "dix": 10,
    },
    units={r"mots?": "words", r"phrases?": "sentences", r"paragraphes?": "paragraphs"},
    before=(
        r"moins de",
        r"au plus",
        r"au maximum",
        r"un maximum de",
        r"maximum",
        r"ne (?:dépasse|dépassant|dépassera) pas",
        r"ne pas dépasser",
        r"pas plus de",
        r"au moins",
        r"un minimum de",
        r"au minimum",
        r"plus de",
        r"dépasser",
        r"exactement",
        r"en",
    ),
    after=(r"maximum", r"au plus", r"minimum", r"au moins"),
    between=(r"à", r"et", r"-"),
    language_names={
        "français": "French",
        "anglais": "English",
        "espagnol": "Spanish",
        "allemand": "German",
        "italien": "Italian",
        "portugais": "Portuguese",
        "japonais": "Japanese",
        "coréen": "Korean",
        "arabe": "Arabic",
        "chinois": "Chinese",
        "russe": "Russian",
        "polonais": "Polish",
        "turc": "Turkish",
        "vietnamien": "Vietnamese",
        "néerlandais": "Dutch",
        "grec": "Greek",
    },
    language_cues=(r"\b(?:en|rédigée?s?\s+en|écrite?s?\s+en)\s+{lang}\b",),
    formats=(
        (r"\b(?:au|en)\s+format\s+json\b|\ben\s+json\b", "JSON"),
        (r"\bsous\s+forme\s+de\s+tableau\b|\bdans\s+un\s+tableau\b", "Tabular"),
        (r"\bliste\s+à\s+puces\b|\bpuces\b", "Enumeration"),
    ),
    connectors=(r"en", r"avec", r"de", r"et", r"à"),
)

GERMAN = PhraseTable(
    code="de",
    units={r"wörter|wörtern|worte": "words", r"sätzen?|satz": "sentences", r"absätzen?|absatz": "paragraphs"},
    before=(
        r"höchstens",
        r"maximal",
        r"weniger als",
        r"nicht mehr als",
        r"mindestens",
        r"mehr als",
        r"genau",
        r"in",
    ),
    language_names={
        "deutsch": "German",
        "englisch": "English",
        "französisch": "French",
        "spanisch": "Spanish",
        "italienisch": "Italian",
    },
    language_cues=(r"\bauf\s+{lang}\b", r"\bin\s+{lang}er\s+sprache\b"),
    connectors=(r"in", r"mit", r"und"),
)

PORTUGUESE = PhraseTable(
    code="pt",
    units={r"palavras?": "words", r"frases?": "sentences", r"parágrafos?": "paragraphs"},
    before=(r"no máximo", r"menos de", r"até", r"pelo menos", r"no mínimo", r"mais de", r"exatamente"),
    language_names={"português": "Portuguese", "inglês": "English", "espanhol": "Spanish"},
    language_cues=(r"\bem\s+{lang}\b",),
    connectors=(r"em", r"com", r"de", r"e"),
)

ITALIAN = PhraseTable(
    code="it",
    units={r"parole|parola": "words", r"frasi|frase": "sentences", r"paragrafi|paragrafo": "paragraphs"},
    before=(r"al massimo", r"meno di", r"non più di", r"almeno", r"più di", r"esattamente"),
    language_names={"italiano": "Italian", "inglese": "English", "spagnolo": "Spanish"},
    language_cues=(r"\bin\s+{lang}\b",),
    connectors=(r"in", r"con", r"di", r"e"),
)

JAPANESE = PhraseTable(
    code="ja",
    units={r"単語|語": "words", r"行|文(?!字)": "sentences", r"段落": "paragraphs"},
    after=(r"以上", r"未満", r"以下", r"以内", r"程度"),
    language_names={
        "英語": "English",
        "フランス語": "French",
        "スペイン語": "Spanish",
        "ドイツ語": "German",
        "イタリア語": "Italian",
        "ポルトガル語": "Portuguese",
        "日本語": "Japanese",
        "韓国語": "Korean",
        "アラビア語": "Arabic",
        "中国語": "Chinese",
        "ロシア語": "Russian",
        "ベトナム語": "Vietnamese",
    },
    language_cues=(r"{lang}(?:のみ)?で",),
    formats=((r"json形式で?", "JSON"), (r"箇条書きで?", "Enumeration"), (r"表形式で?", "Tabular")),
    suffix_units=True,
)

TABLES: tuple[PhraseTable, ...] = (ENGLISH, SPANISH, FRENCH, GERMAN, PORTUGUESE, ITALIAN, JAPANESE)

FILLER_WORDS = """please your you the a an entire entirely whole response responses answer reply
    output text should
    must be is are make sure it its has have contain contains containing use using keep in with limit
    limited length of and total number to that following instruction question respond write only no other
    language allowed not do don t at least most exactly than more less or can let me give provide all this
    so also need overall within under up long words word sentences sentence paragraphs paragraph
    tu su respuesta debe debería tener contener usa utiliza en de la el los las un una por favor que
    responde escribe y más menos con texto sea esté completa toda asegúrate otro otra idioma lengua
    permitido solo sólo únicamente votre ta ton réponse doit devrait devra contenir comporter comprendre
    le les une des assurez vous veillez à ce qu elle il soit et pas ne utilisez rédigez répondez écrit
    rédigé rédigée réponds réponde entièrement ensemble autre autres langue langues sans limitez
    aucune être utilisée l d s
    ihre antwort antworte sollte muss auf bitte responda sua resposta deve em la tua risposta deve"""
FILLER = frozenset(FILLER_WORDS.split())


@dataclass
class Detection:
    """Markers found in a prompt and the prompt with the constraint text removed."""

    markers: dict[str, Any] = field(default_factory=dict)
    prompt: str = ""
    spans: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class DetectConfig:
    """`set_bucket` also sets `length_bucket` from `length_tokens` with the taxonomy's thresholds."""

    set_bucket: bool = False


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern[str]
    kind: str  # "length" | "language" | "format"
    table: PhraseTable
    value: str = ""


def _number_pattern(table: PhraseTable) -> str:
    words = _alt(re.escape(w) for w in table.numbers)
    return rf"\d{{1,5}}|{words}" if words else r"\d{1,5}"


def _length_rules(table: PhraseTable) -> list[_Rule]:
    num = _number_pattern(table)
    units = "|".join(f"(?:{u})" for u in table.units)
    after = rf"(?:\s*(?:{_alt(table.after)}))?" if table.after else ""
    if table.suffix_units:
        pattern = rf"(?P<n>\d{{1,5}})\s*(?P<unit>{units})(?P<post>{_alt(table.after)})?(?:の文章|の文)?で?"
        return [_Rule(re.compile(pattern, re.IGNORECASE), "length", table)]
    before = rf"(?:(?:{_alt(table.before)})\s+)?" if table.before else ""
    rules = []
    if table.between:
        joiners = _alt(re.escape(j) for j in table.between)
        ranged = (
            rf"(?:between\s+|entre\s+)?(?P<n>{num})\s*(?:{joiners})\s*(?P<n2>{num})\s*(?P<unit>{units})\b"
        )
        rules.append(_Rule(re.compile(rf"\b{ranged}", re.IGNORECASE), "length", table))
    not_case = r"(?!\s+(?:in|be in|with|written in)\s+(?:all\s+)?capital)"
    single = rf"\b{before}(?P<n>{num})(?:\s*\+|-)?\s*(?P<unit>{units})\b{not_case}{after}"
    rules.append(_Rule(re.compile(single, re.IGNORECASE), "length", table))
    return rules


def _rules(table: PhraseTable) -> list[_Rule]:
    rules = _length_rules(table) if table.units else []
    if table.language_names:
        names = _alt(table.language_names)
        for cue in table.language_cues:
            pattern = cue.replace("{lang}", f"(?P<lang>{names})")
            rules.append(_Rule(re.compile(pattern, re.IGNORECASE), "language", table))
    rules.extend(_Rule(re.compile(p, re.IGNORECASE), "format", table, v) for p, v in table.formats)
    return rules


RULES: list[_Rule] = [rule for table in TABLES for rule in _rules(table)]
SENTENCE_RE = re.compile(r"[^.!?。！？\n]*(?:[.!?。！？]+[\"')\]]*|\n+|$)[ \t]*")


def _number(text: str, table: PhraseTable) -> int:
    text = text.lower().strip()
    return int(text) if text.isdigit() else table.numbers[text]


def _lookup(names: dict[str, str], found: str) -> str:
    lowered = found.lower()
    for pattern, value in names.items():
        if re.fullmatch(pattern, lowered, re.IGNORECASE):
            return value
    raise KeyError(found)


def _marker_of(rule: _Rule, match: re.Match[str]) -> tuple[str, Any]:
    if rule.kind == "format":
        return "format", rule.value
    if rule.kind == "language":
        return "language", _lookup(rule.table.language_names, match.group("lang"))
    unit = next(
        u for pattern, u in rule.table.units.items() if re.fullmatch(pattern, match.group("unit"), re.I)
    )
    value = _number(match.group("n"), rule.table)
    if "n2" in match.groupdict() and match.group("n2"):
        value = (value + _number(match.group("n2"), rule.table)) // 2
    return UNIT_MARKERS[unit], value


def detect(prompt: str, taxonomy: Taxonomy | None = None, config: DetectConfig | None = None) -> Detection:
    """Find plain-words constraints; return markers valid in `taxonomy` and the prompt without them.

    The first match of a marker wins; a value the taxonomy does not allow (a language it lacks) is
    ignored and its text is left in the prompt.
    """
    tax = taxonomy or Taxonomy.default()
    config = config or DetectConfig()
    markers: dict[str, Any] = {}
    spans: list[tuple[int, int]] = []
    for rule in RULES:
        for match in rule.regex.finditer(prompt):
            if any(match.start() < end and start < match.end() for start, end in spans):
                continue
            name, value = _marker_of(rule, match)
            if name in markers or name not in tax:
                continue
            try:
                markers[name] = tax.canonical(name, value)
            except ValueError:
                continue
            cut = match.groupdict().get("cut")
            spans.append(match.span("cut") if cut else match.span())
    if config.set_bucket and "length_tokens" in markers and "length_bucket" in tax:
        bucket = tax["length_bucket"]
        if bucket.thresholds:
            markers.setdefault("length_bucket", bucket.bucket_of(markers["length_tokens"]))
    spans.sort()
    return Detection(markers=markers, prompt=_remove(prompt, spans), spans=spans)


def fit_to_trained(
    markers: Mapping[str, Any], trained: Collection[str], taxonomy: Taxonomy
) -> dict[str, Any]:
    """Detected markers restated with the markers a model was trained on.

    A word limit (`length_tokens = N`) for a model trained without `length_tokens` but with
    `length_bucket` becomes the longest bucket whose whole range fits under N (`Marker.bucket_within`);
    `length_tokens` counts words and punctuation, so N words is a safe token bound. Other markers pass.
    """
    fitted = dict(markers)
    limit = fitted.get("length_tokens")
    if limit is not None and "length_tokens" not in trained and "length_bucket" in trained:
        del fitted["length_tokens"]
        bucket = taxonomy["length_bucket"]
        if bucket.thresholds:
            fitted.setdefault("length_bucket", bucket.bucket_within(limit))
    return fitted


def _remove(prompt: str, spans: list[tuple[int, int]]) -> str:
    """Drop each sentence that holds only constraints; elsewhere drop only the constraint phrase."""
    if not spans:
        return prompt
    connectors = _alt({c for t in TABLES for c in t.connectors})
    dangling = re.compile(rf"(?:[\s,;:]*\b(?:{connectors}))?[\s,;:]*$", re.IGNORECASE)
    pieces: list[str] = []
    for sentence in SENTENCE_RE.finditer(prompt):
        start, end = sentence.span()
        if start == end:
            continue
        inside = [(max(s, start), min(e, end)) for s, e in spans if s < end and start < e]
        if not inside:
            pieces.append(sentence.group())
            continue
        kept, cursor = "", start
        for s, e in inside:
            kept += prompt[cursor:s]
            cursor = e
        remainder = kept + prompt[cursor:end]
        content = [w for w in re.findall(r"\w+", remainder.lower()) if w not in FILLER and not w.isdigit()]
        if not content:
            continue
        text, cursor = "", start
        for s, e in inside:
            text = dangling.sub("", text + prompt[cursor:s])
            cursor = e
        rest = prompt[cursor:end]
        if not text.strip():
            rest = rest.lstrip("、，,;: ")
        pieces.append(text + rest)
    out = "".join(pieces)
    out = re.sub(r"[ \t]+([.,;:!?])", r"\1", out)
    out = re.sub(r"[ \t]{2,}", " ", out)
    return out.strip()
