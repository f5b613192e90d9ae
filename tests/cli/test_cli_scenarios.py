"""``portspace run``, ``matrix`` and ``claims`` called as ``main([...])``: outcomes, reasons,
tables, JSON parsed back, exit statuses, and bad arguments (exit 2, one line, no traceback)."""
from __future__ import annotations

import json

import pytest

import portspace.live
from portspace.cli import main
from portspace.cli._scenarios import example_names, load_example
from portspace.diff import run_script
from portspace.diff._matrix import LABELS
from portspace.diff._scenario import VERDICTS
from tests.model.test_bind_matrix import EXPECTED

SEED000 = """\
a = udp4
b = udp4
a bind 127.0.0.1 5556 -> OK
b bind 127.0.0.1 5556 -> EADDRINUSE
t = tcp4
t bind 127.0.0.1 5556 -> OK
"""


def _one_line_error(capsys, argv, *must):
    """Exit 2 (returned, or argparse's SystemExit(2) as for the other subcommands), one line."""
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err + out
    for m in must:
        assert m in err, err
    return err


# -- run --------------------------------------------------------------------------------------

def test_run_steps_file_outcomes_and_reasons(tmp_path, capsys):
    f = tmp_path / "seed000.steps"
    f.write_text(SEED000)
    assert main(["run", str(f)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    step = next(ln for ln in lines if "b bind 127.0.0.1 5556" in ln)
    assert step.split()[-1] == "EADDRINUSE"
    why = lines[lines.index(step) + 1]
    assert why.strip().startswith("why: [") and "blocked by socket #3" in why
    assert "3 of 3 expected outcomes met" in out


def test_run_json_parses_and_matches_the_model(tmp_path, capsys):
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"sockets": {"a": "udp4", "b": "udp4"},
                             "steps": ["a bind 127.0.0.1 5556 -> OK",
                                       {"do": "b bind 127.0.0.1 5556", "expect": "EADDRINUSE", "label": "x"}]}))
    assert main(["run", str(f), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True and doc["sides"] == ["model"]
    assert [s["step"] for s in doc["steps"]] == ["a = udp4", "b = udp4", "a bind 127.0.0.1 5556", "b bind 127.0.0.1 5556"]
    last = doc["steps"][-1]
    assert last["label"] == "x" and last["model"]["outcome"] == "EADDRINUSE"
    assert last["model"]["reasons"][0]["blocker"]["fd"] == 3


def test_run_unmet_expectation_exits_1(tmp_path, capsys):
    f = tmp_path / "wrong.steps"
    f.write_text(SEED000.replace("-> EADDRINUSE", "-> OK"))
    assert main(["run", str(f)]) == 1
    out = capsys.readouterr().out
    assert "EXPECTED OK" in next(ln for ln in out.splitlines() if "b bind" in ln)
    assert main(["run", str(f), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["ok"] is False


def test_run_tables_after_each_step(tmp_path, capsys):
    f = tmp_path / "seed000.steps"
    f.write_text(SEED000)
    assert main(["run", str(f), "--tables"]) == 0
    out = capsys.readouterr().out
    after_tcp = out.split("t bind 127.0.0.1 5556")[1]
    assert "port 5556" in after_tcp.split("UDP sockets")[0]          # the TCP bucket appeared
    assert "(tables unchanged)" in out.split("b bind 127.0.0.1 5556")[1].split("t = tcp4")[0]
    assert main(["run", str(f), "--tables", "--json"]) == 0
    steps = json.loads(capsys.readouterr().out)["steps"]
    assert [b["port"] for b in steps[-1]["tables"]["tcp_bhash"]] == [5556]
    assert steps[0]["tables"]["tcp_bhash"] == []


def test_run_list_and_example(capsys):
    assert main(["run", "--list"]) == 0
    listed = [ln.split()[0] for ln in capsys.readouterr().out.splitlines()]
    assert listed == example_names()
    assert main(["run", "--example", "tcp-two-addresses", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["steps"]) == len(load_example("tcp-two-addresses").steps)


def test_run_kernel_unavailable_is_one_line(monkeypatch, capsys, tmp_path):
    import portspace.live._kernel as k
    monkeypatch.setattr(k, "_probe_result", ("unshare(CLONE_NEWNET) needs root",))
    f = tmp_path / "s.steps"
    f.write_text(SEED000)
    _one_line_error(capsys, ["run", str(f), "--kernel"], "needs root", "without --kernel")
    _one_line_error(capsys, ["run", str(f), "--diff"], "needs root")
    _one_line_error(capsys, ["claims", "--kernel"], "needs root")
    _one_line_error(capsys, ["matrix", "--kernel"], "needs root")


@pytest.mark.kernel
def test_run_kernel_and_diff(tmp_path, capsys):
    if portspace.live.probe() is not None:
        pytest.skip(portspace.live.probe())
    f = tmp_path / "seed000.steps"
    f.write_text(SEED000)
    assert main(["run", str(f), "--kernel", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["sides"] == ["kernel"] and doc["steps"][3]["kernel"]["outcome"] == "EADDRINUSE"
    assert main(["run", str(f), "--diff"]) == 0
    assert "model vs kernel: 0 steps differ" in capsys.readouterr().out
    # the shipped delivery example now runs the same on both sides
    assert main(["run", "--example", "udp-client-ports", "--diff"]) == 0
    assert "model vs kernel: 0 steps differ" in capsys.readouterr().out
    # a step the model refuses to guess (a TCP/IPv6 socket that sent a SYN to a v4-mapped
    # address, then connects to a native IPv6 address: Linux loses that SYN): marked, exit 1
    g = tmp_path / "unmodelled.steps"
    g.write_text("s = tcp6\ns timeout 0.3\ns connect ::ffff:127.0.0.1 5999 -> ECONNREFUSED\n"
                 "s connect ::1 5999 -> ECONNABORTED\ns connect ::1 5999 -> TimeoutError: timed out\ns name\n")
    assert main(["run", str(g), "--diff", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    differing = [s["n"] for s in doc["steps"] if s["differs"]]
    first_oos = min(s["n"] for s in doc["steps"] if s["model"]["out_of_scope"])
    assert differing and min(differing) == first_oos   # differences only from the unmodelled send on
    assert all(s["kernel"]["met"] for s in doc["steps"])


BAD_FILES = [
    ("bad.json", "{", "not valid JSON"),
    ("top.json", "[1]", "top level"),
    ("key.json", '{"steps": ["a = tcp4"], "foo": 1}', "unknown key 'foo'"),
    ("nosteps.json", '{"steps": []}', "non-empty"),
    ("undef.json", '{"steps": ["a = tcp4", "b bind 127.0.0.1 80"]}', "step 2: unknown socket 'b'"),
    ("op.json", '{"sockets": {"a": "tcp4"}, "steps": ["a frob"]}', "step 1: unknown step 'frob'"),
    ("port.json", '{"sockets": {"a": "tcp4"}, "steps": ["a bind 127.0.0.1 99999"]}', "step 1: bad port '99999'"),
    ("kind.json", '{"sockets": {"a": "sctp4"}, "steps": ["a close"]}', "socket 'a': unknown socket kind"),
    ("opt.json", '{"sockets": {"a": "tcp4 reuse"}, "steps": ["a close"]}', "unknown socket option 'reuse'"),
    ("label.json", '{"sockets": {"a": "tcp4"}, "steps": ["a close"], "claims": '
                   '[{"claim": "c", "source": "s", "predicts": {"nope": "OK"}}]}', "unknown step label 'nope'"),
    ("two.json", '{"sockets": {"a": "tcp4"}, "steps": [{"do": "a close -> OK", "expect": "EINVAL"}]}',
     "two expectations"),
    ("sleep.steps", "ns sleep soon\n", "line 1: 'ns sleep' needs seconds"),
    ("quote.steps", "a = tcp4\na bind 'x 80\n", "line 2: No closing quotation"),
    ("args.steps", "a = tcp4\n\n# comment\na listen 1 2\n", "line 4: 'listen' takes 0 to 1 arguments"),
]


@pytest.mark.parametrize("fname,text,problem", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_run_bad_file_is_one_line_naming_file_and_step(tmp_path, capsys, fname, text, problem):
    f = tmp_path / fname
    f.write_text(text)
    _one_line_error(capsys, ["run", str(f)], str(f), problem)


def test_run_bad_arguments(tmp_path, capsys):
    _one_line_error(capsys, ["run"], "FILE")
    _one_line_error(capsys, ["run", str(tmp_path / "missing.json")], "missing.json", "cannot read")
    _one_line_error(capsys, ["run", "--example", "nope"], "no example scenario 'nope'")
    _one_line_error(capsys, ["run", "x.json", "--kernel", "--diff"], "not allowed with")
    _one_line_error(capsys, ["run", "--example", "seed000-udp-and-tcp", "--kernel", "--tables"], "--tables")
    _one_line_error(capsys, ["run", "x", "--seed", "many"], "invalid int")


# -- matrix -----------------------------------------------------------------------------------

def test_matrix_json_is_the_recorded_kernel_matrix(capsys):
    """Computed by the model, equal to tests/data/bind_matrix.txt (the live kernel's tables)."""
    for proto in ("tcp", "udp"):
        assert main(["matrix", "--proto", proto, "--mode", "all", "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["labels"] == LABELS and doc["checked_on_kernel"] is False
        assert len(doc["tables"]) == (12 if proto == "tcp" else 6)
        for t in doc["tables"]:
            for a in LABELS:
                for b in LABELS:
                    assert t["rows"][a][b] == EXPECTED[(proto.upper(), t["mode"], t["first_listening"], a, b)]


def test_matrix_text_matches_json(capsys):
    assert main(["matrix", "--proto", "udp", "--mode", "reuseport/uid", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["tables"][0]["rows"]
    assert main(["matrix", "--proto", "udp", "--mode", "reuseport/uid"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("UDP, SO_REUSEPORT on both, the second socket of uid 1000")
    assert out[1].split()[3:] == LABELS
    for line, a in zip(out[2:10], LABELS):
        assert line.split() == [a, *(rows[a][b] for b in LABELS)]


@pytest.mark.kernel
def test_matrix_kernel_no_differences(capsys):
    if portspace.live.probe() is not None:
        pytest.skip(portspace.live.probe())
    assert main(["matrix", "--mode", "reuseaddr", "--kernel", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["checked_on_kernel"] and doc["differences"] == 0
    assert all(t["kernel_rows"] == t["rows"] for t in doc["tables"])


def test_matrix_bad_arguments(capsys):
    _one_line_error(capsys, ["matrix", "--proto", "sctp"], "invalid choice")
    _one_line_error(capsys, ["matrix", "--mode", "sometimes"], "invalid choice")
    _one_line_error(capsys, ["matrix", "extra"], "unrecognized arguments")


# -- claims -----------------------------------------------------------------------------------

def test_claims_json_every_claim_with_a_computed_verdict(capsys):
    assert main(["claims", "--json"]) == 0
    claims = json.loads(capsys.readouterr().out)
    shipped = {(c.claim, n + ".json") for n in example_names() for c in load_example(n).claims}
    assert {(c["claim"], c["scenario"]) for c in claims} == shipped
    for c in claims:
        assert c["verdict"] in VERDICTS
        held = [e["held"] for e in c["evidence"]]
        if c["verdict"] != "not modelled yet":
            assert all(e["modelled"] for e in c["evidence"])
            assert c["verdict"] == ("true" if all(held) else "false" if not any(held) else "partly")
        else:
            assert "not modelled yet" in c["why"] and not all(e["modelled"] for e in c["evidence"])


def test_claims_verdict_follows_the_outcomes(monkeypatch, capsys):
    """Not hard-coded: change what the kernel (model) does on a decisive step and the verdict moves."""
    import portspace.diff._script as script
    real = script._run_step

    def lying(ns, socks, st):
        r = real(ns, socks, st)
        if st.line == "t bind 127.0.0.1 5556":   # seed 000's TCP bind beside the UDP socket
            return script.StepResult(st, "EADDRINUSE", None)
        return r
    monkeypatch.setattr(script, "_run_step", lying)
    assert main(["claims", "--json"]) == 0
    belief = next(c for c in json.loads(capsys.readouterr().out) if c["claim"].startswith("Only one socket of any kind"))
    assert belief["verdict"] == "true"


def test_claims_text(capsys):
    assert main(["claims"]) == 0
    out = capsys.readouterr().out
    for n in example_names():
        for c in load_example(n).claims:
            assert f'"{c.claim}"' in out
    # with delivery modelled every claim gets a verdict
    assert "[NOT MODELLED YET]" not in out and "[PARTLY]" in out and "[FALSE]" in out and "[TRUE]" in out
    assert "scenario: portspace run --example seed000-udp-and-tcp" in out


@pytest.mark.kernel
@pytest.mark.slow
def test_claims_kernel(capsys):
    if portspace.live.probe() is not None:
        pytest.skip(portspace.live.probe())
    assert main(["claims", "--kernel", "--json"]) == 0
    for c in json.loads(capsys.readouterr().out):
        assert c["kernel"]["verdict"] in ("true", "false", "partly")
        assert c["verdict"] in (c["kernel"]["verdict"], "not modelled yet")


def test_claims_bad_arguments(capsys):
    _one_line_error(capsys, ["claims", "--bogus"], "unrecognized arguments")


# -- help and the rest ------------------------------------------------------------------------

@pytest.mark.parametrize("cmd", ["run", "matrix", "claims", "demo", "ls", "explain", "ports"])
def test_every_subcommand_has_help_with_an_example(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out and f"portspace {cmd}" in out.split("example", 1)[1]


def test_unknown_command_is_one_line(capsys):
    _one_line_error(capsys, ["frobnicate"], "invalid choice")


def test_demo_still_works(capsys):
    assert main(["demo", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"][1]["outcome"].startswith("[Errno 98]")


_ = run_script


def test_readme_shows_real_run_tables_output(capsys):
    """The README's seed-000 `portspace run --tables` block is this command's actual output."""
    from pathlib import Path
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("$ portspace run --example seed000-udp-and-tcp --tables</code></summary>\n\n```\n", 1)[1]
    block = block.split("\n```", 1)[0]
    assert main(["run", "--example", "seed000-udp-and-tcp", "--tables"]) == 0
    assert capsys.readouterr().out.rstrip() == block.rstrip()


def test_readme_claims_excerpt_is_real_output(capsys):
    from pathlib import Path
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("the verdict computed from the outcomes, and the steps that decide it:\n\n```\n", 1)[1]
    block = block.split("\n...\n```", 1)[0]
    assert main(["claims"]) == 0
    assert capsys.readouterr().out.startswith(block)
