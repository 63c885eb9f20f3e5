"""How `raysweep status` prints the counts it is given (the counting itself is tested on real runs)."""

from __future__ import annotations

from rich.console import Console

from raysweep.status import RoleStatus, print_status


def printed(roles: list[RoleStatus], eta_s: float | None) -> str:
    console = Console(width=160, record=True)
    print_status(roles, eta_s, console)
    return console.export_text()


def test_status_prints_one_row_per_role_and_says_nothing_is_left_when_all_is_stored_or_failed():
    out = printed([RoleStatus("proxy", 12, 12, 4, 0, 0, 0.1, 0.1, 30.0),
                   RoleStatus("target", 8, 4, 0, 4, 0, 0.2, 0.2, 60.0)], None)
    rows = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:-1]]
            for line in out.splitlines() if line.startswith(("│ proxy", "│ target"))}
    assert rows["proxy"][:6] == ["12", "12", "4", "0", "0", "0"]  # planned finished diverged failed started pending
    assert rows["target"][:6] == ["8", "4", "0", "4", "0", "0"]
    assert "Every planned trial is stored or failed (a relaunch retries the failed ones)." in out


def test_status_gives_an_eta_only_once_each_role_has_a_finished_trial():
    assert "no ETA until each role has a finished trial" in printed([RoleStatus("proxy", 4, 0, 0, 0, 1, 0, 0, None)],
                                                                    None)
    assert "ETA ≈ 2 min" in printed([RoleStatus("proxy", 4, 2, 0, 0, 0, 0.1, 0.1, 60.0)], 120.0)
