//! `sluice users ...`: the accounts of the web UI and API (Airflow's `users` commands).
//!
//! A random password is printed once, when it is made; no other command prints one.

use super::error::CliError;
use super::open_store;
use super::output::{Output, render};
use crate::registry::Registry;
use crate::settings::Settings;
use crate::store::{NewUser, ROLES, Store, check_new_password, generate_password};
use clap::Subcommand;
use clap::builder::PossibleValuesParser;
use serde_json::{Value, json};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// Create a user.
    Create {
        /// The login name.
        #[arg(long, short)]
        username: String,
        #[arg(long, short)]
        email: String,
        /// What the user may do.
        #[arg(long, short, value_parser = PossibleValuesParser::new(ROLES))]
        role: String,
        /// The password (see also --random-password).
        #[arg(long, short, required_unless_present = "random_password", conflicts_with = "random_password")]
        password: Option<String>,
        /// Generate a password and print it, once.
        #[arg(long, visible_alias = "use-random-password")]
        random_password: bool,
        /// Shown in the UI.
        #[arg(long, short)]
        firstname: Option<String>,
        /// Shown in the UI.
        #[arg(long, short)]
        lastname: Option<String>,
    },
    /// List the users.
    List,
    /// Delete a user.
    Delete {
        #[arg(long, short)]
        username: String,
    },
    /// Set a user's password.
    ResetPassword {
        #[arg(long, short)]
        username: String,
        /// The new password (see also --random-password).
        #[arg(long, short, required_unless_present = "random_password", conflicts_with = "random_password")]
        password: Option<String>,
        /// Generate a password and print it, once.
        #[arg(long, visible_alias = "use-random-password")]
        random_password: bool,
    },
}

/// `sluice users ...` in the process.
pub async fn main(
    registry: &'static Registry,
    settings: &Settings,
    command: UsersCommand,
    output: Output,
) -> Result<ExitCode, CliError> {
    let store = open_store(registry, settings).await?;
    print!("{}", run(&store, command, output).await?);
    Ok(ExitCode::SUCCESS)
}

/// Runs one `users` command; returns what it prints, or the one-sentence error.
pub async fn run(store: &Store, command: UsersCommand, output: Output) -> Result<String, CliError> {
    match command {
        UsersCommand::Create { username, email, role, password, random_password, firstname, lastname } => {
            let (password, shown) = password_of(password, random_password)?;
            let user = NewUser {
                username: &username,
                email: &email,
                role: &role,
                password: &password,
                first_name: firstname.as_deref().unwrap_or_default(),
                last_name: lastname.as_deref().unwrap_or_default(),
            };
            store.add_user(&user).await?;
            Ok(match shown {
                true => format!("user `{username}` created with role {role}; password (shown only now): {password}\n"),
                false => format!("user `{username}` created with role {role}\n"),
            })
        }
        UsersCommand::List => {
            let users = store.users().await?;
            let rows: Vec<Value> = users
                .iter()
                .map(|u| {
                    json!({
                        "username": u.username,
                        "email": u.email,
                        "first_name": u.first_name,
                        "last_name": u.last_name,
                        "role": u.role,
                        "active": u.active,
                    })
                })
                .collect();
            Ok(render(output, &["username", "email", "first_name", "last_name", "role", "active"], &rows))
        }
        UsersCommand::Delete { username } => {
            store.delete_user(&username).await?;
            Ok(format!("user `{username}` deleted\n"))
        }
        UsersCommand::ResetPassword { username, password, random_password } => {
            let (password, shown) = password_of(password, random_password)?;
            store.set_password(&username, &password).await?;
            Ok(match shown {
                true => format!("password of user `{username}` reset; new password (shown only now): {password}\n"),
                false => format!("password of user `{username}` reset\n"),
            })
        }
    }
}

/// The password given, or a generated one (then `true`: it must be shown). A given one
/// must pass [`check_new_password`], as in the UI.
fn password_of(given: Option<String>, random: bool) -> Result<(String, bool), CliError> {
    match given {
        _ if random => Ok((generate_password(), true)),
        Some(p) => match check_new_password(&p) {
            Ok(()) => Ok((p, false)),
            Err(why) => Err(CliError::Input(format!("{why}: give another, or use --random-password"))),
        },
        None => Err(CliError::Input("give a password with --password, or use --random-password".into())),
    }
}
