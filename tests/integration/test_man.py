"""packaging/man: the five manual pages, checked against what they describe.

- Each page renders without a single groff warning (``groff -man -ww -z``).
- The OPTIONS of weibao-agent(8), weibaoctl(8) and weibao-stub(8) are the
  options of the program's own ``--help``, no more and no fewer; weibaoctl's
  COMMANDS are the words under "Commands:"; the EXIT STATUS values are those
  of the header comment of the program's main file, and the ENVIRONMENT
  names every ``getenv("WEIBAO_...")`` of its sources.
- weibao.conf(5) documents every setting of docs/rules.md's grammar (agent,
  central), of the snmptrap table in docs/snmp.md and of the sensors header
  comment, with the documented defaults and repeatability; weibao.rules(5)
  documents every statement of the grammar and of the statements table,
  every keyword, the built-in fields and every shipped default rule.
- The configuration and rules examples of the pages pass
  ``weibao-agent --check`` / ``--check-rules``.

The pages are parsed with a small roff reader (``plain`` below): escapes
such as ``\\-``, ``\\%``, ``\\fB`` are undone, so ``\\-\\-check`` in the source
compares equal to ``--check`` in ``--help``.
"""

import glob
import os
import re
import subprocess

import pytest

from conftest import ROOT, binary, require_tool

MAN = os.path.join(ROOT, "packaging", "man")
PAGES = ["weibao-agent.8", "weibaoctl.8", "weibao-stub.8", "weibao.conf.5", "weibao.rules.5"]
PROGRAM_PAGES = {"weibao-agent": "weibao-agent.8", "weibaoctl": "weibaoctl.8", "weibao-stub": "weibao-stub.8"}
# The file whose header comment states each program's exit codes.
MAIN_FILES = {"weibao-agent": "agent/main.c", "weibaoctl": "agent/weibaoctl.c",
              "weibao-stub": "server-stub/main.c"}

LONG_OPT = re.compile(r"(?<![\w-])--[A-Za-z][\w-]*")
SHORT_OPT = re.compile(r"(?<![\w-])-[A-Za-z](?![\w-])")


# ---- reading roff ------------------------------------------------------------

_SPECIAL = {"dq": '"', "aq": "'", "lq": '"', "rq": '"', "oq": "'", "cq": "'", "bu": "*",
            "de": "\u00b0", "ti": "~", "em": "--", "en": "-", "->": "->", "hy": "-", "mi": "-"}
_ESCAPE = re.compile(r"\\(\(..|\[[^\]]*\]|f(?:\(..|\[[^\]]*\]|.)|.)")
_ARG = re.compile(r'"((?:[^"]|"")*)"|(\S+)')
_FONT_MACROS = {"B", "I", "SM", "SB"}
_ALTERNATING = {"BR", "RB", "BI", "IB", "IR", "RI"}


def unescape(text):
    """Undoes the roff escapes of one line of text."""
    def repl(m):
        e = m.group(1)
        if e.startswith("f"):
            return ""
        if e.startswith("(") or e.startswith("["):
            name = e[1:] if e.startswith("(") else e[1:-1]
            return _SPECIAL.get(name, "?")
        return {"-": "-", "e": "\\", " ": " ", "~": " ", "0": " "}.get(e, "")
    return _ESCAPE.sub(repl, text)


def macro_args(rest):
    return [q.replace('""', '"') if q else w for q, w in _ARG.findall(rest)]


def plain_line(line):
    """One source line as text: comments and layout macros vanish, font
    macros leave their arguments (alternating ones joined without spaces)."""
    if line.startswith('.\\"') or line.startswith("'\\\""):
        return None
    m = re.match(r"^[.'](\w+)\s*(.*)$", line)
    if m:
        macro, rest = m.groups()
        if macro in _FONT_MACROS:
            line = " ".join(macro_args(rest))
        elif macro in _ALTERNATING:
            line = "".join(macro_args(rest))
        elif macro in ("SH", "SS", "TP", "IP", "TQ"):
            line = " ".join(macro_args(rest)) if macro in ("SH", "SS") else ""
        else:
            return None
    return unescape(line)


def plain(src):
    return "\n".join(p for p in (plain_line(ln) for ln in src.split("\n")) if p is not None)


def read_page(name):
    path = os.path.join(MAN, name)
    assert os.path.exists(path), f"{path} is missing"
    with open(path, encoding="ascii") as f:  # groff 1.22 wants ASCII input without preconv
        return f.read()


def sections(src, macro="SH"):
    """{heading: source of the section} for .SH (or .SS) headings, in order."""
    out, name, lines = {}, None, []
    for line in src.split("\n"):
        m = re.match(r"^\.%s\s+(.*)$" % macro, line)
        if m or (macro == "SS" and line.startswith(".SH")):
            if name is not None:
                out[name] = "\n".join(lines)
            name = unescape(" ".join(macro_args(m.group(1)))) if m else None
            lines = []
        elif name is not None:
            lines.append(line)
    if name is not None:
        out[name] = "\n".join(lines)
    return out


def section(src, name, macro="SH"):
    secs = sections(src, macro)
    assert name in secs, f"no .{macro} {name} (have: {list(secs)})"
    return secs[name]


def tagged_items(src):
    """The .TP items of a section: [(tag text, body text)]."""
    items, lines = [], src.split("\n")
    i = 0
    while i < len(lines):
        if lines[i].startswith(".TP"):
            tag = plain_line(lines[i + 1]) if i + 1 < len(lines) else ""
            body, j = [], i + 2
            while j < len(lines) and not re.match(r"^\.(TP|SH|SS)\b", lines[j]):
                p = plain_line(lines[j])
                if p is not None:
                    body.append(p)
                j += 1
            items.append(((tag or "").strip(), " ".join(body)))
            i = j
        else:
            i += 1
    return items


def has_word(text, word):
    return re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(word), text) is not None


def examples(src):
    """The text of every .EX/.EE block."""
    return [unescape(b) for b in re.findall(r"^\.EX\n(.*?)^\.EE", src, re.S | re.M)]


def require_groff():
    require_tool("groff", "groff-base")


def help_text(program):
    r = subprocess.run([binary(program), "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r
    return r.stdout


def options_of(text):
    return set(LONG_OPT.findall(text)) | set(SHORT_OPT.findall(text))


def read_source(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


# ---- the reader itself ---------------------------------------------------------


def test_reader_undoes_escapes():
    assert plain_line('.BR \\-c ", " \\-\\-config " \\fIfile\\fR"') == "-c, --config file"
    assert plain_line(r".B \%weibao\-agent \-\-check") == "weibao-agent --check"
    assert plain_line(r"\fB\-\-check\-rules\fP \e \(dqx\(dq") == '--check-rules \\ "x"'
    assert plain_line('.\\" a comment --secret') is None
    assert options_of("  -c, --config FILE  [-s SOCKET] weibao-stub 127.0.0.1 --check-rules FILE..") == \
        {"-c", "--config", "-s", "--check-rules"}


# ---- rendering -----------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_without_warnings(page):
    require_groff()
    path = os.path.join(MAN, page)
    assert os.path.exists(path), f"{path} is missing"
    r = subprocess.run(["groff", "-man", "-ww", "-z", "-Tutf8", path], capture_output=True, text=True,
                       timeout=60)
    assert r.stderr == "", r.stderr
    assert r.returncode == 0


@pytest.mark.parametrize("page", PAGES)
def test_page_header_and_name_line(page):
    src = read_page(page)
    name, sect = page.rsplit(".", 1)
    m = re.search(r"^\.TH\s+(\S+)\s+(\d)\s", src, re.M)
    assert m, "no .TH line"
    assert (m.group(1), m.group(2)) == (name.upper(), sect)
    name_line = plain(section(src, "NAME")).strip()
    # whatis/lexgrog format: "name[, name] - description"
    assert re.match(r"^%s(, [\w.-]+)* - \S" % re.escape(name), name_line), name_line


@pytest.mark.parametrize("page", PAGES)
def test_cross_references_name_existing_pages(page):
    text = plain(read_page(page))
    refs = set(re.findall(r"(?<![\w-])(weibao[\w.-]*)\s?\(([1-8])\)", text))
    assert refs, "no weibao cross-references at all"
    for name, sect in refs:
        assert os.path.exists(os.path.join(MAN, f"{name}.{sect}")), f"{page} refers to {name}({sect})"
    src = read_page(page)
    assert "SEE ALSO" in sections(src)


# ---- the programs ----------------------------------------------------------------


@pytest.mark.parametrize("program", sorted(PROGRAM_PAGES))
def test_every_help_option_is_in_the_page(program):
    opts = options_of(help_text(program))
    assert "--help" in opts, f"could not parse the options of {program} --help"
    text = plain(read_page(PROGRAM_PAGES[program]))
    missing = sorted(o for o in opts if not has_word(text, o))
    assert not missing, f"{PROGRAM_PAGES[program]} does not mention {missing}"


@pytest.mark.parametrize("program", sorted(PROGRAM_PAGES))
def test_options_section_documents_exactly_the_help_options(program):
    opts = options_of(help_text(program))
    src = read_page(PROGRAM_PAGES[program])
    items = tagged_items(section(src, "OPTIONS"))
    documented = set()
    for tag, body in items:
        found = options_of(tag)
        assert found, f"OPTIONS item without an option: {tag!r}"
        assert body.strip(), f"OPTIONS item {tag!r} has no description"
        documented |= found
    assert documented == opts, (f"OPTIONS of {PROGRAM_PAGES[program]}: only in the page "
                                f"{sorted(documented - opts)}, only in --help {sorted(opts - documented)}")


def test_weibaoctl_commands_match_help():
    lines = help_text("weibaoctl").split("\n")
    start = lines.index("Commands:") + 1
    commands = []
    for line in lines[start:]:
        if not line.strip():
            break
        commands.append(line.split()[0])
    assert "status" in commands and "reload" in commands, commands
    src = read_page("weibaoctl.8")
    items = tagged_items(section(src, "COMMANDS"))
    documented = [tag.split()[0] for tag, _ in items]
    assert sorted(documented) == sorted(commands), (documented, commands)
    for tag, body in items:
        assert body.strip(), f"command {tag!r} has no description"
    synopsis = plain(section(src, "SYNOPSIS"))
    assert "command" in synopsis


@pytest.mark.parametrize("program", sorted(PROGRAM_PAGES))
def test_exit_status_matches_the_source(program):
    header = read_source(MAIN_FILES[program]).split("*/", 1)[0]
    m = re.search(r"Exit codes:(.*?)(?:\.\s*$|\*/|$)", header.replace("\n *", " "), re.S)
    assert m, f"no 'Exit codes:' in the header comment of {MAIN_FILES[program]}"
    codes = set(re.findall(r"(?<![\w.])(\d)(?= [a-z(])", m.group(1)))
    assert codes >= {"0", "1", "2"}, (m.group(1), codes)
    items = tagged_items(section(read_page(PROGRAM_PAGES[program]), "EXIT STATUS"))
    documented = {tag for tag, _ in items}
    assert documented == codes, (documented, codes)


def _getenv_names(paths):
    names = set()
    for path in paths:
        names |= set(re.findall(r'getenv\("(WEIBAO_\w+)"\)', read_source(path)))
    return names


def test_agent_environment_names_every_getenv():
    sources = [os.path.relpath(p, ROOT) for d in ("agent", "collectors", "lib", "rules")
               for p in glob.glob(os.path.join(ROOT, d, "*.c"))]
    agent_sources = [p for p in sources if not p.endswith("weibaoctl.c")]
    names = _getenv_names(agent_sources)
    assert {"WEIBAO_SENDER", "WEIBAO_SNMP_MODULE"} <= names, names
    env = plain(section(read_page("weibao-agent.8"), "ENVIRONMENT"))
    assert not [n for n in names if not has_word(env, n)], (names, env)
    ctl = _getenv_names(["agent/weibaoctl.c"])
    ctl_env = plain(section(read_page("weibaoctl.8"), "ENVIRONMENT"))
    assert ctl and not [n for n in ctl if not has_word(ctl_env, n)], (ctl, ctl_env)


def test_agent_page_sections_and_systemd():
    src = read_page("weibao-agent.8")
    for name in ("SYNOPSIS", "DESCRIPTION", "OPTIONS", "SIGNALS", "EXIT STATUS", "FILES", "ENVIRONMENT",
                 "SEE ALSO"):
        assert name in sections(src), name
    signals = plain(section(src, "SIGNALS"))
    for sig in ("SIGHUP", "SIGTERM", "SIGINT"):
        assert has_word(signals, sig), sig
    files = plain(section(src, "FILES"))
    for path in ("/etc/weibao/agent.conf", "/var/lib/weibao", "/run/weibao/control.sock",
                 "/usr/share/weibao/mibs", "weibao-sender", "weibao-snmp.so"):
        assert path in files, path
    # What the page says of systemd is what the shipped units do.
    text = plain(src)
    service = read_source("packaging/systemd/weibao-agent.service")
    socket_unit = read_source("packaging/systemd/weibao-agent.socket")
    assert re.search(r"^Type=notify$", service, re.M) and "Type=notify" in text
    assert re.search(r"^WatchdogSec=", service, re.M) and "WatchdogSec=" in text
    port = re.search(r"^ListenDatagram=(\d+)$", socket_unit, re.M).group(1)
    assert "weibao-agent.socket" in text and re.search(r"UDP port %s\b" % port, text)
    # systemctl reload runs what the page says, and waits for it
    reload_cmd = re.search(r"^ExecReload=/usr/sbin/(.*)$", service, re.M).group(1)
    assert re.search(r"systemctl reload weibao-agent\s+runs\s+%s\b" % re.escape(reload_cmd).replace("\\ ", "\\s+"), text), text
    assert "ExecReload=" in plain(read_page("weibaoctl.8")) and reload_cmd == "weibaoctl reload"


# ---- weibao.conf(5) ------------------------------------------------------------


def _ebnf():
    m = re.search(r"```ebnf\n(.*?)```", read_source("docs/rules.md"), re.S)
    assert m, "no ebnf block in docs/rules.md"
    return m.group(1)


def _production(ebnf, name):
    m = re.search(r"^%s\s*=(.*?);\s*(?:\(\*.*?\*\))?\s*$" % re.escape(name), ebnf, re.S | re.M)
    assert m, f"no production {name} in docs/rules.md"
    return m.group(1)


def _alternative_heads(production):
    """The first quoted word of each alternative, with groups and comments removed."""
    flat = production
    while True:
        new = re.sub(r"\([^()]*\)", " ", flat)
        if new == flat:
            break
        flat = new
    return re.findall(r'(?:^|[|{])\s*"(\w+)"', flat)


def _conf_items(sub_src):
    """{setting: body} of a block's .TP items; the tag's first word is the setting."""
    return {tag.split()[0]: body for tag, body in tagged_items(sub_src)}


def test_conf_agent_and_central_settings_from_the_grammar():
    ebnf = _ebnf()
    src = read_page("weibao.conf.5")
    for block, prod in (("agent", "agent-set"), ("central", "central"), ("cases", "cases")):
        settings = [s for s in _alternative_heads(_production(ebnf, prod)) if s != block]
        assert len(settings) >= 5, (block, settings)
        items = _conf_items(section(src, f"THE {block.upper()} BLOCK"))
        assert sorted(items) == sorted(settings), (block, sorted(items), sorted(settings))
    assert "occurrence_interval" in _conf_items(section(src, "THE CENTRAL BLOCK"))


def test_conf_defaults_from_docs():
    m = re.search(r"^## agent\.conf\n+```\n(.*?)```", read_source("docs/rules.md"), re.S | re.M)
    assert m, "no agent.conf example in docs/rules.md"
    defaults = re.findall(r"^\s+(\w+)\s+(\"[^\"]*\"|\S+)\s+#\s*(?:default|required)\b(?!:\s*/)", m.group(1), re.M)
    defaults = [(k, v.strip('"')) for k, v in defaults]
    assert ("timeout", "10s") in defaults and ("occurrence_interval", "1m") in defaults, defaults
    src = read_page("weibao.conf.5")
    items = {**_conf_items(section(src, "THE AGENT BLOCK")), **_conf_items(section(src, "THE CENTRAL BLOCK")),
             **_conf_items(section(src, "THE CASES BLOCK"))}
    for key, value in defaults:
        assert key in items, key
        if key in ("url", "token_file"):
            assert "Required." in items[key], key
        else:
            assert value in items[key], f"{key}: default {value} not in {items[key]!r}"


def _snmp_settings():
    text = read_source("docs/snmp.md")
    sec = re.search(r"^## Settings\n(.*?)^## ", text, re.S | re.M).group(1)
    rows = re.findall(r"^\| `(\w+)` \| ([^|]*) \|", sec, re.M)
    block = re.search(r"```\n(collector snmptrap \{.*?)```", sec, re.S).group(1)
    repeatable = set(re.findall(r"^\s+(\w+) .*#\s*repeatable", block, re.M))
    return rows, repeatable


def test_conf_snmptrap_settings_from_snmp_md():
    rows, repeatable = _snmp_settings()
    assert len(rows) >= 10 and {"listen", "community", "users_file"} <= {r[0] for r in rows}, rows
    src = read_page("weibao.conf.5")
    sub = section(section(src, "COLLECTOR BLOCKS") + "\n.SH END", "collector snmptrap", "SS")
    items = _conf_items(sub)
    assert set(items) == {r[0] for r in rows} | {"enabled"}, sorted(items)
    for name, default in rows:
        body = items[name]
        assert "Default:" in body, name
        for token in (t.strip().strip("`") for t in default.split(",")):
            if "<" in token:
                continue  # a placeholder such as weibao:<agent id>, said in words
            assert token.lower() in body.lower(), f"{name}: default {token!r} not in {body!r}"
        assert ("Repeatable" in body) == (name in repeatable), name
    rep_text = plain(section(src, "Repeated settings", "SS"))
    for name in repeatable:
        assert has_word(rep_text, name), name


def test_conf_process_settings_from_process_md():
    """Every row of docs/process.md's settings table is a .TP item of the
    page's collector process section with its default, and nothing more."""
    text = read_source("docs/process.md")
    sec = re.search(r"^## Settings\n(.*?)^### ", text, re.S | re.M).group(1)
    rows = re.findall(r"^\| `(\w+)` \| ([^|]*) \|", sec, re.M)
    assert len(rows) >= 8 and {"watch", "grace", "crash_loop_window"} <= {r[0] for r in rows}, rows
    src = read_page("weibao.conf.5")
    sub = section(section(src, "COLLECTOR BLOCKS") + "\n.SH END", "collector process", "SS")
    items = _conf_items(sub)
    assert set(items) == {r[0] for r in rows}, sorted(items)
    for name, default in rows:
        default = default.strip().strip("`")
        if default in ("—", "-"):
            assert "repeatable" in items[name].lower(), name
            continue
        assert "Default:" in items[name], name
        assert default.lower() in items[name].lower(), f"{name}: default {default!r} not in {items[name]!r}"
    rep_text = plain(section(src, "Repeated settings", "SS"))
    assert has_word(rep_text, "watch")


def test_conf_sensors_settings_from_the_collector():
    header = read_source("collectors/sensors.c").split("*/", 1)[0]
    block = re.search(r"Settings, in \"collector sensors.*?\n((?: \*   .*\n| \*\s{4,}.*\n)+)", header).group(1)
    settings = dict(re.findall(r"^ \*   (\w+)\s+.*?default (\w+)", block.replace("\n *            ", " "),
                               re.M))
    assert len(settings) >= 3 and "interval" in settings, settings
    src = read_page("weibao.conf.5")
    sub = section(section(src, "COLLECTOR BLOCKS") + "\n.SH END", "collector sensors", "SS")
    items = _conf_items(sub)
    assert set(items) == set(settings) | {"enabled"}, sorted(items)
    for name, default in settings.items():
        assert re.search(r"Default: [^.]*\b%s\b" % re.escape(default), items[name]), (name, default, items[name])


def test_conf_examples_pass_check(tmp_path):
    agent = binary("weibao-agent")
    blocks = [b for b in examples(read_page("weibao.conf.5")) if re.search(r"^central \{", b, re.M)]
    assert len(blocks) >= 2, "expected a complete and a small configuration example"
    for i, text in enumerate(blocks):
        d = tmp_path / f"ex{i}"
        d.mkdir()
        for path in re.findall(r'(?:token_file|users_file)\s+"([^"/][^"]*)"', text):
            (d / path).write_text("secret-token\n" if "token" in path else "# no users\n")
            os.chmod(d / path, 0o600)
        (d / "rules.d").mkdir()  # the default rules glob is rules.d/*.rules
        for pattern in re.findall(r'rules\s+"([^"/][^"]*)"', text):
            (d / os.path.dirname(pattern)).mkdir(parents=True, exist_ok=True)
        (d / "agent.conf").write_text(text)
        r = subprocess.run([agent, "--check", "--config", str(d / "agent.conf")], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, f"example {i}:\n{text}\n{r.stderr}"


# ---- weibao.rules(5) -------------------------------------------------------------


def _statement_heads():
    """Statement heads ("when", "clear after", ...) of the grammar's rule-stmt."""
    prod = _production(_ebnf(), "rule-stmt")
    flat = re.sub(r"\(\*.*?\*\)", " ", prod)
    while True:  # drop groups such as ("P1"|"P2"|...), which are values, not statements
        new = re.sub(r"\([^()]*\)", " ", flat)
        if new == flat:
            break
        flat = new
    heads = []
    for alt in flat.split("|"):
        words = re.findall(r'^\s*"(\w+)"(?:\s+"(\w+)")?', alt)
        if words:
            first, second = words[0]
            heads.append(f"{first} {second}" if second else first)
    return heads


def _statement_table():
    """[(head, required)] from the statements table of docs/rules.md."""
    text = read_source("docs/rules.md")
    m = re.search(r"^\| statement \| required \| meaning \|\n\|[-|]+\|\n((?:\|.*\n)+)", text, re.M)
    assert m, "no statements table in docs/rules.md"
    rows = []
    for cell, req in re.findall(r"^\| `([^`]*)` \| (\w+) \|", m.group(1), re.M):
        words = []
        for w in cell.split():
            if not re.fullmatch(r"[a-z]+", w):
                break
            words.append(w)
        rows.append((" ".join(words), req == "yes"))
    return rows


def _statement_items():
    return tagged_items(section(read_page("weibao.rules.5"), "STATEMENTS"))


def _item_for(head, items, heads):
    """The item whose tag starts with head and not with a longer head."""
    longer = [h for h in heads if h != head and h.startswith(head + " ")]
    for tag, body in items:
        if (tag == head or tag.startswith(head + " ")) and not any(tag.startswith(h) for h in longer):
            return tag, body
    return None


def test_rules_statements_from_grammar_and_table():
    heads = _statement_heads()
    assert {"when", "for", "clear", "clear after", "level", "key", "title", "description"} <= set(heads), heads
    table = _statement_table()
    assert {h for h, _ in table} == set(heads), (table, heads)
    items = _statement_items()
    assert len(items) == len(set(heads)), [t for t, _ in items]
    for head, required in table:
        item = _item_for(head, items, heads)
        assert item, f"no STATEMENTS item for {head!r}"
        assert ("Required." in item[1]) == required, (head, item)


def test_rules_keywords_fields_and_map_attributes():
    doc = read_source("docs/rules.md")
    m = re.search(r"Keywords \(one sorted table in `rules/lexer\.c`\): `([^`]*)`", doc.replace("\n", " "))
    assert m, "keyword list not found in docs/rules.md"
    keywords = m.group(1).split()
    assert "when" in keywords and "exists" in keywords, keywords
    src = read_page("weibao.rules.5")
    lex = plain(section(src, "LEXICAL STRUCTURE"))
    assert not [k for k in keywords if not has_word(lex, k)]
    builtins = re.findall(r"`(\w+)`", re.search(r"^- Built-ins: (.*?)\.$", doc, re.M | re.S).group(1))
    assert "value" in builtins and "source" in builtins, builtins
    fields = " ".join(tag for tag, _ in tagged_items(section(src, "FIELDS")))
    assert not [b for b in builtins if not has_word(fields, b)], (builtins, fields)
    text = plain(src)
    assert 'varbind["IF-MIB::ifIndex"]' in text and "{varbind[IF-MIB::ifIndex]}" in text
    for name in ("THE STATE MACHINE", "TEMPLATES", "CONDITIONS", "DEFAULT RULES", "EXAMPLES"):
        assert name in sections(src), name
    states = plain(section(src, "THE STATE MACHINE"))
    for state in ("idle", "pending", "firing", "clearing"):
        assert has_word(states, state), state


def test_rules_page_lists_every_default_rule():
    src = read_page("weibao.rules.5")
    defaults = section(src, "DEFAULT RULES") + "\n.SH END"
    files = sorted(glob.glob(os.path.join(ROOT, "rules", "default", "*.rules")))
    assert files
    for path in files:
        base = os.path.basename(path)
        sub = plain(section(defaults, base, "SS"))
        with open(path, encoding="utf-8") as f:
            names = re.findall(r"^rule\s+(\S+)\s*\{", f.read(), re.M)
        assert names, path
        missing = [n for n in names if not has_word(sub, n)]
        assert not missing, f"{base}: {missing} not in weibao.rules(5)"


def test_rules_examples_pass_check_rules(tmp_path):
    agent = binary("weibao-agent")
    blocks = [b for b in examples(read_page("weibao.rules.5")) if b.startswith("rule ")]
    assert len(blocks) >= 2
    for i, text in enumerate(blocks):
        path = tmp_path / f"ex{i}.rules"
        path.write_text(text)
        r = subprocess.run([agent, "--check-rules", str(path)], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, f"example {i}:\n{text}\n{r.stderr}"
