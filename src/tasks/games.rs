//! Game records shared by the scraper and the training pipeline: the feed's CSV format,
//! the validation rules, the `games` table and the JSON-lines files tasks hand on.

use serde_json::{Value, json};
use sluice_runtime::io::{sql_execute, sql_quote};
use sluice_runtime::{Connection, TaskError};
use std::path::{Path, PathBuf};

pub const LEAGUES: [&str; 3] = ["nfl", "nba", "mlb"];

/// The columns of a league's feed, `<league>.csv`, in order.
pub const COLUMNS: [&str; 10] = [
    "game_id",
    "date",
    "home",
    "away",
    "home_score",
    "away_score",
    "home_rest_days",
    "away_rest_days",
    "home_win_pct",
    "away_win_pct",
];

/// A league may lose at most this share of its rows to validation; more means the feed is
/// broken, and the run fails rather than load a partial picture.
pub const MAX_REJECTED_SHARE: f64 = 0.05;

/// `games` in PostgreSQL and SQLite alike.
pub const CREATE_GAMES: &str = "CREATE TABLE IF NOT EXISTS games (
    game_id TEXT PRIMARY KEY,
    league TEXT NOT NULL,
    game_date DATE NOT NULL,
    home_team TEXT NOT NULL,
    away_team TEXT NOT NULL,
    home_score INTEGER NOT NULL,
    away_score INTEGER NOT NULL,
    home_rest_days INTEGER NOT NULL,
    away_rest_days INTEGER NOT NULL,
    home_win_pct DOUBLE PRECISION NOT NULL,
    away_win_pct DOUBLE PRECISION NOT NULL
)";

/// One validated game.
#[derive(Clone, Debug, PartialEq)]
pub struct Game {
    pub game_id: String,
    pub league: String,
    pub date: String,
    pub home: String,
    pub away: String,
    pub home_score: i64,
    pub away_score: i64,
    pub home_rest_days: i64,
    pub away_rest_days: i64,
    pub home_win_pct: f64,
    pub away_win_pct: f64,
}

/// The feed's rows as `{column: text}` objects (the raw scrape); a missing or misnamed
/// header column is an error, a short or long row is kept for validation to reject.
pub fn parse_csv(league: &str, text: &str) -> Result<Vec<Value>, TaskError> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').map(str::trim).collect();
    if header != COLUMNS {
        return Err(TaskError::new(format!(
            "{league}.csv has the header `{}`, expected `{}`",
            header.join(","),
            COLUMNS.join(",")
        )));
    }
    Ok(lines
        .map(|line| {
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            let mut row = serde_json::Map::new();
            row.insert("league".into(), json!(league));
            for (i, column) in COLUMNS.iter().enumerate() {
                row.insert((*column).into(), cells.get(i).map_or(Value::Null, |c| json!(c)));
            }
            if cells.len() != COLUMNS.len() {
                row.insert("cells".into(), json!(cells.len()));
            }
            Value::Object(row)
        })
        .collect())
}

/// A raw row as a game, or why it is rejected.
pub fn validate_row(row: &Value) -> Result<Game, String> {
    let text = |key: &str| row.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    if let Some(n) = row.get("cells") {
        return Err(format!("has {n} cells, expected {}", COLUMNS.len()));
    }
    let int = |key: &str, min: i64| -> Result<i64, String> {
        let value: i64 = text(key).parse().map_err(|_| format!("`{key}` is not a whole number"))?;
        if value < min { Err(format!("`{key}` is {value}, below {min}")) } else { Ok(value) }
    };
    let pct = |key: &str| -> Result<f64, String> {
        let value: f64 = text(key).parse().map_err(|_| format!("`{key}` is not a number"))?;
        if (0.0..=1.0).contains(&value) { Ok(value) } else { Err(format!("`{key}` is {value}, outside 0..1")) }
    };
    let game_id = text("game_id");
    if game_id.is_empty() {
        return Err("has no game_id".into());
    }
    let date = text("date");
    let is_date = date.len() == 10
        && date.char_indices().all(|(i, c)| if i == 4 || i == 7 { c == '-' } else { c.is_ascii_digit() });
    if !is_date {
        return Err(format!("`date` is `{date}`, not YYYY-MM-DD"));
    }
    let (home, away) = (text("home"), text("away"));
    if home.is_empty() || away.is_empty() {
        return Err("is missing a team".into());
    }
    if home == away {
        return Err(format!("has {home} playing itself"));
    }
    Ok(Game {
        league: text("league"),
        game_id,
        date,
        home,
        away,
        home_score: int("home_score", 0)?,
        away_score: int("away_score", 0)?,
        home_rest_days: int("home_rest_days", 0)?,
        away_rest_days: int("away_rest_days", 0)?,
        home_win_pct: pct("home_win_pct")?,
        away_win_pct: pct("away_win_pct")?,
    })
}

/// Validates one league's raw rows: the games, and the rejects as `id: reason`. Fails when
/// the league has no rows or more than [`MAX_REJECTED_SHARE`] of them are bad.
pub fn validate_league(league: &str, rows: &[Value]) -> Result<(Vec<Game>, Vec<String>), TaskError> {
    let mut games = Vec::new();
    let mut rejected = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        match validate_row(row) {
            Ok(game) => games.push(game),
            Err(reason) => {
                let id = row.get("game_id").and_then(Value::as_str).filter(|s| !s.is_empty());
                rejected.push(format!("{} {reason}", id.map_or(format!("row {}", i + 2), |id| format!("game {id}"))));
            }
        }
    }
    if rows.is_empty() {
        return Err(TaskError::new(format!("the {league} feed has no games")));
    }
    let share = rejected.len() as f64 / rows.len() as f64;
    if share > MAX_REJECTED_SHARE {
        let examples: Vec<&str> = rejected.iter().take(5).map(String::as_str).collect();
        return Err(TaskError::new(format!(
            "{} of {} {league} rows are bad ({:.1}%, the limit is {:.0}%), e.g.: {}",
            rejected.len(),
            rows.len(),
            share * 100.0,
            MAX_REJECTED_SHARE * 100.0,
            examples.join("; ")
        )));
    }
    Ok((games, rejected))
}

impl Game {
    pub fn to_json(&self) -> Value {
        json!({
            "game_id": self.game_id, "league": self.league, "date": self.date,
            "home": self.home, "away": self.away,
            "home_score": self.home_score, "away_score": self.away_score,
            "home_rest_days": self.home_rest_days, "away_rest_days": self.away_rest_days,
            "home_win_pct": self.home_win_pct, "away_win_pct": self.away_win_pct,
        })
    }

    /// A game from [`Game::to_json`]'s form or a `games` row (`game_date`, `home_team`...;
    /// numbers may come back as text or floats, depending on the database).
    pub fn from_json(row: &Value) -> Result<Game, TaskError> {
        let field = |keys: &[&str]| keys.iter().find_map(|k| row.get(*k)).cloned().unwrap_or(Value::Null);
        let text = |keys: &[&str]| match field(keys) {
            Value::String(s) => s,
            other => other.to_string(),
        };
        let number = |keys: &[&str]| -> Result<f64, TaskError> {
            let value = field(keys);
            value
                .as_f64()
                .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| TaskError::new(format!("game {}: `{}` is not a number", text(&["game_id"]), keys[0])))
        };
        Ok(Game {
            game_id: text(&["game_id"]),
            league: text(&["league"]),
            date: text(&["date", "game_date"]).chars().take(10).collect(),
            home: text(&["home", "home_team"]),
            away: text(&["away", "away_team"]),
            home_score: number(&["home_score"])? as i64,
            away_score: number(&["away_score"])? as i64,
            home_rest_days: number(&["home_rest_days"])? as i64,
            away_rest_days: number(&["away_rest_days"])? as i64,
            home_win_pct: number(&["home_win_pct"])?,
            away_win_pct: number(&["away_win_pct"])?,
        })
    }

    pub fn home_won(&self) -> bool {
        self.home_score > self.away_score
    }
}

/// Creates `games` if needed and upserts `games` into it, a few hundred rows per statement;
/// returns how many rows were written.
pub async fn upsert_games(db: &Connection, games: &[Game]) -> Result<u64, TaskError> {
    sql_execute(db, CREATE_GAMES).await?;
    let mut written = 0;
    for chunk in games.chunks(250) {
        let values: Vec<String> = chunk
            .iter()
            .map(|g| {
                format!(
                    "({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
                    sql_quote(&g.game_id),
                    sql_quote(&g.league),
                    sql_quote(&g.date),
                    sql_quote(&g.home),
                    sql_quote(&g.away),
                    g.home_score,
                    g.away_score,
                    g.home_rest_days,
                    g.away_rest_days,
                    g.home_win_pct,
                    g.away_win_pct
                )
            })
            .collect();
        let update: Vec<String> = [
            "league",
            "game_date",
            "home_team",
            "away_team",
            "home_score",
            "away_score",
            "home_rest_days",
            "away_rest_days",
            "home_win_pct",
            "away_win_pct",
        ]
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
        let sql = format!(
            "INSERT INTO games (game_id, league, game_date, home_team, away_team, home_score, away_score, \
             home_rest_days, away_rest_days, home_win_pct, away_win_pct) VALUES {} \
             ON CONFLICT (game_id) DO UPDATE SET {}",
            values.join(", "),
            update.join(", ")
        );
        written += sql_execute(db, &sql).await?;
    }
    Ok(written)
}

// Files are read and written with tokio::fs (async), as every I/O of a task body should be:
// a body that awaits leaves its thread to others while the disk works.

/// `$SLUICE_HOME/<parts...>`, with its folder created.
pub async fn local_file(parts: &[&str]) -> Result<PathBuf, TaskError> {
    let mut path = sluice_runtime::io::home_dir();
    path.extend(parts);
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| TaskError::new(format!("cannot create {}: {e}", parent.display())))?;
    }
    Ok(path)
}

/// Writes one JSON value per line.
pub async fn write_json_lines(path: &Path, rows: impl IntoIterator<Item = Value>) -> Result<(), TaskError> {
    let text: String = rows.into_iter().map(|r| r.to_string() + "\n").collect();
    tokio::fs::write(path, text).await.map_err(|e| TaskError::new(format!("cannot write {}: {e}", path.display())))
}

pub async fn read_json_lines(path: &str) -> Result<Vec<Value>, TaskError> {
    let text = tokio::fs::read_to_string(path).await.map_err(|e| TaskError::new(format!("cannot read {path}: {e}")))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| TaskError::new(format!("{path} has a bad line: {e}"))))
        .collect()
}

/// The logical date's day, `YYYY-MM-DD`.
pub fn day(logical_date: &str) -> &str {
    logical_date.get(..10).unwrap_or("unscheduled")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "game_id,date,home,away,home_score,away_score,home_rest_days,away_rest_days,home_win_pct,away_win_pct";

    #[test]
    fn rejects_bad_rows_and_fails_over_the_limit() {
        let good = "g1,2024-09-05,KC,BAL,27,20,7,7,0.600,0.400";
        let csv =
            format!("{HEADER}\n{good}\ng2,2024-09-05,GB,,1,2,3,3,0.5,0.5\ng3,2024-09-05,GB,PHI,-1,2,3,3,0.5,0.5\n");
        let rows = parse_csv("nfl", &csv).expect("the header is right");
        assert_eq!(rows.len(), 3);
        assert_eq!(validate_row(&rows[0]).map(|g| g.home_won()), Ok(true));
        assert_eq!(validate_row(&rows[1]), Err("is missing a team".into()));
        assert!(validate_league("nfl", &rows).is_err(), "2 of 3 bad is over the limit");
        let many: Vec<Value> = std::iter::repeat_n(rows[0].clone(), 40).chain([rows[1].clone()]).collect();
        let (games, rejected) = validate_league("nfl", &many).expect("1 of 41 is under the limit");
        assert_eq!((games.len(), rejected.len()), (40, 1));
        assert!(parse_csv("nfl", "id,date\n").is_err());
    }

    #[test]
    fn games_round_trip_through_json_and_table_rows() {
        let rows = parse_csv("nba", &format!("{HEADER}\nb1,2024-10-22,LAL,BOS,100,101,1,2,0.5,0.7\n")).expect("csv");
        let game = validate_row(&rows[0]).expect("valid");
        assert_eq!(Game::from_json(&game.to_json()).expect("json"), game);
        let row = json!({"game_id": "b1", "league": "nba", "game_date": "2024-10-22", "home_team": "LAL",
            "away_team": "BOS", "home_score": 100, "away_score": "101", "home_rest_days": 1,
            "away_rest_days": 2, "home_win_pct": 0.5, "away_win_pct": 0.7});
        assert_eq!(Game::from_json(&row).expect("row"), game);
    }
}
