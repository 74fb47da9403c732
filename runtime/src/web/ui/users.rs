//! Users and their roles (Admin only).

use super::*;

pub(super) fn users_page(session: &Session, users: &[crate::store::UserRow], error: Option<String>) -> Response {
    let rows: Vec<Value> = users
        .iter()
        .map(|u| json!({ "username": u.username, "email": u.email, "role": u.role, "active": u.active }))
        .collect();
    render(
        "users.html",
        with(page_context(session), context! { users => v(&rows), roles => v(crate::store::ROLES), error }),
    )
}

pub(super) async fn users(State(state): State<AppState>, session: SignedIn<Admin>) -> Response {
    match state.store.users().await {
        Ok(users) => users_page(&session, &users, None),
        Err(e) => store_error(e),
    }
}

/// The new user form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct NewUserForm {
    username: String,
    email: String,
    role: String,
    password: String,
}

pub(super) async fn add_user(
    State(state): State<AppState>,
    CsrfForm { session, form, store }: CsrfForm<Admin, NewUserForm>,
) -> Response {
    // The store refuses a password that `check_new_password` refuses, as for the CLI.
    let user = crate::store::NewUser {
        username: &form.username,
        email: &form.email,
        role: &form.role,
        password: &form.password,
        first_name: "",
        last_name: "",
    };
    let error = store.add_user(&user).await.err().map(|e| e.to_string());
    match (error, state.store.users().await) {
        (None, _) => Redirect::to("/users").into_response(),
        (Some(error), Ok(users)) => {
            let mut page = users_page(&session, &users, Some(error));
            *page.status_mut() = StatusCode::BAD_REQUEST;
            page
        }
        (Some(_), Err(e)) => store_error(e),
    }
}

/// A user's new role.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RoleForm {
    role: String,
}

pub(super) async fn change_role(
    Path(username): Path<String>,
    CsrfForm { session, form, store }: CsrfForm<Admin, RoleForm>,
) -> Response {
    if username == session.username {
        return (StatusCode::BAD_REQUEST, "you cannot change your own role").into_response();
    }
    match store.set_role(&username, &form.role).await {
        Ok(()) => Redirect::to("/users").into_response(),
        Err(e) => store_error(e),
    }
}

pub(super) async fn delete_user(
    Path(username): Path<String>,
    CsrfForm { session, store, .. }: CsrfForm<Admin>,
) -> Response {
    if username == session.username {
        return (StatusCode::BAD_REQUEST, "you cannot delete yourself").into_response();
    }
    match store.delete_user(&username).await {
        Ok(()) => Redirect::to("/users").into_response(),
        Err(e) => store_error(e),
    }
}
