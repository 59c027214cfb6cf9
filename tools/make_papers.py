#!/usr/bin/env python3
"""Generate the repo's catalog (book/papers.yml) and bibliography (book/references.bib).

    python tools/make_papers.py [--catalog ../shared/catalog.yml] [--force]
    python tools/make_papers.py --bib-only [--force]

The first form reads the design catalog (outside the repo) and writes both files. It was run once;
since then book/papers.yml is maintained by hand, so the script refuses to overwrite either file
unless --force is given. The second form rebuilds book/references.bib from the hand-maintained
book/papers.yml, e.g. after adding authors there.

papers.yml keeps FACTS ONLY, in catalog order: id, title, authors (only where known), year, url,
kind, part, companion_of (when present) and chapter: the notebook that implements the entry, or null
while it is planned. Companions folded into an implemented chapter point at the parent's notebook.
The design text of the catalog (key idea, claim, experiment, ...) is deliberately not copied.
Output is deterministic: same input, same bytes.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CATALOG = REPO.parent / "shared" / "catalog.yml"
PAPERS = REPO / "book" / "papers.yml"
BIB = REPO / "book" / "references.bib"

# Notebooks that exist in the repo (or are being written). Entries whose catalog chapter is one of
# these get `chapter: <path>`; every other entry is planned (`chapter: null`).
IMPLEMENTED = (
    "chapters/01-foundations/attention-is-all-you-need.ipynb",
    "chapters/01-foundations/bpe.ipynb",
    "chapters/03-pretrained-models/gpt2-zero-shot-scaling.ipynb",
)

FACT_KEYS = ("id", "title", "year", "url", "kind", "part", "companion_of")

# Authors known reliably. A trailing "others" marks a truncated list (BibTeX's "and others").
# Group authors ("OpenAI", "Gemma Team", ...) are single names and are braced in BibTeX.
# Entries left out have no authors field; add them to papers.yml by hand when verified.
OTHERS = "others"
AUTHORS = {
    "attention-is-all-you-need": ["Ashish Vaswani", "Noam Shazeer", "Niki Parmar", "Jakob Uszkoreit",
                                  "Llion Jones", "Aidan N. Gomez", "Łukasz Kaiser", "Illia Polosukhin"],
    "illustrated-transformer": ["Jay Alammar"],
    "bpe": ["Rico Sennrich", "Barry Haddow", "Alexandra Birch"],
    "mqa": ["Noam Shazeer"],
    "gqa": ["Joshua Ainslie", OTHERS],
    "rope": ["Jianlin Su", OTHERS],
    "alibi": ["Ofir Press", "Noah A. Smith", "Mike Lewis"],
    "layer-norm": ["Jimmy Lei Ba", "Jamie Ryan Kiros", "Geoffrey E. Hinton"],
    "pre-layernorm": ["Ruibin Xiong", OTHERS],
    "understanding-layernorm": ["Jingjing Xu", OTHERS],
    "attention-rank-collapse": ["Yihe Dong", "Jean-Baptiste Cordonnier", "Andreas Loukas"],
    "adam": ["Diederik P. Kingma", "Jimmy Ba"],
    "gpt1": ["Alec Radford", "Karthik Narasimhan", "Tim Salimans", "Ilya Sutskever"],
    "gpt2": ["Alec Radford", "Jeffrey Wu", "Rewon Child", "David Luan", "Dario Amodei", "Ilya Sutskever"],
    "gpt3": ["Tom B. Brown", OTHERS],
    "bert": ["Jacob Devlin", "Ming-Wei Chang", "Kenton Lee", "Kristina Toutanova"],
    "elmo": ["Matthew E. Peters", OTHERS],
    "t5": ["Colin Raffel", OTHERS],
    "xlnet": ["Zhilin Yang", OTHERS],
    "roberta": ["Yinhan Liu", OTHERS],
    "albert": ["Zhenzhong Lan", OTHERS],
    "llama": ["Hugo Touvron", OTHERS],
    "llama2": ["Hugo Touvron", OTHERS],
    "gpt4": ["OpenAI"],
    "chatgpt": ["OpenAI"],
    "gemma": ["Gemma Team"],
    "gemma2": ["Gemma Team"],
    "gemma3": ["Gemma Team"],
    "kimi-k2": ["Kimi Team"],
    "pythia": ["Stella Biderman", OTHERS],
    "the-pile": ["Leo Gao", OTHERS],
    "scaling-laws": ["Jared Kaplan", OTHERS],
    "chinchilla": ["Jordan Hoffmann", OTHERS],
    "scaling-laws-autoregressive": ["Tom Henighan", OTHERS],
    "scaling-laws-transfer": ["Danny Hernandez", OTHERS],
    "scaling-laws-routed": ["Aidan Clark", OTHERS],
    "emergent-abilities": ["Jason Wei", OTHERS],
    "flashattention": ["Tri Dao", "Daniel Y. Fu", "Stefano Ermon", "Atri Rudra", "Christopher Ré"],
    "flashattention2": ["Tri Dao"],
    "flashattention3": ["Jay Shah", OTHERS],
    "mixed-precision": ["Paulius Micikevicius", OTHERS],
    "zero": ["Samyam Rajbhandari", "Jeff Rasley", "Olatunji Ruwase", "Yuxiong He"],
    "nvidia-matmul-guide": ["NVIDIA"],
    "nvidia-gpu-performance-guide": ["NVIDIA"],
    "train-large-models-lilianweng": ["Lilian Weng"],
    "efficiently-scaling-inference": ["Reiner Pope", OTHERS],
    "distserve": ["Yinmin Zhong", OTHERS],
    "sarathi": ["Amey Agrawal", OTHERS],
    "bitnet-b158": ["Shuming Ma", OTHERS],
    "llm-serving-survey": ["Xupeng Miao", OTHERS],
    "sparsely-gated-moe": ["Noam Shazeer", OTHERS],
    "mixtral": ["Albert Q. Jiang", OTHERS],
    "rwkv": ["Bo Peng", OTHERS],
    "longformer": ["Iz Beltagy", "Matthew E. Peters", "Arman Cohan"],
    "efficient-transformers-survey": ["Yi Tay", "Mostafa Dehghani", "Dara Bahri", "Donald Metzler"],
    "lora": ["Edward J. Hu", OTHERS],
    "qlora": ["Tim Dettmers", "Artidoro Pagnoni", "Ari Holtzman", "Luke Zettlemoyer"],
    "self-instruct": ["Yizhong Wang", OTHERS],
    "ood-finetuning-hallucination": ["Eugene Yan"],
    "synthetic-data-finetuning": ["Eugene Yan"],
    "instructgpt": ["Long Ouyang", OTHERS],
    "dpo": ["Rafael Rafailov", OTHERS],
    "dpo-explained-blog": ["Tyler Romero"],
    "ppo": ["John Schulman", "Filip Wolski", "Prafulla Dhariwal", "Alec Radford", "Oleg Klimov"],
    "spinningup-ppo": ["Joshua Achiam"],
    "spinningup-rl-intro": ["Joshua Achiam"],
    "trpo": ["John Schulman", OTHERS],
    "gae": ["John Schulman", OTHERS],
    "rlhf-book": ["Nathan Lambert"],
    "sutton-barto": ["Richard S. Sutton", "Andrew G. Barto"],
    "deep-rl-human-preferences": ["Paul Christiano", OTHERS],
    "learning-to-summarize": ["Nisan Stiennon", OTHERS],
    "constitutional-ai": ["Yuntao Bai", OTHERS],
    "secrets-of-rlhf-ppo": ["Rui Zheng", OTHERS],
    "n-implementation-details-rlhf": ["Shengyi Huang", OTHERS],
    "grpo-deepseekmath": ["Zhihong Shao", OTHERS],
    "deepseek-r1": ["DeepSeek-AI"],
    "kimi-k1-5": ["Kimi Team"],
    "dota2-rl": ["Christopher Berner", OTHERS],
    "self-rewarding": ["Weizhe Yuan", OTHERS],
    "spin": ["Zixiang Chen", OTHERS],
    "gophercite": ["Jacob Menick", OTHERS],
    "llama-guard": ["Hakan Inan", OTHERS],
    "restem": ["Avi Singh", OTHERS],
    "q-transformer": ["Yevgen Chebotar", OTHERS],
    "kd-hinton": ["Geoffrey Hinton", "Oriol Vinyals", "Jeff Dean"],
    "minillm": ["Yuxian Gu", "Li Dong", "Furu Wei", "Minlie Huang"],
    "gkd-on-policy-distillation": ["Rishabh Agarwal", OTHERS],
    "well-read-students": ["Iulia Turc", "Ming-Wei Chang", "Kenton Lee", "Kristina Toutanova"],
    "distilling-policy-distillation": ["Wojciech M. Czarnecki", OTHERS],
    "policy-distillation": ["Andrei A. Rusu", OTHERS],
    "kd-survey": ["Jianping Gou", "Baosheng Yu", "Stephen J. Maybank", "Dacheng Tao"],
    "seq-kd": ["Yoon Kim", "Alexander M. Rush"],
    "model-compression": ["Cristian Buciluǎ", "Rich Caruana", "Alexandru Niculescu-Mizil"],
    "dpr": ["Vladimir Karpukhin", OTHERS],
    "rag": ["Patrick Lewis", OTHERS],
    "retro": ["Sebastian Borgeaud", OTHERS],
    "internet-augmented-lms": ["Angeliki Lazaridou", OTHERS],
    "hyde": ["Luyu Gao", "Xueguang Ma", "Jimmy Lin", "Jamie Callan"],
    "chain-of-note": ["Wenhao Yu", OTHERS],
    "generative-agents": ["Joon Sung Park", OTHERS],
    "matryoshka": ["Aditya Kusupati", OTHERS],
    "rag-survey": ["Yunfan Gao", OTHERS],
    "chain-of-thought": ["Jason Wei", OTHERS],
    "zero-shot-cot": ["Takeshi Kojima", OTHERS],
    "self-consistency": ["Xuezhi Wang", OTHERS],
    "quiet-star": ["Eric Zelikman", OTHERS],
    "codex": ["Mark Chen", OTHERS],
    "alphacode": ["Yujia Li", OTHERS],
    "wizardcoder": ["Ziyang Luo", OTHERS],
    "qwen2-5-coder": ["Binyuan Hui", OTHERS],
    "vit": ["Alexey Dosovitskiy", OTHERS],
    "clip": ["Alec Radford", OTHERS],
    "whisper": ["Alec Radford", OTHERS],
    "consistency-models": ["Yang Song", "Prafulla Dhariwal", "Mark Chen", "Ilya Sutskever"],
    "lcm": ["Simian Luo", OTHERS],
    "lcm-lora": ["Simian Luo", OTHERS],
    "mech-interp-essay": ["Chris Olah"],
    "nn-manifolds-topology": ["Christopher Olah"],
    "mech-interp-safety-review": ["Leonard Bereska", "Efstratios Gavves"],
    "transformer-circuits-framework": ["Nelson Elhage", OTHERS],
    "circuit-tracing": ["Emmanuel Ameisen", OTHERS],
    "foundation-models-opportunities": ["Rishi Bommasani", OTHERS],
    "llm-survey": ["Wayne Xin Zhao", OTHERS],
    "chatgpt-research-summary": ["Yiheng Liu", OTHERS],
    "helm": ["Percy Liang", OTHERS],
    "small-models-survey": ["Lihu Chen", "Gaël Varoquaux"],
    "sparks-of-agi": ["Sébastien Bubeck", OTHERS],
}
PUBLISHERS = {"sutton-barto": "MIT Press"}

HEADER = """\
# paperbook's catalog of papers: FACTS ONLY (id, title, authors where known, year, url, kind, part,
# companion_of, chapter). Generated once from the design catalog by tools/make_papers.py, then
# maintained by hand: when a chapter lands, set its `chapter:` (and its companions') to the notebook
# path; tests/test_catalog.py keeps this file, the design catalog, _toc.yml and the notebooks in step.
# chapter: null means planned. Order = catalog order. After editing titles or authors here, rebuild
# book/references.bib with `python tools/make_papers.py --bib-only --force`.
"""


def die(msg: str) -> None:
    sys.exit(f"make_papers.py: {msg}")


def load_catalog(path: Path) -> list[dict]:
    if not path.exists():
        die(f"catalog {path} not found; pass --catalog PATH")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, list) or not all(isinstance(e, dict) and "id" in e for e in data):
        die(f"{path} is not a list of entries with an `id`")
    ids = [e["id"] for e in data]
    dups = sorted({i for i in ids if ids.count(i) > 1})
    if dups:
        die(f"duplicate ids in {path}: {', '.join(dups)}")
    return data


def papers_from_catalog(catalog: list[dict], implemented=IMPLEMENTED) -> list[dict]:
    """Facts of every catalog entry, in order, with `chapter` resolved against `implemented`."""
    chapter_of = {}
    for e in catalog:
        ch = e.get("chapter")
        if isinstance(ch, str) and ch in implemented and "companion_of" not in e:
            chapter_of[e["id"]] = ch
    papers = []
    for e in catalog:
        p = {"id": e["id"], "title": str(e["title"]).strip()}
        if AUTHORS.get(e["id"]):
            p["authors"] = list(AUTHORS[e["id"]])
        p.update(year=int(e["year"]), url=e["url"], kind=e["kind"], part=e["part"])
        if e.get("companion_of"):
            p["companion_of"] = e["companion_of"]
        p["chapter"] = chapter_of.get(e.get("companion_of") or e["id"])
        papers.append(p)
    return papers


def dump_papers(papers: list[dict]) -> str:
    body = yaml.safe_dump(papers, sort_keys=False, allow_unicode=True, width=1000, default_flow_style=None)
    # a blank line between entries keeps hand edits readable
    return HEADER + "\n" + body.replace("\n- id: ", "\n\n- id: ")


# ---------------------------------------------------------------- BibTeX
ARXIV = re.compile(r"arxiv\.org/(?:abs|pdf)/(\d{4}\.\d{4,5})")
GROUP = re.compile(r"^\S+$|\bTeam\b")  # one-word names (OpenAI, NVIDIA, DeepSeek-AI) and "... Team"


def bib_escape(text: str) -> str:
    return re.sub(r"([&%#$_])", r"\\\1", text)


def bib_name(name: str) -> str:
    if name == OTHERS:
        return "others"
    if GROUP.search(name):
        return "{" + bib_escape(name) + "}"
    return bib_escape(name)


def bib_entry(p: dict) -> str:
    """One BibTeX entry; the type follows the kind (and what the formatter can render)."""
    authors = p.get("authors") or []
    arxiv = ARXIV.search(p["url"])
    fields = []
    if p["kind"] in ("paper", "survey", "report") and arxiv and authors:
        etype = "article"
        fields.append(("journal", f"arXiv preprint arXiv:{arxiv.group(1)}"))
    elif p["kind"] == "book" and authors and p["id"] in PUBLISHERS:
        etype = "book"
        fields.append(("publisher", PUBLISHERS[p["id"]]))
    elif p["kind"] in ("blog", "docs"):
        etype = "online"
    else:  # unknown authors or a venue we do not record: @misc needs neither
        etype = "misc"
        if arxiv:
            fields.append(("howpublished", f"arXiv preprint arXiv:{arxiv.group(1)}"))
    head = []
    if authors:
        head.append(("author", " and ".join(bib_name(a) for a in authors)))
    head.append(("title", "{" + bib_escape(p["title"]) + "}"))  # inner braces keep the capitals
    head.append(("year", str(p["year"])))
    fields = head + fields
    fields.append(("url", p["url"]))
    body = ",\n".join(f"  {k} = {{{v}}}" for k, v in fields)
    return f"@{etype}{{{p['id']},\n{body}\n}}\n"


def dump_bib(papers: list[dict]) -> str:
    head = ("% paperbook bibliography: one entry per catalog id (key = id). Generated from book/papers.yml\n"
            "% by tools/make_papers.py (--bib-only rebuilds it after hand edits of papers.yml).\n\n")
    return head + "\n".join(bib_entry(p) for p in papers)


def write(path: Path, text: str, force: bool) -> None:
    if path.exists() and not force:
        die(f"{path} exists and is maintained by hand; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--catalog", type=Path, default=DEFAULT_CATALOG, help="design catalog (default: %(default)s)")
    ap.add_argument("--papers", type=Path, default=PAPERS, help="papers.yml to write or read")
    ap.add_argument("--bib", type=Path, default=BIB, help="references.bib to write")
    ap.add_argument("--bib-only", action="store_true", help="rebuild the .bib from the existing papers.yml")
    ap.add_argument("--force", action="store_true", help="overwrite existing files")
    a = ap.parse_args(argv)
    if a.bib_only:
        if not a.papers.exists():
            die(f"{a.papers} not found; run without --bib-only first")
        papers = yaml.safe_load(a.papers.read_text(encoding="utf-8"))
    else:
        papers = papers_from_catalog(load_catalog(a.catalog))
        # check both targets before writing either, so a refusal leaves nothing half-done
        for path in (a.papers, a.bib):
            if path.exists() and not a.force:
                die(f"{path} exists and is maintained by hand; pass --force to overwrite it")
        write(a.papers, dump_papers(papers), a.force)
    write(a.bib, dump_bib(papers), a.force)


if __name__ == "__main__":
    main()
