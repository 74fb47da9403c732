"""`games_report`'s report: a Markdown table of each league's latest games, written to the
`report_dir` param's folder. Standard library only."""

from __future__ import annotations

from pathlib import Path

from sluice_context import GamesReportWriteReportContext, GamesReportWriteReportOutputs


def write_report(ctx: GamesReportWriteReportContext) -> GamesReportWriteReportOutputs:
    counted = ctx["upstream"]["count_new_games"]
    day = ctx["run"]["logical_date"][:10]
    lines = [
        f"# Games report, {day}",
        "",
        f"{counted['new_games']} new games in {len(counted['leagues'])} leagues "
        f"(the last {ctx['params']['lookback_days']} days of each league's games).",
        "",
        "| league | games | from | to | avg points | home win rate |",
        "|---|---:|---|---|---:|---:|",
    ]
    for league in counted["leagues"]:
        figures = counted["summary"][league]
        lines.append(
            f"| {league} | {figures['games']} | {figures['from']} | {figures['to']} "
            f"| {figures['avg_points']:.1f} | {figures['home_win_rate']:.0%} |"
        )
    folder = Path(ctx["params"]["report_dir"])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"games_report_{day}.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return {"path": str(path), "leagues": len(counted["leagues"])}
