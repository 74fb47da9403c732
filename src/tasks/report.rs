//! `games_report`: what the latest games loaded into `postgres_mlsp` say, per league. Runs
//! when `sports_data_scraper`'s `load` updates the `games` dataset.

use super::games::{self, Game};
use crate::pipelines::games_report::count_new_games;
use serde_json::{Value, json};
use sluice_runtime::TaskError;
use sluice_runtime::io::{sql_execute, sql_query_json};
use std::collections::BTreeMap;

/// Counts each league's games within `lookback_days` of its latest game, with their average
/// points and home win rate: the leagues that have some, how many in all, and the figures.
pub async fn count_new_games(ctx: count_new_games::Context<'_>) -> Result<count_new_games::Outputs, TaskError> {
    let db = ctx.conn.postgres_mlsp;
    sql_execute(db, games::CREATE_GAMES).await?;
    let rows = sql_query_json(db, "SELECT * FROM games ORDER BY league, game_date, game_id").await?;
    let all = rows.iter().map(Game::from_json).collect::<Result<Vec<_>, _>>()?;
    let mut by_league: BTreeMap<&str, Vec<&Game>> = BTreeMap::new();
    for game in &all {
        by_league.entry(game.league.as_str()).or_default().push(game);
    }
    let lookback = chrono::Days::new(u64::try_from(ctx.params.lookback_days.max(0)).unwrap_or(0));
    let mut summary = serde_json::Map::new();
    let mut new_games = 0;
    for (league, games) in &by_league {
        let dates: Vec<chrono::NaiveDate> =
            games.iter().filter_map(|g| chrono::NaiveDate::parse_from_str(&g.date, "%Y-%m-%d").ok()).collect();
        let Some(latest) = dates.iter().max().copied() else { continue };
        let since = latest.checked_sub_days(lookback).unwrap_or(latest);
        let from = since.succ_opt().unwrap_or(since);
        let recent: Vec<&&Game> = games.iter().zip(&dates).filter(|(_, d)| **d >= from).map(|(g, _)| g).collect();
        let count = recent.len();
        let points: i64 = recent.iter().map(|g| g.home_score + g.away_score).sum();
        let home_wins = recent.iter().filter(|g| g.home_score > g.away_score).count();
        let ratio = |n: f64| if count == 0 { 0.0 } else { n / count as f64 };
        summary.insert(
            (*league).to_string(),
            json!({
                "games": count,
                "from": from.to_string(),
                "to": latest.to_string(),
                "avg_points": ratio(points as f64),
                "home_win_rate": ratio(home_wins as f64),
            }),
        );
        new_games += count as i64;
        ctx.log.info(format!("{league}: {count} games from {from} to {latest}"));
    }
    Ok(count_new_games::Outputs {
        leagues: summary.keys().cloned().collect(),
        new_games,
        summary: Value::Object(summary),
    })
}
