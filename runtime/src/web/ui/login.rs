//! Signing in and out: the login form (with its own CSRF token), logout as a POST, and the
//! stylesheet the login page needs before a session exists.

use super::*;
use crate::store::{Actor, Change, Surface};
use crate::web::auth::{Viewer, client_address};
use axum::Form;

/// The stylesheet of every page, served from here so the Content-Security-Policy needs
/// no inline style.
pub(super) async fn stylesheet() -> Response {
    let headers = [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=3600")];
    (headers, include_str!("../templates/sluice.css")).into_response()
}

pub(super) async fn login_page(State(state): State<AppState>) -> Response {
    login_form(&state, "", None, StatusCode::OK)
}

/// The sign-in page with a fresh login token (in the form, and sealed in its cookie).
pub(super) fn login_form(state: &AppState, username: &str, error: Option<String>, status: StatusCode) -> Response {
    let (token, cookie) = state.sessions.login_token();
    let mut page = render("login.html", context! { error, username, csrf => token });
    *page.status_mut() = status;
    if let Ok(cookie) = header::HeaderValue::from_str(&cookie) {
        page.headers_mut().append(header::SET_COOKIE, cookie);
    }
    page
}

#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    pub(super) username: String,
    pub(super) password: String,
    #[serde(default)]
    pub(super) csrf: String,
}

/// A posted login form whose token is the one sealed in the request's login cookie, and
/// the address it came from (failed logins are counted per address).
#[derive(Debug)]
pub(super) struct LoginAttempt {
    pub(super) form: LoginForm,
    pub(super) address: String,
}

impl axum::extract::FromRequest<AppState> for LoginAttempt {
    type Rejection = Response;

    async fn from_request(request: axum::extract::Request, state: &AppState) -> Result<LoginAttempt, Response> {
        let (parts, body) = request.into_parts();
        let address = client_address(&parts);
        let headers = parts.headers.clone();
        let request = axum::extract::Request::from_parts(parts, body);
        let Form(form) = Form::<LoginForm>::from_request(request, state)
            .await
            .map_err(|e| (StatusCode::BAD_REQUEST, e.body_text()).into_response())?;
        if !state.sessions.login_token_matches(&headers, &form.csrf) {
            let why = "This sign-in form has expired or did not come from this site: sign in again.";
            return Err(login_form(state, &form.username, Some(why.into()), StatusCode::FORBIDDEN));
        }
        Ok(LoginAttempt { form, address })
    }
}

pub(super) async fn login(State(state): State<AppState>, LoginAttempt { form, address }: LoginAttempt) -> Response {
    let failures = format!("login-failures:{address}");
    // Counted as a failure before the hash is checked, forgiven when it matches, so that
    // concurrent guesses cannot all pass a check made before any of them failed.
    if let Err(wait) = state.limiter.hit(&failures, state.limiter.login).await {
        let secs = wait.as_secs().max(1);
        let why = format!("Too many failed sign-ins: try again in {secs} s.");
        let mut page = login_form(&state, &form.username, Some(why), StatusCode::TOO_MANY_REQUESTS);
        page.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        return page;
    }
    let store = state.store.acting_as(Actor::new(&form.username, Surface::Ui, &address));
    match store.authenticate(&form.username, &form.password).await {
        Ok(Some(account)) => {
            state.limiter.forgive(&failures, state.limiter.login).await;
            if let Err(e) = store.record(Change::new("login")).await {
                return store_error(e);
            }
            let mut session = Session::new(&form.username, &account);
            session.default_password = is_default_password(&form.username, &form.password);
            let mut response = Redirect::to("/").into_response();
            for cookie in [state.sessions.cookie(&session), state.sessions.clear_login_cookie()] {
                if let Ok(cookie) = header::HeaderValue::from_str(&cookie) {
                    response.headers_mut().append(header::SET_COOKIE, cookie);
                }
            }
            response
        }
        Ok(None) => {
            if let Err(e) = store.record(Change::new("login_failed")).await {
                return store_error(e);
            }
            login_form(&state, &form.username, Some("Invalid username or password.".into()), StatusCode::UNAUTHORIZED)
        }
        Err(e) => store_error(e),
    }
}

/// The passwords a fresh Airflow or Sluice install is known by, and the username itself.
pub(super) fn is_default_password(username: &str, password: &str) -> bool {
    let same = |known: &str| same_secret(password.as_bytes(), known.as_bytes());
    // Every candidate is compared, matched or not: the answer takes the same time.
    ["admin", "airflow", "password", "changeme", username].into_iter().fold(false, |found, known| found | same(known))
}

/// `GET /logout` signs nobody out (a link or an image on another site could): it shows
/// the button that does.
pub(super) async fn logout_page(session: SignedIn) -> Response {
    render("logout.html", page_context(&session))
}

/// Signs out: ends every session of the user (a copy of the cookie is worthless from
/// now on) and drops the cookie.
pub(super) async fn logout(
    State(state): State<AppState>,
    CsrfForm { session, store, .. }: CsrfForm<Viewer>,
) -> Response {
    if let Err(e) = store.end_sessions(&session.username).await {
        return store_error(e);
    }
    ([(header::SET_COOKIE, state.sessions.clear_cookie())], Redirect::to("/login")).into_response()
}
