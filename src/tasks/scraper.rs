//! `sports_data_scraper`: daily scrape of the NFL, NBA and MLB feeds, validation, and an
//! upsert of the valid games into `postgres_mlsp`.
//!
//! The feed (`sports_feed`) serves `<league>.csv`; in standalone it is the sample data under
//! `data/sample/games`. Every scrape keeps all the feed's rows (the feed holds the current
//! season), and hands them on as JSON lines under `$SLUICE_HOME/data/`.

use super::games::{self, Game, LEAGUES};
use crate::pipelines::sports_data_scraper::{load, scrape_mlb, scrape_nba, scrape_nfl, validate};
use sluice_runtime::{Connection, Logger, RunInfo, TaskError};

/// Reads `<league>.csv` from the feed and writes its rows to
/// `$SLUICE_HOME/data/raw/<league>/<day>.jsonl`: how many, and where.
async fn scrape(league: &str, feed: &Connection, run: &RunInfo, log: &Logger) -> Result<(i64, String), TaskError> {
    let text = sluice_runtime::io::read_text(feed, &format!("{league}.csv")).await?;
    let rows = games::parse_csv(league, &text)?;
    let path = games::local_file(&["data", "raw", league, &format!("{}.jsonl", games::day(&run.logical_date))]).await?;
    games::write_json_lines(&path, rows.iter().cloned()).await?;
    log.info(format!("scraped {} {league} rows from `{}` into {}", rows.len(), feed.id, path.display()));
    Ok((rows.len() as i64, path.display().to_string()))
}

pub async fn scrape_nfl(ctx: scrape_nfl::Context<'_>) -> Result<scrape_nfl::Outputs, TaskError> {
    let (records, path) = scrape("nfl", ctx.conn.sports_feed, ctx.run, ctx.log).await?;
    Ok(scrape_nfl::Outputs { records, path })
}

pub async fn scrape_nba(ctx: scrape_nba::Context<'_>) -> Result<scrape_nba::Outputs, TaskError> {
    let (records, path) = scrape("nba", ctx.conn.sports_feed, ctx.run, ctx.log).await?;
    Ok(scrape_nba::Outputs { records, path })
}

pub async fn scrape_mlb(ctx: scrape_mlb::Context<'_>) -> Result<scrape_mlb::Outputs, TaskError> {
    let (records, path) = scrape("mlb", ctx.conn.sports_feed, ctx.run, ctx.log).await?;
    Ok(scrape_mlb::Outputs { records, path })
}

/// Checks every scraped row (teams present, scores and rest days not negative, win
/// percentages within 0..1, a real date); fails the run when a league has more than 5% bad
/// rows, else writes the valid games to `$SLUICE_HOME/data/valid/<day>.jsonl`.
pub async fn validate(ctx: validate::Context<'_>) -> Result<validate::Outputs, TaskError> {
    let up = &ctx.upstream;
    let scraped = [&up.scrape_nfl.path, &up.scrape_nba.path, &up.scrape_mlb.path];
    let mut valid: Vec<Game> = Vec::new();
    let mut rejected_records = 0;
    for (league, path) in LEAGUES.iter().zip(scraped) {
        let rows = games::read_json_lines(path).await?;
        let (games, rejected) = games::validate_league(league, &rows)?;
        for reason in &rejected {
            ctx.log.info(format!("rejected {league} {reason}"));
        }
        ctx.log.info(format!("{league}: {} valid, {} rejected", games.len(), rejected.len()));
        rejected_records += rejected.len() as i64;
        valid.extend(games);
    }
    let path = games::local_file(&["data", "valid", &format!("{}.jsonl", games::day(&ctx.run.logical_date))]).await?;
    games::write_json_lines(&path, valid.iter().map(Game::to_json)).await?;
    Ok(validate::Outputs { valid_records: valid.len() as i64, rejected_records, path: path.display().to_string() })
}

/// Upserts the validated games into `games` (created if missing), keyed by `game_id`, so a
/// rerun or a corrected feed updates rows instead of duplicating them.
pub async fn load(ctx: load::Context<'_>) -> Result<load::Outputs, TaskError> {
    let rows = games::read_json_lines(&ctx.upstream.validate.path).await?;
    let valid = rows.iter().map(Game::from_json).collect::<Result<Vec<_>, _>>()?;
    let db = ctx.conn.postgres_mlsp;
    let written = games::upsert_games(db, &valid).await?;
    ctx.log.info(format!("upserted {} games into `games` of `{}` ({written} rows written)", valid.len(), db.id));
    Ok(load::Outputs { rows_loaded: valid.len() as i64 })
}
