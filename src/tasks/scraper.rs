//! `sports_data_scraper`: daily scrape of NFL, NBA and MLB data, then validation.

use crate::pipelines::sports_data_scraper::{scrape_mlb, scrape_nba, scrape_nfl, validate};
use sluice_runtime::{Connection, Logger, RunInfo, TaskError};

/// Where a league's scrape for one logical date lands, and how many records it has.
fn scrape(league: &str, api: &Connection, run: &RunInfo, log: &Logger) -> (i64, String) {
    let host = api.host.as_deref().unwrap_or("backend");
    log.info(format!("scraping {league} for {} through {host}", run.logical_date));
    let day = run.logical_date.get(..10).unwrap_or("unscheduled");
    (0, format!("/data/raw/{league}/{day}.json"))
}

pub async fn scrape_nfl(ctx: scrape_nfl::Context<'_>) -> Result<scrape_nfl::Outputs, TaskError> {
    let (records, path) = scrape("nfl", ctx.conn.backend_api, ctx.run, ctx.log);
    Ok(scrape_nfl::Outputs { records, path })
}

pub async fn scrape_nba(ctx: scrape_nba::Context<'_>) -> Result<scrape_nba::Outputs, TaskError> {
    let (records, path) = scrape("nba", ctx.conn.backend_api, ctx.run, ctx.log);
    Ok(scrape_nba::Outputs { records, path })
}

pub async fn scrape_mlb(ctx: scrape_mlb::Context<'_>) -> Result<scrape_mlb::Outputs, TaskError> {
    let (records, path) = scrape("mlb", ctx.conn.backend_api, ctx.run, ctx.log);
    Ok(scrape_mlb::Outputs { records, path })
}

/// Rejects a scrape that produced a negative count (a scraper bug) and totals the rest.
pub async fn validate(ctx: validate::Context<'_>) -> Result<validate::Outputs, TaskError> {
    let up = &ctx.upstream;
    let counts = [("nfl", up.scrape_nfl.records), ("nba", up.scrape_nba.records), ("mlb", up.scrape_mlb.records)];
    if let Some((league, n)) = counts.iter().find(|(_, n)| *n < 0) {
        return Err(TaskError::new(format!("{league} scrape reported {n} records")));
    }
    let valid_records = counts.iter().map(|(_, n)| n).sum();
    ctx.log.info(format!("{valid_records} valid records"));
    Ok(validate::Outputs { valid_records })
}
