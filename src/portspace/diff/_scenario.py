"""Scenario files: named sockets and steps (JSON, or the text step script), with expected
outcomes and the claims they decide.

Theory of operation
-------------------
A scenario file is translated into the step vocabulary of :mod:`portspace.diff._script` (one
:class:`~portspace.diff._script.Step` per step) and run by :func:`run_script`, on the model or
on the kernel: there is one engine.  This module only reads, validates and judges.

JSON (documented for users in ``docs/scenarios.md``)::

    {
      "title": "seed 000: two UDP sockets on one port",
      "about": "what the scenario shows (optional)",
      "source": "where the expected outcomes come from (optional)",
      "sockets": {"a": "udp4", "b": {"kind": "udp4", "options": ["reuseaddr"], "uid": 1000}},
      "steps": [
        "a bind 127.0.0.1 5556 -> OK",
        {"do": "b bind 127.0.0.1 5556", "expect": "EADDRINUSE", "label": "second", "note": "..."}
      ],
      "claims": [
        {"claim": "Two UDP sockets cannot bind one port.", "source": "seed 000",
         "predicts": {"second": "EADDRINUSE"}}
      ],
      "differences": {"label": "why the model and the kernel differ on this step (named, explained)"}
    }

``sockets`` are created first, in the order written.  A step is a line of the step script
(``-> OUTCOME`` optional) or an object whose ``do`` is such a line, with optional ``expect``,
``label`` (to name it in ``predicts`` and ``differences``) and ``note``.  A ``.steps`` file is
the step script itself, one step a line.

A claim's verdict is computed from the outcomes of the steps it names: ``true`` when every
predicted outcome happened, ``false`` when none did, ``partly`` otherwise, and ``not modelled
yet`` when the model raised :class:`portspace.OutOfScope` at or before the last step the claim
depends on (a later outcome would mean nothing).  A prediction ``!X`` means "anything but X".

Errors in a file raise :class:`ScenarioError` whose text is one line naming the file, the step
and the problem.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

from ._script import KINDS, OPTIONS, TEXT_OPTIONS, Step, StepResult, parse

NOT_MODELLED = "not modelled yet"
VERDICTS = ("true", "false", "partly", NOT_MODELLED)

# socket steps: op -> (min args, max args)
SOCKET_OPS = {
    "bind": (2, 3), "listen": (0, 1), "close": (0, 0), "getsockname": (0, 0), "name": (0, 0),
    "peer": (0, 0), "connect": (2, 3), "disconnect": (0, 0), "shutdown": (1, 1), "timeout": (1, 1),
    "error": (0, 0), "port": (0, 0), "linger": (2, 2), "set": (2, 2), "get": (1, 1),
    "send": (0, 1), "sendto": (2, 3), "recv": (0, 0), "join": (1, 2),
}
NS_OPS = {"addr": (1, 2), "deladdr": (1, 2), "device": (1, 1), "sysctl": (1, 2), "sleep": (1, 1), "advance": (1, 1),
          "drain": (1, 64)}
TOP_KEYS = {"title", "about", "source", "sockets", "steps", "claims", "differences"}
STEP_KEYS = {"do", "expect", "label", "note"}
CLAIM_KEYS = {"claim", "source", "predicts", "note"}


class ScenarioError(ValueError):
    """A bad scenario file; ``str()`` is one line: ``FILE: step N: problem``."""


@dataclass(frozen=True)
class Claim:
    claim: str
    source: str
    predicts: dict[str, str]
    note: str = ""


@dataclass(frozen=True)
class Scenario:
    name: str                      # file name (or the name given to loads)
    title: str
    steps: tuple[Step, ...]
    about: str = ""
    source: str = ""
    labels: dict[str, int] = field(default_factory=dict)      # label -> index into steps
    notes: dict[int, str] = field(default_factory=dict)       # index -> note
    claims: tuple[Claim, ...] = ()
    differences: dict[str, str] = field(default_factory=dict)  # label -> explanation

    @property
    def seconds(self) -> float:
        """Time the scenario sleeps (real time on the kernel)."""
        return sum(float(s.args[0]) for s in self.steps if s.target == "ns" and s.op in ("sleep", "advance"))

    def label_of(self, index: int) -> str | None:
        for k, v in self.labels.items():
            if v == index:
                return k
        return None


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    verdict: str
    evidence: tuple[dict[str, Any], ...]   # per predicted step: label, step, predicted, outcome, held
    why: str = ""                          # for "not modelled yet": the OutOfScope message

    def as_dict(self) -> dict[str, Any]:
        return {"claim": self.claim.claim, "source": self.claim.source, "verdict": self.verdict,
                "evidence": list(self.evidence), "why": self.why, "note": self.claim.note}


# ------------------------------------------------------------------------------------------
# loading
# ------------------------------------------------------------------------------------------


def load(path: str | Path) -> Scenario:
    """Read a ``.json`` scenario or a text step script (any other name)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ScenarioError(f"{p}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{p}: not UTF-8 text") from None
    return loads(text, str(p), json_format=p.suffix.lower() == ".json")


def loads(text: str, name: str = "<scenario>", json_format: bool | None = None) -> Scenario:
    if json_format is None:
        json_format = text.lstrip().startswith("{")
    return _from_json(text, name) if json_format else _from_text(text, name)


def _from_text(text: str, name: str) -> Scenario:
    steps: list[Step] = []
    known: set[str] = set()
    for n, raw in enumerate(text.splitlines(), 1):
        st = _parse_line(raw, f"{name}: line {n}")
        if st is None:
            continue
        _validate(st, known, f"{name}: line {n}")
        steps.append(st)
    if not steps:
        raise ScenarioError(f"{name}: no steps")
    return Scenario(name, Path(name).stem, tuple(steps))


def _parse_line(raw: str, where: str) -> Step | None:
    try:
        got = parse(raw)
    except ValueError as e:   # shlex (no closing quotation), as=UID not a number
        raise ScenarioError(f"{where}: {e}") from None
    if len(got) > 1:  # pragma: no cover - parse() works line by line
        raise ScenarioError(f"{where}: one step per line")
    return got[0] if got else None


def _from_json(text: str, name: str) -> Scenario:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ScenarioError(f"{name}: not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    if not isinstance(doc, dict):
        raise ScenarioError(f"{name}: the top level must be an object with \"steps\"")
    extra = set(doc) - TOP_KEYS
    if extra:
        raise ScenarioError(f"{name}: unknown key {sorted(extra)[0]!r} (allowed: {', '.join(sorted(TOP_KEYS))})")
    for key in ("title", "about", "source"):
        if key in doc and not isinstance(doc[key], str):
            raise ScenarioError(f"{name}: {key!r} must be a string")
    steps: list[Step] = []
    known: set[str] = set()
    sockets = doc.get("sockets", {})
    if not isinstance(sockets, dict):
        raise ScenarioError(f"{name}: \"sockets\" must be an object of name: kind")
    for sname, spec in sockets.items():
        where = f"{name}: socket {sname!r}"
        if not sname.isidentifier() or sname == "ns":
            raise ScenarioError(f"{where}: a socket name is a word (letters, digits, _), not 'ns'")
        if isinstance(spec, str):
            words = spec.split()
        elif isinstance(spec, dict):
            bad = set(spec) - {"kind", "options", "uid"}
            if bad or "kind" not in spec:
                raise ScenarioError(f"{where}: give \"kind\" and optionally \"options\" (a list) and \"uid\"")
            opts = spec.get("options", [])
            if not isinstance(opts, list) or not all(isinstance(o, str) for o in opts):
                raise ScenarioError(f"{where}: \"options\" must be a list of strings")
            words = [str(spec["kind"]), *opts]
            if "uid" in spec:
                if not isinstance(spec["uid"], int) or isinstance(spec["uid"], bool) or spec["uid"] < 0:
                    raise ScenarioError(f"{where}: \"uid\" must be a non-negative integer")
                words.append(f"uid={spec['uid']}")
        else:
            raise ScenarioError(f"{where}: give a kind string like \"tcp4 reuseaddr\" or an object")
        line = f"{sname} = {' '.join(words)}"
        st = Step(line, sname, "socket", tuple(words), None, None)
        _validate(st, known, where)
        steps.append(st)
    raw_steps = doc.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ScenarioError(f"{name}: \"steps\" must be a non-empty list")
    labels: dict[str, int] = {}
    notes: dict[int, str] = {}
    for n, item in enumerate(raw_steps, 1):
        where = f"{name}: step {n}"
        label = note = None
        if isinstance(item, str):
            line, expect = item, None
        elif isinstance(item, dict):
            bad = set(item) - STEP_KEYS
            if bad:
                raise ScenarioError(f"{where}: unknown key {sorted(bad)[0]!r} (allowed: {', '.join(sorted(STEP_KEYS))})")
            line, expect, label, note = item.get("do"), item.get("expect"), item.get("label"), item.get("note")
            if not isinstance(line, str):
                raise ScenarioError(f"{where}: \"do\" must be a step line such as \"a bind 127.0.0.1 80\"")
            for k, v in (("expect", expect), ("label", label), ("note", note)):
                if v is not None and not isinstance(v, str):
                    raise ScenarioError(f"{where}: {k!r} must be a string")
        else:
            raise ScenarioError(f"{where}: a step is a string or an object with \"do\"")
        if "\n" in line:
            raise ScenarioError(f"{where}: one step per string")
        st = _parse_line(line, where)
        if st is None:
            raise ScenarioError(f"{where}: empty step")
        if expect is not None:
            if st.want is not None and st.want != expect:
                raise ScenarioError(f"{where}: two expectations ({st.want!r} after -> and \"expect\": {expect!r})")
            st = replace(st, want=expect)
        _validate(st, known, where)
        idx = len(steps)
        if label is not None:
            if label in labels:
                raise ScenarioError(f"{where}: label {label!r} used twice")
            labels[label] = idx
        if note:
            notes[idx] = note
        steps.append(st)
    claims = []
    raw_claims = doc.get("claims", [])
    if not isinstance(raw_claims, list):
        raise ScenarioError(f"{name}: \"claims\" must be a list")
    for n, c in enumerate(raw_claims, 1):
        where = f"{name}: claim {n}"
        if not isinstance(c, dict) or set(c) - CLAIM_KEYS or not {"claim", "source", "predicts"} <= set(c):
            raise ScenarioError(f"{where}: give \"claim\", \"source\" and \"predicts\" (label: outcome)")
        pred = c["predicts"]
        if not isinstance(pred, dict) or not pred or not all(isinstance(v, str) for v in pred.values()):
            raise ScenarioError(f"{where}: \"predicts\" must map step labels to outcomes")
        for lab in pred:
            if lab not in labels:
                raise ScenarioError(f"{where}: predicts an unknown step label {lab!r}")
        if not isinstance(c["claim"], str) or not isinstance(c["source"], str):
            raise ScenarioError(f"{where}: \"claim\" and \"source\" must be strings")
        claims.append(Claim(c["claim"], c["source"], dict(pred), str(c.get("note", ""))))
    diffs = doc.get("differences", {})
    if not isinstance(diffs, dict) or not all(isinstance(v, str) and k in labels for k, v in diffs.items()):
        raise ScenarioError(f"{name}: \"differences\" must map step labels to explanations")
    return Scenario(name, doc.get("title", Path(name).stem), tuple(steps), doc.get("about", ""),
                    doc.get("source", ""), labels, notes, tuple(claims), dict(diffs))


# ------------------------------------------------------------------------------------------
# validation: every problem found before anything runs
# ------------------------------------------------------------------------------------------


def _validate(st: Step, known: set[str], where: str) -> None:
    problem = _problem(st, known)
    if problem:
        raise ScenarioError(f"{where}: {problem} in {st.line!r}")


def _port_ok(text: str) -> bool:
    return text.isdigit() and int(text) <= 65535


def _ipv4_ok(text: str) -> bool:
    import socket
    try:
        socket.inet_aton(text)
        return text.count(".") == 3
    except OSError:
        return False


def _num_ok(text: str) -> bool:
    try:
        return float(text) >= 0
    except ValueError:
        return False


def _problem(st: Step, known: set[str]) -> str | None:
    if st.op == "socket":
        if not st.target.isidentifier() or st.target == "ns":
            return f"bad socket name {st.target!r}"
        if not st.args or st.args[0] not in KINDS:
            return f"unknown socket kind (one of {', '.join(KINDS)})"
        for o in st.args[1:]:
            key, eq, val = o.partition("=")
            if key == "uid":
                if not val.isdigit():
                    return f"uid= needs a number, not {val!r}"
            elif key == "nonblock":
                if eq:
                    return "nonblock takes no value"
            elif key == "range":
                lo, dash, hi = val.partition("-")
                if not (dash and lo.isdigit() and hi.isdigit()):
                    return f"range= needs LO-HI, not {val!r}"
            elif key not in OPTIONS:
                return f"unknown socket option {o!r} (options: {', '.join([*OPTIONS, 'nonblock', 'uid=N'])})"
            elif eq and key not in TEXT_OPTIONS and not val.lstrip("-").isdigit():
                return f"option {key} needs a number, not {val!r}"
        known.add(st.target)
        return None
    if st.op == "accept":
        if st.target not in known:
            return f"accept on an unknown socket {st.target!r}"
        if not st.args[0].isidentifier() or st.args[0] == "ns":
            return f"bad socket name {st.args[0]!r}"
        known.add(st.args[0])
        return None
    a = st.args
    if st.target == "ns":
        if st.op not in NS_OPS:
            return f"unknown namespace step {st.op!r} (one of {', '.join(NS_OPS)})"
        lo, hi = NS_OPS[st.op]
        if not lo <= len(a) <= hi:
            return f"'ns {st.op}' takes {lo}" + (f" to {hi}" if hi != lo else "") + " arguments"
        if st.op in ("sleep", "advance") and not _num_ok(a[0]):
            return f"'ns {st.op}' needs seconds (a number >= 0), not {a[0]!r}"
        if st.op == "drain":
            unknown = [x for x in a if x not in known]
            if unknown:
                return f"unknown socket {unknown[0]!r}"
        return None
    if st.target not in known:
        return f"unknown socket {st.target!r} (create it first: '{st.target} = tcp4')"
    if st.op not in SOCKET_OPS:
        return f"unknown step {st.op!r} (one of {', '.join([*SOCKET_OPS, 'accept'])})"
    lo, hi = SOCKET_OPS[st.op]
    if not lo <= len(a) <= hi:
        return f"{st.op!r} takes {lo}" + (f" to {hi}" if hi != lo else "") + " arguments"
    if st.op in ("bind", "connect", "sendto"):
        if not _port_ok(a[1]):
            return f"bad port {a[1]!r} (0-65535)"
        if st.op != "sendto" and len(a) == 3 and not a[2].isdigit():
            return f"bad scope id {a[2]!r}"
    if st.op == "listen" and a and not a[0].lstrip("-").isdigit():
        return f"bad backlog {a[0]!r}"
    if st.op == "shutdown" and a[0] not in ("rd", "wr", "rdwr"):
        return "shutdown takes rd, wr or rdwr"
    if st.op == "timeout" and a[0] != "none" and not _num_ok(a[0]):
        return "timeout takes seconds or none"
    if st.op == "linger" and not all(x.lstrip("-").isdigit() for x in a):
        return "linger takes ONOFF SECONDS"
    if st.op in ("set", "get") and a[0] not in OPTIONS:
        return f"unknown option {a[0]!r} (one of {', '.join(OPTIONS)})"
    if st.op == "set" and a[0] not in TEXT_OPTIONS and not a[1].lstrip("-").isdigit():
        return f"option {a[0]} needs a number, not {a[1]!r}"
    if (st.op == "join" or (st.op == "set" and a[0] == "multicast_if")) and not all(
            _ipv4_ok(x) for x in (a if st.op == "join" else a[1:])):
        return "needs IPv4 addresses"
    return None


# ------------------------------------------------------------------------------------------
# judging
# ------------------------------------------------------------------------------------------


def is_out_of_scope(result: StepResult) -> bool:
    from ..model._errors import OutOfScope
    return isinstance(result.error, OutOfScope)


def _holds(predicted: str, got: str) -> bool:
    return got != predicted[1:] if predicted.startswith("!") else got == predicted


def judge(scenario: Scenario, claim: Claim, results: list[StepResult]) -> Verdict:
    """The claim's verdict from the scenario's outcomes (see the module header)."""
    idx = [scenario.labels[lab] for lab in claim.predicts]
    last = max(idx)
    for n, r in enumerate(results[:last + 1]):
        if is_out_of_scope(r):
            return Verdict(claim, NOT_MODELLED, tuple(_evidence(scenario, claim, results, n)),
                           f"{r.step.line}: {r.error}")
    ev = _evidence(scenario, claim, results, len(results))
    held = sum(e["held"] for e in ev)
    verdict = "true" if held == len(ev) else "false" if held == 0 else "partly"
    return Verdict(claim, verdict, tuple(ev))


def _evidence(scenario: Scenario, claim: Claim, results: list[StepResult], unmodelled_from: int
              ) -> list[dict[str, Any]]:
    """One entry per predicted step; ``modelled`` is False from the first OutOfScope step on
    (its outcome and ``held`` then mean nothing)."""
    out = []
    for lab, pred in claim.predicts.items():
        i = scenario.labels[lab]
        r = results[i] if i < len(results) else None
        got = r.outcome if r is not None else "(not run)"
        out.append({"label": lab, "step": scenario.steps[i].line, "predicted": pred, "outcome": got,
                    "held": _holds(pred, got) and i < unmodelled_from, "modelled": i < unmodelled_from,
                    "note": scenario.notes.get(i, "")})
    return out


def steps_text(steps: Iterable[Step]) -> str:
    """The steps as a step script (for ``portspace run`` of a JSON file in a text editor)."""
    return "\n".join(s.line if s.want is None or "->" in s.line else f"{s.line} -> {s.want}" for s in steps)

