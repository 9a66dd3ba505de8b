"""Build the classifier seed set (src/treasure/resources/classifier_seed.jsonl.gz) and the labelled dev set
(src/treasure/data/dev/task_domain_dev.jsonl) from the bundled data. Deterministic; see src/treasure/data/SOURCES.md.

    .venv/bin/python scripts/make_dev_sets.py
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src/treasure/data"
SEED_OUT = ROOT / "src/treasure/resources/classifier_seed.jsonl.gz"
DEV_OUT = DATA / "dev/task_domain_dev.jsonl"
CODE_LANGS = {
    "python": "Python",
    "js": "JavaScript",
    "java": "Java",
    "go": "Go",
    "cpp": "C++",
    "rust": "Rust",
}
# Vicuna / LLMZoo category → task (hand mapping); coding/math also give the domain
CATEGORY_TASK = {
    "generic": "OpenEnded",
    "knowledge": "Explanation",
    "roleplay": "CreativeWriting",
    "common-sense": "Explanation",
    "fermi": "Reasoning",
    "counterfactual": "OpenEnded",
    "writing": "CreativeWriting",
    "coding": "CodeGeneration",
    "math": "Reasoning",
    "grammarly": "Rewrite",
    "reasoning": "Reasoning",
}
CATEGORY_DOMAIN = {"coding": "Code", "math": "Math"}
# Self-Instruct `motivation_app` → domain (hand mapping; apps with no clear domain are left unlabelled)
APP_DOMAIN = {
    "Code": ["GeeksforGeeks", "Github", "Leetcode", "StackOverflow", "w3schools"],
    "Math": ["Wolfram alpha", "(Wolfram alpha)?", "Sudoku"],
    "Finance": ["Redfin", "sth related to real estate?"],
    "Medical": ["Wysa", "Workout", "Strava"],
    "Culture": ["Netflix", "IMDB", "Spotify", "Goodreads", "Tasty", "Yelp", "yelp", "tripadvisor.com", "ESPN",
                "Airbnb", "https://abcnotation.com/", "Wordle"],
    "Conversation": ["Gmail", "Messenger", "Telegram", "Google Meet"],
    "Sciences": ["National Geographic", "Semantic Scholar", "Google Scholar", "Explainpaper", "Socratic by Google"],
    "Technology": ["https://cohere.ai/", "Notion", "Google Docs", "Google Sheets", "Google Sheet", "MS Powerpoint",
                   "MS Word", "MS Excel", "Play Store", "Jira", "Overleaf", "Markdown"],
    "SocialSciences": ["CNN News", "Coursera"],
}  # fmt: skip
APP_TASK = {"Grammarly": "Rewrite"}
# Alpaca: task from the instruction's opening words, domain from unambiguous keywords (weak labels)
TASK_RULES = [
    ("Translation", r"^(translate|convert .* (into|to) (french|spanish|german|english|chinese|italian))"),
    ("Summarization", r"^(summari[sz]e|write a summary|give a summary|provide a summary|condense)"),
    ("Classification", r"^(classify|categori[sz]e|label|determine whether|decide whether|identify whether)"),
    ("Rewrite", r"^(rewrite|paraphrase|rephrase|edit|revise|correct|change .* to|convert .* (passive|active))"),
    ("InformationExtraction", r"^(extract|identify the (main|key|names)|find the (names|dates)|list all the)"),
    ("CodeGeneration", r"^(write|create|generate|develop|implement|construct) an? (python |java |c\+\+ |sql )?"
     r"(function|program|script|code|query|algorithm|class)"),
    ("CodeFix", r"^(debug|fix|find the (bug|error) in)"),
    ("CreativeWriting", r"^(write|compose|create|generate) an? (short )?(poem|story|haiku|song|limerick|tweet|slogan|"
     r"joke|dialogue|tagline|rap)"),
    ("Explanation", r"^(explain|describe how|describe why|why (is|do|does|are))"),
    ("Reasoning", r"^(calculate|compute|solve|evaluate|find the (sum|product|value|area|average))"),
    ("QuestionAnswering", r"^(what is the (capital|name|population)|who (is|was|wrote|invented)|when (did|was)|"
     r"where is|name the)"),
    ("OpenEnded", r"^(brainstorm|suggest|give me (some )?(ideas|tips|advice)|generate a list of (ideas|ways|tips))"),
]  # fmt: skip
DOMAIN_RULES = {
    "Medical": r"\b(health|disease|symptom|doctor|medical|medicine|patient|vaccine|diet|nutrition)\b",
    "Legal": r"\b(law|legal|court|lawyer|contract|lawsuit|attorney)\b",
    "Finance": r"\b(finance|financial|stock|invest\w*|bank|budget|tax|loan|mortgage)\b",
    "Math": r"\b(equation|integer|sum of|multiply|divide|algebra|geometry|triangle|fraction|probability)\b",
    "Code": r"\b(python|javascript|java|sql|html|css|function|program|code|algorithm)\b",
    "Sciences": r"\b(physics|chemistry|biology|planet|atom|molecule|photosynthesis|climate|species|gravity)\b",
    "Technology": r"\b(technology|computer|internet|software|smartphone|artificial intelligence|robot|blockchain)\b",
    "SocialSciences": r"\b(history|historical|economy|politic\w*|psychology|society|government|war)\b",
    "Culture": r"\b(music|movie|film|novel|painting|art|recipe|cuisine|sport|song)\b",
}


def read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def alpaca_rows() -> list[dict]:
    with gzip.open(DATA / "alpaca_5000.json.gz", "rt", encoding="utf-8") as handle:
        records = json.load(handle)
    rows = []
    for index, rec in enumerate(records):
        text = rec["instruction"].strip().lower()
        task = next((t for t, rule in TASK_RULES if re.search(rule, text)), None)
        hits = [d for d, rule in DOMAIN_RULES.items() if re.search(rule, f"{text} {rec['input'].lower()}")]
        domain = hits[0] if len(hits) == 1 else None
        if task or domain:
            prompt = f"{rec['instruction']}\n\n{rec['input']}".strip()
            rows.append({"index": index, "prompt": prompt, "response": rec["output"], "task": task,
                         "domain": domain, "origin": "alpaca_5000:verb-and-keyword-rules"})  # fmt: skip
    return rows


def humaneval_rows(parity: int) -> list[dict]:
    packs = {lang: read_jsonl(DATA / f"code/humanevalpack_{lang}.jsonl.gz") for lang in CODE_LANGS}
    langs = list(CODE_LANGS)
    rows = []
    for problem in range(parity, 164, 2):
        lang = langs[problem % len(langs)]
        other = langs[(problem + 1) % len(langs)]
        rec, rec2 = packs[lang][problem], packs[other][problem]
        code = rec["declaration"] + rec["canonical_solution"]
        name = CODE_LANGS[lang]
        origin = f"humanevalpack_{lang}:{rec['task_id']}"
        rows += [
            {"prompt": rec["instruction"], "response": code, "task": "CodeGeneration"},
            {"prompt": f"Fix bugs in {rec['entry_point']}.\n\n{rec['declaration']}{rec['buggy_solution']}",
             "response": code, "task": "CodeFix"},
            {"prompt": f"Provide a concise natural language description of the code.\n\n{code}",
             "response": rec["docstring"], "task": "CodeExplanation"},
            {"prompt": f"Translate this {name} code to {CODE_LANGS[other]}.\n\n{code}",
             "response": rec2["declaration"] + rec2["canonical_solution"], "task": "CodeTranslation"},
        ]  # fmt: skip
        for row in rows[-4:]:
            row.update(domain="Code", origin=origin)
    return rows


def self_instruct_rows(parity: int) -> list[dict]:
    app_domain = {app: d for d, apps in APP_DOMAIN.items() for app in apps}
    rows = []
    for index, rec in enumerate(read_jsonl(DATA / "self_instruct_user_oriented.jsonl.gz")):
        app = rec["motivation_app"]
        if index % 2 != parity or (app not in app_domain and app not in APP_TASK):
            continue
        first = rec["instances"][0]
        prompt = f"{rec['instruction']}\n\n{first['input']}".strip()
        rows.append({"prompt": prompt, "response": first["output"], "task": APP_TASK.get(app),
                     "domain": app_domain.get(app), "origin": f"self_instruct:{rec['id']}:{app}"})  # fmt: skip
    return rows


def category_rows() -> list[dict]:
    rows = []
    for rec in read_jsonl(DATA / "eval/vicuna_bench_question.jsonl.gz"):
        cat = rec["category"]
        rows.append({"prompt": rec["turns"][0], "response": "", "task": CATEGORY_TASK[cat],
                     "domain": CATEGORY_DOMAIN.get(cat), "origin": f"vicuna:{rec['question_id']}:{cat}"})  # fmt: skip
    for rec in read_jsonl(DATA / "multilingual/llmzoo_en100.jsonl"):
        if rec["label"] in ("grammarly", "reasoning"):
            rows.append({"prompt": rec["query"], "response": "", "task": CATEGORY_TASK[rec["label"]],
                         "domain": None, "origin": f"llmzoo_en100:{rec['id']}:{rec['label']}"})  # fmt: skip
    return rows


def description_rows() -> list[dict]:
    spec = json.loads((ROOT / "src/treasure/resources/class_definitions.json").read_text(encoding="utf-8"))
    rows = []
    for marker in ("task", "domain"):
        for value, text in spec[marker].items():
            if value != "Unspecified":
                rows.append(
                    {"prompt": text, "response": "", marker: value, "origin": f"description:{marker}"}
                )
    return rows


def write(rows: list[dict], path: Path) -> None:
    keys = ("prompt", "response", "task", "domain", "origin")
    lines = "".join(json.dumps({k: r.get(k) for k in keys}, ensure_ascii=False) + "\n" for r in rows)
    if path.suffix == ".gz":
        with gzip.GzipFile(path, "wb", mtime=0) as handle:
            handle.write(lines.encode())
    else:
        path.write_text(lines, encoding="utf-8")


def main() -> None:
    alpaca = alpaca_rows()
    seed = (
        description_rows()
        + [r for r in alpaca if r["index"] < 4000]
        + humaneval_rows(0)
        + self_instruct_rows(0)
    )
    held = [r for r in alpaca if r["index"] >= 4000 and r["task"]][:100]
    dev_code = [r for i, r in enumerate(humaneval_rows(1)) if i % 4 == (i // 4) % 4]  # one task per problem
    dev = dev_code + category_rows() + self_instruct_rows(1) + held
    write(seed, SEED_OUT)
    write(dev, DEV_OUT)
    print(f"seed {len(seed)} rows → {SEED_OUT}\ndev {len(dev)} rows → {DEV_OUT}")


if __name__ == "__main__":
    main()
