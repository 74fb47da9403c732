#!/usr/bin/env python3
"""Writes data/sample/games/{nfl,nba,mlb}.csv: the sample sports feed the MLSP pipelines
read in standalone mode (connection `sports_feed`). Deterministic (its own LCG, no
`random`), so rerunning it reproduces the committed files byte for byte:

    python3 scripts/gen_sample_games.py

Each league has teams with a hidden strength; the home side wins with a probability that
grows with the strength gap (seen through noisy win percentages), the rest-day gap and a
home advantage, so a logistic regression on those features beats a coin flip. A few rows
are deliberately bad (a negative score, a missing team, a win percentage above 1) for the
`validate` task to reject; they stay well under its 5% limit.
"""
import datetime
import math
import os

LEAGUES = {
    # league: (first game day, days between game days, games, teams, score base, score spread)
    "nfl": ("2024-09-05", 1, 272, 16, 17, 14),
    "nba": ("2024-10-22", 1, 360, 16, 100, 25),
    "mlb": ("2024-03-28", 1, 360, 16, 3, 6),
}
TEAMS = {
    "nfl": "ARI ATL BAL BUF CAR CHI CIN CLE DAL DEN DET GB HOU IND KC LV".split(),
    "nba": "ATL BOS BKN CHA CHI CLE DAL DEN DET GSW HOU IND LAC LAL MEM MIA".split(),
    "mlb": "ARI ATL BAL BOS CHC CIN CLE COL DET HOU KC LAA LAD MIA MIL MIN".split(),
}
BAD_ROWS = {5: "negative score", 77: "missing team", 151: "win pct above 1"}


class Lcg:
    def __init__(self, seed):
        self.state = seed

    def next(self):
        # Numerical Recipes' 64-bit LCG; the top 53 bits as a float in [0, 1).
        self.state = (self.state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        return (self.state >> 11) / float(1 << 53)


def league_rows(league, seed):
    first, step, games, teams, base, spread = LEAGUES[league]
    names = TEAMS[league][:teams]
    rng = Lcg(seed)
    strength = {t: rng.next() * 2 - 1 for t in names}
    last_day = {t: None for t in names}
    day = datetime.date.fromisoformat(first)
    rows = []
    for i in range(games):
        if i % 4 == 0 and i > 0:
            day += datetime.timedelta(days=step)
        home = names[int(rng.next() * len(names))]
        away = home
        while away == home:
            away = names[int(rng.next() * len(names))]
        rest = {}
        for t in (home, away):
            rest[t] = 7 if last_day[t] is None else min((day - last_day[t]).days, 7)
            last_day[t] = day
        pct = {t: min(max(0.5 + 0.3 * strength[t] + (rng.next() - 0.5) * 0.2, 0.0), 1.0) for t in (home, away)}
        logit = 3.0 * (strength[home] - strength[away]) + 0.15 * (rest[home] - rest[away]) + 0.3
        home_wins = rng.next() < 1 / (1 + math.exp(-logit))
        win = base + int(rng.next() * spread) + 1
        lose = max(win - 1 - int(rng.next() * spread), 0)
        home_score, away_score = (win, lose) if home_wins else (lose, win)
        row = [
            f"{league}-{i + 1:04d}",
            day.isoformat(),
            home,
            away,
            str(home_score),
            str(away_score),
            str(rest[home]),
            str(rest[away]),
            f"{pct[home]:.3f}",
            f"{pct[away]:.3f}",
        ]
        bad = BAD_ROWS.get(i)
        if bad == "negative score":
            row[4] = "-3"
        elif bad == "missing team":
            row[3] = ""
        elif bad == "win pct above 1":
            row[8] = "1.250"
        rows.append(",".join(row))
    return rows


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "sample", "games")
    os.makedirs(out, exist_ok=True)
    header = "game_id,date,home,away,home_score,away_score,home_rest_days,away_rest_days,home_win_pct,away_win_pct"
    for seed, league in enumerate(sorted(LEAGUES), start=1):
        with open(os.path.join(out, f"{league}.csv"), "w", newline="\n") as f:
            f.write("\n".join([header] + league_rows(league, seed * 7919)) + "\n")


if __name__ == "__main__":
    main()
