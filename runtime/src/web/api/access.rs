//! Users, roles and permissions (role Admin). Sluice's roles are Airflow's four fixed ones,
//! one per user; the permissions each holds are listed as Airflow lists them, and a role
//! cannot be created, changed or deleted (a 400 problem says so).

use super::*;
use crate::store::{NewUser, UserRow, check_new_password};

/// Airflow's resources, and what each role may do to them: every role has what the one
/// below it has.
const GRANTS: &[(Role, &str, &[&str])] = &[
    (
        Role::Viewer,
        "can_read",
        &[
            "DAGs",
            "DAG Runs",
            "Task Instances",
            "Task Logs",
            "XComs",
            "Pools",
            "ImportError",
            "DAG Warnings",
            "DAG Code",
            "DAG Dependencies",
            "Datasets",
            "Plugins",
            "Providers",
            "SLA Misses",
            "Website",
        ],
    ),
    (Role::User, "can_edit", &["DAGs", "DAG Runs", "Task Instances"]),
    (Role::User, "can_create", &["DAG Runs", "Task Instances"]),
    (Role::User, "can_delete", &["DAG Runs", "Task Instances"]),
    (Role::Op, "can_read", &["Connections", "Variables", "Configurations", "Audit Logs"]),
    (Role::Op, "can_create", &["Connections", "Variables", "Pools", "Datasets"]),
    (Role::Op, "can_edit", &["Connections", "Variables", "Pools"]),
    (Role::Op, "can_delete", &["Connections", "Variables", "Pools", "Datasets"]),
    (Role::Admin, "can_read", &["Users", "Roles", "Permissions"]),
    (Role::Admin, "can_create", &["Users"]),
    (Role::Admin, "can_edit", &["Users"]),
    (Role::Admin, "can_delete", &["Users"]),
];

const ROLES: [Role; 4] = [Role::Viewer, Role::User, Role::Op, Role::Admin];

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Viewer => "Viewer",
        Role::User => "User",
        Role::Op => "Op",
        Role::Admin => "Admin",
    }
}

fn role_json(role: Role) -> Value {
    let actions: Vec<Value> = GRANTS
        .iter()
        .filter(|(granted, _, _)| *granted <= role)
        .flat_map(|(_, action, resources)| {
            resources.iter().map(move |r| json!({ "action": { "name": action }, "resource": { "name": r } }))
        })
        .collect();
    json!({ "name": role_name(role), "actions": actions })
}

fn known_role(name: &str) -> Result<Role, Problem> {
    Role::parse(name)
        .ok_or_else(|| Problem::not_found(format!("role `{name}` not found: the roles are Viewer, User, Op and Admin")))
}

pub(super) async fn list_roles(caller: Caller, Params(page): Params<Page>) -> ApiResult {
    caller.require(Role::Admin)?;
    let roles: Vec<Value> = ROLES.iter().map(|r| role_json(*r)).collect();
    ok(json!({ "roles": page.slice(&roles)?, "total_entries": roles.len() }))
}

pub(super) async fn get_role(caller: Caller, Path(name): Path<String>) -> ApiResult {
    caller.require(Role::Admin)?;
    ok(role_json(known_role(&name)?))
}

fn fixed_roles() -> Problem {
    Problem::bad_request(
        "roles are fixed: Viewer, User, Op and Admin, each with Airflow's permissions; give a user one of them instead",
    )
}

pub(super) async fn post_role(caller: Caller, Body(_body): Body<Map<String, Value>>) -> ApiResult {
    caller.require(Role::Admin)?;
    Err(fixed_roles())
}

pub(super) async fn patch_role(
    caller: Caller,
    Path(name): Path<String>,
    Body(_body): Body<Map<String, Value>>,
) -> ApiResult {
    caller.require(Role::Admin)?;
    known_role(&name)?;
    Err(fixed_roles())
}

pub(super) async fn delete_role(caller: Caller, Path(name): Path<String>) -> ApiResult {
    caller.require(Role::Admin)?;
    known_role(&name)?;
    Err(fixed_roles())
}

/// Every action a role may be granted.
pub(super) async fn list_permissions(caller: Caller, Params(page): Params<Page>) -> ApiResult {
    caller.require(Role::Admin)?;
    let mut names: Vec<&str> = GRANTS.iter().map(|(_, action, _)| *action).collect();
    names.sort_unstable();
    names.dedup();
    let actions: Vec<Value> = names.iter().map(|n| json!({ "name": n })).collect();
    ok(json!({ "actions": page.slice(&actions)?, "total_entries": actions.len() }))
}

fn user_json(user: &UserRow) -> Value {
    json!({
        "first_name": user.first_name,
        "last_name": user.last_name,
        "username": user.username,
        "email": user.email,
        "active": user.active,
        "last_login": null,
        "login_count": null,
        "failed_login_count": null,
        "roles": [{ "name": user.role }],
        "created_on": null,
        "changed_on": null,
    })
}

async fn find_user(state: &AppState, username: &str) -> Result<UserRow, Problem> {
    state
        .store
        .users()
        .await?
        .into_iter()
        .find(|u| u.username == username)
        .ok_or_else(|| Problem::not_found(format!("user `{username}` not found")))
}

pub(super) async fn list_users(State(state): State<AppState>, caller: Caller, Params(page): Params<Page>) -> ApiResult {
    caller.require(Role::Admin)?;
    let users: Vec<Value> = state.store.users().await?.iter().map(user_json).collect();
    ok(json!({ "users": page.slice(&users)?, "total_entries": users.len() }))
}

pub(super) async fn get_user(State(state): State<AppState>, caller: Caller, Path(username): Path<String>) -> ApiResult {
    caller.require(Role::Admin)?;
    ok(user_json(&find_user(&state, &username).await?))
}

#[derive(Debug, Deserialize)]
pub(super) struct RoleRef {
    name: String,
}

/// Airflow's `User` body.
#[derive(Debug, Deserialize)]
pub(super) struct UserBody {
    username: Option<String>,
    email: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    roles: Option<Vec<RoleRef>>,
    password: Option<String>,
}

/// The one role a body gives; a user has exactly one.
fn one_role(roles: Option<&[RoleRef]>) -> Result<Option<&'static str>, Problem> {
    match roles {
        None => Ok(None),
        Some([one]) => Role::parse(&one.name)
            .map(|r| Some(role_name(r)))
            .ok_or_else(|| Problem::bad_request(format!("unknown role `{}`: use Viewer, User, Op or Admin", one.name))),
        Some(_) => Err(Problem::bad_request("give exactly one role: a user has one of Viewer, User, Op or Admin")),
    }
}

pub(super) async fn post_user(State(state): State<AppState>, caller: Caller, Body(body): Body<UserBody>) -> ApiResult {
    caller.require(Role::Admin)?;
    let username =
        body.username.as_deref().filter(|u| !u.is_empty()).ok_or_else(|| Problem::bad_request("give `username`"))?;
    let email = body.email.as_deref().filter(|e| !e.is_empty()).ok_or_else(|| Problem::bad_request("give `email`"))?;
    let password = body.password.as_deref().ok_or_else(|| Problem::bad_request("give `password`"))?;
    check_new_password(password).map_err(Problem::bad_request)?;
    let role = one_role(body.roles.as_deref())?.unwrap_or("Viewer");
    let user = NewUser {
        username,
        email,
        role,
        password,
        first_name: body.first_name.as_deref().unwrap_or_default(),
        last_name: body.last_name.as_deref().unwrap_or_default(),
    };
    caller.store(&state).add_user(&user).await?;
    ok(user_json(&find_user(&state, username).await?))
}

/// Changes a user's role and/or password (`update_mask` names which; without it, what the
/// body gives). Either change ends the user's sessions.
pub(super) async fn patch_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
    Params(mask): Params<UpdateMask>,
    Body(body): Body<UserBody>,
) -> ApiResult {
    caller.require(Role::Admin)?;
    find_user(&state, &username).await?;
    let fields: Vec<&str> = match mask.update_mask.as_deref().filter(|m| !m.trim().is_empty()) {
        Some(list) => list.split(',').map(str::trim).filter(|f| !f.is_empty()).collect(),
        None => [("roles", body.roles.is_some()), ("password", body.password.is_some())]
            .into_iter()
            .filter_map(|(f, given)| given.then_some(f))
            .collect(),
    };
    if let Some(other) = fields.iter().find(|f| !matches!(**f, "roles" | "password")) {
        return Err(Problem::bad_request(format!("`{other}` cannot be changed here: only `roles` and `password`")));
    }
    let role = if fields.contains(&"roles") {
        Some(one_role(body.roles.as_deref())?.ok_or_else(|| Problem::bad_request("give `roles`: one role"))?)
    } else {
        None
    };
    let password = if fields.contains(&"password") {
        let password = body.password.as_deref().ok_or_else(|| Problem::bad_request("give `password`"))?;
        check_new_password(password).map_err(Problem::bad_request)?;
        Some(password)
    } else {
        None
    };
    if let Some(role) = role {
        caller.store(&state).set_role(&username, role).await?;
    }
    if let Some(password) = password {
        caller.store(&state).set_password(&username, password).await?;
    }
    ok(user_json(&find_user(&state, &username).await?))
}

pub(super) async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
) -> ApiResult {
    caller.require(Role::Admin)?;
    caller.store(&state).delete_user(&username).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
