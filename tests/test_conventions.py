"""Conventions of a command-line tool: examples in every --help, a man page written from
the parser and installed with the package, and bash and zsh completion generated from
the parser and the filter language, driven here in the real shells."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bufmon.cli import COMMANDS, build_parser, with_command
from bufmon.clidoc import EXAMPLES
from bufmon.completion import bash_script, zsh_script
from bufmon.filters import COMPARE_FIELDS, MATCH_FIELDS, compile_filter
from bufmon.manpage import manpage

ROOT = Path(__file__).resolve().parent.parent
BUFMON = str(Path(sys.executable).with_name("bufmon"))
MAN_PAGE = ROOT / "man" / "bufmon.1"


def run(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is missing: ./scripts/setup test installs it")
    return path


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_every_help_gives_examples(command: str) -> None:
    proc = run(BUFMON, *([command] if command else []), "--help")
    assert proc.returncode == 0, proc.stderr
    examples = proc.stdout.split("\nexamples:\n", 1)[1]
    assert EXAMPLES[command]
    for line, what in EXAMPLES[command]:
        assert f"  {line}\n      {what}" in examples


def test_examples_parse() -> None:
    """Every example of bufmon itself is a command line its parser accepts."""
    parser = build_parser()
    for command, examples in EXAMPLES.items():
        for line, _ in examples:
            words = shlex.split(line)
            if words[0] != "bufmon":  # `source <(bufmon completion bash)`
                continue
            if ">" in words:  # `... > file`
                words = words[: words.index(">")]
            args = parser.parse_args(with_command(words[1:]))
            assert args.command == (command or args.command)
            compile_filter(" ".join(getattr(args, "filter", [])))  # raises on a typo


def test_man_page_is_the_parsers_and_renders() -> None:
    assert MAN_PAGE.read_text() == manpage(), "run scripts/manpage"
    groff = need("groff")
    proc = run(groff, "-man", "-Tutf8", "-ww", "-rLL=80n", "-P-cbou", str(MAN_PAGE))
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    text = proc.stdout
    for command in COMMANDS:
        assert f"bufmon {command}" in text
    for field in (*MATCH_FIELDS, *COMPARE_FIELDS):
        assert field in text
    assert "--theme" in text.replace("\u2010", "-")  # groff may write a hyphen as U+2010


def test_man_page_installed_with_the_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    files = project["tool"]["setuptools"]["data-files"]["share/man/man1"]
    assert files == ["man/bufmon.1"]


def bash_complete(script: Path, *words: str) -> list[str]:
    """What bufmon's completion offers for the command line `words` (the last one being
    completed), run in bash as a real <Tab> would run it."""
    quoted = " ".join(f"'{w}'" for w in words)
    program = (
        f"source {script}; complete -p bufmon >/dev/null || exit 3\n"
        f"COMP_WORDS=(bufmon {quoted}); COMP_CWORD={len(words)}; _bufmon\n"
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    proc = run(need("bash"), "--norc", "-c", program)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_bash_completion_loads() -> None:
    proc = run(
        need("bash"), "--norc", "-c", f"source <({BUFMON} completion bash); complete -p bufmon"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "complete -F _bufmon bufmon"


@pytest.mark.parametrize(
    ("words", "offered"),
    [
        (("",), {"snapshot", "watch", "record", "completion", "proto:", "recvq>"}),
        (("sn",), {"snapshot"}),
        (("snapshot", "--j"), {"--json"}),
        (("snapshot", "pro"), {"proto:", "proto:tcp", "proc:"}),
        (("snapshot", "proto", ":", "u"), {"udp", "unix"}),  # bash split "proto:u" at ':'
        (("watch", "state", ":"), {"estab", "listen", "time-wait"}),
        (("watch", "flag:st"), {"stalled_reader"}),  # COMP_WORDBREAKS without ':'
        (("--theme", ""), {"dark", "light"}),
        (("snapshot", "--netns", ""), {"current", "all"}),
        (("completion", ""), {"bash", "zsh"}),
    ],
)
def test_bash_completion_offers(tmp_path: Path, words: tuple[str, ...], offered: set[str]) -> None:
    script = tmp_path / "bufmon.bash"
    script.write_text(bash_script(build_parser()))
    got = set(bash_complete(script, *words))
    assert offered <= got, got
    if words[-1]:
        assert all(w.startswith(words[-1].rpartition(":")[2]) for w in got), got


def test_bash_completion_offers_no_word_for_a_number(tmp_path: Path) -> None:
    script = tmp_path / "bufmon.bash"
    script.write_text(bash_script(build_parser()))
    assert bash_complete(script, "watch", "--interval", "") == []


ZSH_DRIVER = r"""
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "PS1='' PROMPT='' RPROMPT=''"
zpty -w z "autoload -U compinit && compinit -u -d $2/zcompdump; source $1"
zpty -w z 'compadd () {
    local -a hits; builtin compadd -O hits "$@"
    (( $#hits )) && print -r -- "<<${(j: :)hits}>>"; builtin compadd "$@"
}'
zpty -w z "print RE''ADY"
zpty -r z out '*READY*'
zpty -n -w z "bufmon $3"$'\t'
zpty -r z out '*<<*>>*'
print -r -- "$out" | tr -d "\r" | grep -ao '<<[^>]*>>' | head -1
zpty -d z
"""  # a real interactive zsh in a pty; a compadd wrapper prints what <Tab> would offer


@pytest.mark.parametrize(
    ("line", "offered"),
    [
        ("sn", {"snapshot"}),
        ("snapshot --j", {"--json"}),
        ("snapshot sta", {"state:", "state:estab", "state:listen"}),
        ("--theme ", {"dark", "light"}),
        ("completion ", {"bash", "zsh"}),
    ],
)
def test_zsh_completion_offers(tmp_path: Path, line: str, offered: set[str]) -> None:
    zsh = need("zsh")
    script = tmp_path / "_bufmon"
    script.write_text(zsh_script(build_parser()))
    driver = tmp_path / "driver.zsh"
    driver.write_text(ZSH_DRIVER)
    proc = subprocess.run(
        [zsh, "-f", str(driver), str(script), str(tmp_path), line],
        capture_output=True,
        text=True,
        timeout=30,
    )
    got = set(proc.stdout.strip().removeprefix("<<").removesuffix(">>").split())
    assert offered <= got, (proc.stdout, proc.stderr)
