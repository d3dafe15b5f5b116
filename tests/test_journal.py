"""The batch journal: records survive reopening, a torn tail is cut, other input and a second writer are refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from simwallet.provisioning.journal import Journal, JournalError

ICCID_A = "89860012345678901231"
ICCID_B = "89860012345678901249"


def test_progress_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "batch.journal"
    with Journal.open(path, "digest-1") as journal:
        journal.record(ICCID_A, "card", "begin")
        journal.record(ICCID_A, "files")
        journal.record(ICCID_A, "applet", "failed", error="6982 security status not satisfied")
        journal.record(ICCID_B, "card", "begin")
    with Journal.open(path, "digest-1") as journal:
        a = journal.progress(ICCID_A)
        assert a.done("files") and not a.done("applet") and not a.finished
        assert a.attempts == 1 and a.last_error == "6982 security status not satisfied"
        journal.finish(ICCID_A)
        assert not journal.torn_tail
    with Journal.open(path, "digest-1") as journal:
        assert journal.finished() == {ICCID_A}
        assert journal.progress(ICCID_B).steps_done == frozenset()
        assert journal.progress("89860000000000000000").attempts == 0


def test_torn_tail_is_cut_and_appending_continues(tmp_path: Path) -> None:
    path = tmp_path / "batch.journal"
    with Journal.open(path, "d") as journal:
        journal.record(ICCID_A, "files")
    with path.open("ab") as f:
        f.write(b'{"v":1,"iccid":"8986001234567890123')  # killed mid-write
    with Journal.open(path, "d") as journal:
        assert journal.torn_tail
        journal.record(ICCID_A, "applet")
    with Journal.open(path, "d") as journal:
        assert not journal.torn_tail
        assert journal.progress(ICCID_A).steps_done == {"files", "applet"}
    assert path.read_bytes().endswith(b"\n")


def test_corruption_before_the_tail_refuses(tmp_path: Path) -> None:
    path = tmp_path / "batch.journal"
    with Journal.open(path, "d") as journal:
        journal.record(ICCID_A, "files")
        journal.record(ICCID_A, "applet")
    lines = path.read_bytes().split(b"\n")
    lines[1] = b"garbage"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(JournalError, match=r":2: corrupt journal record"):
        Journal.open(path, "d")


def test_other_input_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "batch.journal"
    Journal.open(path, "digest-1").close()
    with pytest.raises(JournalError, match="other input"):
        Journal.open(path, "digest-2")


def test_a_second_batch_process_cannot_write_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "batch.journal"
    with Journal.open(path, "d"):
        probe = (
            "import sys\nfrom pathlib import Path\nfrom simwallet.provisioning.journal import Journal, JournalError\n"
            "try:\n    Journal.open(Path(sys.argv[1]), 'd')\nexcept JournalError as e:\n    print(e); sys.exit(3)\n"
        )
        result = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, check=False)
        assert result.returncode == 3, result.stderr
        assert "another batch" in result.stdout
    Journal.open(path, "d").close()  # released on close


def test_unknown_event_is_a_bug(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j", "d") as journal, pytest.raises(ValueError):
        journal.record(ICCID_A, "files", "maybe")
